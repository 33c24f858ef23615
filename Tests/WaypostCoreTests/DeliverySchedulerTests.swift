// The forwarder's decisions as the pure `DeliveryScheduler`: scripts of events (messages stored,
// pages loaded, attempts started and ended, generation changes, ticks), each with the actions
// or outcomes that must come out, without a journal, a socket or a clock.

import Testing
import WaypostCore

private typealias Action = DeliveryScheduler.Action

/// One event of a scheduler script, with what must come out of it.
private enum Step: Sendable {
    /// `messagesStored` of these (id, route, key); `queued` must be the ids it queued.
    case stored([(Int64, String, String?)], queued: [Int64])
    /// `messagesDropped(from:)`.
    case dropped(from: Int64)
    /// `tick(now:)` must return exactly these actions.
    case tick(at: Int64, [Action])
    /// `pageLoaded` for route `route`.
    case page(route: Int, [Int64], failed: [Int64] = [], complete: Bool)
    /// `attemptStarted` with the journal's counts; it must give these numbers.
    case started(Int64, stored: (Int, Int) = (0, 0), at: Int64, gives: (Int, Int))
    /// `attemptEnded` with an answer (`status`) or a transport error (nil status); the end's
    /// state, next attempt and last error must be these.
    case ended(Int64, status: Int?, at: Int64, state: MessageState, next: Int64? = nil, error: String? = nil)
    /// `generationChanged(paused:)`.
    case generation(paused: Set<String> = [])
    case gone(Int64)
    case readFailed(Int64, at: Int64)
    /// `nextWake` must be this.
    case wake(Int64?)
    /// `inFlightCount` and route 0's `heldCount` must be these.
    case held(Int, inFlight: Int)
}

private struct Script: Sendable, CustomTestStringConvertible {
    var label: String
    var routes: [DeliveryScheduler.DestinationPolicy]
    var steps: [Step]
    var testDescription: String { label }
}

/// Retries after exactly `initial × 2^(n-1)` with random 0 (half the full delay): 500 ms, 1 s, …
private let retry = RetryPolicy(initial: .seconds(1), factor: 2, maxDelay: .seconds(60), maxAttempts: 3, maxAge: .seconds(3600))

private func route(
    _ name: String = "r", _ ordering: Ordering = .fifo, concurrency: Int = 16, onExhausted: OnExhausted = .deadLetter
) -> DeliveryScheduler.DestinationPolicy {
    DeliveryScheduler.DestinationPolicy(name: name, ordering: ordering, concurrency: concurrency, retry: retry, onExhausted: onExhausted)
}

private func send(_ id: Int64, route: Int = 0, key: String? = nil, notBefore: Int64? = nil, blocking: Bool = false) -> Action {
    .send(route: route, QueuedMessage(id: id, orderingKey: key, notBefore: notBefore, blocking: blocking))
}

private func load(route: Int = 0, after: Int64, limit: Int = DeliveryScheduler.pageSize, failed: Bool = false) -> Action {
    .loadPage(route: route, afterID: after, limit: limit, includeFailed: failed)
}

private let page = DeliveryScheduler.pageSize

private let scripts: [Script] = [
    Script(
        label: "start-up pages the journal, then takes what the writer hands over directly", routes: [route()],
        steps: [
            .tick(at: 0, [load(after: 0)]),
            .page(route: 0, [1, 2], complete: true),
            // While 1 is with the upstream, 2 is read ahead (on every turn, until it is sent).
            .tick(at: 0, [send(1), .readAhead(id: 2)]),
            .started(1, at: 0, gives: (1, 1)),
            .stored([(3, "r", nil), (4, "other", nil)], queued: [3]),
            .tick(at: 10, [.readAhead(id: 2)]),
            .ended(1, status: 204, at: 20, state: .delivered),
            .tick(at: 20, [send(2), .readAhead(id: 3)]),
            .held(2, inFlight: 1),
        ]),
    Script(
        label: "a route behind the journal pages what the writer hands over instead of queueing it", routes: [route()],
        steps: [
            .tick(at: 0, [load(after: 0)]),
            .page(route: 0, [1], complete: false),
            .stored([(5, "r", nil)], queued: []),
            .tick(at: 0, [load(after: 1, limit: page - 1), send(1)]),
            .page(route: 0, [2, 5], complete: true),
            .stored([(6, "r", nil)], queued: [6]),
            .held(4, inFlight: 1),
        ]),
    Script(
        label: "messages the writer could not hand over are paged from the first of them", routes: [route(), route("s")],
        steps: [
            .tick(at: 0, [load(after: 0), load(route: 1, after: 0)]),
            .page(route: 0, [1], complete: true), .page(route: 1, [], complete: true),
            .dropped(from: 7),
            // Route 0 had loaded up to 1: it pages from there, 7 included; route 1 from 0.
            .tick(at: 0, [load(after: 1, limit: page - 1), load(route: 1, after: 0), send(1)]),
        ]),
    Script(
        label: "a retry keeps the head; the attempt numbers count on from this process's, not the journal's", routes: [route()],
        steps: [
            .tick(at: 0, [load(after: 0)]), .page(route: 0, [1, 2], complete: true),
            .tick(at: 0, [send(1), .readAhead(id: 2)]), .started(1, at: 0, gives: (1, 1)),
            .ended(1, status: 503, at: 100, state: .queued, next: 600, error: "HTTP 503"),
            .wake(600), .tick(at: 599, []),
            // The journal does not have the first attempt's end yet: still 0 attempts there.
            .tick(at: 600, [send(1, notBefore: 600), .readAhead(id: 2)]), .started(1, stored: (0, 0), at: 600, gives: (2, 2)),
            .ended(1, status: nil, at: 700, state: .queued, next: 1_700, error: "connection refused"),
            .tick(at: 1_700, [send(1, notBefore: 1_700), .readAhead(id: 2)]), .started(1, stored: (2, 2), at: 1_700, gives: (3, 3)),
            .ended(1, status: 500, at: 1_800, state: .failed, error: "HTTP 500; 3 attempts made (max_attempts)"),
            .tick(at: 1_800, [send(2)]),
        ]),
    Script(
        label: "not retryable: failed at once, and the queue moves on (dead_letter)", routes: [route()],
        steps: [
            .tick(at: 0, [load(after: 0)]), .page(route: 0, [1, 2], complete: true),
            .tick(at: 0, [send(1), .readAhead(id: 2)]), .started(1, at: 0, gives: (1, 1)),
            .ended(1, status: 400, at: 5, state: .failed, error: "HTTP 400; HTTP 400 is not retryable"),
            .tick(at: 5, [send(2)]),
        ]),
    Script(
        label: "block: a failed message holds its queue until a generation change reloads it", routes: [route(onExhausted: .block)],
        steps: [
            .tick(at: 0, [load(after: 0, failed: true)]), .page(route: 0, [1, 2], complete: true),
            .tick(at: 0, [send(1), .readAhead(id: 2)]), .started(1, at: 0, gives: (1, 1)),
            .ended(1, status: 400, at: 5, state: .failed, error: "HTTP 400; HTTP 400 is not retryable"),
            .tick(at: 5, []), .wake(nil), .held(2, inFlight: 0),
            // An operator skipped it: the journal no longer lists it.
            .generation(),
            .tick(at: 10, [load(after: 0, failed: true)]), .page(route: 0, [2], complete: true),
            .tick(at: 10, [send(2)]),
        ]),
    Script(
        label: "a failed message read back under block stays blocking", routes: [route(onExhausted: .block)],
        steps: [
            .tick(at: 0, [load(after: 0, failed: true)]), .page(route: 0, [2], failed: [1], complete: true),
            .tick(at: 0, []), .held(2, inFlight: 0),
        ]),
    Script(
        label: "a generation change drops what waits, keeps what is in flight, and pauses what the journal says",
        routes: [route(), route("s")],
        steps: [
            .tick(at: 0, [load(after: 0), load(route: 1, after: 0)]),
            .page(route: 0, [1, 2, 3], complete: true), .page(route: 1, [4], complete: true),
            .tick(at: 0, [send(1), send(4, route: 1), .readAhead(id: 2)]),
            .started(1, at: 0, gives: (1, 1)), .started(4, at: 0, gives: (1, 1)),
            .generation(paused: ["s"]),
            .held(1, inFlight: 2),
            .tick(at: 1, [load(after: 0, limit: page - 1), load(route: 1, after: 0, limit: page - 1)]),
            // The journal still shows 1 as queued: it is in flight here and not added twice.
            .page(route: 0, [1, 2, 3], complete: true), .page(route: 1, [5], complete: true),
            .held(3, inFlight: 2),
            .ended(1, status: 200, at: 2, state: .delivered), .ended(4, status: 200, at: 2, state: .delivered),
            // Route 1 is paused now: its 5 waits.
            .tick(at: 2, [send(2), .readAhead(id: 3)]),
        ]),
    Script(
        label: "a message skipped or purged before its send: the queue moves on", routes: [route()],
        steps: [
            .tick(at: 0, [load(after: 0)]), .page(route: 0, [1, 2], complete: true),
            .tick(at: 0, [send(1), .readAhead(id: 2)]), .gone(1), .held(1, inFlight: 0),
            .tick(at: 0, [send(2)]),
        ]),
    Script(
        label: "a message that cannot be read is tried again a second later", routes: [route()],
        steps: [
            .tick(at: 0, [load(after: 0)]), .page(route: 0, [1], complete: true),
            .tick(at: 0, [send(1)]), .readFailed(1, at: 10), .wake(1_010),
            .tick(at: 1_009, []), .tick(at: 1_010, [send(1, notBefore: 1_010)]),
        ]),
    Script(
        label: "an attempt's start is recorded once, after 50 ms", routes: [route("r", .none)],
        steps: [
            .tick(at: 0, [load(after: 0)]), .page(route: 0, [1, 2], complete: true),
            .tick(at: 0, [send(1), send(2)]), .started(2, at: 0, gives: (1, 1)), .started(1, at: 10, gives: (1, 1)),
            .wake(50), .tick(at: 49, []),
            .tick(
                at: 60, [.recordStart(id: 1, attempt: 1, cycleAttempt: 1, at: 10), .recordStart(id: 2, attempt: 1, cycleAttempt: 1, at: 0)]),
            .tick(at: 100, []), .wake(nil),
        ]),
    Script(
        label: "key: keys go in parallel, each in order", routes: [route("r", .key)],
        steps: [
            .tick(at: 0, [load(after: 0)]),
            .page(route: 0, [], complete: true),
            .stored([(1, "r", "a"), (2, "r", "b"), (3, "r", "a")], queued: [1, 2, 3]),
            .tick(at: 0, [send(1, key: "a"), send(2, key: "b")]),
        ]),
    Script(
        label: "a full route stops taking handed-over messages and pages them later", routes: [route()],
        steps: [
            .tick(at: 0, [load(after: 0)]),
            .page(route: 0, Array(1...Int64(page - 1)), complete: true),
            .stored([(Int64(page), "r", nil), (Int64(page + 1), "r", nil)], queued: []),
            .held(page - 1, inFlight: 0),
            // Paged once the route holds less than half a page, from the last it loaded (999).
            .tick(at: 0, [send(1), .readAhead(id: 2)]),
            .generation(),
            .tick(at: 1, [load(after: 0, limit: page - 1)]),
        ]),
]

@Suite("DeliveryScheduler: the forwarder's decisions, without a journal or a socket")
struct DeliverySchedulerTests {
    @Test("scripts", arguments: scripts)
    fileprivate func play(_ script: Script) {
        var scheduler = DeliveryScheduler(routes: script.routes)
        for (number, step) in script.steps.enumerated() {
            let at = "step \(number + 1)"
            switch step {
            case .stored(let messages, let queued):
                let got = scheduler.messagesStored(messages.map { .init(id: $0.0, route: $0.1, orderingKey: $0.2) })
                #expect(got == queued, "\(at): queued")
            case .dropped(let from):
                scheduler.messagesDropped(from: from)
            case .tick(let now, let expected):
                #expect(scheduler.tick(now: now) == expected, "\(at): actions at \(now)")
            case .page(let route, let ids, let failed, let complete):
                let messages = (ids.map { QueuedMessage(id: $0) } + failed.map { QueuedMessage(id: $0, blocking: true) }).sorted {
                    $0.id < $1.id
                }
                scheduler.pageLoaded(route: route, messages: messages, complete: complete)
            case .started(let id, let stored, let now, let gives):
                let numbers = scheduler.attemptStarted(
                    id, attempts: stored.0, cycleAttempts: stored.1, cycleStart: 0, correlationID: "c\(id)", now: now)
                #expect(numbers == gives, "\(at): attempt numbers")
            case .ended(let id, let status, let now, let state, let next, let error):
                let result: AttemptResult = status.map { .response(status: $0, retryAfter: nil) } ?? .transportError("connection refused")
                let end = scheduler.attemptEnded(id, result: result, now: now, random: 0)
                #expect(end?.state == state, "\(at): state")
                #expect(end?.nextAttemptAt == next, "\(at): next attempt")
                #expect(end?.lastError == error, "\(at): last error")
                #expect(end?.correlationID == "c\(id)", "\(at)")
            case .generation(let paused):
                scheduler.generationChanged(paused: paused)
            case .gone(let id):
                scheduler.messageGone(id)
            case .readFailed(let id, let now):
                scheduler.readFailed(id, now: now)
            case .wake(let wake):
                #expect(scheduler.nextWake == wake, "\(at): next wake")
            case .held(let count, let inFlight):
                #expect(scheduler.heldCount(route: 0) == count, "\(at): held")
                #expect(scheduler.inFlightCount == inFlight, "\(at): in flight")
            }
        }
    }

    @Test("an unknown or cancelled attempt ends with nothing to record")
    func unknownAttempt() {
        var scheduler = DeliveryScheduler(routes: [route()])
        #expect(scheduler.attemptEnded(9, result: .response(status: 200, retryAfter: nil), now: 0, random: 0) == nil)
        _ = scheduler.tick(now: 0)
        scheduler.pageLoaded(route: 0, messages: [QueuedMessage(id: 1)], complete: true)
        #expect(scheduler.tick(now: 0) == [send(1)])
        _ = scheduler.attemptStarted(1, attempts: 0, cycleAttempts: 0, cycleStart: 0, correlationID: "c1", now: 0)
        scheduler.attemptCancelled(1, now: 0)
        #expect(scheduler.inFlightCount == 0)
        #expect(scheduler.attemptEnded(1, result: .response(status: 200, retryAfter: nil), now: 1, random: 0) == nil)
        // It waits again, as the journal has it, until a reload drops it (its queue's lease was lost).
        #expect(scheduler.heldCount(route: 0) == 1)
        scheduler.generationChanged(paused: [])
        #expect(scheduler.heldCount(route: 0) == 0)
    }

    @Test("a cluster node's share: half the partitions, half a keyed destination's concurrency and rate; a fifo one whole")
    func clusterShare() {
        var keyed = route("k", .key, concurrency: 8)
        keyed.rateLimit = RateLimit(count: 6, perMilliseconds: 1000)
        var scheduler = DeliveryScheduler(routes: [keyed, route("f", .fifo)], now: 0)
        _ = scheduler.tick(now: 0)
        let keys = (1...10).map { QueuedMessage(id: Int64($0), orderingKey: "key\($0)") }
        scheduler.pageLoaded(route: 0, messages: keys, complete: true)
        scheduler.pageLoaded(route: 1, messages: [QueuedMessage(id: 11)], complete: true)
        scheduler.share(held: QueuePartition.count / 2, now: 0)
        // Rate 3/s with a burst of 3 (half of 6), concurrency 4: three now; the fifo one as before.
        var sends = scheduler.tick(now: 0).filter { if case .send = $0 { true } else { false } }
        #expect(sends == [send(1, key: "key1"), send(2, key: "key2"), send(3, key: "key3"), send(11, route: 1)])
        // A second later three more tokens, but only one more may be in flight (concurrency 4).
        sends = scheduler.tick(now: 1000).filter { if case .send = $0 { true } else { false } }
        #expect(sends == [send(4, key: "key4")])
        // Holding no partition leaves at least one attempt at a time.
        scheduler.share(held: 0, now: 1000)
        #expect(scheduler.tick(now: 5000).filter { if case .send = $0 { true } else { false } }.isEmpty)
    }

    @Test("a paused route sends nothing until a generation change resumes it")
    func paused() {
        var scheduler = DeliveryScheduler(routes: [route()], paused: ["r"])
        #expect(scheduler.isPaused(route: 0))
        #expect(scheduler.tick(now: 0) == [load(after: 0)])
        scheduler.pageLoaded(route: 0, messages: [QueuedMessage(id: 1)], complete: true)
        #expect(scheduler.tick(now: 0) == [])
        #expect(scheduler.nextWake == nil)
        scheduler.generationChanged(paused: [])
        #expect(scheduler.tick(now: 0) == [load(after: 0)])
        scheduler.pageLoaded(route: 0, messages: [QueuedMessage(id: 1)], complete: true)
        #expect(scheduler.tick(now: 0) == [send(1)])
    }
}
