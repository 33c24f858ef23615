import WaypostCore

/// The `WHERE` conditions that a ``MessageFilter`` selects, with only the conditions it uses and
/// its values bound in order: written out this way (not as `?N IS NULL OR …` for every key),
/// SQLite's planner sees which apply and walks an index (the deliveries of a state, the
/// messages' row ids, their times) instead of every message.
struct MessageSelection {
    private enum Value {
        case text(String)
        case integer(Int64)
    }

    /// The most messages a time range may hold for the selection to walk it by `received_at`.
    static let narrowRange = 10_000

    /// The messages `m` to select from. With a time range, SQLite is told whether to walk the
    /// `received_at` index, as its planner cannot tell the few messages of an hour from the
    /// many of a month: for a narrow range it does, checking each message's deliveries; for a
    /// wide one it walks the deliveries of the state asked for, or the messages' row ids.
    private(set) var source = "messages m"
    private(set) var conditions: [String] = []
    private var values: [Value] = []

    /// The messages `m` that `filter` selects.
    ///
    /// - Parameters:
    ///   - state: the message's state (with `destination`, that delivery's); nil for any.
    ///   - db: where the filter's time range, if any, is measured.
    init(_ filter: MessageFilter, state: MessageState?, in db: SQLiteConnection) throws(JournalError) {
        let byTime = try Self.isNarrow(filter, in: db)
        if filter.since != nil || filter.until != nil {
            source = byTime ? "messages m INDEXED BY messages_by_received_at" : "messages m NOT INDEXED"
        }
        // With a state, the route is matched on the deliveries (below), which avoids reading
        // every candidate message's row.
        if let route = filter.route, state == nil { add("m.route = ?", .text(route)) }
        if let since = filter.since { add("m.received_at >= ?", .text(since)) }
        if let until = filter.until { add("m.received_at < ?", .text(until)) }
        if let after = filter.afterID { add("m.id \(filter.newestFirst ? "<" : ">") ?", .integer(after)) }
        switch (state, filter.destination) {
        case (let state?, let destination):
            let deliveries = Self.deliveries(state: state, route: filter.route, destination: destination)
            if byTime {
                // A few messages, each checked: no list of every delivery in the state.
                add(
                    "EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND \(deliveries.conditions.joined(separator: " AND ")))",
                    deliveries.values)
            } else {
                add("m.id IN (SELECT message_id FROM deliveries \(deliveries.whereClause))", deliveries.values)
            }
            // Without a destination, the message is in `state` when no delivery outranks it.
            if destination == nil, let others = Self.noneOutranking(state, messageID: "m.id") { add(others) }
        case (nil, let destination?):
            add("EXISTS (SELECT 1 FROM deliveries x WHERE x.message_id = m.id AND x.destination = ?)", .text(destination))
        case (nil, nil):
            break
        }
    }

    /// Whether the filter has a time range of at most ``narrowRange`` messages, counted on the
    /// `received_at` index up to one more than that.
    private static func isNarrow(_ filter: MessageFilter, in db: SQLiteConnection) throws(JournalError) -> Bool {
        var range = MessageSelection()
        if let since = filter.since { range.add("received_at >= ?", .text(since)) }
        if let until = filter.until { range.add("received_at < ?", .text(until)) }
        guard !range.conditions.isEmpty else { return false }
        let count = try db.prepare(
            "SELECT count(*) FROM (SELECT 1 FROM messages INDEXED BY messages_by_received_at \(range.whereClause) LIMIT \(narrowRange + 1))"
        )
        try range.bind(count)
        _ = try count.step()
        return count.int64(0) <= narrowRange
    }

    private init() {}

    /// The deliveries in `state` (of `route`, to `destination`), found by the index
    /// (state, route, destination, id); the conditions name no table.
    private static func deliveries(state: MessageState, route: String?, destination: String?) -> MessageSelection {
        var selection = MessageSelection()
        selection.add("state = ?", .text(state.rawValue))
        if let route { selection.add("route = ?", .text(route)) }
        if let destination { selection.add("destination = ?", .text(destination)) }
        return selection
    }

    /// That no delivery of the message `messageID` outranks `state`; nil when none can.
    private static func noneOutranking(_ state: MessageState, messageID: String) -> String? {
        let states = state.outrankedBy
        guard !states.isEmpty else { return nil }
        let list = states.map { "'\($0.rawValue)'" }.joined(separator: ", ")
        return "NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.message_id = \(messageID) AND o.state IN (\(list)))"
    }

    /// How many messages are in `state` (with the filter's destination, how many deliveries to
    /// it), counted on the deliveries `d` alone, without reading a message's row: the `SELECT`
    /// and its selection, or nil when the filter has a time (`received_at` is the message's) or
    /// a cursor.
    static func deliveryCount(_ filter: MessageFilter, state: MessageState) -> (select: String, selection: MessageSelection)? {
        guard filter.since == nil, filter.until == nil, filter.afterID == nil else { return nil }
        var selection = deliveries(state: state, route: filter.route, destination: filter.destination)
        // One delivery per message and destination: with one, the index alone counts them.
        guard filter.destination == nil else { return ("SELECT count(*) FROM deliveries d", selection) }
        if let others = noneOutranking(state, messageID: "d.message_id") { selection.add(others) }
        return ("SELECT count(DISTINCT d.message_id) FROM deliveries d", selection)
    }

    /// `WHERE …`, or nothing.
    var whereClause: String { conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ") }

    /// Binds the values from parameter `first` on; returns the next free parameter.
    @discardableResult
    func bind(_ statement: Statement, from first: Int32 = 1) throws(JournalError) -> Int32 {
        for (offset, value) in values.enumerated() {
            let index = first + Int32(offset)
            switch value {
            case .text(let text): try statement.bind(index, text)
            case .integer(let integer): try statement.bind(index, integer)
            }
        }
        return first + Int32(values.count)
    }

    private mutating func add(_ condition: String, _ bound: Value...) {
        add(condition, bound)
    }

    private mutating func add(_ condition: String, _ bound: [Value]) {
        conditions.append(condition)
        values += bound
    }
}

extension MessageState {
    /// For a message with a delivery in this state, the delivery states that would make the
    /// message's state another (SPEC §11, ``Schema/messageStateSQL``: in flight before queued
    /// before delivered, filtered, failed, skipped).
    public var outrankedBy: [MessageState] {
        switch self {
        case .inFlight: []
        case .queued: [.inFlight]
        case .failed: [.inFlight, .queued]
        case .skipped: [.inFlight, .queued, .failed]
        case .delivered: [.inFlight, .queued, .failed, .skipped]
        case .filtered: [.inFlight, .queued, .failed, .skipped, .delivered]
        }
    }
}
