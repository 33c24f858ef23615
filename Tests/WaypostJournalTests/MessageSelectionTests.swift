import Foundation
import Testing
import WaypostCore
import WaypostJournal

/// A message as the test writes it into the journal: its route, when it came, and the state of
/// each of its deliveries by destination.
private struct Written {
    var id: Int
    var route: String
    var receivedAt: String
    var deliveries: [(destination: String, state: MessageState)]

    /// The message's state from its deliveries', as SPEC §11 says (Schema.messageStateSQL).
    var state: MessageState {
        let states = deliveries.map(\.state)
        if states.contains(.inFlight) { return .inFlight }
        if states.contains(.queued) { return .queued }
        if states.contains(.delivered) && states.allSatisfy({ $0 == .delivered || $0 == .filtered }) { return .delivered }
        if states.allSatisfy({ $0 == .filtered }) { return .filtered }
        if states.contains(.failed) { return .failed }
        return .skipped
    }

    func matches(_ filter: MessageFilter, state wanted: MessageState?) -> Bool {
        if let route = filter.route, route != self.route { return false }
        if let since = filter.since, receivedAt < since { return false }
        if let until = filter.until, receivedAt >= until { return false }
        if let destination = filter.destination {
            guard let delivery = deliveries.first(where: { $0.destination == destination }) else { return false }
            return wanted.map { delivery.state == $0 } ?? true
        }
        return wanted.map { state == $0 } ?? true
    }
}

@Suite("MessageSelection: lists, replays and the replay count select the same messages")
struct MessageSelectionTests {
    /// Run with `wide`, the time ranges hold more than ``MessageSelection``'s narrow range
    /// (10,000 messages of another route before and after the grid), so that the selection walks
    /// the deliveries of a state rather than the messages of a time.
    @Test("every filter of a grid: list, a replay's dry run and the count agree with the states' rules", arguments: [false, true])
    func grid(wide: Bool) async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = dir.file("j.db")
        let writer = try JournalWriter.open(path)
        await writer.shutdown()

        // Every pair of delivery states on two destinations, and each state alone, on two routes.
        let states = MessageState.allCases
        let fillers = wide ? 10_001 : 0
        let filler = Written(id: 0, route: "r3", receivedAt: "", deliveries: [("z", .delivered)])
        var written = Array(repeating: filler, count: fillers)
        for route in ["r1", "r2"] {
            for first in states {
                written.append(Written(id: 0, route: route, receivedAt: "", deliveries: [("a", first)]))
                for second in states {
                    written.append(Written(id: 0, route: route, receivedAt: "", deliveries: [("a", first), ("b", second)]))
                }
            }
        }
        written += Array(repeating: filler, count: fillers)
        let start: Int64 = 1_790_000_000_000
        var sql = "BEGIN;"
        for index in written.indices {
            written[index].id = index + 1
            written[index].receivedAt = Timestamp.format(millisecondsSince1970: start + Int64(index) * 1000)
            let message = written[index]
            guard message.route != "r3" else { continue }
            sql += """
                INSERT INTO messages (id, correlation_id, route, method, path, headers, body, received_at)
                VALUES (\(message.id), 'm\(message.id)', '\(message.route)', 'POST', '/', '[]', x'7b7d', '\(message.receivedAt)');
                """
            for delivery in message.deliveries {
                sql += """
                    INSERT INTO deliveries (message_id, route, destination, state, updated_at)
                    VALUES (\(message.id), '\(message.route)', '\(delivery.destination)', '\(delivery.state.rawValue)', '\(message.receivedAt)');
                    """
            }
        }
        // The fillers, made by SQLite: the same ids and times as in `written`.
        let grid = written.count - 2 * fillers
        for first in [1, fillers + grid + 1] where wide {
            sql += """
                WITH RECURSIVE n(i) AS (SELECT \(first) UNION ALL SELECT i + 1 FROM n WHERE i < \(first + fillers - 1))
                INSERT INTO messages (id, correlation_id, route, method, path, headers, body, received_at)
                SELECT i, 'm' || i, 'r3', 'POST', '/', '[]', x'7b7d',
                       strftime('%Y-%m-%dT%H:%M:%fZ', (\(start) + (i - 1) * 1000) / 1000.0, 'unixepoch') FROM n;
                """
        }
        sql += """
            INSERT INTO deliveries (message_id, route, destination, state, updated_at)
            SELECT id, route, 'z', 'delivered', received_at FROM messages WHERE route = 'r3';
            """
        _ = try sqlite3(path, sql + "COMMIT;")
        if wide {
            let stored = try sqlite3(path, "SELECT received_at FROM messages WHERE id IN (1, \(written.count)) ORDER BY id")
            #expect(stored == "\(written[0].receivedAt)\n\(written[written.count - 1].receivedAt)")
        }

        let reader = try JournalReader(path: path)
        let operations = try JournalOperations(path: path)
        let middle = written[written.count / 2].receivedAt
        let limit = 1000
        var checked = 0
        for state in [nil] + states {
            for route in [nil, "r1", "r2"] {
                for destination in [nil, "a", "b", "c"] {
                    for (since, until) in [(nil, nil), (middle, nil), (nil, middle)] as [(String?, String?)] {
                        let filter = MessageFilter(
                            state: state, route: route, destination: destination, since: since, until: until, limit: limit)
                        let expected = written.filter { $0.matches(filter, state: state) }.map { "m\($0.id)" }
                        let what =
                            "state \(state?.rawValue ?? "any") route \(route ?? "any") destination \(destination ?? "any") since \(since ?? "-") until \(until ?? "-")"
                        #expect(try reader.list(filter).map(\.correlationID) == Array(expected.prefix(limit)), "list, \(what)")
                        var newest = filter
                        newest.newestFirst = true
                        #expect(
                            try reader.list(newest).map(\.correlationID) == Array(expected.reversed().prefix(limit)),
                            "newest first, \(what)")
                        if let state, state.isFinal {
                            #expect(try operations.replay(filter, dryRun: true) == expected, "dry run, \(what)")
                            #expect(try reader.replayCount(filter) == expected.count, "count, \(what)")
                        }
                        checked += 1
                    }
                }
            }
        }
        #expect(checked == 7 * 3 * 4 * 3)
    }
}
