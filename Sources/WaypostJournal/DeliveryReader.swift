import Foundation
import WaypostCore

/// What the forwarder needs to send one attempt of a delivery: its message's request and
/// the delivery's counts.
public struct MessageForDelivery: Sendable, Equatable {
    /// The delivery's row id.
    public var id: Int64
    public var correlationID: String
    public var idempotencyKey: String?
    public var method: String
    public var path: String
    public var headers: [HeaderField]
    public var body: [UInt8]
    /// Attempts made so far, in all.
    public var attempts: Int
    /// Attempts made since receipt or the last replay (what `max_attempts` counts).
    public var cycleAttempts: Int
    /// Receipt or last replay, in milliseconds (what `max_age` counts from).
    public var cycleStart: Int64
    public var clientAddress: String?
    /// The intake span's `traceparent`, when spans were exported at intake.
    public var traceParent: String? = nil

    public init(
        id: Int64, correlationID: String, idempotencyKey: String?, method: String, path: String, headers: [HeaderField], body: [UInt8],
        attempts: Int, cycleAttempts: Int, cycleStart: Int64, clientAddress: String?, traceParent: String? = nil
    ) {
        self.id = id
        self.correlationID = correlationID
        self.idempotencyKey = idempotencyKey
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.attempts = attempts
        self.cycleAttempts = cycleAttempts
        self.cycleStart = cycleStart
        self.clientAddress = clientAddress
        self.traceParent = traceParent
    }
}

/// A message the writer has just committed, handed to the forwarder in memory.
public struct StoredMessage: Sendable {
    /// One of its deliveries that waits (not `filtered`).
    public struct Delivery: Sendable {
        public var id: Int64
        public var destination: String
        public var orderingKey: String?
        /// Its queue's partition in a cluster (SPEC §12), as a PostgreSQL journal stores it.
        public var partition: Int
    }

    public var route: String
    /// Those of its deliveries that wait, in row id order.
    public var deliveries: [Delivery]
    /// Its first attempt's content, the first delivery's (any other's but for
    /// ``MessageForDelivery/id``): no attempts yet, the cycle starting at receipt.
    public var content: MessageForDelivery

    public init(deliveryIDs: [Int64], message: IncomingMessage) {
        route = message.route
        deliveries = zip(deliveryIDs, message.deliveries).compactMap { id, planned in
            planned.filtered
                ? nil
                : Delivery(
                    id: id, destination: planned.destination, orderingKey: planned.orderingKey,
                    partition: QueuePartition.of(route: message.route, planned, row: id))
        }
        content = MessageForDelivery(
            id: deliveryIDs.first ?? 0, correlationID: message.correlationID, idempotencyKey: message.idempotencyKey,
            method: message.method,
            path: message.path, headers: message.headers, body: message.body, attempts: 0, cycleAttempts: 0,
            cycleStart: message.receivedAt, clientAddress: message.clientAddress, traceParent: message.traceParent)
    }
}

/// The forwarder's reading connection: pages of waiting messages in order, one message's
/// content when it is sent, and the replay counter other processes bump. Confined to the
/// forwarder's thread.
public final class DeliveryReader {
    private let db: SQLiteConnection
    private let page: Statement
    private let content: Statement
    private let generation: Statement
    private let paused: Statement
    private let outcome: Statement

    public init(path: String) throws(JournalError) {
        db = try SQLiteConnection(path: path, create: false)
        try db.execute("PRAGMA busy_timeout = 5000")
        try db.execute("PRAGMA query_only = 1")
        page = try db.prepare(
            """
            SELECT id, ordering_key, next_attempt_at FROM deliveries
            WHERE state = ?1 AND route = ?2 AND destination = ?3 AND id > ?4 ORDER BY id LIMIT ?5
            """)
        content = try db.prepare(
            """
            SELECT m.correlation_id, m.idempotency_key, m.method, m.path, m.headers, m.body, d.attempts, d.cycle_attempts,
                   coalesce(d.replayed_at, m.received_at), m.client_address, m.trace_parent
            FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.id = ?1 AND d.state IN ('queued', 'in_flight')
            """)
        generation = try db.prepare("SELECT value FROM control WHERE name = 'replay_generation'")
        paused = try db.prepare("SELECT substr(name, 8) FROM control WHERE name LIKE 'paused:%' AND value = 1")
        outcome = try db.prepare("SELECT \(JournalReader.columns) \(JournalReader.tables()) WHERE m.correlation_id = ?1")
    }

    /// Up to `limit` deliveries to `destination` of `route` after row `afterID`, in order:
    /// those `queued`, and with `includeFailed` (destinations that block on failure) those
    /// `failed`, which then block their queue. `complete` is false when more may follow.
    /// `partitions` is for a cluster's nodes: one process delivers a SQLite journal, all of it.
    public func waiting(
        route: String, destination: String, afterID: Int64, limit: Int, includeFailed: Bool, partitions: [Int]? = nil
    ) throws(JournalError) -> (messages: [QueuedMessage], complete: Bool) {
        try Self.waiting(limit: limit, includeFailed: includeFailed) { (state) throws(JournalError) in
            try rows(state: state, route: route, destination: destination, afterID: afterID, limit: limit)
        }
    }

    /// One page of a queue, from `page`'s page (at most `limit`, in id order) of its `queued`
    /// deliveries and, with `includeFailed`, of its `failed` ones: in id order, at most
    /// `limit`, and whether nothing more follows. Every journal's reader pages this way.
    public static func waiting<Failure: Error>(
        limit: Int, includeFailed: Bool, page: (MessageState) throws(Failure) -> [QueuedMessage]
    ) throws(Failure) -> (messages: [QueuedMessage], complete: Bool) {
        let queued = try page(.queued)
        guard includeFailed else { return (queued, queued.count < limit) }
        let failed = try page(.failed)
        // Each list is complete up to its last id only when it came back full.
        var bound = Int64.max
        if queued.count == limit, let last = queued.last { bound = min(bound, last.id) }
        if failed.count == limit, let last = failed.last { bound = min(bound, last.id) }
        let merged = (queued + failed).filter { $0.id <= bound }.sorted { $0.id < $1.id }
        return (Array(merged.prefix(limit)), bound == .max && merged.count <= limit)
    }

    private func rows(
        state: MessageState, route: String, destination: String, afterID: Int64, limit: Int
    ) throws(JournalError) -> [QueuedMessage] {
        defer { page.reset() }
        try page.bind(1, state.rawValue)
        try page.bind(2, route)
        try page.bind(3, destination)
        try page.bind(4, afterID)
        try page.bind(5, Int64(limit))
        var messages: [QueuedMessage] = []
        while try page.step() {
            messages.append(
                QueuedMessage(
                    id: page.int64(0), orderingKey: page.string(1), notBefore: page.string(2).flatMap(Timestamp.parse),
                    blocking: state == .failed))
        }
        return messages
    }

    /// The content of delivery `id` if it still waits (`queued`, or `in_flight` while the end
    /// of its previous attempt is being committed); nil when an operator skipped it (or it
    /// was purged) since it was paged in.
    public func message(id: Int64) throws(JournalError) -> MessageForDelivery? {
        defer { content.reset() }
        try content.bind(1, id)
        guard try content.step() else { return nil }
        return MessageForDelivery(
            id: id, correlationID: content.string(0) ?? "", idempotencyKey: content.string(1), method: content.string(2) ?? "POST",
            path: content.string(3) ?? "/", headers: JSON.decodeHeaders(content.string(4) ?? "[]") ?? [],
            body: content.blob(5) ?? [], attempts: Int(content.int64(6)), cycleAttempts: Int(content.int64(7)),
            cycleStart: content.string(8).flatMap(Timestamp.parse) ?? 0, clientAddress: content.string(9),
            traceParent: content.string(10))
    }

    /// The contents of those of deliveries `ids` that still wait: each read as ``message(id:)``
    /// reads it (a read of SQLite's costs microseconds).
    public func messages(ids: [Int64]) throws(JournalError) -> [Int64: MessageForDelivery] {
        var contents: [Int64: MessageForDelivery] = [:]
        for id in ids { contents[id] = try message(id: id) }
        return contents
    }

    /// The final outcome of message `correlationID` as the journal holds it; nil while it is
    /// still on its way (or unknown).
    public func finalOutcome(correlationID: String) throws(JournalError) -> FinalOutcome? {
        defer { outcome.reset() }
        try outcome.bind(1, correlationID)
        return try outcome.step() ? FinalOutcome(record: JournalReader.record(outcome)) : nil
    }

    /// The route and destination names that have deliveries waiting or blocking (`queued`,
    /// `in_flight` or `failed`), in name order.
    public func waitingDestinations() throws(JournalError) -> [(route: String, destination: String)] {
        let statement = try db.prepare(
            """
            SELECT DISTINCT route, destination FROM deliveries WHERE state IN ('queued', 'in_flight', 'failed') ORDER BY 1, 2
            """)
        var names: [(route: String, destination: String)] = []
        while try statement.step() { names.append((statement.string(0) ?? "", statement.string(1) ?? "")) }
        return names
    }

    /// How many attempts to `destination` of `route` started at or after `since` (RFC 3339).
    public func attempts(route: String, destination: String, since: String) throws(JournalError) -> Int {
        let statement = try db.prepare(
            """
            SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
            WHERE d.route = ?1 AND d.destination = ?2 AND a.started_at >= ?3
            """)
        try statement.bind(1, route)
        try statement.bind(2, destination)
        try statement.bind(3, since)
        return try statement.step() ? Int(statement.int64(0)) : 0
    }

    /// What an operator paused: route names (the whole route) and `route/destination` names.
    public func pausedRoutes() throws(JournalError) -> Set<String> {
        defer { paused.reset() }
        var routes = Set<String>()
        while try paused.step() { if let route = paused.string(0) { routes.insert(route) } }
        return routes
    }

    /// The counter that `replay`, `skip`, pause and resume bump so a running server reloads its queues.
    public func replayGeneration() throws(JournalError) -> Int64 {
        defer { generation.reset() }
        return try generation.step() ? generation.int64(0) : 0
    }
}
