import ServiceLifecycle
import WaypostCore

/// A journal (SPEC §7, §12): what the server, the forwarder and the CLI open on it. SQLite's
/// (``SQLiteJournal``, the default) and PostgreSQL's implement it; each part they open
/// behaves the same on both, and is confined to the thread that uses it, which it may block.
public protocol Journal: Sendable, CustomStringConvertible {
    /// A reading connection for the status API, the admin API, the console and the CLI.
    func reader() throws(JournalError) -> any JournalReading
    /// A connection for operator actions (replay, skip, pause, purge), migrating an older journal.
    func operations() throws(JournalError) -> any JournalOperating
    /// The forwarder's reading connection.
    func deliveryReader() throws(JournalError) -> any DeliveryReading
}

/// The journal's writer (SPEC §2): intake requests committed in groups, the forwarder's state
/// changes batched with them. A `Service`: it runs until graceful shutdown, then stores what was
/// already submitted.
public protocol JournalWriting: Service, AnyObject {
    /// Hands `message` to the writer. `completion` runs once the commit holding the message
    /// has happened (or failed); it must not block.
    func submit(_ message: IncomingMessage, completion: @escaping @Sendable (Result<IntakeResult, JournalUnavailable>) -> Void)
    /// Records delivery state changes in the next commit; each completion, if given, runs
    /// after it (or its failure).
    func record(_ updates: [(DeliveryUpdate, (@Sendable (Result<Void, JournalError>) -> Void)?)])
    /// `observer` runs after every commit that stored new messages, with those messages in
    /// order: the forwarder takes them from memory. It must not block.
    func onStored(_ observer: @escaping @Sendable ([StoredMessage]) -> Void)
    /// Why the journal cannot take messages right now (`/readyz`), or nil.
    var trouble: String? { get }
}

extension JournalWriting {
    /// Records one delivery state change in the next commit.
    public func record(_ update: DeliveryUpdate, completion: (@Sendable (Result<Void, JournalError>) -> Void)? = nil) {
        record([(update, completion)])
    }
}

/// The reads of the status API, the admin API, the console and the CLI (``JournalReader``).
public protocol JournalReading: AnyObject {
    /// Message counts per route and state.
    func counts() throws(JournalError) -> [StateCount]
    /// Counts per route of the messages waiting (`queued` and `in_flight`), read from the
    /// waiting deliveries alone: what the gauges need, without reading every message.
    func waitingCounts() throws(JournalError) -> [StateCount]
    /// Delivery counts per route, destination and state.
    func deliveryCounts() throws(JournalError) -> [DeliveryCount]
    /// Every destination in `names` and every other one with deliveries waiting: counts,
    /// oldest waiting message, paused, tripped.
    func destinationStates(_ names: [(route: String, destination: String)]) throws(JournalError) -> [DestinationState]
    /// The `received_at` of the oldest message waiting for delivery, per route.
    func oldestQueued() throws(JournalError) -> [String: String]
    /// Messages matching `filter`, oldest first (newest first with `newestFirst`), at most `filter.limit`.
    func list(_ filter: MessageFilter) throws(JournalError) -> [MessageRecord]
    /// How many messages a replay by `filter` would send again.
    func replayCount(_ filter: MessageFilter) throws(JournalError) -> Int
    /// The message with `correlationID`, with its deliveries, or nil.
    func message(correlationID: String) throws(JournalError) -> MessageRecord?
    /// The deliveries of the message with row id `messageID`, the `reply_from` destination's first.
    func deliveries(messageID: Int64) throws(JournalError) -> [DeliveryRecord]
    /// The attempts of the delivery with row id `deliveryID`, in order.
    func attempts(deliveryID: Int64) throws(JournalError) -> [AttemptRecord]
    /// The nodes of a cluster on the journal (SPEC §12), by name; none for a SQLite journal.
    func clusterNodes() throws(JournalError) -> [ClusterNode]
}

/// A node of a cluster, as the journal knows it (`waypost status`).
public struct ClusterNode: Sendable, Equatable {
    public var name: String
    /// Its intake listener, as configured.
    public var address: String?
    /// Milliseconds since the Unix epoch, by the database's clock.
    public var startedAt: Int64
    public var heartbeatAt: Int64
    /// The partitions it holds, unexpired.
    public var partitions: Int
    /// The database's time when this was read: the heartbeat's age is `now - heartbeatAt`.
    public var now: Int64

    public init(name: String, address: String?, startedAt: Int64, heartbeatAt: Int64, partitions: Int, now: Int64) {
        self.name = name
        self.address = address
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
        self.partitions = partitions
        self.now = now
    }
}

/// Operator actions (SPEC §5, §6), safe while servers run on the journal (``JournalOperations``).
public protocol JournalOperating: AnyObject {
    /// Replays the messages with these correlation ids (with `destination`, that delivery);
    /// returns those replayed (or that would be, with `dryRun`).
    func replay(ids: [String], destination: String?, dryRun: Bool) throws(JournalError) -> [String]
    /// Replays every message matching `filter` (in `filter.state`, `failed` unless given).
    func replay(_ filter: MessageFilter, dryRun: Bool) throws(JournalError) -> [String]
    /// Skips the waiting or failed deliveries of message `id` (with `destination`, that one);
    /// whether one was skipped.
    func skip(id: String, destination: String?) throws(JournalError) -> Bool
    /// Pauses or resumes delivery on `route` (with `destination`, to that destination only).
    func setPaused(route: String, destination: String?, _ paused: Bool) throws(JournalError)
    /// Deletes messages whose every delivery ended `delivered` or `filtered` before `before`
    /// (RFC 3339); how many.
    func purgeDelivered(before: String) throws(JournalError) -> Int
}

extension JournalOperating {
    public func replay(ids: [String], destination: String? = nil) throws(JournalError) -> [String] {
        try replay(ids: ids, destination: destination, dryRun: false)
    }

    public func replay(_ filter: MessageFilter) throws(JournalError) -> [String] {
        try replay(filter, dryRun: false)
    }

    public func skip(id: String) throws(JournalError) -> Bool {
        try skip(id: id, destination: nil)
    }
}

/// The forwarder's reads (``DeliveryReader``).
public protocol DeliveryReading: AnyObject {
    /// Up to `limit` deliveries to `destination` of `route` after row `afterID`, in order:
    /// those `queued`, and with `includeFailed` those `failed`, which then block their queue;
    /// with `partitions`, only those of the queues in these partitions (a cluster's node,
    /// SPEC §12). `complete` is false when more may follow.
    func waiting(
        route: String, destination: String, afterID: Int64, limit: Int, includeFailed: Bool, partitions: [Int]?
    ) throws(JournalError) -> (messages: [QueuedMessage], complete: Bool)
    /// The content of delivery `id` if it still waits; nil when it was skipped or purged since.
    func message(id: Int64) throws(JournalError) -> MessageForDelivery?
    /// The contents of those of deliveries `ids` that still wait, by id: what ``message(id:)``
    /// reads for each, in one query where the journal is a round trip away.
    func messages(ids: [Int64]) throws(JournalError) -> [Int64: MessageForDelivery]
    /// The final outcome of message `correlationID`; nil while it is on its way, or unknown.
    func finalOutcome(correlationID: String) throws(JournalError) -> FinalOutcome?
    /// The route and destination names with deliveries waiting or blocking, in name order.
    func waitingDestinations() throws(JournalError) -> [(route: String, destination: String)]
    /// How many attempts to `destination` of `route` started at or after `since` (RFC 3339).
    func attempts(route: String, destination: String, since: String) throws(JournalError) -> Int
    /// What an operator paused: route names and `route/destination` names.
    func pausedRoutes() throws(JournalError) -> Set<String>
    /// The counter that replays, skips, pauses and resumes bump so that servers reload their queues.
    func replayGeneration() throws(JournalError) -> Int64
    /// Whether that counter may have changed since the last call (true when the reader cannot
    /// tell): the forwarder reads it only then, besides every half second.
    func mayHaveChanged() -> Bool
    /// What the processes delivering from the journal (a cluster's nodes) committed since the
    /// last call, as they notified it: the deliveries stored (by this node too), the outcomes
    /// recorded by the others.
    func othersCommitted() -> OthersCommitted
    /// `wake` runs (on another thread, without blocking) when other processes notify a commit.
    func onOthersCommitted(_ wake: @escaping @Sendable () -> Void)
}

extension DeliveryReading {
    /// Every queue's deliveries (``waiting(route:destination:afterID:limit:includeFailed:partitions:)``).
    public func waiting(
        route: String, destination: String, afterID: Int64, limit: Int, includeFailed: Bool
    ) throws(JournalError) -> (messages: [QueuedMessage], complete: Bool) {
        try waiting(route: route, destination: destination, afterID: afterID, limit: limit, includeFailed: includeFailed, partitions: nil)
    }
}

/// What a cluster's nodes committed (SPEC §12): a forwarder loads the new deliveries of the
/// queues it holds, answers the sources waiting on it for the outcomes, and its breakers follow
/// the others'.
public struct OthersCommitted: Sendable, Equatable {
    /// The smallest row id of the deliveries the nodes stored, this one's included; nil: none.
    public var storedFrom: Int64?
    /// The correlation ids of the messages whose `reply_from` delivery they ended.
    public var outcomes: [String] = []
    /// Their breakers' changes, in order: the destination (`route/destination`), and since
    /// when it is tripped, or nil when it closed.
    public var breakers: [(key: String, trippedSince: Int64?)] = []
    /// Whether outcomes may have been committed unseen (the node was not listening for a
    /// while): every message a source waits for may have one.
    public var outcomesMissed = false

    public init(
        storedFrom: Int64? = nil, outcomes: [String] = [], breakers: [(key: String, trippedSince: Int64?)] = [],
        outcomesMissed: Bool = false
    ) {
        self.storedFrom = storedFrom
        self.outcomes = outcomes
        self.breakers = breakers
        self.outcomesMissed = outcomesMissed
    }

    public static func == (a: OthersCommitted, b: OthersCommitted) -> Bool {
        a.storedFrom == b.storedFrom && a.outcomes == b.outcomes && a.outcomesMissed == b.outcomesMissed
            && a.breakers.elementsEqual(b.breakers) { $0.key == $1.key && $0.trippedSince == $1.trippedSince }
    }
}

/// A partition of the delivery queues that this process leases (SPEC §12).
public struct PartitionLease: Sendable, Equatable {
    /// The lease's number: state recorded under an older one comes from a node that lost it,
    /// and is not recorded (fencing).
    public var epoch: Int64
    /// Until when (monotonic) this process may deliver the partition's queues.
    public var deadline: ContinuousClock.Instant

    public init(epoch: Int64, deadline: ContinuousClock.Instant) {
        self.epoch = epoch
        self.deadline = deadline
    }
}

/// Which delivery queues this process may deliver: those of the partitions it leases, in a
/// cluster (SPEC §12). A journal that one process delivers (SQLite) has none: every queue.
public protocol DeliveryOwnership: AnyObject, Sendable {
    /// The partitions held at `now` (their deadlines not passed), by partition.
    func leases(at now: ContinuousClock.Instant) -> [Int: PartitionLease]
    /// A number that changes whenever the leases do (a heartbeat renewed, took or gave some):
    /// until it does, ``leases(at:)`` changes only as deadlines pass.
    var generation: Int { get }
    /// `observer` runs (without blocking) after a heartbeat acquired or lost partitions.
    func onChange(_ observer: @escaping @Sendable () -> Void)
}

/// The SQLite journal in the file at `path` (SPEC §7): the default.
public struct SQLiteJournal: Journal {
    public var path: String

    public init(path: String) {
        self.path = path
    }

    public var description: String { path }

    public func reader() throws(JournalError) -> any JournalReading { try JournalReader(path: path) }
    public func operations() throws(JournalError) -> any JournalOperating { try JournalOperations(path: path) }
    public func deliveryReader() throws(JournalError) -> any DeliveryReading { try DeliveryReader(path: path) }
}

extension JournalReader: JournalReading {
    /// None: one process delivers a SQLite journal.
    public func clusterNodes() throws(JournalError) -> [ClusterNode] { [] }
}
extension JournalOperations: JournalOperating {}
extension DeliveryReader: DeliveryReading {
    /// Always: reading the counter from SQLite costs microseconds.
    public func mayHaveChanged() -> Bool { true }
    /// Nothing: one process delivers a SQLite journal.
    public func othersCommitted() -> OthersCommitted { OthersCommitted() }
    public func onOthersCommitted(_ wake: @escaping @Sendable () -> Void) {}
}
