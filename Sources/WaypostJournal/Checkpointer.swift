import Foundation
import Logging

/// Copies the WAL back into the database file on a thread of its own, so the writer thread
/// (which runs with `wal_autocheckpoint = 0`) never stops committing to do it. `PASSIVE`
/// checkpoints never block the writer or the readers; the WAL restarts from its beginning
/// once a checkpoint has caught up.
final class Checkpointer: @unchecked Sendable {
    // @unchecked Sendable: `stopping` and `exited` are guarded by `condition`; `db` is touched
    // only by the checkpointer thread.
    private let condition = NSCondition()
    private var stopping = false
    private var exited = false
    private let db: SQLiteConnection
    private let interval: TimeInterval
    private let logger: Logger

    init(path: String, interval: TimeInterval = 0.5, logger: Logger) throws(SQLiteError) {
        db = try SQLiteConnection(path: path, create: false)
        try db.execute("PRAGMA busy_timeout = 5000")
        self.interval = interval
        self.logger = logger
        startDedicatedThread(named: "wp-checkpoint") { [self] in loop() }
    }

    private func loop() {
        while true {
            condition.lock()
            let deadline = Date().addingTimeInterval(interval)
            while !stopping && Date() < deadline { _ = condition.wait(until: deadline) }
            let stop = stopping
            condition.unlock()
            do {
                try db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            } catch {
                logger.warning("journal checkpoint failed", metadata: ["error": "\(error)"])
            }
            if stop { break }
        }
        condition.lock()
        exited = true
        condition.broadcast()
        condition.unlock()
    }

    /// Runs a last checkpoint and waits for the thread to end.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !exited { condition.wait() }
        condition.unlock()
    }
}
