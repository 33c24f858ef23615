// The delivery order of one route (SPEC §3) as the pure `RouteQueues` state machine: scripts of
// add / ready / finish events, each with the message ids the scheduler must release.

import Testing
import WaypostCore

/// One event of a scheduler script, with what must come out of it.
enum QueueScriptStep: Sendable {
    /// Load these messages.
    case add([QueuedMessage])
    /// `nextReady(now:limit:)` must release exactly these ids, in this order.
    case ready(at: Int64, limit: Int = .max, [Int64])
    /// Report the end of an attempt.
    case finish(Int64, RouteQueues.Outcome)
    /// `nextWake` must be this.
    case wake(Int64?)
    /// Set `paused`.
    case pause(Bool)
    /// Call `removeWaiting()`.
    case removeWaiting
    /// `count` and `inFlightCount` must be these.
    case held(Int, inFlight: Int)
}

/// A named script for one route.
struct QueueScript: Sendable, CustomTestStringConvertible {
    var label: String
    var ordering: Ordering
    var concurrency: Int
    var steps: [QueueScriptStep]

    init(_ label: String, _ ordering: Ordering, concurrency: Int = 16, _ steps: [QueueScriptStep]) {
        self.label = label
        self.ordering = ordering
        self.concurrency = concurrency
        self.steps = steps
    }

    var testDescription: String { label }
}

/// A queued message: `m(3)`, `m(3, "a")` (ordering key a), `m(3, notBefore: 500)`.
private func m(_ id: Int64, _ key: String? = nil, notBefore: Int64? = nil, blocking: Bool = false) -> QueuedMessage {
    QueuedMessage(id: id, orderingKey: key, notBefore: notBefore, blocking: blocking)
}

private let never = Int64.max

private let fifoScripts: [QueueScript] = [
    QueueScript(
        "fifo: one at a time, in id order, the next only after .final", .fifo, concurrency: 16,
        [
            .add([m(1), m(2), m(3)]),
            .ready(at: 0, [1]), .held(3, inFlight: 1),
            .ready(at: 0, []), .wake(nil),
            .finish(1, .final), .held(2, inFlight: 0), .wake(0),
            .ready(at: 0, [2]), .ready(at: 0, []),
            .finish(2, .final), .ready(at: 0, [3]),
            .finish(3, .final), .ready(at: 0, []), .wake(nil), .held(0, inFlight: 0),
        ]),
    QueueScript(
        "fifo: .retry(at) keeps the head; nothing of the queue goes before at", .fifo,
        [
            .add([m(1), m(2), m(3)]),
            .ready(at: 0, [1]),
            .finish(1, .retry(atMilliseconds: 1_000)), .held(3, inFlight: 0), .wake(1_000),
            .ready(at: 999, []), .ready(at: 999, []),
            .ready(at: 1_000, [1]),
            .finish(1, .retry(atMilliseconds: 5_000)),
            .ready(at: 4_999, []), .wake(5_000),
            .ready(at: 5_000, [1]),
            .finish(1, .final), .wake(0),
            .ready(at: 5_000, [2]),
        ]),
    QueueScript(
        "fifo: a head not due yet holds the later messages", .fifo,
        [
            .add([m(1, notBefore: 1_000), m(2)]),
            .wake(1_000), .ready(at: 0, []), .ready(at: 999, []),
            .ready(at: 1_000, [1]),
        ]),
    QueueScript(
        "fifo: .blocked holds the queue forever, until removeWaiting and a re-add without blocking", .fifo,
        [
            .add([m(1), m(2)]),
            .ready(at: 0, [1]),
            .finish(1, .blocked), .held(2, inFlight: 0), .wake(nil),
            .ready(at: never, []),
            // Re-adding the held id changes nothing (a duplicate); a new message waits behind it.
            .add([m(1), m(3)]), .held(3, inFlight: 0),
            .ready(at: never, []), .wake(nil),
            .removeWaiting, .held(0, inFlight: 0),
            .add([m(1), m(2), m(3)]),
            .ready(at: 0, [1]),
            .finish(1, .final), .ready(at: 0, [2]),
        ]),
    QueueScript(
        "fifo: a blocking message loaded from the journal holds the queue", .fifo,
        [
            .add([m(1, blocking: true), m(2), m(3)]),
            .wake(nil), .ready(at: never, []), .held(3, inFlight: 0),
        ]),
    QueueScript(
        "fifo: a replayed older id goes first in the queue", .fifo,
        [
            .add([m(5), m(6)]),
            .add([m(3)]),
            .ready(at: 0, [3]),
            .finish(3, .final), .ready(at: 0, [5]),
            .finish(5, .final), .ready(at: 0, [6]),
        ]),
    QueueScript(
        "fifo: an id between two held ones takes its place by id", .fifo,
        [
            .add([m(2), m(8)]),
            .add([m(5)]),
            .ready(at: 0, [2]),
            .finish(2, .final), .ready(at: 0, [5]),
            .finish(5, .final), .ready(at: 0, [8]),
        ]),
    QueueScript(
        "fifo: an older id added while the head is in flight is sent right after it", .fifo,
        [
            .add([m(5), m(6)]),
            .ready(at: 0, [5]),
            .add([m(3)]),
            .ready(at: 0, []),
            .finish(5, .final),
            .ready(at: 0, [3]),
            .finish(3, .final), .ready(at: 0, [6]),
        ]),
    QueueScript(
        "fifo: messages already held are ignored, also while in flight", .fifo,
        [
            .add([m(1), m(2)]),
            .add([m(1, notBefore: 9_999), m(2, blocking: true)]), .held(2, inFlight: 0),
            .ready(at: 0, [1]),
            .add([m(1)]), .ready(at: 0, []), .held(2, inFlight: 1),
            .finish(1, .final),
            .ready(at: 0, [2]),
            .add([m(2)]), .ready(at: 0, []),
            .finish(2, .final), .ready(at: 0, []), .held(0, inFlight: 0),
        ]),
    QueueScript(
        "fifo: removeWaiting keeps the message in flight; the reloaded rest waits behind it", .fifo,
        [
            .add([m(1), m(2), m(3)]),
            .ready(at: 0, [1]),
            .removeWaiting, .held(1, inFlight: 1),
            .add([m(1), m(2), m(3)]), .held(3, inFlight: 1),
            .ready(at: 0, []),
            .finish(1, .final), .ready(at: 0, [2]),
        ]),
]

private let keyScripts: [QueueScript] = [
    QueueScript(
        "key: different keys in parallel up to concurrency, same key in order, nil keys share a queue", .key,
        concurrency: 2,
        [
            .add([m(1, "a"), m(2, "a"), m(3, "b"), m(4, "c"), m(5), m(6)]),
            .ready(at: 0, [1, 3]), .ready(at: 0, []), .wake(nil),
            .finish(1, .final), .ready(at: 0, [2]),
            .finish(3, .final), .ready(at: 0, [4]),
            .finish(2, .final), .ready(at: 0, [5]),
            .finish(4, .final), .ready(at: 0, []), .held(2, inFlight: 1),
            .finish(5, .final), .ready(at: 0, [6]),
        ]),
    QueueScript(
        "key: same key strictly in order even with spare concurrency", .key, concurrency: 16,
        [
            .add([m(1, "a"), m(2, "a"), m(3, "a"), m(4, "b")]),
            .ready(at: 0, [1, 4]),
            .finish(1, .retry(atMilliseconds: 100)),
            .ready(at: 50, []),
            .ready(at: 100, [1]),
            .finish(1, .final), .ready(at: 100, [2]),
            .finish(2, .final), .ready(at: 100, [3]),
        ]),
    QueueScript(
        "key: a retrying key does not hold the other keys", .key, concurrency: 2,
        [
            .add([m(1, "a"), m(2, "a"), m(3, "b"), m(4, "b")]),
            .ready(at: 0, [1, 3]),
            .finish(1, .retry(atMilliseconds: 1_000)),
            .ready(at: 0, []),
            .finish(3, .final), .ready(at: 0, [4]),
            .wake(1_000),
            .ready(at: 1_000, [1]),
        ]),
    QueueScript(
        "key: a message without a key waits behind the other keyless ones only", .key, concurrency: 4,
        [
            .add([m(1), m(2, "a"), m(3), m(4, "a")]),
            .ready(at: 0, [1, 2]),
            .finish(1, .retry(atMilliseconds: 700)),
            .ready(at: 0, []),
            .finish(2, .final), .ready(at: 0, [4]),
            .ready(at: 700, [1]),
            .finish(1, .final), .ready(at: 700, [3]),
        ]),
    QueueScript(
        "key: .blocked holds only its own key", .key, concurrency: 4,
        [
            .add([m(1, "a"), m(2, "a"), m(3, "b")]),
            .ready(at: 0, [1, 3]),
            .finish(1, .blocked), .finish(3, .final),
            .ready(at: never, []), .held(2, inFlight: 0),
            .add([m(4, "b"), m(5, "c")]),
            .ready(at: 0, [4, 5]),
        ]),
]

private let noneScripts: [QueueScript] = [
    QueueScript(
        "none: up to concurrency in parallel", .none, concurrency: 3,
        [
            .add([m(1), m(2), m(3), m(4), m(5)]),
            .ready(at: 0, [1, 2, 3]), .ready(at: 0, []), .wake(nil), .held(5, inFlight: 3),
            .finish(2, .final), .wake(0),
            .ready(at: 0, [4]),
            .finish(1, .final), .finish(3, .final),
            .ready(at: 0, [5]),
        ]),
    QueueScript(
        "none: a retrying message does not hold the others", .none, concurrency: 3,
        [
            .add([m(1), m(2), m(3), m(4), m(5)]),
            .ready(at: 0, [1, 2, 3]),
            .finish(1, .retry(atMilliseconds: 5_000)),
            .ready(at: 0, [4]),
            .finish(2, .final), .ready(at: 0, [5]),
            .wake(nil), .ready(at: 5_000, []),
            .finish(3, .final), .wake(5_000),
            .ready(at: 4_999, []),
            .ready(at: 5_000, [1]),
        ]),
    QueueScript(
        "none: .blocked holds only that message", .none, concurrency: 2,
        [
            .add([m(1), m(2), m(3)]),
            .ready(at: 0, [1, 2]),
            .finish(1, .blocked),
            .ready(at: 0, [3]), .held(3, inFlight: 2),
        ]),
    QueueScript(
        "none: limit caps one call", .none, concurrency: 5,
        [
            .add([m(1), m(2), m(3), m(4)]),
            .ready(at: 0, limit: 2, [1, 2]),
            .ready(at: 0, limit: 0, []),
            .ready(at: 0, [3, 4]),
        ]),
    QueueScript(
        "none: messages become ready at their own time", .none, concurrency: 4,
        [
            .add([m(1, notBefore: 500), m(2, notBefore: 300), m(3)]),
            .wake(0), .ready(at: 0, [3]),
            .wake(300), .ready(at: 299, []), .ready(at: 300, [2]),
            .wake(500), .ready(at: 10_000, [1]),
            .wake(nil),
        ]),
    QueueScript(
        "none: removeWaiting keeps the ones in flight, and their retry still works", .none, concurrency: 2,
        [
            .add([m(1), m(2), m(3)]),
            .ready(at: 0, [1, 2]),
            .removeWaiting, .held(2, inFlight: 2),
            .finish(1, .final), .held(1, inFlight: 1), .wake(nil),
            .ready(at: never, []),
            .finish(2, .retry(atMilliseconds: 700)), .held(1, inFlight: 0), .wake(700),
            .ready(at: 700, [2]),
            .add([m(3)]), .ready(at: 700, [3]),
        ]),
]

private let pauseAndWakeScripts: [QueueScript] = [
    QueueScript(
        "paused: nothing is released and nextWake is nil", .fifo,
        [
            .add([m(1)]),
            .pause(true), .ready(at: never, []), .wake(nil),
            .pause(false), .wake(0), .ready(at: 0, [1]),
        ]),
    QueueScript(
        "paused with one in flight: its end releases nothing until resumed", .none, concurrency: 4,
        [
            .add([m(1), m(2)]),
            .ready(at: 0, limit: 1, [1]),
            .pause(true),
            .finish(1, .final), .held(1, inFlight: 0),
            .ready(at: 0, []), .wake(nil),
            .pause(false), .ready(at: 0, [2]),
        ]),
    QueueScript(
        "nextWake: nil while empty or with concurrency exhausted, else the earliest ready time", .none,
        concurrency: 1,
        [
            .wake(nil),
            .add([m(1, notBefore: 400)]), .wake(400),
            .ready(at: 0, []), .ready(at: 400, [1]),
            .add([m(2, notBefore: 100)]), .wake(nil),
            .finish(1, .final), .wake(100),
        ]),
]

@Suite("RouteQueues: the per-route delivery order (SPEC §3)")
struct RouteQueuesTests {
    @Test("scripts", arguments: fifoScripts + keyScripts + noneScripts + pauseAndWakeScripts)
    func script(_ script: QueueScript) {
        run(script)
    }

    @Test(
        "fifo always has concurrency 1; key and none at least 1",
        arguments: [
            (Ordering.fifo, 16, 1), (.fifo, 1, 1), (.key, 4, 4), (.key, 0, 1), (.none, 7, 7), (.none, -3, 1),
        ])
    func effectiveConcurrency(ordering: Ordering, configured: Int, expected: Int) {
        #expect(RouteQueues(ordering: ordering, concurrency: configured).concurrency == expected)
    }

    @Test("contains: held while waiting and in flight, gone after .final")
    func contains() {
        var queues = RouteQueues(ordering: .fifo, concurrency: 1)
        queues.add([m(1), m(2)])
        #expect(queues.contains(1) && queues.contains(2) && !queues.contains(3))
        _ = queues.nextReady(now: 0)
        #expect(queues.contains(1))
        queues.finish(1, outcome: .final)
        #expect(!queues.contains(1) && queues.contains(2))
    }

    @Test("nextInLine: in a fifo route, the message after the one in flight; nothing otherwise")
    func nextInLine() {
        var fifo = RouteQueues(ordering: .fifo, concurrency: 1)
        fifo.add([m(1), m(2), m(3)])
        #expect(fifo.nextInLine == nil, "nothing in flight yet")
        _ = fifo.nextReady(now: 0)
        #expect(fifo.nextInLine?.id == 2)
        fifo.finish(1, outcome: .retry(atMilliseconds: 100))
        #expect(fifo.nextInLine == nil, "the head waits for its retry, not in flight")
        _ = fifo.nextReady(now: 100)
        #expect(fifo.nextInLine?.id == 2)
        fifo.finish(1, outcome: .final)
        _ = fifo.nextReady(now: 100)
        #expect(fifo.nextInLine?.id == 3)
        fifo.finish(2, outcome: .final)
        _ = fifo.nextReady(now: 100)
        #expect(fifo.nextInLine == nil, "the last one is in flight")

        var key = RouteQueues(ordering: .key, concurrency: 1)
        key.add([m(1, "a"), m(2, "a")])
        _ = key.nextReady(now: 0)
        #expect(key.nextInLine == nil)
    }

    @Test("inLine: in a fifo route, the messages after one, in order, at most the limit; nothing otherwise")
    func inLine() {
        var fifo = RouteQueues(ordering: .fifo, concurrency: 1)
        fifo.add([m(1), m(2), m(3), m(5), m(8)])
        #expect(fifo.inLine(after: 2, limit: 2) == [3, 5])
        #expect(fifo.inLine(after: 2, limit: 10) == [3, 5, 8])
        #expect(fifo.inLine(after: 8, limit: 10) == [])
        #expect(fifo.inLine(after: 4, limit: 10) == [], "not held")
        _ = fifo.nextReady(now: 0)
        fifo.finish(1, outcome: .final)
        #expect(fifo.inLine(after: 1, limit: 10) == [], "gone once final")
        #expect(fifo.inLine(after: 2, limit: 0) == [])

        var key = RouteQueues(ordering: .key, concurrency: 1)
        key.add([m(1, "a"), m(2, "a")])
        #expect(key.inLine(after: 1, limit: 10) == [])
    }

    @Test("a released message carries what was loaded")
    func releasedMessage() {
        var queues = RouteQueues(ordering: .key, concurrency: 2)
        queues.add([m(7, "repo-1", notBefore: 10)])
        #expect(queues.nextReady(now: 10) == [m(7, "repo-1", notBefore: 10)])
    }

    @Test(
        "key: a replayed older id does not go out while a later message of its key is in flight")
    func replayedOlderIDWaitsForInFlightSibling() {
        // The forwarder reaches this state on every replay: removeWaiting keeps message 5 (in
        // flight), and the reload adds the replayed message 3 of the same key.
        run(
            QueueScript(
                "key: older id while a later one of its key is in flight", .key, concurrency: 4,
                [
                    .add([m(5, "a")]),
                    .ready(at: 0, [5]),
                    .removeWaiting,
                    .add([m(3, "a")]),
                    .ready(at: 0, []),
                    .finish(5, .final),
                    .ready(at: 0, [3]),
                ]))
    }

    @Test(
        "nextWake never names a time at which nothing becomes ready")
    func nextWakeIgnoresStaleEntries() {
        run(
            QueueScript(
                "fifo: stale wake of a displaced head", .fifo,
                [
                    .add([m(3)]),
                    .add([m(1)]),  // 3 was the head and got a wake entry; 1 now goes first
                    .ready(at: 0, [1]),
                    .finish(1, .retry(atMilliseconds: 1_000)),
                    .wake(1_000),
                ]))
    }
}

/// Plays `script` on a fresh `RouteQueues`, checking every expectation step by step.
private func run(_ script: QueueScript, sourceLocation: SourceLocation = #_sourceLocation) {
    var queues = RouteQueues(ordering: script.ordering, concurrency: script.concurrency)
    for (index, step) in script.steps.enumerated() {
        let at = "step \(index + 1) of '\(script.label)'"
        switch step {
        case .add(let messages):
            queues.add(messages)
        case .ready(let now, let limit, let expected):
            let released = queues.nextReady(now: now, limit: limit).map(\.id)
            #expect(released == expected, "\(at): nextReady(now: \(now))", sourceLocation: sourceLocation)
        case .finish(let id, let outcome):
            queues.finish(id, outcome: outcome)
        case .wake(let expected):
            #expect(queues.nextWake == expected, "\(at): nextWake", sourceLocation: sourceLocation)
        case .pause(let paused):
            queues.paused = paused
        case .removeWaiting:
            queues.removeWaiting()
        case .held(let count, let inFlight):
            #expect(queues.count == count, "\(at): count", sourceLocation: sourceLocation)
            #expect(queues.inFlightCount == inFlight, "\(at): inFlightCount", sourceLocation: sourceLocation)
        }
    }
}
