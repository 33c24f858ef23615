import CSQLite
import Foundation
import Logging
import ServiceLifecycle
import WaypostCore

/// The journal's single writer: one thread owning the one write connection.
///
/// Intake requests are queued in a lock-protected inbox. The writer thread takes everything
/// that has arrived, stores it in one transaction, commits (one fsync under
/// `synchronous=FULL`), and only then completes each request. While a commit is on disk, the
/// next requests gather in the inbox and share the next commit (group commit), so under load
/// the cost of an fsync is spread over many messages.
///
/// If any statement or the commit fails, the transaction is rolled back and every request of
/// the batch is completed with ``JournalUnavailable``: nothing is acknowledged that was not
/// stored.
public final class JournalWriter: Service, @unchecked Sendable {
    // @unchecked Sendable: `inbox`, `stopping`, `exited` and `statistics` are guarded by
    // `condition`; `db`, the statements and `backlog` are touched only by the writer thread.

    struct Pending {
        var message: IncomingMessage
        var completion: @Sendable (Result<IntakeResult, JournalUnavailable>) -> Void
    }

    private let condition = NSCondition()
    private var inbox: [Pending] = []
    private var stopping = false
    private var exited = false
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []

    private let db: SQLiteConnection
    private let insert: Statement
    private let findByCorrelationID: Statement
    private let findByIdempotencyKey: Statement
    private let maxBacklog: Int
    private var backlog: Int
    private var _statistics = Statistics()
    private let logger: Logger

    /// Opens (creating and migrating if needed) the journal at `path` and starts the writer
    /// thread.
    ///
    /// - Throws: ``SQLiteError`` when the file cannot be opened, is not a journal, or has a
    ///   newer schema.
    public init(path: String, durability: Durability, maxBacklog: Int, busyTimeoutMilliseconds: Int = 5000, logger: Logger) throws(SQLiteError) {
        db = try SQLiteConnection(path: path)
        try Schema.prepareWriter(db, durability: durability, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        insert = try db.prepare(
            """
            INSERT INTO messages (correlation_id, route, ordering_key, idempotency_key, method, path, headers, body,
                                  received_at, updated_at)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
            """)
        findByCorrelationID = try db.prepare("SELECT route, state FROM messages WHERE correlation_id = ?1")
        findByIdempotencyKey = try db.prepare(
            """
            SELECT correlation_id, state FROM messages
            WHERE route = ?1 AND idempotency_key = ?2 AND received_at >= ?3
            ORDER BY id DESC LIMIT 1
            """)
        backlog = Int(try db.scalarInt("SELECT count(*) FROM messages WHERE state IN ('queued', 'in_flight')") ?? 0)
        self.maxBacklog = maxBacklog
        self.logger = logger
        let thread = Thread { [self] in writerLoop() }
        thread.name = "waypost-journal-writer"
        thread.start()
    }

    /// Counters since the writer started.
    public struct Statistics: Sendable, Equatable {
        /// Transactions committed.
        public var commits = 0
        /// Messages stored by those transactions.
        public var messages = 0
    }

    /// Counters since the writer started; `messages / commits` is the mean group-commit size.
    public var statistics: Statistics {
        condition.lock()
        defer { condition.unlock() }
        return _statistics
    }

    /// Hands `message` to the writer. `completion` runs on the writer thread once the
    /// transaction holding the message has committed (or failed); it must not block.
    public func submit(_ message: IncomingMessage, completion: @escaping @Sendable (Result<IntakeResult, JournalUnavailable>) -> Void) {
        condition.lock()
        if stopping {
            condition.unlock()
            completion(.failure(.shuttingDown))
            return
        }
        inbox.append(Pending(message: message, completion: completion))
        condition.signal()
        condition.unlock()
    }

    /// Runs until graceful shutdown, then stores what is already in the inbox and stops.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops taking requests, commits those already submitted, and waits for the thread to end.
    public func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            stopping = true
            if exited {
                condition.unlock()
                continuation.resume()
                return
            }
            exitWaiters.append(continuation)
            condition.signal()
            condition.unlock()
        }
    }

    private func writerLoop() {
        while true {
            condition.lock()
            while inbox.isEmpty && !stopping {
                condition.wait()
            }
            let batch = inbox
            inbox.removeAll(keepingCapacity: true)
            let done = stopping && batch.isEmpty
            condition.unlock()
            if done { break }
            commit(batch)
        }
        let statistics = self.statistics
        logger.info(
            "journal writer stopped",
            metadata: ["commits": "\(statistics.commits)", "messages": "\(statistics.messages)"])
        condition.lock()
        exited = true
        let waiters = exitWaiters
        exitWaiters = []
        condition.unlock()
        for waiter in waiters { waiter.resume() }
    }

    /// Stores `batch` in one transaction, then completes every request of it.
    private func commit(_ batch: [Pending]) {
        var results: [Result<IntakeResult, JournalUnavailable>] = []
        results.reserveCapacity(batch.count)
        let backlogBefore = backlog
        do {
            try db.execute("BEGIN IMMEDIATE")
            for pending in batch {
                results.append(try store(pending.message))
            }
            try db.execute("COMMIT")
        } catch {
            if sqlite3_get_autocommit(db.handle) == 0 { try? db.execute("ROLLBACK") }
            backlog = backlogBefore
            logger.error("journal commit failed; the batch is answered 503", metadata: ["error": "\(error)", "batch.size": "\(batch.count)"])
            for pending in batch { pending.completion(.failure(.storage(error))) }
            return
        }
        let stored = results.count { if case .success(.stored) = $0 { true } else { false } }
        condition.lock()
        _statistics.commits += 1
        _statistics.messages += stored
        condition.unlock()
        for (pending, result) in zip(batch, results) { pending.completion(result) }
    }

    /// Stores one message inside the open transaction, or finds the message it repeats.
    private func store(_ message: IncomingMessage) throws(SQLiteError) -> Result<IntakeResult, JournalUnavailable> {
        if message.correlationIDWasSupplied {
            defer { findByCorrelationID.reset() }
            try findByCorrelationID.bind(1, message.correlationID)
            if try findByCorrelationID.step(), let route = findByCorrelationID.string(0) {
                return .success(
                    route == message.route
                        ? .duplicate(correlationID: message.correlationID, state: findByCorrelationID.string(1) ?? "queued")
                        : .conflict(correlationID: message.correlationID, otherRoute: route))
            }
        }
        if let key = message.idempotencyKey {
            defer { findByIdempotencyKey.reset() }
            try findByIdempotencyKey.bind(1, message.route)
            try findByIdempotencyKey.bind(2, key)
            try findByIdempotencyKey.bind(3, Timestamp.format(millisecondsSince1970: message.receivedAt - message.dedupWindowMilliseconds))
            if try findByIdempotencyKey.step(), let existing = findByIdempotencyKey.string(0) {
                return .success(.duplicate(correlationID: existing, state: findByIdempotencyKey.string(1) ?? "queued"))
            }
        }
        guard backlog < maxBacklog else { return .failure(.backlogFull(limit: maxBacklog)) }
        try insert.bind(1, message.correlationID)
        try insert.bind(2, message.route)
        try insert.bind(3, message.orderingKey)
        try insert.bind(4, message.idempotencyKey)
        try insert.bind(5, message.method)
        try insert.bind(6, message.path)
        try insert.bind(7, JSON.encode(headers: message.headers))
        try insert.bind(8, blob: message.body)
        try insert.bind(9, Timestamp.format(millisecondsSince1970: message.receivedAt))
        try insert.run()
        backlog += 1
        return .success(.stored(correlationID: message.correlationID))
    }
}
