import WaypostCore

/// The `WHERE` conditions over `messages m` that a ``MessageFilter`` selects, with only the
/// conditions it uses and its values bound in order: written out this way (not as
/// `?N IS NULL OR …` for every key), SQLite's planner sees which apply and walks an index
/// (the deliveries of a state, the messages' row ids) instead of every message.
struct MessageSelection {
    private(set) var conditions: [String] = []
    private var values: [String?] = []
    private var integers: [Int: Int64] = [:]

    /// - Parameters:
    ///   - state: the message's state (with `destination`, that delivery's); nil for any.
    ///   - afterID: the paging cursor, `newestFirst` deciding its direction.
    init(_ filter: MessageFilter, state: MessageState?) {
        // With a state, the route is matched on the deliveries (below), which avoids reading
        // every candidate message's row.
        if let route = filter.route, state == nil { add("m.route = ?", [route]) }
        if let since = filter.since { add("m.received_at >= ?", [since]) }
        if let until = filter.until { add("m.received_at < ?", [until]) }
        if let after = filter.afterID {
            integers[values.count] = after
            add("m.id \(filter.newestFirst ? "<" : ">") ?", [nil])
        }
        // The deliveries of a state are found by the index (state, route, destination, id).
        var deliveries = "SELECT message_id FROM deliveries WHERE state = ?"
        var bound = [state?.rawValue]
        if let route = filter.route {
            deliveries += " AND route = ?"
            bound.append(route)
        }
        switch (state, filter.destination) {
        case (_?, let destination?):
            add("m.id IN (\(deliveries) AND destination = ?)", bound + [destination])
        case (nil, let destination?):
            add("EXISTS (SELECT 1 FROM deliveries x WHERE x.message_id = m.id AND x.destination = ?)", [destination])
        case (let state?, nil):
            // The message is in `state` when one delivery is and none is in a state that
            // outranks it in the message's state (Schema.messageStateSQL).
            let outranking = Self.outranking[state] ?? []
            let others =
                outranking.isEmpty
                ? ""
                : " AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.message_id = m.id AND o.state IN ("
                    + outranking.map { "'\($0.rawValue)'" }.joined(separator: ", ") + "))"
            add("m.id IN (\(deliveries))" + others, bound)
        case (nil, nil):
            break
        }
    }

    /// For a message with a delivery in the key's state, the delivery states that would make
    /// the message's state another (``Schema/messageStateSQL``: in flight before queued before
    /// delivered, filtered, failed, skipped).
    static let outranking: [MessageState: [MessageState]] = [
        .inFlight: [], .queued: [.inFlight], .failed: [.inFlight, .queued], .skipped: [.inFlight, .queued, .failed],
        .delivered: [.inFlight, .queued, .failed, .skipped], .filtered: [.inFlight, .queued, .failed, .skipped, .delivered],
    ]

    /// How many messages are in `state` (with the filter's destination, how many deliveries to
    /// it), counted on the deliveries alone, without reading a message's row: the statement and
    /// its values, or nil when the filter has a time (`received_at` is the message's).
    static func deliveryCount(_ filter: MessageFilter, state: MessageState) -> (sql: String, values: [String])? {
        guard filter.since == nil, filter.until == nil, filter.afterID == nil else { return nil }
        var values = [state.rawValue]
        var sql = "FROM deliveries d WHERE d.state = ?"
        if let route = filter.route {
            sql += " AND d.route = ?"
            values.append(route)
        }
        if let destination = filter.destination {
            // One delivery per message and destination: the index alone counts them.
            values.append(destination)
            return ("SELECT count(*) " + sql + " AND d.destination = ?", values)
        }
        let outranking = outranking[state] ?? []
        if !outranking.isEmpty {
            sql += " AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.message_id = d.message_id AND o.state IN ("
            sql += outranking.map { "'\($0.rawValue)'" }.joined(separator: ", ") + "))"
        }
        return ("SELECT count(DISTINCT d.message_id) " + sql, values)
    }

    /// `WHERE …`, or nothing.
    var whereClause: String { conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ") }

    /// Binds the values from parameter `first` on; returns the next free parameter.
    @discardableResult
    func bind(_ statement: Statement, from first: Int32 = 1) throws(JournalError) -> Int32 {
        for (offset, value) in values.enumerated() {
            let index = first + Int32(offset)
            if let integer = integers[offset] { try statement.bind(index, integer) } else { try statement.bind(index, value) }
        }
        return first + Int32(values.count)
    }

    private mutating func add(_ condition: String, _ bound: [String?]) {
        conditions.append(condition)
        values += bound
    }
}
