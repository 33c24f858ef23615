import Testing
import WaypostJournal

@Suite("Throughput: events per minute over the last hour, in memory")
struct ThroughputTests {
    @Test("counts land in their minute; an hour later a minute's slot starts again from zero; keys select")
    func minutes() {
        let throughput = Throughput()
        let base: Int64 = 1_800_000_000_000 / 60_000 * 60_000  // a minute's start
        throughput.record(.accepted, key: "hooks", atMilliseconds: base)
        throughput.record(.accepted, key: "hooks", atMilliseconds: base + 59_999)
        throughput.record(.delivered, key: "hooks/a", atMilliseconds: base + 60_000)
        throughput.record(.failed, key: "hooks/b", atMilliseconds: base + 60_001)

        let hour = throughput.minutes(endingAtMilliseconds: base + 60_000)
        #expect(hour.count == Throughput.window && hour.last?.minute == base / 60_000 + 1)
        #expect(hour[58].counts == [2, 0, 0] && hour[59].counts == [0, 1, 1])
        #expect(hour.dropLast(2).allSatisfy { $0.counts == [0, 0, 0] })
        let onlyA = throughput.minutes(endingAtMilliseconds: base + 60_000) { $0 == "hooks/a" }
        #expect(onlyA[59].counts == [0, 1, 0] && onlyA[58].counts == [0, 0, 0])

        // Sixty minutes on, the same slot is a new minute: the old counts are gone from it and
        // out of the window.
        throughput.record(.accepted, key: "hooks", atMilliseconds: base + 3_600_000)
        let later = throughput.minutes(endingAtMilliseconds: base + 3_600_000)
        #expect(later[59].counts == [1, 0, 0])
        #expect(later.reduce(0) { $0 + $1[.accepted] } == 1, "the minute an hour ago is out of the window")
        #expect(later[0].minute == base / 60_000 + 1 && later[0].counts == [0, 1, 1])
    }
}
