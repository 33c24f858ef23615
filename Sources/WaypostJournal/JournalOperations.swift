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

    /// Replays the messages with these correlation ids (→ `queued`, with a fresh retry budget).
    ///
    /// - Returns: The ids replayed; an id that names no message, or a message that is not in a
    ///   final state, is not among them.
    public func replay(ids: [String], dryRun: Bool = false) throws(JournalError) -> [String] {
        var replayed: [String] = []
        try db.transaction { () throws(JournalError) in
            let select = try db.prepare(
                "SELECT correlation_id FROM messages WHERE correlation_id = ?1 AND state IN ('failed', 'delivered', 'skipped')")
            for id in ids {
                try select.bind(1, id)
                if try select.step() { replayed.append(id) }
                select.reset()
            }
            if !dryRun {
                let update = try db.prepare(Self.replaySQL + " WHERE correlation_id = ?2")
                for id in replayed {
                    try update.bind(1, Self.now)
                    try update.bind(2, id)
                    try update.run()
                }
                if !replayed.isEmpty { try bumpGeneration() }
            }
        }
        return replayed
    }

    /// Replays every message in `state` (a final state) matching the filter.
    ///
    /// - Returns: The correlation ids replayed (or that would be, with `dryRun`), in order.
    public func replay(_ filter: MessageFilter, dryRun: Bool = false) throws(JournalError) -> [String] {
        var ids: [String] = []
        try db.transaction { () throws(JournalError) in
            let select = try db.prepare(
                """
                SELECT correlation_id FROM messages
                WHERE state = ?1 AND (?2 IS NULL OR route = ?2) AND (?3 IS NULL OR received_at >= ?3)
                  AND (?4 IS NULL OR received_at < ?4)
                ORDER BY id
                """)
            try select.bind(1, (filter.state ?? .failed).rawValue)
            try select.bind(2, filter.route)
            try select.bind(3, filter.since)
            try select.bind(4, filter.until)
            while try select.step() { ids.append(select.string(0) ?? "") }
            if !dryRun && !ids.isEmpty {
                let update = try db.prepare(
                    Self.replaySQL
                        + """
                         WHERE state = ?2 AND (?3 IS NULL OR route = ?3) AND (?4 IS NULL OR received_at >= ?4)
                          AND (?5 IS NULL OR received_at < ?5)
                        """)
                try update.bind(1, Self.now)
                try update.bind(2, (filter.state ?? .failed).rawValue)
                try update.bind(3, filter.route)
                try update.bind(4, filter.since)
                try update.bind(5, filter.until)
                try update.run()
                try bumpGeneration()
            }
        }
        return ids
    }

    /// Marks a waiting or failed message `skipped`: it will not be sent, and a queue it
    /// blocked moves on. Messages in flight or already delivered are not changed. An attempt
    /// shorter than the scheduler's `recordStartAfterMilliseconds` is not recorded as in flight:
    /// skipped during such an attempt, the message stays skipped however the attempt ends,
    /// unless it ends delivered (the upstream has it then).
    ///
    /// - Returns: Whether the message was skipped.
    public func skip(id: String) throws(JournalError) -> Bool {
        var changed = false
        try db.transaction { () throws(JournalError) in
            let update = try db.prepare(
                "UPDATE messages SET state = 'skipped', next_attempt_at = NULL, updated_at = ?1 WHERE correlation_id = ?2 AND state IN ('queued', 'failed')"
            )
            try update.bind(1, Self.now)
            try update.bind(2, id)
            try update.run()
            changed = db.changes == 1
            if changed { try bumpGeneration() }
        }
        return changed
    }

    /// Pauses or resumes delivery on `route`: a paused route keeps accepting and journaling,
    /// and delivers nothing until resumed. The setting is kept in the journal, so it survives
    /// a restart.
    public func setPaused(route: String, _ paused: Bool) throws(JournalError) {
        try db.transaction { () throws(JournalError) in
            let upsert = try db.prepare("INSERT OR REPLACE INTO control (name, value) VALUES ('paused:' || ?1, ?2)")
            try upsert.bind(1, route)
            try upsert.bind(2, paused ? 1 : 0)
            try upsert.run()
            try bumpGeneration()
        }
    }

    /// Deletes delivered messages (and their attempts) delivered before `before` (RFC 3339).
    ///
    /// - Returns: How many messages were deleted.
    public func purgeDelivered(before: String) throws(JournalError) -> Int {
        let delete = try db.prepare(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE state = 'delivered' AND delivered_at < ?1 LIMIT 1000)")
        var total = 0
        while true {
            try delete.bind(1, before)
            try delete.run()
            let deleted = db.changes
            total += deleted
            if deleted < 1000 { return total }
        }
    }

    private static let replaySQL = """
        UPDATE messages SET state = 'queued', next_attempt_at = NULL, replayed_at = ?1, cycle_attempts = 0, updated_at = ?1
        """

    private static var now: String { Timestamp.format(millisecondsSince1970: Int64(Date().timeIntervalSince1970 * 1000)) }

    private func bumpGeneration() throws(JournalError) {
        try db.execute(Schema.bumpReplayGeneration)
    }

}
