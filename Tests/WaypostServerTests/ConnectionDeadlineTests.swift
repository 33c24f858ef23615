import NIOCore
import NIOEmbedded
import Testing

@testable import WaypostServer

@Suite("ConnectionDeadline on an event loop's own clock")
struct ConnectionDeadlineTests {
    /// The body's deadline is measured on the event loop's clock, not the wall clock: on an
    /// `EmbeddedEventLoop` (the fuzz targets' loop) a deadline read against the wall clock was
    /// never reached, and the timer rescheduled itself in a loop until the wall clock caught up.
    @Test("a stalled body expires when the loop's clock passes its deadline", .timeLimit(.minutes(1)))
    func stalledBodyOnVirtualTime() {
        let loop = EmbeddedEventLoop()
        let deadline = ConnectionDeadline(limits: ConnectionLimits(minBodyRate: 1024, bodyGrace: .hours(1)))
        var expired: [Bool] = []
        deadline.expired = { expired.append($0) }
        deadline.start(on: loop)
        deadline.bytesArrived(10, on: loop)
        deadline.headArrived(on: loop)
        deadline.bytesArrived(1024, on: loop)
        loop.advanceTime(by: .minutes(59))
        #expect(expired.isEmpty, "inside the grace period")
        loop.advanceTime(by: .minutes(2))
        #expect(expired == [true], "past grace + 1 s earned by 1 KiB: 408")
    }
}
