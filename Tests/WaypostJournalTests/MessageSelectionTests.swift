import Foundation
import Testing
import WaypostCore
import WaypostJournal

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

        let grid = SelectionGrid(fillers: wide ? 10_001 : 0)
        let fillers = grid.fillers
        let written = grid.messages
        let start = grid.start
        var sql = "BEGIN;"
        for message in grid.gridMessages {
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
        for first in [1, fillers + grid.gridMessages.count + 1] where wide {
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

        try grid.check(reader: JournalReader(path: path), operations: JournalOperations(path: path))
    }
}
