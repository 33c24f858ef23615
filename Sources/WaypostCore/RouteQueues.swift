import HeapModule

/// A message waiting for delivery, as the scheduler knows it.
public struct QueuedMessage: Sendable, Equatable {
    /// The journal row id: the order of acceptance.
    public var id: Int64
    public var orderingKey: String?
    /// Not to be sent before this time (milliseconds since the Unix epoch); nil: now.
    public var notBefore: Int64?
    /// Failed under `on_exhausted: block`: it holds its queue until replayed or skipped.
    public var blocking: Bool
    /// Its queue's partition, as the journal stores it (a cluster, SPEC §12); nil when the
    /// journal has none (SQLite).
    public var partition: Int?

    public init(id: Int64, orderingKey: String? = nil, notBefore: Int64? = nil, blocking: Bool = false, partition: Int? = nil) {
        self.id = id
        self.orderingKey = orderingKey
        self.notBefore = notBefore
        self.blocking = blocking
        self.partition = partition
    }
}

/// The delivery order of one route (SPEC §3), as a pure state machine: no I/O, no clock.
///
/// Messages are grouped in queues: one queue for `ordering: fifo`, one per ordering-key
/// value for `key` (messages without a key share one), one per message for `none`. Only the
/// head of a queue may be sent, and it stays the head until it reaches a final state, so no
/// message is sent before every earlier message of its queue is final. At most
/// `concurrency` messages of the route are in flight.
///
/// The caller loads messages (in pages, in id order), asks ``nextReady(now:limit:)`` for
/// what to send, and reports each attempt's end with ``finish(_:outcome:)``.
public struct RouteQueues: Sendable {
    /// How an attempt ended, for the queue.
    public enum Outcome: Sendable, Equatable {
        /// Final (delivered, failed with `dead_letter`, or skipped): the queue moves on.
        case final
        /// Retry at this time; the message stays at the head of its queue.
        case retry(atMilliseconds: Int64)
        /// Failed with `on_exhausted: block`: the message stays at the head, and the queue
        /// waits for an operator.
        case blocked
    }

    enum QueueKey: Hashable, Sendable {
        case shared
        case key(String)
        case message(Int64)
    }

    /// A queue whose head may be ready at `time`. Entries can be stale; they are checked
    /// against the queue when they come out of the heap.
    struct Wake: Comparable, Sendable {
        var time: Int64
        var id: Int64
        var key: QueueKey

        static func < (a: Wake, b: Wake) -> Bool { (a.time, a.id) < (b.time, b.id) }
        static func == (a: Wake, b: Wake) -> Bool { a.time == b.time && a.id == b.id }
    }

    public let ordering: Ordering
    /// At most this many messages in flight (a cluster's node has its share of the route's).
    public var concurrency: Int
    public var paused = false

    private var queues: [QueueKey: [QueuedMessage]] = [:]
    private var keyOfMessage: [Int64: QueueKey] = [:]
    private var inFlight: Set<Int64> = []
    /// Queues with a message in flight: nothing else of theirs may go until it is final,
    /// not even an older message that a replay put back in front of it.
    private var busy: Set<QueueKey> = []
    private var wakes = Heap<Wake>()

    public init(ordering: Ordering, concurrency: Int) {
        self.ordering = ordering
        self.concurrency = ordering == .fifo ? 1 : max(1, concurrency)
    }

    /// Messages held (waiting, in flight or blocking).
    public var count: Int { keyOfMessage.count }

    /// Messages in flight.
    public var inFlightCount: Int { inFlight.count }

    /// With `ordering: fifo`, the message after the one in flight: the next to be sent,
    /// unless the one in flight is retried.
    public var nextInLine: QueuedMessage? {
        guard ordering == .fifo, let queue = queues[.shared], queue.count > 1, inFlight.contains(queue[0].id) else { return nil }
        return queue[1]
    }

    /// With `ordering: fifo`, up to `limit` messages after `id` in the queue, in order: what
    /// can be read ahead together with it. Empty for another ordering, or an id not held.
    public func inLine(after id: Int64, limit: Int) -> [Int64] {
        guard ordering == .fifo, keyOfMessage[id] != nil, let queue = queues[.shared],
            let at = queue.firstIndex(where: { $0.id == id })
        else { return [] }
        return queue[(at + 1)...].prefix(limit).map(\.id)
    }

    /// Whether the message is held.
    public func contains(_ id: Int64) -> Bool { keyOfMessage[id] != nil }

    private func queueKey(_ message: QueuedMessage) -> QueueKey {
        switch ordering {
        case .fifo: .shared
        case .key: message.orderingKey.map(QueueKey.key) ?? .shared
        case .none: .message(message.id)
        }
    }

    /// Adds messages loaded from the journal. Messages already held are ignored; the rest
    /// take their place by id in their queue.
    public mutating func add(_ messages: [QueuedMessage]) {
        for message in messages where keyOfMessage[message.id] == nil {
            let key = queueKey(message)
            keyOfMessage[message.id] = key
            // Mutated in place: a copy of a long fifo queue per message would cost O(n²).
            if let last = queues[key]?.last, last.id > message.id {
                let index = queues[key]!.firstIndex { $0.id > message.id }!
                queues[key]!.insert(message, at: index)
            } else {
                queues[key, default: []].append(message)
            }
            if queues[key]!.first?.id == message.id { scheduleHead(of: key) }
        }
    }

    private mutating func scheduleHead(of key: QueueKey) {
        guard !busy.contains(key), let head = queues[key]?.first, !head.blocking else { return }
        wakes.insert(Wake(time: head.notBefore ?? 0, id: head.id, key: key))
        dropStaleWakes()
    }

    /// Whether a wake still names the head of an idle queue, as it was scheduled.
    private func isCurrent(_ wake: Wake) -> Bool {
        guard !busy.contains(wake.key), let head = queues[wake.key]?.first else { return false }
        return head.id == wake.id && !head.blocking && (head.notBefore ?? 0) == wake.time
    }

    /// Pops outdated wakes off the top, so ``nextWake`` names a time when something is ready.
    private mutating func dropStaleWakes() {
        while let wake = wakes.min, !isCurrent(wake) { wakes.removeMin() }
    }

    /// The messages to send now, at most `limit` and never beyond `concurrency`; they are in
    /// flight from here on.
    public mutating func nextReady(now: Int64, limit: Int = .max) -> [QueuedMessage] {
        guard !paused else { return [] }
        var ready: [QueuedMessage] = []
        while ready.count < limit, inFlight.count < concurrency, let wake = wakes.min, wake.time <= now {
            wakes.removeMin()
            // Stale entries: the queue changed since this wake was scheduled.
            guard isCurrent(wake), let head = queues[wake.key]?.first else { continue }
            inFlight.insert(head.id)
            busy.insert(wake.key)
            ready.append(head)
        }
        dropStaleWakes()
        return ready
    }

    /// When the next held message becomes ready (milliseconds); nil while nothing can be sent
    /// (nothing waits, the route is paused, or `concurrency` messages are in flight).
    public var nextWake: Int64? { paused || inFlight.count >= concurrency ? nil : wakes.min?.time }

    /// Records the end of an attempt of message `id`.
    public mutating func finish(_ id: Int64, outcome: Outcome) {
        guard inFlight.remove(id) != nil, let key = keyOfMessage[id], let index = queues[key]?.firstIndex(where: { $0.id == id })
        else { return }
        busy.remove(key)
        switch outcome {
        case .final:
            queues[key]!.remove(at: index)
            keyOfMessage[id] = nil
            if queues[key]!.isEmpty { queues[key] = nil }
        case .retry(let at):
            queues[key]![index].notBefore = at
        case .blocked:
            queues[key]![index].blocking = true
        }
        scheduleHead(of: key)
    }

    /// Drops every held message that is not in flight (before a full reload from the journal,
    /// after an operator replayed or skipped messages).
    public mutating func removeWaiting() {
        for (key, queue) in queues {
            let kept = queue.filter { inFlight.contains($0.id) }
            for message in queue where !inFlight.contains(message.id) { keyOfMessage[message.id] = nil }
            queues[key] = kept.isEmpty ? nil : kept
        }
        wakes = Heap()
    }
}
