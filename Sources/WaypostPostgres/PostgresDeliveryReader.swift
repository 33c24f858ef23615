import Logging
import PostgresNIO
import WaypostCore
import WaypostJournal

/// The forwarder's reads on a PostgreSQL journal, as ``DeliveryReader`` makes them on a SQLite
/// one: pages of a queue in order, one delivery's content when it is sent, a message's final
/// outcome, and what operators changed. Synchronous like the SQLite reader: it is confined to
/// the forwarder's thread, which it blocks while a query runs (never a thread of Swift's
/// concurrency pool). A query has `timeout`; after a failure the next call connects again.
public final class PostgresDeliveryReader: DeliveryReading {
    private let connection: BlockingConnection
    private let control: ControlListener

    /// - Parameter node: this node's name: its own notifications are not news.
    public init(
        connect: @escaping @Sendable () async throws -> PostgresConnection, node: String = "", timeout: Duration = .seconds(10),
        logger: Logger
    ) {
        connection = BlockingConnection(connect: connect, timeout: timeout, logger: logger)
        control = ControlListener(connect: connect, node: node, logger: logger)
    }

    public func othersCommitted() -> OthersCommitted {
        control.takeOthers()
    }

    public func onOthersCommitted(_ wake: @escaping @Sendable () -> Void) {
        control.onNotification(wake)
    }

    /// Whether an operator changed the journal since the last call, as notified; true while
    /// the reader is not listening.
    public func mayHaveChanged() -> Bool {
        control.takeChange()
    }

    /// Up to `limit` deliveries to `destination` of `route` after row `afterID`, in order:
    /// those `queued`, and with `includeFailed` those `failed`, which then block their queue;
    /// with `partitions`, of those partitions' queues only. `complete` is false when more may follow.
    public func waiting(
        route: String, destination: String, afterID: Int64, limit: Int, includeFailed: Bool, partitions: [Int]?
    ) throws(JournalError) -> (messages: [QueuedMessage], complete: Bool) {
        try DeliveryReader.waiting(limit: limit, includeFailed: includeFailed) { (state) throws(JournalError) in
            try page(state: state, route: route, destination: destination, afterID: afterID, limit: limit, partitions: partitions)
        }
    }

    private func page(
        state: MessageState, route: String, destination: String, afterID: Int64, limit: Int, partitions: [Int]?
    ) throws(JournalError)
        -> [QueuedMessage]
    {
        let blocking = state == .failed
        let partitions = (partitions ?? Array(0..<QueuePartition.count)).map(Int32.init)
        return try connection.rows(
            """
            SELECT id, ordering_key, waypost_ms(next_attempt_at), partition FROM deliveries
            WHERE state = \(state.rawValue) AND route = \(route) AND destination = \(destination) AND id > \(afterID)
              AND partition = ANY(\(partitions))
            ORDER BY id LIMIT \(limit)
            """
        ) { row in
            let (id, key, notBefore, partition) = try row.decode((Int64, String?, Int64?, Int32).self)
            return QueuedMessage(id: id, orderingKey: key, notBefore: notBefore, blocking: blocking, partition: Int(partition))
        }
    }

    /// The content of delivery `id` if it still waits (`queued`, or `in_flight` while the end
    /// of its previous attempt is being committed); nil when it was skipped or purged since.
    public func message(id: Int64) throws(JournalError) -> MessageForDelivery? {
        try messages(ids: [id])[id]
    }

    /// The contents of those of deliveries `ids` that still wait, in one query.
    public func messages(ids: [Int64]) throws(JournalError) -> [Int64: MessageForDelivery] {
        let rows = try connection.rows(
            """
            SELECT d.id, m.correlation_id, m.idempotency_key, m.method, m.path, m.headers::text, m.body, d.attempts, d.cycle_attempts,
                   waypost_ms(coalesce(d.replayed_at, m.received_at)), m.client_address, m.trace_parent
            FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.id = ANY(\(ids)) AND d.state IN ('queued', 'in_flight')
            """
        ) { try $0.decode((Int64, String, String?, String, String, String, ByteBuffer, Int, Int, Int64, String?, String?).self) }
        var contents: [Int64: MessageForDelivery] = [:]
        for row in rows {
            contents[row.0] = MessageForDelivery(
                id: row.0, correlationID: row.1, idempotencyKey: row.2, method: row.3, path: row.4,
                headers: JSON.decodeHeaders(row.5) ?? [],
                body: Array(buffer: row.6), attempts: row.7, cycleAttempts: row.8, cycleStart: row.9, clientAddress: row.10,
                traceParent: row.11)
        }
        return contents
    }

    /// The final outcome of message `correlationID`: its first delivery's (the `reply_from`
    /// destination's); nil while that is still on its way, or for an unknown message.
    public func finalOutcome(correlationID: String) throws(JournalError) -> FinalOutcome? {
        guard correlationID.isStorable else { return nil }
        return try connection.rows(
            """
            SELECT p.state, p.response_status, p.response_headers::text, p.response_body, p.last_error, p.attempts
            FROM messages m JOIN LATERAL (SELECT * FROM deliveries f WHERE f.message_id = m.id ORDER BY f.id LIMIT 1) p ON true
            WHERE m.correlation_id = \(correlationID)
            """
        ) { try $0.decode((String, Int?, String?, ByteBuffer?, String?, Int).self) }.first.flatMap { row in
            guard let state = MessageState(rawValue: row.0), state.isFinal else { return nil }
            let response = row.1.map {
                StoredResponse(status: $0, headers: JSON.decodeHeaders(row.2 ?? "[]") ?? [], body: row.3.map { Array(buffer: $0) } ?? [])
            }
            return FinalOutcome(state: state, response: response, lastError: row.4, attempts: row.5)
        }
    }

    /// The route and destination names that have deliveries waiting or blocking, in name order.
    public func waitingDestinations() throws(JournalError) -> [(route: String, destination: String)] {
        try connection.rows(
            """
            SELECT DISTINCT route, destination FROM deliveries WHERE state IN ('queued', 'in_flight', 'failed') ORDER BY 1, 2
            """
        ) { try $0.decode((String, String).self) }.map { (route: $0.0, destination: $0.1) }
    }

    /// How many attempts to `destination` of `route` started at or after `since` (RFC 3339).
    public func attempts(route: String, destination: String, since: String) throws(JournalError) -> Int {
        try connection.rows(
            """
            SELECT count(*)::bigint FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
            WHERE d.route = \(route) AND d.destination = \(destination) AND a.started_at >= \(since)::timestamptz
            """
        ) { try $0.decode(Int.self) }.first ?? 0
    }

    /// What an operator paused: route names (the whole route) and `route/destination` names.
    public func pausedRoutes() throws(JournalError) -> Set<String> {
        Set(
            try connection.rows("SELECT substr(name, 8) FROM control WHERE name LIKE 'paused:%' AND value = 1") {
                try $0.decode(String.self)
            })
    }

    /// The counter that replays, skips, pauses and resumes bump so that servers reload their queues.
    public func replayGeneration() throws(JournalError) -> Int64 {
        try connection.rows("SELECT value FROM control WHERE name = 'replay_generation'") { try $0.decode(Int64.self) }.first ?? 0
    }
}
