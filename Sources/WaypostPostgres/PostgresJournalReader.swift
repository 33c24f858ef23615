import PostgresNIO
import WaypostCore
import WaypostJournal

/// The reads of the status API, the admin API, the console and the CLI on a PostgreSQL
/// journal, as ``JournalReader`` makes them on a SQLite one, with the same results. Times are
/// read as milliseconds and written out as the SQLite journal stores them (RFC 3339, UTC).
final class PostgresJournalReader: JournalReading {
    private let connection: BlockingConnection

    /// A reader on `connection`, once it found a journal of this Waypost's schema version.
    init(connection: BlockingConnection) throws(JournalError) {
        self.connection = connection
        let schema = try connection.rows("SELECT to_regclass('waypost_schema') IS NOT NULL") { try $0.decode(Bool.self) }
        let versions =
            schema.first == true ? try connection.rows("SELECT version FROM waypost_schema") { try $0.decode(Int.self) } : []
        let version = versions.first ?? 0
        guard version == PostgresSchema.currentVersion else {
            throw JournalError(
                version == 0 ? .notFound : .incompatible,
                version == 0
                    ? "the database has no Waypost journal (start `waypost serve` on it once to create it)"
                    : "the journal has schema version \(version), this Waypost reads version \(PostgresSchema.currentVersion)"
                        + (version < PostgresSchema.currentVersion
                            ? " (start `waypost serve` on it once to migrate it)" : " (upgrade Waypost)"))
        }
    }

    func counts() throws(JournalError) -> [StateCount] {
        try connection.rows(
            """
            SELECT m.route, s.state, count(*)::bigint FROM messages m CROSS JOIN LATERAL (\(unescaped: PostgresSchema.messageStateSQL)) s
            GROUP BY 1, 2 ORDER BY 1, 2
            """
        ) { row in
            let (route, state, count) = try row.decode((String, String, Int).self)
            return StateCount(route: route, state: Self.state(state), count: count)
        }
    }

    func clusterNodes() throws(JournalError) -> [ClusterNode] {
        try connection.rows(
            """
            SELECT n.name, n.address, waypost_ms(n.started_at), waypost_ms(n.heartbeat_at),
                   (SELECT count(*) FROM partitions p WHERE p.node = n.name AND p.expires_at > now())::bigint, waypost_ms(now())
            FROM nodes n ORDER BY n.name
            """
        ) { row in
            let (name, address, started, heartbeat, partitions, now) = try row.decode((String, String?, Int64, Int64, Int, Int64).self)
            return ClusterNode(name: name, address: address, startedAt: started, heartbeatAt: heartbeat, partitions: partitions, now: now)
        }
    }

    func waitingCounts() throws(JournalError) -> [StateCount] {
        try connection.rows(
            """
            SELECT route, state, count(*)::bigint FROM (
                SELECT route, CASE WHEN bool_or(state = 'in_flight') THEN 'in_flight' ELSE 'queued' END AS state FROM deliveries
                WHERE state IN ('queued', 'in_flight') GROUP BY route, message_id
            ) w GROUP BY 1, 2 ORDER BY 1, 2
            """
        ) { row in
            let (route, state, count) = try row.decode((String, String, Int).self)
            return StateCount(route: route, state: Self.state(state), count: count)
        }
    }

    func deliveryCounts() throws(JournalError) -> [DeliveryCount] {
        try connection.rows(
            "SELECT route, destination, state, count(*)::bigint FROM deliveries GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ) { row in
            let (route, destination, state, count) = try row.decode((String, String, String, Int).self)
            return DeliveryCount(route: route, destination: destination, state: Self.state(state), count: count)
        }
    }

    func destinationStates(_ names: [(route: String, destination: String)]) throws(JournalError) -> [DestinationState] {
        var states = names.map { DestinationState(route: $0.route, destination: $0.destination) }
        // The oldest waiting delivery is the one with the smallest id (deliveries are made in
        // the order their messages are accepted): only its message is read.
        let waiting = try connection.rows(
            """
            SELECT w.state, w.route, w.destination, w.count, waypost_ms(m.received_at) FROM (
                SELECT state, route, destination, count(*)::bigint AS count, min(id) AS oldest FROM deliveries
                WHERE state IN ('queued', 'in_flight', 'failed') GROUP BY 1, 2, 3
            ) w JOIN deliveries d ON d.id = w.oldest JOIN messages m ON m.id = d.message_id
            ORDER BY 2, 3, 1
            """
        ) { try $0.decode((String, String, String, Int, Int64).self) }
        var oldest: [Int: Int64] = [:]
        for (state, route, destination, count, receivedAt) in waiting {
            let at = states.indexAdding(route: route, destination: destination)
            switch state {
            case "queued": states[at].queued = count
            case "in_flight": states[at].inFlight = count
            default: states[at].failed = count
            }
            if state != "failed" { oldest[at] = min(oldest[at] ?? .max, receivedAt) }
        }
        for (at, receivedAt) in oldest { states[at].oldestQueuedAt = Timestamp.format(millisecondsSince1970: receivedAt) }
        let control = try connection.rows("SELECT name, value FROM control WHERE name LIKE 'paused:%' OR name LIKE 'tripped:%'") {
            try $0.decode((String, Int64).self)
        }
        DestinationState.apply(controls: control.map { (name: $0.0, value: $0.1) }, to: &states)
        return states
    }

    func oldestQueued() throws(JournalError) -> [String: String] {
        // The oldest waiting delivery is the one with the smallest id (deliveries are made in
        // the order their messages are accepted): only its message is read, not every waiting one's.
        let rows = try connection.rows(
            """
            SELECT w.route, waypost_ms(m.received_at) FROM (
                SELECT route, min(id) AS oldest FROM deliveries WHERE state IN ('queued', 'in_flight') GROUP BY route
            ) w JOIN deliveries d ON d.id = w.oldest JOIN messages m ON m.id = d.message_id
            """
        ) { try $0.decode((String, Int64).self) }
        return Dictionary(rows.map { ($0.0, Timestamp.format(millisecondsSince1970: $0.1)) }) { first, _ in first }
    }

    func list(_ filter: MessageFilter) throws(JournalError) -> [MessageRecord] {
        // A narrow time range is walked on its index and sorted: ordered by `m.id` itself, the
        // planner walks every message from the first (id and time grow together, which its
        // statistics do not tell it): 73 ms for two hours in the middle of a million, 10 so.
        let narrow = try isNarrow(filter)
        var selection = PostgresSelection(filter, state: filter.state, limit: filter.limit, narrow: narrow)
        let limit = selection.bind(filter.limit)
        let order = narrow ? "m.id + 0" : "m.id"
        var records = try connection.rows(
            PostgresQuery(
                unsafeSQL: """
                    SELECT \(Self.columns) \(Self.tables) \(selection.whereClause)
                    ORDER BY \(order) \(filter.newestFirst ? "DESC" : "ASC") LIMIT \(limit)
                    """, binds: selection.binds), Self.record)
        // Every listed message's deliveries in one query, not one a message.
        let ids = records.map(\.id)
        let all = try connection.rows(
            """
            SELECT d.message_id, \(unescaped: Self.deliveryColumns("d")) FROM deliveries d WHERE d.message_id = ANY(\(ids))
            ORDER BY d.message_id, d.id
            """
        ) { row in
            let columns = row.makeRandomAccess()
            return (try columns[0].decode(Int64.self), try Self.delivery(columns, from: 1))
        }
        let byMessage = Dictionary(grouping: all, by: \.0)
        for index in records.indices { records[index].deliveries = byMessage[records[index].id]?.map(\.1) ?? [] }
        return records
    }

    /// The most messages a time range may hold to be walked by time (as SQLite's
    /// `MessageSelection.narrowRange`).
    static let narrowRange = 10_000

    /// Whether `filter` has a time range of at most ``narrowRange`` messages, counted on the
    /// index of `received_at` up to one more than that.
    private func isNarrow(_ filter: MessageFilter) throws(JournalError) -> Bool {
        guard filter.since != nil || filter.until != nil else { return false }
        var binds = PostgresBindings()
        var conditions: [String] = []
        if let since = filter.since {
            binds.append(PostgresSelection.milliseconds(since))
            conditions.append("received_at >= waypost_time($\(binds.count))")
        }
        if let until = filter.until {
            binds.append(PostgresSelection.milliseconds(until))
            conditions.append("received_at < waypost_time($\(binds.count))")
        }
        let count = try connection.rows(
            PostgresQuery(
                unsafeSQL: """
                    SELECT count(*)::bigint FROM (SELECT 1 FROM messages WHERE \(conditions.joined(separator: " AND ")) LIMIT \(Self.narrowRange + 1)) r
                    """, binds: binds)
        ) { try $0.decode(Int.self) }
        return (count.first ?? 0) <= Self.narrowRange
    }

    func replayCount(_ filter: MessageFilter) throws(JournalError) -> Int {
        // One delivery per message and destination: with a destination, this counts those deliveries.
        let selection = PostgresSelection(filter, state: filter.state ?? .failed)
        return try connection.rows(
            PostgresQuery(unsafeSQL: "SELECT count(*)::bigint FROM messages m \(selection.whereClause)", binds: selection.binds)
        ) { try $0.decode(Int.self) }.first ?? 0
    }

    func message(correlationID: String) throws(JournalError) -> MessageRecord? {
        guard correlationID.isStorable,
            var record = try connection.rows(
                PostgresQuery(
                    unsafeSQL: "SELECT \(Self.columns) \(Self.tables) WHERE m.correlation_id = $1", binds: Self.binds(correlationID)),
                Self.record
            ).first
        else { return nil }
        record.deliveries = try deliveries(messageID: record.id)
        return record
    }

    func deliveries(messageID: Int64) throws(JournalError) -> [DeliveryRecord] {
        try connection.rows(
            """
            SELECT \(unescaped: Self.deliveryColumns("d")) FROM deliveries d WHERE d.message_id = \(messageID) ORDER BY d.id
            """
        ) { try Self.delivery($0.makeRandomAccess(), from: 0) }
    }

    func attempts(deliveryID: Int64) throws(JournalError) -> [AttemptRecord] {
        try connection.rows(
            """
            SELECT attempt, waypost_ms(started_at), duration_ms, status, error, body_bytes, body_sha256 FROM attempts
            WHERE delivery_id = \(deliveryID) ORDER BY attempt
            """
        ) { row in
            let (attempt, startedAt, duration, status, error, bytes, sha256) = try row.decode(
                (Int, Int64, Int?, Int?, String?, Int?, String?).self)
            return AttemptRecord(
                attempt: attempt, startedAt: Timestamp.format(millisecondsSince1970: startedAt), durationMilliseconds: duration,
                status: status, error: error, sentBody: bytes.map { SentBody(bytes: $0, sha256: sha256 ?? "") })
        }
    }

    /// A delivery `d`'s columns, as ``delivery(_:from:)`` reads them.
    static func deliveryColumns(_ d: String) -> String {
        """
        \(d).id, \(d).destination, \(d).ordering_key, \(d).state, \(d).attempts, waypost_ms(\(d).next_attempt_at), \
        waypost_ms(\(d).delivered_at), \(d).last_error, \(d).response_status, \(d).response_headers::text, \(d).response_body
        """
    }

    static func delivery(_ row: PostgresRandomAccessRow, from first: Int) throws -> DeliveryRecord {
        func time(_ index: Int) throws -> String? {
            try row[first + index].decode(Int64?.self).map { Timestamp.format(millisecondsSince1970: $0) }
        }
        return DeliveryRecord(
            id: try row[first].decode(Int64.self), destination: try row[first + 1].decode(String.self),
            orderingKey: try row[first + 2].decode(String?.self), state: state(try row[first + 3].decode(String.self)),
            attempts: try row[first + 4].decode(Int.self), nextAttemptAt: try time(5), deliveredAt: try time(6),
            lastError: try row[first + 7].decode(String?.self), responseStatus: try row[first + 8].decode(Int?.self),
            responseHeadersJSON: try row[first + 9].decode(String?.self),
            responseBody: try row[first + 10].decode(ByteBuffer?.self).map { Array(buffer: $0) })
    }

    /// The message `m`, its state `s` and its first delivery `p`, for ``record(_:)``.
    static let columns = """
        m.id, m.correlation_id, m.route, m.idempotency_key, m.method, m.path, m.headers::text, m.body, waypost_ms(m.received_at), \
        s.state, \(deliveryColumns("p"))
        """

    static let tables = """
        FROM messages m
        JOIN LATERAL (SELECT * FROM deliveries f WHERE f.message_id = m.id ORDER BY f.id LIMIT 1) p ON true
        CROSS JOIN LATERAL (\(PostgresSchema.messageStateSQL)) s
        """

    @Sendable static func record(_ row: PostgresRow) throws -> MessageRecord {
        let r = row.makeRandomAccess()
        return MessageRecord(
            id: try r[0].decode(Int64.self), correlationID: try r[1].decode(String.self), route: try r[2].decode(String.self),
            idempotencyKey: try r[3].decode(String?.self), method: try r[4].decode(String.self), path: try r[5].decode(String.self),
            headersJSON: try r[6].decode(String.self), body: Array(buffer: try r[7].decode(ByteBuffer.self)),
            receivedAt: Timestamp.format(millisecondsSince1970: try r[8].decode(Int64.self)), state: state(try r[9].decode(String.self)),
            reply: try delivery(r, from: 10))
    }

    /// A `state` column; the schema's CHECK admits nothing but ``MessageState``'s words.
    static func state(_ text: String) -> MessageState {
        MessageState(rawValue: text) ?? .queued
    }

    static func binds(_ values: String...) -> PostgresBindings {
        var binds = PostgresBindings()
        for value in values { binds.append(value) }
        return binds
    }
}

/// The `WHERE` conditions that a ``MessageFilter`` selects on the messages `m` of a PostgreSQL
/// journal, with only the conditions it uses, its values bound in order (as ``MessageSelection``
/// does for SQLite; PostgreSQL's planner, with its statistics, picks the index itself).
struct PostgresSelection {
    private(set) var conditions: [String] = []
    private(set) var binds = PostgresBindings()

    /// The messages `m` that `filter` selects; `state` is the message's (with a destination,
    /// that delivery's), nil for any. With `limit`, at most that many, in `filter`'s order.
    ///
    /// With a state, the deliveries in that state are walked in message order (the index of
    /// their state and message), the first `limit` kept: the planner, left to itself, walks the
    /// messages and checks each one's deliveries, which for the few `queued` messages at the
    /// end of a million took 230 ms. With a `narrow` time range, or without `limit` and with a
    /// time, the messages of that time are walked (their index of `received_at`), each one's
    /// deliveries checked.
    init(_ filter: MessageFilter, state: MessageState?, limit: Int? = nil, narrow: Bool = false) {
        // A name with a NUL names nothing stored (PostgreSQL's text cannot hold it).
        if [filter.route, filter.destination].contains(where: { $0?.isStorable == false }) {
            conditions.append("false")
            return
        }
        if let route = filter.route, state == nil { conditions.append("m.route = \(bind(route))") }
        if let since = filter.since { conditions.append("m.received_at >= waypost_time(\(bind(Self.milliseconds(since))))") }
        if let until = filter.until { conditions.append("m.received_at < waypost_time(\(bind(Self.milliseconds(until))))") }
        let before = filter.newestFirst ? "<" : ">"
        if let after = filter.afterID { conditions.append("m.id \(before) \(bind(after))") }
        switch (state, filter.destination) {
        case (let state?, let destination):
            var deliveries = ["d.state = \(bind(state.rawValue))"]
            if let route = filter.route { deliveries.append("d.route = \(bind(route))") }
            if let destination { deliveries.append("d.destination = \(bind(destination))") }
            // Without a destination, the message is in `state` when no delivery outranks it.
            // With a limit, checked for each delivery walked (OFFSET 0 keeps it a check): as an
            // anti-join, the planner walked every delivery by message to find the first
            // waiting one (160 ms for the failed list on a million).
            if destination == nil, !state.outrankedBy.isEmpty {
                let list = state.outrankedBy.map { "'\($0.rawValue)'" }.joined(separator: ", ")
                deliveries.append(
                    "NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.message_id = d.message_id AND o.state IN (\(list))\(limit == nil ? "" : " OFFSET 0"))"
                )
            }
            let timed = filter.since != nil || filter.until != nil
            if !timed || (limit != nil && !narrow) {
                if let after = filter.afterID { deliveries.append("d.message_id \(before) \(bind(after))") }
                // The time, if any, is the message's: each delivery's message is read for it.
                var source = "deliveries d"
                if timed {
                    source += " JOIN messages t ON t.id = d.message_id"
                    if let since = filter.since { deliveries.append("t.received_at >= waypost_time(\(bind(Self.milliseconds(since))))") }
                    if let until = filter.until { deliveries.append("t.received_at < waypost_time(\(bind(Self.milliseconds(until))))") }
                }
                let order = limit.map { " ORDER BY d.message_id \(filter.newestFirst ? "DESC" : "ASC") LIMIT \(bind($0))" } ?? ""
                conditions.append(
                    "m.id IN (SELECT DISTINCT d.message_id FROM \(source) WHERE \(deliveries.joined(separator: " AND "))\(order))")
            } else {
                conditions.append(
                    "EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND \(deliveries.joined(separator: " AND ")))")
            }
        case (nil, let destination?):
            conditions.append("EXISTS (SELECT 1 FROM deliveries x WHERE x.message_id = m.id AND x.destination = \(bind(destination)))")
        case (nil, nil):
            break
        }
    }

    /// A filter's time (RFC 3339, as ``MessageFilter/set(_:_:states:now:)`` checked it) in
    /// milliseconds: compared through `waypost_time`, since PostgreSQL's own parsing refuses
    /// some times RFC 3339 allows (the year 0000).
    static func milliseconds(_ time: String) -> Int64 {
        Timestamp.parse(time) ?? 0
    }

    /// `WHERE …`, or nothing.
    var whereClause: String { conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ") }

    /// Binds `value` as the next parameter; its placeholder.
    mutating func bind<Value: PostgresNonThrowingEncodable>(_ value: Value) -> String {
        binds.append(value)
        return "$\(binds.count)"
    }
}
