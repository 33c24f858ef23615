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
    @Test("every filter of a grid: list, a replay's dry run and the count agree with the states' rules")
    func grid() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = dir.file("j.db")
        let writer = try JournalWriter.open(path)
        await writer.shutdown()

        // Every pair of delivery states on two destinations, and each state alone, on two routes.
        let states = MessageState.allCases
        var written: [Written] = []
        for route in ["r1", "r2"] {
            for first in states {
                written.append(Written(id: 0, route: route, receivedAt: "", deliveries: [("a", first)]))
                for second in states {
                    written.append(Written(id: 0, route: route, receivedAt: "", deliveries: [("a", first), ("b", second)]))
                }
            }
        }
        var sql = "BEGIN;"
        for index in written.indices {
            written[index].id = index + 1
            written[index].receivedAt = Timestamp.format(millisecondsSince1970: 1_790_000_000_000 + Int64(index) * 1000)
            let message = written[index]
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
        _ = try sqlite3(path, sql + "COMMIT;")

        let reader = try JournalReader(path: path)
        let operations = try JournalOperations(path: path)
        let middle = written[written.count / 2].receivedAt
        var checked = 0
        for state in [nil] + states {
            for route in [nil, "r1", "r2"] {
                for destination in [nil, "a", "b", "c"] {
                    for (since, until) in [(nil, nil), (middle, nil), (nil, middle)] as [(String?, String?)] {
                        let filter = MessageFilter(
                            state: state, route: route, destination: destination, since: since, until: until, limit: 1000)
                        let expected = written.filter { $0.matches(filter, state: state) }.map { "m\($0.id)" }
                        let what =
                            "state \(state?.rawValue ?? "any") route \(route ?? "any") destination \(destination ?? "any") since \(since ?? "-") until \(until ?? "-")"
                        #expect(try reader.list(filter).map(\.correlationID) == expected, "list, \(what)")
                        var newest = filter
                        newest.newestFirst = true
                        #expect(try reader.list(newest).map(\.correlationID) == expected.reversed(), "newest first, \(what)")
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
