import Foundation
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Synchronization
import WaypostCore
import WaypostJournal

/// The PostgreSQL journal's writer (SPEC §2, §12): messages submitted while a commit is under
/// way gather and are stored together by the next one, in one statement (`waypost_store`),
/// so that durability costs one round trip and one WAL flush per batch, not per message. A
/// request is completed only after its statement returned, which with `synchronous_commit =
/// on` means after PostgreSQL flushed its commit to disk: nothing is acknowledged that was not
/// committed. When the statement fails, or takes longer than `commitTimeout`, or the database
/// cannot be reached, the whole batch is answered ``JournalUnavailable/storage(_:)`` (a 503):
/// after a failure or a timeout it may still have been committed, and the source's retry is
/// stored again (at least once), but nothing is acknowledged that was not. The connection is
/// then dropped, and the next batch opens a new one.
///
/// The forwarder's state changes (attempts, outcomes, breakers) are recorded on a second
/// connection, batched the same way by another statement (`waypost_record`), without waiting
/// for the disk, as the SQLite journal's are. The two lanes never wait for each other: the
/// forwarder learns of a delivery only once it is committed, and its own changes to one
/// delivery keep their order on their lane.
public final class PostgresJournalWriter: JournalWriting, Sendable {
    public typealias Completion = @Sendable (Result<IntakeResult, JournalUnavailable>) -> Void
    public typealias UpdateCompletion = @Sendable (Result<Void, JournalError>) -> Void

    /// What one connection of the writer commits: new messages, or the forwarder's changes.
    private enum Lane {
        case messages, updates
    }

    private struct State {
        var messages: [(IncomingMessage, Completion)] = []
        var updates: [(DeliveryUpdate, UpdateCompletion?)] = []
        var waiters: [Lane: CheckedContinuation<Void, Never>] = [:]
        var stopping = false
        var storedObserver: (@Sendable ([StoredMessage]) -> Void)?
        var backlog = 0
        var statistics = Statistics()
        /// Why the last statement failed, until one succeeds.
        var trouble: String?
    }

    /// Counters since the writer started; `messages / commits` is the mean group-commit size.
    public struct Statistics: Sendable, Equatable {
        public var commits = 0
        public var messages = 0
        public var failedCommits = 0
    }

    private let connect: @Sendable () async throws -> PostgresConnection
    private let commitTimeout: Duration
    /// How often the backlog is counted again (replays by other processes add to it) and
    /// messages delivered longer than `retainDelivered` ago are deleted.
    private let recountInterval: Duration
    private let retainDelivered: Duration
    /// How long the writer waits with nothing to do before it checks the database is there.
    private let probeInterval: Duration
    private let commitDuration = Timer(label: "waypost_commit_duration_seconds")
    private let batchSize = Recorder(label: "waypost_commit_batch_size")
    private let maxBacklog: Int
    private let partition: @Sendable (IncomingMessage, PlannedDelivery) -> Int
    private let state = Mutex(State())
    private let logger: Logger

    /// A writer on the connections `connect` opens, to a journal whose schema is current
    /// (``PostgresSchema/migrate(_:logger:)``).
    ///
    /// - Parameters:
    ///   - commitTimeout: how long a batch's statement may take before its requests are answered
    ///     with an error and the connection is dropped.
    ///   - retainDelivered: how long messages whose every delivery ended are kept.
    ///   - recountInterval: how often the backlog (what `maxBacklog` limits) is counted again,
    ///     as the SQLite writer does (other processes' replays add to it), and messages past
    ///     `retainDelivered` are deleted.
    ///   - probeInterval: how long the writer waits with nothing to do before it checks that
    ///     the database answers (``trouble``, `/readyz`).
    ///   - partition: the partition of a message's delivery (its queue's); by default from its
    ///     route, destination and ordering key, or its row id (``QueuePartition/of(route:_:)``).
    public init(
        connect: @escaping @Sendable () async throws -> PostgresConnection, maxBacklog: Int,
        retainDelivered: Duration = .seconds(7 * 86_400), commitTimeout: Duration = .seconds(10), recountInterval: Duration = .seconds(60),
        probeInterval: Duration = .seconds(1),
        partition: @escaping @Sendable (IncomingMessage, PlannedDelivery) -> Int = { QueuePartition.of(route: $0.route, $1) },
        logger: Logger
    ) {
        self.connect = connect
        self.commitTimeout = commitTimeout
        self.recountInterval = recountInterval
        self.retainDelivered = retainDelivered
        self.probeInterval = probeInterval
        self.maxBacklog = maxBacklog
        self.partition = partition
        self.logger = logger
    }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// Why the database cannot take messages right now: the last statement failed (or the
    /// last check that it answers, made each `probeInterval` with nothing to do).
    public var trouble: String? { state.withLock { $0.trouble }.map { "the journal database cannot be used: \($0)" } }

    /// `observer` runs after every commit that stored new messages, with those messages in
    /// the batch's order: the forwarder takes them from memory rather than reading back what
    /// was just written. It must not block.
    public func onStored(_ observer: @escaping @Sendable ([StoredMessage]) -> Void) {
        state.withLock { $0.storedObserver = observer }
    }

    /// Hands `message` to the writer; `completion` runs once the statement holding it returned
    /// (or failed). It must not block.
    public func submit(_ message: IncomingMessage, completion: @escaping Completion) {
        guard enqueue(.messages, { $0.messages.append((message, completion)) }) else { return completion(.failure(.shuttingDown)) }
    }

    /// Records delivery state changes in the next batch; each completion, if given, runs once
    /// its statement returned (or failed).
    public func record(_ updates: [(DeliveryUpdate, UpdateCompletion?)]) {
        guard !updates.isEmpty, !enqueue(.updates, { $0.updates += updates }) else { return }
        for (_, completion) in updates { completion?(.failure(JournalError(.stopped, "the journal writer has stopped"))) }
    }

    /// Adds work to `lane`'s inbox and wakes it; false once stopping.
    private func enqueue(_ lane: Lane, _ add: (inout State) -> Void) -> Bool {
        let (accepted, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard !state.stopping else { return (false, nil) }
            add(&state)
            return (true, state.waiters.removeValue(forKey: lane))
        }
        waiter?.resume()
        return accepted
    }

    /// Stores batches until graceful shutdown (or ``shutdown()``); what was submitted before
    /// that is stored too.
    public func run() async {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.drain(.messages, \.messages, commit: self.storeMessages, fail: self.fail) }
                group.addTask { await self.drain(.updates, \.updates, commit: self.recordUpdates, fail: self.fail) }
            }
        } onGracefulShutdown: {
            self.shutdown()
        }
    }

    /// Commits `lane`'s batches on a connection of its own (opened again after a failure) until
    /// the writer stops with nothing left. The message lane also counts the backlog and prunes
    /// every `recountInterval`, and checks that the database answers after `probeInterval`
    /// with nothing to do.
    private func drain<Item>(
        _ lane: Lane, _ inbox: WritableKeyPath<State, [Item]>,
        commit: ([Item], PostgresConnection) async throws -> Void, fail: ([Item], any Error) -> Void
    ) async {
        var connection: PostgresConnection?
        var maintained = ContinuousClock.now
        while let batch = await nextBatch(lane, inbox) {
            let started = ContinuousClock.now
            do {
                let open: PostgresConnection
                if let connection, !connection.isClosed {
                    open = connection
                } else {
                    open = try await withTimeout(commitTimeout, late: { try? await $0.close() }) { try await self.open() }
                    connection = open
                    maintained = .now
                }
                if lane == .messages, ContinuousClock.now - maintained >= recountInterval {
                    try await withTimeout(commitTimeout) { try await self.maintain(open) }
                    maintained = .now
                }
                if batch.isEmpty {
                    _ = try await withTimeout(commitTimeout) { try await open.query("SELECT 1", logger: self.logger) }
                } else {
                    try await commit(batch, open)
                }
                if state.withLock({ $0.trouble.take() }) != nil { logger.notice("the journal database answers again") }
            } catch {
                fail(batch, error)
                try? await connection?.close()
                connection = nil
            }
            if !batch.isEmpty {
                commitDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
                batchSize.record(batch.count)
            }
        }
        try? await connection?.close()
        guard lane == .messages else { return }
        let statistics = statistics
        logger.notice(
            "journal writer stopped",
            metadata: [
                "commits": "\(statistics.commits)", "messages": "\(statistics.messages)",
                "failed_commits": "\(statistics.failedCommits)",
            ])
    }

    /// Stores `batch` with one statement, then answers its requests.
    private func storeMessages(_ batch: [(IncomingMessage, Completion)], on connection: PostgresConnection) async throws {
        let (rows, room) = (batch.map(\.0), state.withLock { maxBacklog - $0.backlog })
        let answered = try await withTimeout(commitTimeout) { try await self.store(rows, backlogRoom: room, on: connection) }
        complete(batch, answered)
    }

    /// Records `batch` with one statement, then runs its completions.
    private func recordUpdates(_ batch: [(DeliveryUpdate, UpdateCompletion?)], on connection: PostgresConnection) async throws {
        let changes = batch.map(\.0)
        let ended = try await withTimeout(commitTimeout) { try await self.record(changes, on: connection) }
        // Never below zero: replays by other processes are counted only at the next recount.
        state.withLock { $0.backlog = max(0, $0.backlog - ended) }
        for (_, completion) in batch { completion?(.success(())) }
    }

    /// A new connection with `synchronous_commit = on` (whatever the database's default), and
    /// the backlog counted on it. From PostgreSQL 14 on, the server also checks every second
    /// that the connection is still there, so a statement the writer gave up on (and closed
    /// the connection of) is rolled back rather than committed unseen.
    private func open() async throws -> PostgresConnection {
        let connection = try await connect()
        do {
            try await connection.query("SET synchronous_commit = on", logger: logger)
            try await connection.query(
                """
                SELECT set_config('client_connection_check_interval', '1s', false)
                WHERE current_setting('server_version_num')::integer >= 140000
                """, logger: logger)
            try await countBacklog(on: connection)
            return connection
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Counts the backlog again, and deletes (a thousand at a time) the messages whose every
    /// delivery ended before `retainDelivered`.
    private func maintain(_ connection: PostgresConnection) async throws {
        try await countBacklog(on: connection)
        let cutoff = Int64((Date().timeIntervalSince1970 * 1000).rounded()) - retainDelivered.milliseconds
        try await connection.query(PostgresSchema.prune(before: cutoff), logger: logger)
    }

    /// Counts the messages waiting for delivery: what `maxBacklog` limits.
    private func countBacklog(on connection: PostgresConnection) async throws {
        let rows = try await connection.query(
            "SELECT count(DISTINCT message_id)::bigint FROM deliveries WHERE state IN ('queued', 'in_flight')", logger: logger)
        for try await count in rows.decode(Int.self) { state.withLock { $0.backlog = count } }
    }

    /// Stops taking messages; ``run()`` returns once those already submitted are stored.
    public func shutdown() {
        let waiters = state.withLock { state in
            state.stopping = true
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    /// What has been submitted to `lane`, once there is something; nil once stopping with
    /// nothing left. The message lane gets nothing after `probeInterval` with nothing submitted.
    private func nextBatch<Item>(_ lane: Lane, _ inbox: WritableKeyPath<State, [Item]>) async -> [Item]? {
        let take = { (state: inout State) -> [Item]? in
            if !state[keyPath: inbox].isEmpty {
                defer { state[keyPath: inbox].removeAll(keepingCapacity: true) }
                return state[keyPath: inbox]
            }
            return state.stopping ? nil : []
        }
        switch state.withLock({ take(&$0) }) {
        case nil: return nil
        case let batch? where !batch.isEmpty: return batch
        default: break
        }
        let idle =
            lane == .messages
            ? Task { [probeInterval] in
                try await Task.sleep(for: probeInterval)
                self.state.withLock { $0.waiters.removeValue(forKey: lane) }?.resume()
            } : nil
        defer { idle?.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state in
                guard state[keyPath: inbox].isEmpty && !state.stopping else { return true }
                state.waiters[lane] = continuation
                return false
            }
            if now { continuation.resume() }
        }
        return state.withLock { take(&$0) }
    }

    /// Stores `messages` with one statement; their results, in order.
    private func store(
        _ messages: [IncomingMessage], backlogRoom: Int, on connection: PostgresConnection
    ) async throws -> (results: [Result<IntakeResult, JournalUnavailable>], stored: [StoredMessage]) {
        let rows = try await connection.query(Self.statement(messages, backlogRoom: backlogRoom, partition: partition), logger: logger)
        var results: [Result<IntakeResult, JournalUnavailable>] = []
        var stored: [StoredMessage] = []
        results.reserveCapacity(messages.count)
        for try await (outcome, correlationID, found, deliveryIDs) in rows.decode((String, String, String?, [Int64]?).self) {
            guard results.count < messages.count else { break }
            let message = messages[results.count]
            switch outcome {
            case "stored":
                guard let deliveryIDs, deliveryIDs.count == message.deliveries.count else {
                    throw PostgresJournalError(description: "waypost_store stored \(correlationID) without its deliveries")
                }
                results.append(.success(.stored(correlationID: correlationID)))
                stored.append(StoredMessage(deliveryIDs: deliveryIDs, message: message))
            case "duplicate":
                results.append(
                    .success(.duplicate(correlationID: correlationID, state: found.flatMap(MessageState.init(rawValue:)) ?? .queued)))
            case "conflict":
                results.append(.success(.conflict(correlationID: correlationID, otherRoute: found ?? "")))
            default:
                results.append(.failure(.backlogFull(limit: maxBacklog)))
            }
        }
        guard results.count == messages.count else {
            throw PostgresJournalError(description: "waypost_store answered \(results.count) rows for \(messages.count) messages")
        }
        return (results, stored)
    }

    /// Completes the requests of a committed batch, then hands its new messages to the observer.
    private func complete(
        _ batch: [(IncomingMessage, Completion)], _ answered: (results: [Result<IntakeResult, JournalUnavailable>], stored: [StoredMessage])
    ) {
        let results = answered.results
        var stored = 0
        var waiting = 0
        for ((message, _), result) in zip(batch, results) {
            guard case .success(.stored) = result else { continue }
            stored += 1
            if message.deliveries.contains(where: { !$0.filtered }) { waiting += 1 }
        }
        let observer = state.withLock { state in
            state.backlog += waiting
            state.statistics.commits += 1
            state.statistics.messages += stored
            return state.storedObserver
        }
        for ((_, completion), result) in zip(batch, results) { completion(result) }
        if !answered.stored.isEmpty { observer?(answered.stored) }
    }

    /// Answers every request of a batch that was not committed (or may not have been).
    private func fail(_ batch: [(IncomingMessage, Completion)], _ error: any Error) {
        let failure = failed(error, batch.isEmpty ? nil : "journal commit failed; the batch is answered 503", size: batch.count)
        for (_, completion) in batch { completion(.failure(.storage(failure))) }
    }

    /// Fails every change of a batch that was not committed (or may not have been).
    private func fail(_ batch: [(DeliveryUpdate, UpdateCompletion?)], _ error: any Error) {
        let failure = failed(error, "cannot record delivery changes; the forwarder records them again", size: batch.count)
        for (_, completion) in batch { completion?(.failure(failure)) }
    }

    /// Logs a failed statement with `message` (nil: the check that the database answers), and
    /// keeps it as the trouble until a statement succeeds.
    private func failed(_ error: any Error, _ message: Logger.Message?, size: Int) -> JournalError {
        let failure = JournalError(.database, PostgresJournalError(error).description)
        let first = state.withLock { state in
            state.statistics.failedCommits += 1
            defer { state.trouble = failure.message }
            return state.trouble == nil
        }
        if let message {
            logger.error(message, metadata: ["error": "\(failure)", "batch.size": "\(size)"])
        } else if first {
            logger.error("the journal database does not answer", metadata: ["error": "\(failure)"])
        }
        return failure
    }

    /// Records `updates` with one statement; how many messages stopped waiting.
    private func record(_ updates: [DeliveryUpdate], on connection: PostgresConnection) async throws -> Int {
        let rows = try await connection.query(Self.statement(updates), logger: logger)
        var count = 0
        var ended = 0
        for try await stopped in rows.decode(Bool.self) {
            count += 1
            if stopped { ended += 1 }
        }
        guard count == updates.count else {
            throw PostgresJournalError(description: "waypost_record answered \(count) rows for \(updates.count) changes")
        }
        return ended
    }

    /// The `waypost_record` call for `updates`, one array per column, NULL where a kind of change
    /// has no such value.
    static func statement(_ updates: [DeliveryUpdate]) -> PostgresQuery {
        struct Change {
            var kind: String
            var delivery: Int64 = 0
            var attempt: Int32 = 0
            var cycleAttempt: Int32?
            var at: Int64
            var finished: FinishedAttempt?
            var key: String?
            var epoch: Int64?
        }
        let changes = updates.map { update in
            switch update {
            case .started(let id, let attempt, let cycleAttempt, let at, let epoch):
                Change(kind: "started", delivery: id, attempt: Int32(attempt), cycleAttempt: Int32(cycleAttempt), at: at, epoch: epoch)
            case .finished(let f):
                Change(
                    kind: "finished", delivery: f.deliveryID, attempt: Int32(f.attempt), cycleAttempt: f.cycleAttempt.map(Int32.init),
                    at: f.atMilliseconds, finished: f, epoch: f.epoch)
            case .breaker(let key, let since):
                Change(kind: since == nil ? "closed" : "tripped", at: since ?? 0, key: key)
            }
        }
        let finished = changes.map(\.finished)
        var binds = PostgresBindings(capacity: 18)
        binds.append(changes.map(\.kind))
        binds.append(changes.map(\.delivery))
        binds.append(changes.map(\.attempt))
        binds.append(NullableArray(changes.map(\.cycleAttempt)))
        binds.append(changes.map(\.at))
        binds.append(NullableArray(finished.map { $0?.state.rawValue }))
        binds.append(NullableArray(finished.map { $0?.nextAttemptAt }))
        binds.append(NullableArray(finished.map { $0?.lastError }))
        binds.append(NullableArray(finished.map { $0?.durationMilliseconds }))
        binds.append(NullableArray(finished.map { $0?.response.map { Int32($0.status) } }))
        binds.append(NullableArray(finished.map { $0?.error }))
        binds.append(NullableArray(finished.map { $0?.response.map { JSON.encode(headers: $0.headers) } }))
        binds.append(NullableArray(finished.map { $0?.response.map { ByteBuffer(bytes: $0.body) } }))
        binds.append(NullableArray(finished.map { $0?.sentBody.map { Int64($0.bytes) } }))
        binds.append(NullableArray(finished.map { $0?.sentBody?.sha256 }))
        binds.append(NullableArray(changes.map(\.key)))
        binds.append(NullableArray(changes.map(\.epoch)))
        binds.append(NullableArray(finished.map { $0?.announce }))
        return PostgresQuery(unsafeSQL: "SELECT * FROM waypost_record(\((1...18).map { "$\($0)" }.joined(separator: ", ")))", binds: binds)
    }

    /// The statement that stores `messages`, its arrays bound as parameters: `waypost_store_new`
    /// when they are all new messages with room in the backlog, `waypost_store` otherwise.
    static func statement(
        _ messages: [IncomingMessage], backlogRoom: Int, partition: (IncomingMessage, PlannedDelivery) -> Int
    ) -> PostgresQuery {
        let deliveries = messages.enumerated().flatMap { index, message in message.deliveries.map { (index + 1, message, $0) } }
        let waiting = messages.count { $0.deliveries.contains { !$0.filtered } }
        let new = waiting <= backlogRoom && messages.allSatisfy { !$0.correlationIDWasSupplied && $0.idempotencyKey == nil }
        var binds = PostgresBindings(capacity: 18)
        binds.append(messages.map(\.correlationID))
        if !new { binds.append(messages.map(\.correlationIDWasSupplied)) }
        binds.append(messages.map(\.route))
        if !new {
            binds.append(NullableArray(messages.map(\.idempotencyKey)))
            binds.append(messages.map { $0.receivedAt - $0.dedupWindowMilliseconds })
        }
        binds.append(messages.map(\.method))
        binds.append(messages.map(\.path))
        binds.append(messages.map(\.headersJSON))
        binds.append(messages.map { ByteBuffer(bytes: $0.body) })
        binds.append(messages.map(\.receivedAt))
        binds.append(NullableArray(messages.map(\.clientAddress)))
        binds.append(NullableArray(messages.map(\.traceParent)))
        binds.append(new ? deliveries.map { Int32($0.0) } : messages.map { Int32($0.deliveries.count) })
        binds.append(deliveries.map(\.2.destination))
        binds.append(NullableArray(deliveries.map(\.2.orderingKey)))
        binds.append(deliveries.map { Int32(partition($0.1, $0.2)) })
        binds.append(deliveries.map(\.2.filtered))
        if !new { binds.append(Int64(backlogRoom)) }
        let parameters = (1...binds.count).map { "$\($0)" }.joined(separator: ", ")
        return PostgresQuery(unsafeSQL: "SELECT * FROM \(new ? "waypost_store_new" : "waypost_store")(\(parameters))", binds: binds)
    }
}

/// `body`'s result, or ``PostgresJournalError`` once `timeout` has passed, whichever comes first.
/// A query on a connection that died may never return: it is left behind, not awaited. A
/// result that arrives after the timeout goes to `late` (a connection opened too late, to be
/// closed).
func withTimeout<T: Sendable>(
    _ timeout: Duration, late: (@Sendable (T) async -> Void)? = nil, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let once = Once()
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let timer = Task {
            try await Task.sleep(for: timeout)
            if once.first() {
                continuation.resume(throwing: PostgresJournalError(description: "PostgreSQL did not answer within \(timeout)"))
            }
        }
        Task {
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            timer.cancel()
            if once.first() {
                continuation.resume(with: result)
            } else if case .success(let value) = result {
                await late?(value)
            }
        }
    }
}

/// True the first time ``first()`` is called, false after.
private final class Once: Sendable {
    private let done = Mutex(false)

    func first() -> Bool {
        done.withLock { done in
            defer { done = true }
            return !done
        }
    }
}
