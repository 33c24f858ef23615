import CSQLite
import Foundation
import Logging
import Metrics
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
///
/// A transaction that holds only the forwarder's state changes (attempts, outcomes) and no
/// message is committed without an fsync of its own (`synchronous=NORMAL` for that commit):
/// nobody is answered on its strength, a process crash loses nothing (the WAL is in the OS's
/// cache), and it reaches the disk with the next transaction that holds a message, or the
/// next checkpoint, normally within half a second. A power loss before then loses only those
/// outcome records, and their messages are sent again: delivery stays at least once. Under
/// load, this keeps the outcome commits from adding an fsync in front of every intake commit.
public final class JournalWriter: JournalWriting, @unchecked Sendable {
    // @unchecked Sendable: `inbox`, `started`, `stopping`, `exited` and `statistics` are guarded by
    // `condition`; `db`, the statements and `backlog` are touched only by the writer thread.

    enum Work {
        case store(IncomingMessage, @Sendable (Result<IntakeResult, JournalUnavailable>) -> Void)
        case update(DeliveryUpdate, (@Sendable (Result<Void, JournalError>) -> Void)?)
    }

    private let condition = NSCondition()
    private var inbox: [Work] = []
    private var storedObserver: (@Sendable ([StoredMessage]) -> Void)?
    private var started = false
    private var stopping = false
    private var exited = false
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []

    private let db: SQLiteConnection
    private let checkpointer: Checkpointer
    /// `durability: full`: commits that hold a message fsync (`synchronous=FULL`); the others
    /// do not (`synchronous=NORMAL`, see above). `relaxed`: none do.
    private let durability: Durability
    /// The connection's `synchronous` setting is FULL now.
    private var synchronousFull: Bool
    private let path: String
    /// The journal file's device and inode when it was opened: a file removed or replaced
    /// while the server runs must stop the intake, not take messages that a restart loses.
    private let fileIdentity: FileIdentity?
    /// An exclusive `flock` on `PATH-lock`, held while the writer runs: two servers on one
    /// journal would deliver every message twice and out of order.
    private let lockDescriptor: Int32
    private let insert: Statement
    private let insertDelivery: Statement
    private let othersWaiting: Statement
    private let findByCorrelationID: Statement
    private let findByIdempotencyKey: Statement
    private let startAttempt: Statement
    private let openAttempt: Statement
    private let closeAttempt: Statement
    private let finishDelivery: Statement
    private let finishDeliveryWithResponse: Statement
    private let bumpReplayGeneration: Statement
    private let setTripped: Statement
    private let clearTripped: Statement
    private let pruneDelivered: Statement
    private let countBacklog: Statement
    private let retainDeliveredMilliseconds: Int64
    /// How often the writer prunes old deliveries (`retain_delivered`) and recounts the backlog
    /// (which other processes change by replaying).
    private let maintenanceInterval: TimeInterval
    private let maxBacklog: Int
    private var backlog: Int
    private var _statistics = Statistics()
    private let commitDuration = Timer(label: "waypost_commit_duration_seconds")
    private let batchSize = Recorder(label: "waypost_commit_batch_size")
    private let logger: Logger

    /// Opens (creating and migrating if needed) the journal at `path`, locks it and prepares the
    /// statements: everything that can fail. The writer thread starts with ``run()`` (or
    /// ``start()``); what is submitted before waits for it.
    ///
    /// - Throws: ``JournalError`` when the file cannot be opened or locked, is not a journal, or
    ///   has a newer schema.
    ///
    /// Messages left `in_flight` by a crash are `queued` again, in their order, and their open
    /// attempts are marked interrupted: delivery is at least once.
    public init(
        path: String, durability: Durability, maxBacklog: Int, retainDelivered: Duration = .seconds(7 * 86400),
        maintenanceInterval: Duration = .seconds(60), busyTimeoutMilliseconds: Int = 5000, logger: Logger
    ) throws(JournalError) {
        self.path = path
        self.durability = durability
        synchronousFull = durability == .full
        lockDescriptor = open(path + "-lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lockDescriptor >= 0 else {
            throw JournalError(.fileSystem, "cannot create \(path)-lock: \(String(cString: strerror(errno)))")
        }
        guard flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(lockDescriptor)
            throw JournalError(.inUse, "the journal \(path) is in use by another Waypost server")
        }
        do throws(JournalError) {
            db = try SQLiteConnection(path: path)
            try Schema.prepareWriter(db, durability: durability, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
            // Checkpoints run on their own thread; commits never wait for them.
            try db.execute("PRAGMA wal_autocheckpoint = 0")
            // After the schema is in place: SQLite creates a new file only when it first writes.
            fileIdentity = FileIdentity(path: path)
            try db.execute(
                """
                BEGIN IMMEDIATE;
                UPDATE attempts SET error = 'interrupted: Waypost stopped during the attempt'
                    WHERE duration_ms IS NULL AND status IS NULL AND error IS NULL;
                UPDATE deliveries SET state = 'queued' WHERE state = 'in_flight';
                DELETE FROM control WHERE name LIKE 'tripped:%';
                COMMIT;
                """)
            insert = try db.prepare(
                """
                INSERT INTO messages (
                    correlation_id, route, idempotency_key, method, path, headers, body, received_at, client_address, trace_parent)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                """)
            insertDelivery = try db.prepare(
                """
                INSERT INTO deliveries (message_id, route, destination, ordering_key, state, updated_at)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                """)
            othersWaiting = try db.prepare(
                """
                SELECT count(*) FROM deliveries
                WHERE message_id = (SELECT message_id FROM deliveries WHERE id = ?1) AND id <> ?1 AND state IN ('queued', 'in_flight')
                """)
            findByCorrelationID = try db.prepare("SELECT route, (\(Schema.messageStateSQL)) FROM messages m WHERE correlation_id = ?1")
            findByIdempotencyKey = try db.prepare(
                """
                SELECT correlation_id, (\(Schema.messageStateSQL)) FROM messages m
                WHERE route = ?1 AND idempotency_key = ?2 AND received_at >= ?3
                ORDER BY id DESC LIMIT 1
                """)
            startAttempt = try db.prepare(
                "UPDATE deliveries SET state = 'in_flight', attempts = ?2, cycle_attempts = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'queued'"
            )
            openAttempt = try db.prepare("INSERT OR REPLACE INTO attempts (delivery_id, attempt, started_at) VALUES (?1, ?2, ?3)")
            closeAttempt = try db.prepare(
                """
                INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status, error, body_bytes, body_sha256)
                VALUES (?1, ?2, ?6, ?3, ?4, ?5, ?7, ?8)
                ON CONFLICT (delivery_id, attempt) DO UPDATE SET duration_ms = ?3, status = ?4, error = ?5, body_bytes = ?7, body_sha256 = ?8
                """)
            finishDelivery = try db.prepare(
                """
                UPDATE deliveries SET state = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5,
                    delivered_at = CASE WHEN ?2 = 'delivered' THEN ?5 ELSE delivered_at END,
                    attempts = max(attempts, ?9), cycle_attempts = coalesce(?10, cycle_attempts)
                WHERE id = ?1 AND (state <> 'skipped' OR ?2 IN ('delivered', 'skipped'))
                """)
            finishDeliveryWithResponse = try db.prepare(
                """
                UPDATE deliveries SET state = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5,
                    delivered_at = CASE WHEN ?2 = 'delivered' THEN ?5 ELSE delivered_at END,
                    response_status = ?6, response_headers = ?7, response_body = ?8,
                    attempts = max(attempts, ?9), cycle_attempts = coalesce(?10, cycle_attempts)
                WHERE id = ?1 AND (state <> 'skipped' OR ?2 IN ('delivered', 'skipped'))
                """)
            bumpReplayGeneration = try db.prepare(Schema.bumpReplayGeneration)
            setTripped = try db.prepare("INSERT OR REPLACE INTO control (name, value) VALUES ('tripped:' || ?1, ?2)")
            clearTripped = try db.prepare("DELETE FROM control WHERE name = 'tripped:' || ?1")
            pruneDelivered = try db.prepare(Schema.pruneSQL)
            countBacklog = try db.prepare(Self.backlogSQL)
            retainDeliveredMilliseconds = retainDelivered.milliseconds
            self.maintenanceInterval = Double(maintenanceInterval.milliseconds) / 1000
            backlog = 0
            self.maxBacklog = maxBacklog
            self.logger = logger
            backlog = Int(try db.scalarInt(Self.backlogSQL) ?? 0)
            checkpointer = try Checkpointer(path: path, logger: logger)
        } catch {
            close(lockDescriptor)
            throw error
        }
    }

    /// Starts the writer thread (and the checkpointer's), once.
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard !started else { return }
        started = true
        checkpointer.start()
        startDedicatedThread(named: "wp-journal") { [self] in writerLoop() }
    }

    /// Messages waiting for delivery: what `max_backlog` limits.
    private static let backlogSQL = "SELECT count(DISTINCT message_id) FROM deliveries WHERE state IN ('queued', 'in_flight')"

    /// Counters since the writer started.
    public struct Statistics: Sendable, Equatable {
        /// Transactions committed.
        public var commits = 0
        /// Those of them that held intake requests (the others hold only delivery state
        /// changes): `messages / intakeCommits` is the mean group-commit size.
        public var intakeCommits = 0
        /// Messages stored by those transactions.
        public var messages = 0
        /// Transactions committed without an fsync of their own: all under `durability:
        /// relaxed`, those without a message under `full`.
        public var commitsWithoutFsync = 0
        /// The writer's catch-up checkpoints that copied the whole WAL, so the next
        /// transaction could start it over (see ``Checkpointer``).
        public var fullCheckpoints = 0
        /// Whether the last transaction failed (the journal is not writable right now).
        public var lastCommitFailed = false
    }

    /// Counters since the writer started; `messages / intakeCommits` is the mean group-commit size.
    public var statistics: Statistics {
        condition.lock()
        defer { condition.unlock() }
        return _statistics
    }

    /// Why the journal cannot take messages right now: its last transaction failed.
    public var trouble: String? {
        statistics.lastCommitFailed ? "the journal's last commit failed (disk full or I/O error?)" : nil
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
        inbox.append(.store(message, completion))
        condition.signal()
        condition.unlock()
    }

    /// Records several state changes at once (one wake-up of the writer for all of them).
    public func record(_ updates: [(DeliveryUpdate, (@Sendable (Result<Void, JournalError>) -> Void)?)]) {
        guard !updates.isEmpty else { return }
        condition.lock()
        if stopping {
            condition.unlock()
            for (_, completion) in updates {
                completion?(.failure(JournalError(.stopped, "the journal writer has stopped")))
            }
            return
        }
        for (update, completion) in updates { inbox.append(.update(update, completion)) }
        condition.signal()
        condition.unlock()
    }

    /// `observer` runs on the writer thread after every commit that stored new messages, with
    /// those messages in row order: the forwarder takes them from memory rather than reading
    /// back what was just written. Row ids can be lower than earlier ones once old rows were
    /// purged, as SQLite reuses the largest freed ids. It must not block.
    public func onStored(_ observer: @escaping @Sendable ([StoredMessage]) -> Void) {
        condition.lock()
        storedObserver = observer
        condition.unlock()
    }

    /// Runs until graceful shutdown, then stores what is already in the inbox and stops.
    public func run() async throws {
        start()
        await untilGracefulShutdown(then: shutdown)
    }

    /// Stops taking requests, commits those already submitted, and waits for the thread to end
    /// (starting it first if it never ran, so that nothing submitted is left unanswered).
    public func shutdown() async {
        start()
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
        var nextMaintenance = Date()
        while true {
            condition.lock()
            while inbox.isEmpty && !stopping && Date() < nextMaintenance {
                _ = condition.wait(until: nextMaintenance)
            }
            let batch = inbox
            inbox.removeAll(keepingCapacity: true)
            let done = stopping && batch.isEmpty
            condition.unlock()
            if done { break }
            if batch.isEmpty {
                maintain()
                nextMaintenance = Date().addingTimeInterval(maintenanceInterval)
            } else {
                commit(batch)
            }
        }
        let statistics = self.statistics
        logger.notice(
            "journal writer stopped",
            metadata: [
                "commits": "\(statistics.commits)", "intake_commits": "\(statistics.intakeCommits)",
                "commits_without_fsync": "\(statistics.commitsWithoutFsync)", "messages": "\(statistics.messages)",
                "full_checkpoints": "\(statistics.fullCheckpoints)",
            ])
        checkpointer.stop()
        close(lockDescriptor)
        condition.lock()
        exited = true
        let waiters = exitWaiters
        exitWaiters = []
        condition.unlock()
        for waiter in waiters { waiter.resume() }
    }

    /// Applies `batch` in one transaction, then completes every request of it.
    private func commit(_ batch: [Work]) {
        let started = ContinuousClock.now
        defer {
            commitDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
            batchSize.record(batch.count)
        }
        var results: [Result<IntakeResult, JournalUnavailable>?] = []
        results.reserveCapacity(batch.count)
        var stored: [StoredMessage] = []
        let backlogBefore = backlog
        let holdsMessages = batch.contains { if case .store = $0 { true } else { false } }
        do throws(JournalError) {
            guard FileIdentity(path: path) == fileIdentity else {
                throw JournalError(
                    .fileSystem, "the journal file \(path) was removed or replaced while Waypost ran; put it back, or restart Waypost")
            }
            let full = durability == .full && holdsMessages
            if full != synchronousFull {
                try db.execute("PRAGMA synchronous = \(full ? "FULL" : "NORMAL")")
                synchronousFull = full
            }
            try db.transaction { () throws(JournalError) in
                for work in batch {
                    switch work {
                    case .store(let message, _):
                        var deliveries: [Int64] = []
                        let result = try store(message, deliveryIDs: &deliveries)
                        if case .success(.stored) = result {
                            stored.append(StoredMessage(deliveryIDs: deliveries, message: message))
                        }
                        results.append(result)
                    case .update(let update, _):
                        try apply(update)
                        results.append(nil)
                    }
                }
            }
        } catch {
            backlog = backlogBefore
            condition.lock()
            _statistics.lastCommitFailed = true
            condition.unlock()
            logger.error(
                "journal commit failed; the batch is answered 503", metadata: ["error": "\(error)", "batch.size": "\(batch.count)"])
            for work in batch {
                switch work {
                case .store(_, let completion): completion(.failure(.storage(error)))
                case .update(_, let completion): completion?(.failure(error))
                }
            }
            return
        }
        condition.lock()
        _statistics.commits += 1
        if holdsMessages { _statistics.intakeCommits += 1 }
        if !synchronousFull { _statistics.commitsWithoutFsync += 1 }
        _statistics.messages += stored.count
        _statistics.lastCommitFailed = false
        let observer = storedObserver
        condition.unlock()
        for (work, result) in zip(batch, results) {
            switch work {
            case .store(_, let completion): completion(result!)
            case .update(_, let completion): completion?(.success(()))
            }
        }
        if !stored.isEmpty { observer?(stored) }
        if checkpointer.takeCatchUpCue() { catchUpCheckpoint() }
    }

    /// Copies into the database file what was committed since the checkpointer's last round,
    /// so the next transaction starts the WAL over (see ``Checkpointer``).
    private func catchUpCheckpoint() {
        do {
            if let result = try db.checkpointPassive(), result.frames == result.copied {
                condition.lock()
                _statistics.fullCheckpoints += 1
                condition.unlock()
            }
        } catch {
            logger.warning("journal checkpoint failed", metadata: ["error": "\(error)"])
        }
    }

    private func apply(_ update: DeliveryUpdate) throws(JournalError) {
        switch update {
        case .started(let id, let attempt, let cycleAttempt, let at, _):
            let timestamp = Timestamp.format(millisecondsSince1970: at)
            try startAttempt.bind(1, id)
            try startAttempt.bind(2, Int64(attempt))
            try startAttempt.bind(3, Int64(cycleAttempt))
            try startAttempt.bind(4, timestamp)
            try startAttempt.run()
            try openAttempt.bind(1, id)
            try openAttempt.bind(2, Int64(attempt))
            try openAttempt.bind(3, timestamp)
            try openAttempt.run()
        case .finished(let f):
            try closeAttempt.bind(1, f.deliveryID)
            try closeAttempt.bind(2, Int64(f.attempt))
            try closeAttempt.bind(3, f.durationMilliseconds)
            try closeAttempt.bind(4, f.response.map { Int64($0.status) })
            try closeAttempt.bind(5, f.error)
            try closeAttempt.bind(6, Timestamp.format(millisecondsSince1970: f.atMilliseconds - f.durationMilliseconds))
            try closeAttempt.bind(7, f.sentBody.map { Int64($0.bytes) })
            try closeAttempt.bind(8, f.sentBody?.sha256)
            try closeAttempt.run()
            try finish(f, state: f.state, nextAttemptAt: f.nextAttemptAt)
            var state = f.state
            if db.changes == 0 {
                // An operator skipped the delivery during this attempt, before its start was
                // recorded: the skip stands (no retry, no failure), unless the upstream has
                // the message now. The forwarder, which may have queued a retry, is told to
                // reload its queues.
                try finish(f, state: .skipped, nextAttemptAt: nil)
                if db.changes == 1 {
                    state = .skipped
                    try bumpReplayGeneration.run()
                }
            }
            if state != .queued, try othersWaiting(f.deliveryID) == 0 { backlog -= 1 }
        case .breaker(let key, let since?):
            try setTripped.bind(1, key)
            try setTripped.bind(2, since)
            try setTripped.run()
        case .breaker(let key, nil):
            try clearTripped.bind(1, key)
            try clearTripped.run()
        }
    }

    private func finish(_ f: FinishedAttempt, state: MessageState, nextAttemptAt: Int64?) throws(JournalError) {
        let statement = f.response == nil ? finishDelivery : finishDeliveryWithResponse
        try statement.bind(1, f.deliveryID)
        try statement.bind(2, state.rawValue)
        try statement.bind(3, nextAttemptAt.map { Timestamp.format(millisecondsSince1970: $0) })
        try statement.bind(4, f.lastError)
        try statement.bind(5, Timestamp.format(millisecondsSince1970: f.atMilliseconds))
        try statement.bind(9, Int64(f.attempt))
        try statement.bind(10, f.cycleAttempt.map(Int64.init))
        if let response = f.response {
            try statement.bind(6, Int64(response.status))
            try statement.bind(7, JSON.encode(headers: response.headers))
            try statement.bind(8, blob: response.body)
        }
        try statement.run()
    }

    /// Deletes deliveries older than `retain_delivered`, a thousand rows per transaction so
    /// the intake never waits long, and recounts the backlog.
    private func maintain() {
        let cutoff = Timestamp.format(millisecondsSince1970: Int64(Date().timeIntervalSince1970 * 1000) - retainDeliveredMilliseconds)
        do {
            var deleted = 0
            repeat {
                try pruneDelivered.bind(1, cutoff)
                try pruneDelivered.run()
                deleted = db.changes
            } while deleted == 1000
            backlog = try recountBacklog()
        } catch {
            logger.error("journal maintenance failed", metadata: ["error": "\(error)"])
        }
    }

    /// The deliveries of the message of delivery `id` that wait, but that one.
    private func othersWaiting(_ id: Int64) throws(JournalError) -> Int64 {
        defer { othersWaiting.reset() }
        try othersWaiting.bind(1, id)
        _ = try othersWaiting.step()
        return othersWaiting.int64(0)
    }

    private func recountBacklog() throws(JournalError) -> Int {
        defer { countBacklog.reset() }
        _ = try countBacklog.step()
        return Int(countBacklog.int64(0))
    }

    /// Stores one message and its deliveries inside the open transaction (their row ids in
    /// `deliveryIDs`, in the message's order), or finds the message it repeats.
    private func store(
        _ message: IncomingMessage, deliveryIDs: inout [Int64]
    ) throws(JournalError) -> Result<IntakeResult, JournalUnavailable> {
        if message.correlationIDWasSupplied {
            defer { findByCorrelationID.reset() }
            try findByCorrelationID.bind(1, message.correlationID)
            if try findByCorrelationID.step(), let route = findByCorrelationID.string(0) {
                return .success(
                    route == message.route
                        ? .duplicate(correlationID: message.correlationID, state: JournalReader.state(findByCorrelationID, 1))
                        : .conflict(correlationID: message.correlationID, otherRoute: route))
            }
        }
        if let key = message.idempotencyKey {
            defer { findByIdempotencyKey.reset() }
            try findByIdempotencyKey.bind(1, message.route)
            try findByIdempotencyKey.bind(2, key)
            try findByIdempotencyKey.bind(3, Timestamp.format(millisecondsSince1970: message.receivedAt - message.dedupWindowMilliseconds))
            if try findByIdempotencyKey.step(), let existing = findByIdempotencyKey.string(0) {
                return .success(.duplicate(correlationID: existing, state: JournalReader.state(findByIdempotencyKey, 1)))
            }
        }
        let waits = message.deliveries.contains { !$0.filtered }
        guard !waits || backlog < maxBacklog else { return .failure(.backlogFull(limit: maxBacklog)) }
        let receivedAt = Timestamp.format(millisecondsSince1970: message.receivedAt)
        try insert.bind(1, message.correlationID)
        try insert.bind(2, message.route)
        try insert.bind(3, message.idempotencyKey)
        try insert.bind(4, message.method)
        try insert.bind(5, message.path)
        try insert.bind(6, message.headersJSON)
        try insert.bind(7, blob: message.body)
        try insert.bind(8, receivedAt)
        try insert.bind(9, message.clientAddress)
        try insert.bind(10, message.traceParent)
        try insert.run()
        let messageID = sqlite3_last_insert_rowid(db.handle)
        for delivery in message.deliveries {
            try insertDelivery.bind(1, messageID)
            try insertDelivery.bind(2, message.route)
            try insertDelivery.bind(3, delivery.destination)
            try insertDelivery.bind(4, delivery.orderingKey)
            try insertDelivery.bind(5, delivery.filtered ? MessageState.filtered.rawValue : MessageState.queued.rawValue)
            try insertDelivery.bind(6, receivedAt)
            try insertDelivery.run()
            deliveryIDs.append(sqlite3_last_insert_rowid(db.handle))
        }
        if waits { backlog += 1 }
        return .success(.stored(correlationID: message.correlationID))
    }
}

/// A file's device and inode number.
struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64

    /// Nil when there is no file at `path`.
    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}
