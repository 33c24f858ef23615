import Foundation
import WaypostCore

/// Operator actions on the journal (SPEC §6 `replay`, `purge`; §5 skip), safe while a server
/// runs on the same file: each is one short transaction through SQLite's locking, and
/// `replay`/`skip` bump a counter that the running server checks every half second.
public final class JournalOperations {
    private let db: SQLiteConnection

    /// Opens the existing journal at `path` for writing (migrating it if it is older).
    public init(path: String) throws(JournalError) {
        guard FileManager.default.fileExists(atPath: path) else {
            throw JournalError(.notFound, "no journal at \(path) (give --journal, --config or $WAYPOST_JOURNAL)")
        }
        db = try SQLiteConnection(path: path, create: false)
        try db.execute("PRAGMA busy_timeout = 10000")
        try db.execute("PRAGMA foreign_keys = ON")
        try Schema.migrate(db)
    }

    /// Replays the messages with these correlation ids (SPEC §11): with `destination`, that
    /// delivery; without, the message's `failed` and `skipped` deliveries, or all of them (but
    /// the `filtered`) when none is. They are `queued` again with a fresh retry budget.
    ///
    /// - Returns: The ids replayed; an id that names no message, or a message (with
    ///   `destination`, a delivery) that is not in a final state, is not among them.
    public func replay(ids: [String], destination: String? = nil, dryRun: Bool = false) throws(JournalError) -> [String] {
        var replayed: [String] = []
        try db.transaction { () throws(JournalError) in
            let select = try db.prepare(
                """
                SELECT m.id FROM messages m WHERE m.correlation_id = ?1 AND CASE
                    WHEN ?2 IS NULL THEN (\(Schema.messageStateSQL)) IN ('failed', 'delivered', 'skipped')
                    ELSE EXISTS (SELECT 1 FROM deliveries x WHERE x.message_id = m.id AND x.destination = ?2
                                 AND x.state IN ('failed', 'delivered', 'skipped'))
                    END
                """)
            var rows: [Int64] = []
            for id in ids {
                try select.bind(1, id)
                try select.bind(2, destination)
                if try select.step() {
                    replayed.append(id)
                    rows.append(select.int64(0))
                }
                select.reset()
            }
            if !dryRun && !rows.isEmpty { try requeue(messages: rows, destination: destination) }
        }
        return replayed
    }

    /// Replays every message matching the filter: in `filter.state` (a final state, `failed`
    /// unless given), or with `filter.destination` whose delivery to it is; as
    /// ``replay(ids:destination:dryRun:)`` does each.
    ///
    /// - Returns: The correlation ids replayed (or that would be, with `dryRun`), in order.
    public func replay(_ filter: MessageFilter, dryRun: Bool = false) throws(JournalError) -> [String] {
        var ids: [String] = []
        try db.transaction { () throws(JournalError) in
            let selection = try MessageSelection(filter, state: filter.state ?? .failed, in: db)
            let select = try db.prepare("SELECT m.id, m.correlation_id FROM \(selection.source) \(selection.whereClause) ORDER BY m.id")
            try selection.bind(select)
            var rows: [Int64] = []
            while try select.step() {
                rows.append(select.int64(0))
                ids.append(select.string(1) ?? "")
            }
            if !dryRun && !rows.isEmpty { try requeue(messages: rows, destination: filter.destination) }
        }
        return ids
    }

    /// Queues again, inside the open transaction, the deliveries a replay of these messages
    /// re-sends, and tells a running server.
    private func requeue(messages: [Int64], destination: String?) throws(JournalError) {
        let update = try db.prepare(
            """
            UPDATE deliveries SET state = 'queued', next_attempt_at = NULL, replayed_at = ?1, cycle_attempts = 0, updated_at = ?1
            WHERE message_id = ?2 AND CASE
                WHEN ?3 IS NOT NULL THEN destination = ?3 AND state IN ('failed', 'delivered', 'skipped')
                ELSE state IN ('failed', 'skipped') OR (state = 'delivered' AND NOT EXISTS (
                    SELECT 1 FROM deliveries o WHERE o.message_id = ?2 AND o.state IN ('failed', 'skipped')))
                END
            """)
        let now = Self.now
        for message in messages {
            try update.bind(1, now)
            try update.bind(2, message)
            try update.bind(3, destination)
            try update.run()
        }
        try bumpGeneration()
    }

    /// Marks the waiting or failed deliveries of a message (with `destination`, that one)
    /// `skipped`: they will not be sent, and a queue they blocked moves on. Deliveries in
    /// flight or already final otherwise are not changed. An attempt shorter than the
    /// scheduler's `recordStartAfterMilliseconds` is not recorded as in flight: skipped during
    /// such an attempt, the delivery stays skipped however the attempt ends, unless it ends
    /// delivered (the upstream has it then).
    ///
    /// - Returns: Whether a delivery was skipped.
    public func skip(id: String, destination: String? = nil) throws(JournalError) -> Bool {
        var changed = false
        try db.transaction { () throws(JournalError) in
            let update = try db.prepare(
                """
                UPDATE deliveries SET state = 'skipped', next_attempt_at = NULL, updated_at = ?1
                WHERE message_id = (SELECT id FROM messages WHERE correlation_id = ?2) AND (?3 IS NULL OR destination = ?3)
                  AND state IN ('queued', 'failed')
                """)
            try update.bind(1, Self.now)
            try update.bind(2, id)
            try update.bind(3, destination)
            try update.run()
            changed = db.changes > 0
            if changed { try bumpGeneration() }
        }
        return changed
    }

    /// Pauses or resumes delivery on `route` (with `destination`, to that destination only): a
    /// paused destination keeps accepting and journaling, and is sent nothing until resumed.
    /// The setting is kept in the journal, so it survives a restart.
    public func setPaused(route: String, destination: String? = nil, _ paused: Bool) throws(JournalError) {
        try db.transaction { () throws(JournalError) in
            let upsert = try db.prepare("INSERT OR REPLACE INTO control (name, value) VALUES ('paused:' || ?1, ?2)")
            try upsert.bind(1, destination.map { RouteConfig.destinationKey(route: route, destination: $0) } ?? route)
            try upsert.bind(2, paused ? 1 : 0)
            try upsert.run()
            try bumpGeneration()
        }
    }

    /// Deletes messages (with their deliveries and attempts) whose every delivery ended
    /// `delivered` or `filtered` before `before` (RFC 3339).
    ///
    /// - Returns: How many messages were deleted.
    public func purgeDelivered(before: String) throws(JournalError) -> Int {
        let delete = try db.prepare(Schema.pruneSQL)
        var total = 0
        while true {
            try delete.bind(1, before)
            try delete.run()
            let deleted = db.changes
            total += deleted
            if deleted == 0 { return total }
        }
    }

    private static var now: String { Timestamp.format(millisecondsSince1970: Int64(Date().timeIntervalSince1970 * 1000)) }

    private func bumpGeneration() throws(JournalError) {
        try db.execute(Schema.bumpReplayGeneration)
    }

}
