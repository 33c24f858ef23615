import Foundation
import WaypostCore

/// One message as the journal holds it: the request as received, its state (derived from its
/// deliveries', SPEC §11), and the details of its first delivery, the `reply_from`
/// destination's (the status API's top-level fields).
public struct MessageRecord: Sendable, Equatable {
    public var id: Int64
    public var correlationID: String
    public var route: String
    public var orderingKey: String?
    public var idempotencyKey: String?
    public var method: String
    public var path: String
    /// JSON array of `[name, value]` pairs, as stored.
    public var headersJSON: String
    public var body: [UInt8]
    public var state: MessageState
    public var attempts: Int
    public var receivedAt: String
    public var nextAttemptAt: String?
    public var deliveredAt: String?
    public var lastError: String?
    public var responseStatus: Int?
    public var responseHeadersJSON: String?
    public var responseBody: [UInt8]?
    /// The row id and state of the first delivery, the `reply_from` destination's.
    public var replyDeliveryID: Int64
    public var replyState: MessageState
    /// Its deliveries, the `reply_from` destination's first, where the reader read them
    /// (one message, and lists).
    public var deliveries: [DeliveryRecord] = []

    /// The message as received, in `state`, with the details of `reply`, its first delivery.
    public init(
        id: Int64, correlationID: String, route: String, idempotencyKey: String?, method: String, path: String, headersJSON: String,
        body: [UInt8], receivedAt: String, state: MessageState, reply: DeliveryRecord
    ) {
        self.init(
            id: id, correlationID: correlationID, route: route, orderingKey: reply.orderingKey, idempotencyKey: idempotencyKey,
            method: method, path: path, headersJSON: headersJSON, body: body, state: state, attempts: reply.attempts,
            receivedAt: receivedAt, nextAttemptAt: reply.nextAttemptAt, deliveredAt: reply.deliveredAt, lastError: reply.lastError,
            responseStatus: reply.responseStatus, responseHeadersJSON: reply.responseHeadersJSON, responseBody: reply.responseBody,
            replyDeliveryID: reply.id, replyState: reply.state)
    }

    init(
        id: Int64, correlationID: String, route: String, orderingKey: String?, idempotencyKey: String?, method: String, path: String,
        headersJSON: String, body: [UInt8], state: MessageState, attempts: Int, receivedAt: String, nextAttemptAt: String?,
        deliveredAt: String?, lastError: String?, responseStatus: Int?, responseHeadersJSON: String?, responseBody: [UInt8]?,
        replyDeliveryID: Int64, replyState: MessageState
    ) {
        self.id = id
        self.correlationID = correlationID
        self.route = route
        self.orderingKey = orderingKey
        self.idempotencyKey = idempotencyKey
        self.method = method
        self.path = path
        self.headersJSON = headersJSON
        self.body = body
        self.state = state
        self.attempts = attempts
        self.receivedAt = receivedAt
        self.nextAttemptAt = nextAttemptAt
        self.deliveredAt = deliveredAt
        self.lastError = lastError
        self.responseStatus = responseStatus
        self.responseHeadersJSON = responseHeadersJSON
        self.responseBody = responseBody
        self.replyDeliveryID = replyDeliveryID
        self.replyState = replyState
    }
}

/// One delivery of a message: to one destination, with its own state and outcome.
public struct DeliveryRecord: Sendable, Equatable {
    public var id: Int64
    public var destination: String
    public var orderingKey: String?
    public var state: MessageState
    public var attempts: Int
    public var nextAttemptAt: String?
    public var deliveredAt: String?
    public var lastError: String?
    public var responseStatus: Int?
    public var responseHeadersJSON: String?
    public var responseBody: [UInt8]?

    public init(
        id: Int64, destination: String, orderingKey: String?, state: MessageState, attempts: Int, nextAttemptAt: String?,
        deliveredAt: String?, lastError: String?, responseStatus: Int?, responseHeadersJSON: String?, responseBody: [UInt8]?
    ) {
        self.id = id
        self.destination = destination
        self.orderingKey = orderingKey
        self.state = state
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.deliveredAt = deliveredAt
        self.lastError = lastError
        self.responseStatus = responseStatus
        self.responseHeadersJSON = responseHeadersJSON
        self.responseBody = responseBody
    }
}

/// One delivery attempt of a message.
public struct AttemptRecord: Sendable, Equatable {
    public var attempt: Int
    public var startedAt: String
    public var durationMilliseconds: Int?
    public var status: Int?
    public var error: String?
    /// What the attempt sent; nil for attempts of earlier journals, and when nothing was sent.
    public var sentBody: SentBody?

    public init(attempt: Int, startedAt: String, durationMilliseconds: Int?, status: Int?, error: String?, sentBody: SentBody? = nil) {
        self.attempt = attempt
        self.startedAt = startedAt
        self.durationMilliseconds = durationMilliseconds
        self.status = status
        self.error = error
        self.sentBody = sentBody
    }
}

/// How many messages of a route are in a state (their derived state).
public struct StateCount: Sendable, Equatable {
    public var route: String
    public var state: MessageState
    public var count: Int

    public init(route: String, state: MessageState, count: Int) {
        self.route = route
        self.state = state
        self.count = count
    }
}

/// How many deliveries to a destination of a route are in a state.
public struct DeliveryCount: Sendable, Equatable {
    public var route: String
    public var destination: String
    public var state: MessageState
    public var count: Int

    public init(route: String, destination: String, state: MessageState, count: Int) {
        self.route = route
        self.destination = destination
        self.state = state
        self.count = count
    }
}

/// What the journal says of one destination (`GET /destinations`, `waypost status`).
public struct DestinationState: Sendable, Equatable {
    public var route: String
    public var destination: String
    public var queued = 0
    public var inFlight = 0
    public var failed = 0
    /// The `received_at` of its oldest waiting delivery's message.
    public var oldestQueuedAt: String?
    /// Paused, by the route or by itself.
    public var paused = false
    /// When its breaker tripped (milliseconds), while it is tripped.
    public var trippedSince: Int64?

    /// Marks in `states` what the journal's control rows say (`paused:ROUTE[/DESTINATION]` set
    /// to 1, `tripped:ROUTE/DESTINATION` since when), adding the destinations they name that
    /// `states` lacks: a destination paused on its own is listed even when nothing of it waits.
    public static func apply(controls: [(name: String, value: Int64)], to states: inout [DestinationState]) {
        for (name, value) in controls {
            if name.hasPrefix("paused:"), value == 1 {
                let target = name.dropFirst("paused:".count)
                if let (route, destination) = RouteConfig.splitDestinationKey(target) {
                    states[states.indexAdding(route: route, destination: destination)].paused = true
                } else {
                    for at in states.indices where target == states[at].route { states[at].paused = true }
                }
            } else if name.hasPrefix("tripped:"),
                let (route, destination) = RouteConfig.splitDestinationKey(name.dropFirst("tripped:".count))
            {
                states[states.indexAdding(route: route, destination: destination)].trippedSince = value
            }
        }
    }

    public init(route: String, destination: String) {
        self.route = route
        self.destination = destination
    }
}

/// Which messages to list. Timestamps are RFC 3339 text as stored (see ``Timestamp``).
extension [DestinationState] {
    /// The index of `destination` of `route`, appended (with nothing waiting) when absent.
    public mutating func indexAdding(route: String, destination: String) -> Int {
        if let found = firstIndex(where: { $0.route == route && $0.destination == destination }) { return found }
        append(DestinationState(route: route, destination: destination))
        return count - 1
    }
}

public struct MessageFilter: Sendable {
    /// The message's state; with ``destination``, that destination's delivery's.
    public var state: MessageState?
    public var route: String?
    /// Only messages with a delivery to a destination of this name.
    public var destination: String?
    public var since: String?
    public var until: String?
    public var limit: Int
    /// Only messages after this journal row (paging); before it, ``newestFirst``.
    public var afterID: Int64?
    /// The newest first (the console's lists); the oldest first otherwise.
    public var newestFirst = false

    public init(
        state: MessageState? = nil, route: String? = nil, destination: String? = nil, since: String? = nil, until: String? = nil,
        limit: Int = 100, afterID: Int64? = nil
    ) {
        self.state = state
        self.route = route
        self.destination = destination
        self.since = since
        self.until = until
        self.limit = limit
        self.afterID = afterID
    }
}

/// A reading connection to the journal, for the CLI and the status API. Confined to the
/// thread that uses it; it never writes (`PRAGMA query_only`), so it runs beside the server.
public final class JournalReader {
    private let db: SQLiteConnection

    /// Opens the existing journal at `path`.
    ///
    /// - Throws: ``SQLiteError`` when there is no journal at `path`, it cannot be read, or its
    ///   schema version is not this Waypost's.
    public init(path: String, busyTimeoutMilliseconds: Int = 5000) throws(JournalError) {
        guard FileManager.default.fileExists(atPath: path) else {
            throw JournalError(.notFound, "no journal at \(path) (give --journal, --config or $WAYPOST_JOURNAL)")
        }
        db = try SQLiteConnection(path: path, create: false)
        try db.execute("PRAGMA busy_timeout = \(busyTimeoutMilliseconds)")
        try db.execute("PRAGMA query_only = 1")
        let version = try db.scalarInt("PRAGMA user_version") ?? 0
        guard version == Schema.currentVersion else {
            throw JournalError(
                .incompatible,
                "\(path) has journal schema version \(version), this Waypost reads version \(Schema.currentVersion)"
                    + (version < Schema.currentVersion ? " (start `waypost serve` on it once to migrate it)" : " (upgrade Waypost)"))
        }
    }

    /// Message counts per route and state.
    public func counts() throws(JournalError) -> [StateCount] {
        let statement = try db.prepare(
            "SELECT route, (\(Schema.messageStateSQL)) AS state, count(*) FROM messages m GROUP BY route, state ORDER BY route, state")
        var counts: [StateCount] = []
        while try statement.step() {
            counts.append(StateCount(route: statement.string(0) ?? "", state: Self.state(statement, 1), count: Int(statement.int64(2))))
        }
        return counts
    }

    /// Counts per route of the messages waiting (`queued` and `in_flight`, as ``counts()``
    /// derives them), read from the waiting deliveries alone (the index of their states).
    public func waitingCounts() throws(JournalError) -> [StateCount] {
        let statement = try db.prepare(
            """
            SELECT route, state, count(*) FROM (
                SELECT route, CASE WHEN max(state = 'in_flight') THEN 'in_flight' ELSE 'queued' END AS state FROM deliveries
                WHERE state IN ('queued', 'in_flight') GROUP BY route, message_id
            ) GROUP BY route, state ORDER BY route, state
            """)
        var counts: [StateCount] = []
        while try statement.step() {
            counts.append(StateCount(route: statement.string(0) ?? "", state: Self.state(statement, 1), count: Int(statement.int64(2))))
        }
        return counts
    }

    /// Delivery counts per route, destination and state.
    public func deliveryCounts() throws(JournalError) -> [DeliveryCount] {
        let statement = try db.prepare(
            "SELECT route, destination, state, count(*) FROM deliveries GROUP BY route, destination, state ORDER BY route, destination, state"
        )
        var counts: [DeliveryCount] = []
        while try statement.step() {
            counts.append(
                DeliveryCount(
                    route: statement.string(0) ?? "", destination: statement.string(1) ?? "", state: Self.state(statement, 2),
                    count: Int(statement.int64(3))))
        }
        return counts
    }

    /// Every destination in `names` (route and destination names, in that order) and every other
    /// one with deliveries waiting: counts, oldest waiting message, paused, tripped.
    public func destinationStates(_ names: [(route: String, destination: String)]) throws(JournalError) -> [DestinationState] {
        var states = names.map { DestinationState(route: $0.route, destination: $0.destination) }
        // Counted from the index alone; the oldest waiting delivery is the one with the
        // smallest row id (deliveries are made in the order their messages are accepted), so
        // only its message is read: milliseconds on a journal of millions.
        let waiting = try db.prepare(
            """
            SELECT state, route, destination, count(*), min(id) FROM deliveries
            WHERE state IN ('queued', 'in_flight', 'failed') GROUP BY state, route, destination
            """)
        var oldest: [Int: Int64] = [:]
        while try waiting.step() {
            let at = states.indexAdding(route: waiting.string(1) ?? "", destination: waiting.string(2) ?? "")
            let count = Int(waiting.int64(3))
            switch waiting.string(0) {
            case "queued": states[at].queued = count
            case "in_flight": states[at].inFlight = count
            default: states[at].failed = count
            }
            if waiting.string(0) != "failed" { oldest[at] = min(oldest[at] ?? .max, waiting.int64(4)) }
        }
        let receivedAt = try db.prepare("SELECT m.received_at FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.id = ?1")
        for (at, delivery) in oldest {
            try receivedAt.bind(1, delivery)
            if try receivedAt.step() { states[at].oldestQueuedAt = receivedAt.string(0) }
            receivedAt.reset()
        }
        let control = try db.prepare("SELECT name, value FROM control WHERE name LIKE 'paused:%' OR name LIKE 'tripped:%'")
        var rows: [(name: String, value: Int64)] = []
        while try control.step() { rows.append((control.string(0) ?? "", control.int64(1))) }
        DestinationState.apply(controls: rows, to: &states)
        return states
    }

    /// The `received_at` of the oldest message waiting for delivery, per route.
    public func oldestQueued() throws(JournalError) -> [String: String] {
        let statement = try db.prepare(
            """
            SELECT d.route, min(m.received_at) FROM deliveries d JOIN messages m ON m.id = d.message_id
            WHERE d.state IN ('queued', 'in_flight') GROUP BY d.route
            """)
        var oldest: [String: String] = [:]
        while try statement.step() {
            if let route = statement.string(0), let at = statement.string(1) { oldest[route] = at }
        }
        return oldest
    }

    /// Messages matching `filter`, oldest first (newest first with `newestFirst`), at most `filter.limit`.
    public func list(_ filter: MessageFilter) throws(JournalError) -> [MessageRecord] {
        let selection = try MessageSelection(filter, state: filter.state, in: db)
        let statement = try db.prepare(
            """
            SELECT \(Self.columns) \(Self.tables(selection.source)) \(selection.whereClause)
            ORDER BY m.id \(filter.newestFirst ? "DESC" : "ASC") LIMIT ?
            """)
        try statement.bind(try selection.bind(statement), Int64(filter.limit))
        var records: [MessageRecord] = []
        while try statement.step() { records.append(Self.record(statement)) }
        for index in records.indices { records[index].deliveries = try deliveries(messageID: records[index].id) }
        return records
    }

    /// How many messages a replay by `filter` would send again (``JournalOperations/replay(_:dryRun:)``).
    public func replayCount(_ filter: MessageFilter) throws(JournalError) -> Int {
        let state = filter.state ?? .failed
        let select: String
        let selection: MessageSelection
        if let count = MessageSelection.deliveryCount(filter, state: state) {
            (select, selection) = count
        } else {
            selection = try MessageSelection(filter, state: state, in: db)
            select = "SELECT count(*) FROM \(selection.source)"
        }
        let statement = try db.prepare("\(select) \(selection.whereClause)")
        try selection.bind(statement)
        _ = try statement.step()
        return Int(statement.int64(0))
    }

    /// The message with `correlationID`, or nil.
    public func message(correlationID: String) throws(JournalError) -> MessageRecord? {
        let statement = try db.prepare("SELECT \(Self.columns) \(Self.tables()) WHERE m.correlation_id = ?1")
        try statement.bind(1, correlationID)
        guard try statement.step() else { return nil }
        var record = Self.record(statement)
        record.deliveries = try deliveries(messageID: record.id)
        return record
    }

    /// The deliveries of the message with row id `messageID`, the `reply_from` destination's first.
    public func deliveries(messageID: Int64) throws(JournalError) -> [DeliveryRecord] {
        let statement = try db.prepare(
            """
            SELECT id, destination, ordering_key, state, attempts, next_attempt_at, delivered_at, last_error, response_status,
                   response_headers, response_body
            FROM deliveries WHERE message_id = ?1 ORDER BY id
            """)
        try statement.bind(1, messageID)
        var deliveries: [DeliveryRecord] = []
        while try statement.step() {
            let s = statement
            deliveries.append(
                DeliveryRecord(
                    id: s.int64(0), destination: s.string(1) ?? "", orderingKey: s.string(2), state: Self.state(s, 3),
                    attempts: Int(s.int64(4)), nextAttemptAt: s.string(5), deliveredAt: s.string(6), lastError: s.string(7),
                    responseStatus: s.optionalInt64(8).map(Int.init), responseHeadersJSON: s.string(9), responseBody: s.blob(10)))
        }
        return deliveries
    }

    /// The attempts of the delivery with row id `deliveryID`, in order.
    public func attempts(deliveryID: Int64) throws(JournalError) -> [AttemptRecord] {
        let statement = try db.prepare(
            """
            SELECT attempt, started_at, duration_ms, status, error, body_bytes, body_sha256 FROM attempts
            WHERE delivery_id = ?1 ORDER BY attempt
            """)
        try statement.bind(1, deliveryID)
        var attempts: [AttemptRecord] = []
        while try statement.step() {
            attempts.append(
                AttemptRecord(
                    attempt: Int(statement.int64(0)), startedAt: statement.string(1) ?? "",
                    durationMilliseconds: statement.optionalInt64(2).map(Int.init),
                    status: statement.optionalInt64(3).map(Int.init), error: statement.string(4),
                    sentBody: statement.optionalInt64(5).map { SentBody(bytes: Int($0), sha256: statement.string(6) ?? "") }))
        }
        return attempts
    }

    /// The columns ``record(_:)`` reads, in its order.
    static let columns = """
        m.id, m.correlation_id, m.route, p.ordering_key, m.idempotency_key, m.method, m.path, m.headers, m.body,
        (\(Schema.messageStateSQL)), p.attempts, m.received_at, p.next_attempt_at, p.delivered_at, p.last_error,
        p.response_status, p.response_headers, p.response_body, p.id, p.state
        """

    /// The message `m` with its first delivery `p`, for ``columns``.
    static func tables(_ messages: String = "messages m") -> String {
        "FROM \(messages) JOIN deliveries p ON p.id = (SELECT min(id) FROM deliveries WHERE message_id = m.id)"
    }

    /// A `state` column; the schema's CHECK admits nothing but ``MessageState``'s words.
    static func state(_ s: Statement, _ column: Int32) -> MessageState {
        s.string(column).flatMap(MessageState.init(rawValue:)) ?? .queued
    }

    static func record(_ s: Statement) -> MessageRecord {
        MessageRecord(
            id: s.int64(0), correlationID: s.string(1) ?? "", route: s.string(2) ?? "", orderingKey: s.string(3),
            idempotencyKey: s.string(4), method: s.string(5) ?? "", path: s.string(6) ?? "", headersJSON: s.string(7) ?? "[]",
            body: s.blob(8) ?? [], state: state(s, 9), attempts: Int(s.int64(10)), receivedAt: s.string(11) ?? "",
            nextAttemptAt: s.string(12), deliveredAt: s.string(13), lastError: s.string(14),
            responseStatus: s.optionalInt64(15).map(Int.init), responseHeadersJSON: s.string(16), responseBody: s.blob(17),
            replyDeliveryID: s.int64(18), replyState: state(s, 19))
    }
}
