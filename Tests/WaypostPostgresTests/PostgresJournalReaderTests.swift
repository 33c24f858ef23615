import Foundation
import PostgresNIO
import Testing
import WaypostCore
import WaypostJournal
import WaypostTestSupport

@testable import WaypostPostgres

extension PostgresTests {
    /// The status API's, admin API's, console's and CLI's reads and the operator actions on a
    /// real PostgreSQL: the same selections as the SQLite journal's (`MessageSelectionTests`).
    @Suite("the PostgreSQL journal's reads and operator actions select as SQLite's do")
    struct PostgresJournalReaderTests {
        /// With `wide`, 10,001 delivered messages of another route come before and after the
        /// grid, so that its time ranges are wide ones: both ways of walking a time are checked.
        @Test("every filter of a grid: list, a replay's dry run and the count agree with the states' rules", arguments: [false, true])
        func grid(wide: Bool) async throws {
            let server = try await PostgresServer.start()
            defer { server.stop() }
            let connection = try await PostgresSchemaTests.connect(server)
            try await PostgresSchema.migrate(connection, logger: PostgresSchemaTests.logger)
            try await connection.close()

            let grid = SelectionGrid(fillers: wide ? 10_001 : 0)
            var sql = "BEGIN;"
            for first in [1, grid.fillers + grid.gridMessages.count + 1] where wide {
                sql += """
                    INSERT INTO messages (id, correlation_id, route, method, path, headers, body, received_at) OVERRIDING SYSTEM VALUE
                    SELECT i, 'm' || i, 'r3', 'POST', '/', '[]', '\\x7b7d', waypost_time(\(grid.start) + (i - 1) * 1000)
                    FROM generate_series(\(first), \(first + grid.fillers - 1)) AS i;
                    INSERT INTO deliveries (message_id, route, destination, partition, state, updated_at)
                    SELECT i, 'r3', 'z', 0, 'delivered', waypost_time(\(grid.start) + (i - 1) * 1000)
                    FROM generate_series(\(first), \(first + grid.fillers - 1)) AS i;
                    """
            }
            for message in grid.gridMessages {
                sql += """
                    INSERT INTO messages (id, correlation_id, route, method, path, headers, body, received_at) OVERRIDING SYSTEM VALUE
                    VALUES (\(message.id), 'm\(message.id)', '\(message.route)', 'POST', '/', '[]', '\\x7b7d', '\(message.receivedAt)');
                    """
                for delivery in message.deliveries {
                    sql += """
                        INSERT INTO deliveries (message_id, route, destination, partition, state, updated_at)
                        VALUES (\(message.id), '\(message.route)', '\(delivery.destination)', 0, '\(delivery.state.rawValue)',
                                '\(message.receivedAt)');
                        """
                }
            }
            try server.psql(sql + "COMMIT; ANALYZE;")

            let location = try PostgresLocation(url: server.url + "?sslmode=disable", environment: ["PGPASSWORD": PostgresServer.password])
            let journal = PostgresJournal(location: location, logger: PostgresSchemaTests.logger)
            // Blocking reads, on a thread of their own: never on the concurrency pool. Its failed
            // expectations fail the run, attributed to no test (checked by breaking a row).
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                Thread {
                    continuation.resume(with: Result { try grid.check(reader: journal.reader(), operations: journal.operations()) })
                }.start()
            }
        }
    }
}
