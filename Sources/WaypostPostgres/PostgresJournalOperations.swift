import Foundation
import PostgresNIO
import WaypostCore
import WaypostJournal

/// Operator actions on a PostgreSQL journal (SPEC §5, §6), as ``JournalOperations`` does them
/// on a SQLite one: each in one transaction, safe while any number of servers run on the
/// database; replays, skips and pauses bump the replay generation that servers watch.
final class PostgresJournalOperations: JournalOperating {
    private let connection: BlockingConnection

    init(connection: BlockingConnection) {
        self.connection = connection
    }

    func replay(ids: [String], destination: String?, dryRun: Bool) throws(JournalError) -> [String] {
        let ids = ids.filter(\.isStorable)
        guard !ids.isEmpty, destination?.isStorable != false else { return [] }
        let logger = connection.logger
        let found = try connection.transaction { connection in
            var rows: [(Int64, String)] = []
            let select: PostgresQuery = """
                SELECT m.id, m.correlation_id FROM messages m
                CROSS JOIN LATERAL (\(unescaped: PostgresSchema.messageStateSQL)) s
                WHERE m.correlation_id = ANY(\(ids)) AND CASE
                    WHEN \(destination)::text IS NULL THEN s.state IN ('failed', 'delivered', 'skipped')
                    ELSE EXISTS (SELECT 1 FROM deliveries x WHERE x.message_id = m.id AND x.destination = \(destination)
                                 AND x.state IN ('failed', 'delivered', 'skipped'))
                    END
                """
            for try await row in try await connection.query(select, logger: logger).decode((Int64, String).self) { rows.append(row) }
            if !dryRun && !rows.isEmpty { try await Self.requeue(rows.map(\.0), destination: destination, on: connection, logger: logger) }
            return Set(rows.map(\.1))
        }
        return ids.filter(found.contains)
    }

    func replay(_ filter: MessageFilter, dryRun: Bool) throws(JournalError) -> [String] {
        let logger = connection.logger
        let selection = PostgresSelection(filter, state: filter.state ?? .failed)
        let select = PostgresQuery(
            unsafeSQL: "SELECT m.id, m.correlation_id FROM messages m \(selection.whereClause) ORDER BY m.id", binds: selection.binds)
        return try connection.transaction { connection in
            var rows: [(Int64, String)] = []
            for try await row in try await connection.query(select, logger: logger).decode((Int64, String).self) { rows.append(row) }
            if !dryRun && !rows.isEmpty {
                try await Self.requeue(rows.map(\.0), destination: filter.destination, on: connection, logger: logger)
            }
            return rows.map(\.1)
        }
    }

    /// Queues again, inside the open transaction, the deliveries a replay of these messages
    /// re-sends, and tells running servers.
    private static func requeue(
        _ messages: [Int64], destination: String?, on connection: PostgresConnection, logger: Logger
    ) async throws {
        let now = Self.now
        try await connection.query(
            """
            UPDATE deliveries d SET state = 'queued', next_attempt_at = NULL, replayed_at = waypost_time(\(now)), cycle_attempts = 0,
                                    updated_at = waypost_time(\(now))
            WHERE d.message_id = ANY(\(messages)) AND CASE
                WHEN \(destination)::text IS NOT NULL THEN d.destination = \(destination) AND d.state IN ('failed', 'delivered', 'skipped')
                ELSE d.state IN ('failed', 'skipped') OR (d.state = 'delivered' AND NOT EXISTS (
                    SELECT 1 FROM deliveries o WHERE o.message_id = d.message_id AND o.state IN ('failed', 'skipped')))
                END
            """, logger: logger)
        try await bumpGeneration(on: connection, logger: logger)
    }

    func skip(id: String, destination: String?) throws(JournalError) -> Bool {
        guard id.isStorable, destination?.isStorable != false else { return false }
        let logger = connection.logger
        let now = Self.now
        return try connection.transaction { connection in
            var skipped = 0
            let rows = try await connection.query(
                """
                UPDATE deliveries SET state = 'skipped', next_attempt_at = NULL, updated_at = waypost_time(\(now))
                WHERE message_id = (SELECT id FROM messages WHERE correlation_id = \(id))
                  AND (\(destination)::text IS NULL OR destination = \(destination)) AND state IN ('queued', 'failed')
                RETURNING id
                """, logger: logger)
            for try await _ in rows { skipped += 1 }
            if skipped > 0 { try await Self.bumpGeneration(on: connection, logger: logger) }
            return skipped > 0
        }
    }

    func setPaused(route: String, destination: String?, _ paused: Bool) throws(JournalError) {
        let logger = connection.logger
        let name = "paused:" + (destination.map { RouteConfig.destinationKey(route: route, destination: $0) } ?? route)
        try connection.transaction { connection in
            try await connection.query(
                """
                INSERT INTO control (name, value) VALUES (\(name), \(paused ? 1 : 0))
                ON CONFLICT (name) DO UPDATE SET value = excluded.value
                """, logger: logger)
            try await Self.bumpGeneration(on: connection, logger: logger)
        }
    }

    func purgeDelivered(before: String) throws(JournalError) -> Int {
        guard let cutoff = Timestamp.parse(before) else { throw JournalError(.database, "purge: '\(before)' is not an RFC 3339 time") }
        let logger = connection.logger
        var total = 0
        while true {
            // A thousand at a time, each its own transaction: a long purge holds no lock for long.
            let deleted = try connection.run { connection in
                var count = 0
                for try await _ in try await connection.query(PostgresSchema.prune(before: cutoff), logger: logger) { count += 1 }
                return count
            }
            total += deleted
            if deleted == 0 { return total }
        }
    }

    private static var now: Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    /// Bumps the replay generation and notifies every server listening (delivered at commit).
    private static func bumpGeneration(on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("UPDATE control SET value = value + 1 WHERE name = 'replay_generation'", logger: logger)
        try await connection.query("SELECT pg_notify(\(ControlListener.channel), '')", logger: logger)
    }
}
