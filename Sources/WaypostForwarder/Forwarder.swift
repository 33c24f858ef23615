import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import WaypostCore
import WaypostJournal

/// Delivers the journal to the upstreams (SPEC §3).
///
/// One thread runs the delivery loop: it takes the messages the ``JournalWriter`` has just
/// committed into each route's ``RouteQueues`` (or pages them from the journal, when the
/// route has fallen behind, after a restart or an operator's replay), sends what the queues
/// release through its own ``CurlMulti``, turns each attempt's end into a ``Verdict`` with
/// the route's ``RetryPolicy``, and hands every state change to the ``JournalWriter``, which
/// batches them with the intake's commits. The loop sleeps in `curl_multi_poll` until an
/// upstream answers, new messages are committed, a retry falls due, or half a second passes
/// (when it checks whether an operator replayed or skipped messages): an attempt starts and
/// ends on this one thread.
public final class Forwarder: Service, @unchecked Sendable {
    // @unchecked Sendable: `shared` is behind its lock and `multi.waker` is thread-safe;
    // everything else is touched only by the delivery thread.

    /// Messages held in memory per route: the journal is paged, never loaded whole.
    public static let pageSize = 1000
    /// Body bytes held in memory for messages handed over by the writer: those waiting for the
    /// loop (``Shared/stored``) and, separately, the contents kept for sends to come
    /// (``HandedContents``). Beyond it, the journal has them.
    public static let handedBytesLimit = 8 << 20

    private struct Route {
        let config: RouteConfig
        let addHeaders: [HeaderField]
        let delivered: Counter
        let failed: Counter
        let retried: Counter
        var queues: RouteQueues
        /// `waypost_upstream_duration_seconds` by status class: 1…5 for `1xx`…`5xx`, 0 for `error`.
        var upstreamTimers: [Int: Timer] = [:]
        /// The highest row id loaded so far.
        var cursor: Int64 = 0
        /// Whether the journal may hold waiting messages after `cursor`.
        var mayHaveMore = true
    }

    /// An attempt in flight.
    /// An attempt's start is written only once it has lasted this long: a quick attempt is
    /// written once, at its end, which halves the journal work of a delivery. A crash before
    /// then leaves the message `queued`, so it is sent again: the same at-least-once.
    static let recordStartAfterMilliseconds: Int64 = 50

    private struct Attempt {
        let route: Int
        let message: MessageForDelivery
        let attempt: Int
        let cycleAttempt: Int
        let startedAt: Int64
        var startRecorded = false
    }

    private struct Completion {
        let messageID: Int64
        let result: Result<CurlResponse, CurlError>
    }

    private typealias Update = (DeliveryUpdate, (@Sendable (Result<Void, SQLiteError>) -> Void)?)

    /// What other threads hand to the delivery thread.
    private struct Shared {
        /// Messages committed since the loop last looked, as the writer handed them over, in
        /// commit order: at most `pageSize` messages and `handedBytesLimit` bytes of bodies.
        var stored: [[StoredMessage]] = []
        var storedCount = 0
        var storedBytes = 0
        /// The smallest row id of those dropped for lack of room: the journal has them.
        var droppedFrom: Int64?
        /// Outcomes whose commit failed (disk full, busy journal): written again after a pause.
        var unwritten: [Update] = []
        var nextRewrite = Date.distantPast
        /// An operator changed the journal (replay, skip, pause, resume) in this process: look now.
        var reloadRequested = false
        /// Messages whose final state is not committed yet: a reload must not take them for waiting.
        var unrecorded: Set<Int64> = []
        var stopping = false
        var graceDeadline = Date.distantFuture
        var exited = false
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
        /// A wake-up is on its way to the loop: later news needs none of its own.
        var wakePending = false
    }

    private let shared = Mutex(Shared())
    /// Attempts that ended during the last `perform`, in the order curl reported them.
    private var ended: [Completion] = []

    private var routes: [Route]
    private var attempts: [Int64: Attempt] = [:]
    /// The last attempt numbers (in all, and in the cycle) of messages waiting for a retry: the
    /// journal may not have them yet, as an attempt's end is written after the fact.
    private var lastAttempts: [Int64: (attempt: Int, cycleAttempt: Int)] = [:]
    /// The content of messages handed over by the writer, and of the next fifo message read
    /// ahead, until they are sent (or dropped from the queues by a reload): their sends need
    /// no read of the journal.
    private var handed = HandedContents()
    private let reader: DeliveryReader
    private let writer: JournalWriter
    private let multi: CurlMulti
    private let board: OutcomeBoard
    private let logger: Logger
    private var generation: Int64
    private var nextGenerationCheck = Date()
    private var random = SecureRandom()
    /// State changes gathered during one turn of the loop, handed to the writer together.
    private var updates: [Update] = []
    private let shutdownGrace: Duration
    private let secrets: RouteSecrets
    /// Peers whose own `X-Forwarded-*` values are kept (`trusted_proxies`).
    private let trustedProxies: [CIDR]

    /// The `add_headers` of every route, with `${NAME}` expanded from `environment`, by route
    /// name. Start-up calls this before it opens anything.
    ///
    /// - Throws: ``ForwarderError`` naming the key (and the variable), when a value names an
    ///   unset environment variable or holds a control character once expanded.
    public static func addHeaders(of configuration: WaypostConfig, environment: [String: String]) throws(ForwarderError) -> [String: [HeaderField]] {
        var expanded: [String: [HeaderField]] = [:]
        for (index, route) in configuration.routes.enumerated() {
            var headers: [HeaderField] = []
            for field in route.addHeaders {
                let value: String
                do {
                    value = try OutboundRequest.expandEnvironment(field.value, environment: environment)
                } catch {
                    throw ForwarderError(message: "routes[\(index)].add_headers.\(field.name): the environment variable \(error.name) is not set")
                }
                // A CR or LF would end the header line: every attempt would then fail.
                if value.utf8.contains(where: { ($0 < 0x20 && $0 != UInt8(ascii: "\t")) || $0 == 0x7F }) {
                    throw ForwarderError(
                        message: "routes[\(index)].add_headers.\(field.name): the value (after ${…} expansion) holds a control character such as CR or LF; a header value cannot")
                }
                headers.append(HeaderField(name: field.name, value: value))
            }
            expanded[route.name] = headers
        }
        return expanded
    }

    /// Prepares delivery for every route of `configuration` and starts the delivery thread.
    ///
    /// - Parameters:
    ///   - addHeaders: each route's `add_headers`, expanded (``addHeaders(of:environment:)``), by route name.
    ///   - secrets: the outbound signers of the routes with `sign` (replaced on SIGHUP).
    /// - Throws: ``ForwarderError`` when the journal cannot be read or libcurl cannot start.
    public init(
        configuration: WaypostConfig, writer: JournalWriter, board: OutcomeBoard, addHeaders: [String: [HeaderField]] = [:],
        secrets: RouteSecrets = RouteSecrets(), logger: Logger
    ) throws(ForwarderError) {
        var routes: [Route] = []
        for route in configuration.routes {
            let dimensions = [("route", route.name)]
            routes.append(
                Route(
                    config: route, addHeaders: addHeaders[route.name] ?? [], delivered: Counter(label: "waypost_delivered_total", dimensions: dimensions),
                    failed: Counter(label: "waypost_failed_total", dimensions: dimensions),
                    retried: Counter(label: "waypost_retried_total", dimensions: dimensions),
                    queues: RouteQueues(ordering: route.ordering, concurrency: route.concurrency)))
        }
        self.routes = routes
        self.trustedProxies = configuration.trustedProxies
        self.secrets = secrets
        do {
            reader = try DeliveryReader(path: configuration.journal.path)
            generation = try reader.replayGeneration()
            let paused = try reader.pausedRoutes()
            for index in routes.indices { routes[index].queues.paused = paused.contains(routes[index].config.name) }
        } catch {
            throw ForwarderError(message: "cannot read the journal: \(error.message)")
        }
        do {
            multi = try CurlMulti(logger: logger)
        } catch {
            throw ForwarderError(message: "cannot start libcurl: \(error)")
        }
        self.writer = writer
        self.board = board
        self.logger = logger
        self.shutdownGrace = configuration.shutdownGrace
        writer.onStored { [weak self] messages in self?.messagesStored(messages) }
        startDedicatedThread(named: "wp-forwarder") { [self] in deliveryLoop() }
    }

    /// Whether the delivery thread is running.
    public var isRunning: Bool {
        shared.withLock { !$0.exited }
    }

    /// Runs until graceful shutdown, then lets the attempts in flight finish within
    /// `shutdown_grace`.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown(grace: shutdownGrace)
    }

    /// Stops sending, waits up to `grace` for the attempts in flight, then cancels the rest
    /// (they stay `in_flight` in the journal and are sent again after a restart).
    public func shutdown(grace: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let running = shared.withLock { shared in
                guard !shared.exited else { return false }
                if !shared.stopping {
                    shared.stopping = true
                    shared.graceDeadline = Date().addingTimeInterval(Double(grace.milliseconds) / 1000)
                }
                shared.exitWaiters.append(continuation)
                return true
            }
            if running { multi.waker.wake() } else { continuation.resume() }
        }
    }

    /// Makes the delivery thread look for operator changes (replays, skips, pauses) before it
    /// sends anything else, rather than at its next half-second check. The admin API calls
    /// this after committing such a change.
    public func reloadNow() {
        tell { $0.reloadRequested = true }
    }

    private func messagesStored(_ messages: [StoredMessage]) {
        guard let first = messages.first?.id else { return }
        let bytes = messages.reduce(0) { $0 + $1.content.body.count }
        tell { shared in
            if shared.storedCount + messages.count <= Self.pageSize && shared.storedBytes + bytes <= Self.handedBytesLimit {
                shared.stored.append(messages)
                shared.storedCount += messages.count
                shared.storedBytes += bytes
            } else {
                shared.droppedFrom = min(shared.droppedFrom ?? first, first)
            }
        }
    }

    /// Changes the shared state and wakes the delivery thread, unless a wake-up is pending.
    private func tell(_ change: (inout Shared) -> Void) {
        let wake = shared.withLock { shared in
            change(&shared)
            defer { shared.wakePending = true }
            return !shared.wakePending
        }
        if wake { multi.waker.wake() }
    }

    /// The commit of an attempt's end succeeded or failed. A final outcome was published
    /// before its commit (a synchronous source need not wait for it); readers of the status
    /// API waited for this commit to end. An outcome whose commit failed is written again a
    /// second later, until it sticks, and then published again for watchers that came since.
    private func outcomeWritten(
        _ result: Result<Void, SQLiteError>, finished: FinishedAttempt, correlationID: String, final: FinalOutcome?,
        rewritten: Bool = false
    ) {
        shared.withLock { shared in
            switch result {
            case .success:
                shared.unrecorded.remove(finished.messageID)
            case .failure:
                shared.unwritten.append(
                    (
                        .finished(finished),
                        { [weak self] result in
                            self?.outcomeWritten(
                                result, finished: finished, correlationID: correlationID, final: final, rewritten: true)
                        }
                    ))
                shared.nextRewrite = Date().addingTimeInterval(1)
            }
        }
        guard let final else { return }
        if rewritten, case .success = result { board.publish(correlationID, final) }
        board.recorded(correlationID)
    }

    // MARK: - The delivery thread

    private func deliveryLoop() {
        while true {
            multi.perform()  // sends what the last turn started, collects what ended
            let turn = shared.withLock { shared in
                defer {
                    shared.stored = []
                    shared.storedCount = 0
                    shared.storedBytes = 0
                    shared.droppedFrom = nil
                    shared.reloadRequested = false
                    shared.wakePending = false
                }
                let rewrite = Date() >= shared.nextRewrite ? shared.unwritten : []
                if !rewrite.isEmpty { shared.unwritten.removeAll() }
                return (
                    stored: shared.stored, droppedFrom: shared.droppedFrom, reload: shared.reloadRequested, rewrite: rewrite, stop: shared.stopping,
                    graceOver: Date() >= shared.graceDeadline
                )
            }
            let completions = ended
            ended.removeAll(keepingCapacity: true)
            for completion in completions { finish(completion) }
            updates += turn.rewrite
            if turn.stop {
                writer.record(updates)
                updates.removeAll()
                if attempts.isEmpty { break }
                if turn.graceOver {
                    logger.info("shutdown grace over; cancelling attempts in flight", metadata: ["attempts": "\(attempts.count)"])
                    break
                }
                multi.poll(timeoutMilliseconds: 100)
                continue
            }
            if let dropped = turn.droppedFrom {
                for index in routes.indices { pageLater(route: index, from: dropped) }
            }
            for messages in turn.stored { take(messages) }
            if turn.reload { nextGenerationCheck = .distantPast }
            checkForReplays()
            load()
            if dispatch() { multi.perform() }  // send at once, before the journal work
            readAhead()
            recordLongStarts()
            writer.record(updates)
            updates.removeAll(keepingCapacity: true)
            if ended.isEmpty { multi.poll(timeoutMilliseconds: pollTimeout()) }
        }
        multi.close()
        let waiters = shared.withLock { shared in
            shared.exited = true
            defer { shared.exitWaiters = [] }
            return shared.exitWaiters
        }
        logger.info("forwarder stopped")
        for waiter in waiters { waiter.resume() }
    }

    /// How long the loop may sleep: until the next retry or backoff falls due, an attempt's
    /// start is to be written, or the next check for operator changes, at most half a second.
    private func pollTimeout() -> Int32 {
        let now = Self.nowMilliseconds()
        var wake = now + 500
        for route in routes { if let due = route.queues.nextWake { wake = min(wake, due) } }
        for attempt in attempts.values where !attempt.startRecorded {
            wake = min(wake, attempt.startedAt + Self.recordStartAfterMilliseconds)
        }
        wake = min(wake, Int64(nextGenerationCheck.timeIntervalSince1970 * 1000))
        return Int32(max(0, wake - now))
    }

    /// Every half second: when another process replayed or skipped messages, reload the
    /// waiting messages of every route from the start.
    private func checkForReplays() {
        // While contents are kept in memory, every turn: a send read from the journal checks
        // the message's state itself, one from memory relies on this to see a skip.
        guard Date() >= nextGenerationCheck || !handed.isEmpty else { return }
        nextGenerationCheck = Date().addingTimeInterval(0.5)
        guard let current = try? reader.replayGeneration(), current != generation else { return }
        generation = current
        logger.info("messages were replayed or skipped, or a route paused or resumed; reloading the queues")
        let paused = (try? reader.pausedRoutes()) ?? []
        for index in routes.indices {
            routes[index].queues.paused = paused.contains(routes[index].config.name)
            routes[index].queues.removeWaiting()
            routes[index].cursor = 0
            routes[index].mayHaveMore = true
        }
        handed.removeAll()
        // An operator's skip is a final outcome the forwarder never published: wake whoever
        // waits for one of those messages (a synchronous source, a long-polling reader).
        for id in board.watchedIDs {
            if let outcome = try? reader.finalOutcome(correlationID: id) { board.notify(id, outcome) }
        }
    }

    /// Adds messages the writer has just committed to the queues of the routes that hold
    /// everything before them; the other routes page them from the journal (``load()``).
    private func take(_ messages: [StoredMessage]) {
        guard let first = messages.first?.id, let last = messages.last?.id else { return }
        for index in routes.indices {
            let name = routes[index].config.name
            let mine = messages.filter { $0.route == name }
            let route = routes[index]
            // Row ids only grow, unless rows at the end were purged and SQLite reused their ids.
            guard !route.mayHaveMore, first > route.cursor, route.queues.count + mine.count <= Self.pageSize else {
                if !mine.isEmpty { pageLater(route: index, from: first) }
                continue
            }
            routes[index].queues.add(mine.map { QueuedMessage(id: $0.id, orderingKey: $0.orderingKey) })
            for message in mine { handed.keep(message.content) }
            routes[index].cursor = last
        }
    }

    /// Makes ``load()`` read the route's waiting messages from row `id` on.
    private func pageLater(route index: Int, from id: Int64) {
        routes[index].mayHaveMore = true
        routes[index].cursor = min(routes[index].cursor, id - 1)
    }

    /// Tops up each route's queues from the journal, a page at a time.
    private func load() {
        for index in routes.indices where routes[index].mayHaveMore && routes[index].queues.count < Self.pageSize / 2 {
            let route = routes[index]
            do {
                let page = try reader.waiting(
                    route: route.config.name, afterID: route.cursor, limit: Self.pageSize - route.queues.count,
                    includeFailed: route.config.onExhausted == .block)
                // Messages in flight, or whose end is not committed yet, can still read as `queued`.
                let unrecorded = shared.withLock { $0.unrecorded }
                routes[index].queues.add(page.messages.filter { attempts[$0.id] == nil && !unrecorded.contains($0.id) })
                routes[index].cursor = page.messages.last?.id ?? route.cursor
                routes[index].mayHaveMore = !page.complete
            } catch {
                logger.error("cannot read waiting messages", metadata: ["route": "\(route.config.name)", "error": "\(error)"])
            }
        }
    }

    /// Sends every message the queues release now; true when there was any.
    private func dispatch() -> Bool {
        let now = Self.nowMilliseconds()
        var any = false
        for index in routes.indices {
            for queued in routes[index].queues.nextReady(now: now) {
                send(queued, route: index, now: now)
                any = true
            }
        }
        return any
    }

    /// While a fifo route's message is with the upstream, reads the one after it from the
    /// journal, so that its send, when the answer comes, needs no read.
    private func readAhead() {
        for index in routes.indices {
            guard let next = routes[index].queues.nextInLine, !handed.contains(next.id) else { continue }
            if let content = try? reader.message(id: next.id) { handed.keep(content) }
        }
    }

    private func send(_ queued: QueuedMessage, route index: Int, now: Int64) {
        let route = routes[index].config
        let last = lastAttempts.removeValue(forKey: queued.id) ?? (0, 0)
        let message: MessageForDelivery
        do {
            guard let found = try handed.take(queued.id) ?? reader.message(id: queued.id) else {
                routes[index].queues.finish(queued.id, outcome: .final)  // skipped or purged meanwhile
                return
            }
            message = found
        } catch {
            logger.error("cannot read a message to send", metadata: ["message.row": "\(queued.id)", "error": "\(error)"])
            routes[index].queues.finish(queued.id, outcome: .retry(atMilliseconds: now + 1000))
            return
        }
        let attempt = Attempt(
            route: index, message: message, attempt: max(message.attempts, last.attempt) + 1,
            cycleAttempt: max(message.cycleAttempts, last.cycleAttempt) + 1, startedAt: now)
        attempts[message.id] = attempt
        var headers = OutboundRequest.headers(
            stored: message.headers, correlationID: message.correlationID, idempotencyKey: message.idempotencyKey,
            attempt: attempt.attempt, clientAddress: message.clientAddress,
            trustedPeer: message.clientAddress.map { address in trustedProxies.contains { $0.contains(address) } } ?? false,
            removeHeaders: route.removeHeaders,
            addHeaders: routes[index].addHeaders)
        if let signer = secrets.signer(route.name) {
            // The source's own webhook-* headers are replaced, not duplicated.
            headers.removeAll { field in OutboundSigner.headerNames.contains { $0.caseInsensitiveEquals(field.name) } }
            headers += signer.headers(messageID: message.correlationID, timestampSeconds: now / 1000, body: message.body)
        }
        let request = CurlRequest(
            url: OutboundRequest.targetURL(upstream: route.upstream, routePath: route.path, requestTarget: message.path),
            method: message.method,
            headers: headers,
            body: message.body,
            connectTimeout: route.timeouts.connect,
            totalTimeout: route.timeouts.total)
        let id = message.id
        multi.submit(request) { [unowned self] result in
            ended.append(Completion(messageID: id, result: result))
        }
    }

    /// Writes the start of every attempt that has lasted `recordStartAfterMilliseconds`, so
    /// slow attempts show `in_flight` in the journal.
    private func recordLongStarts() {
        let now = Self.nowMilliseconds()
        for (id, attempt) in attempts where !attempt.startRecorded && now - attempt.startedAt >= Self.recordStartAfterMilliseconds {
            attempts[id]!.startRecorded = true
            updates.append(
                (.started(messageID: id, attempt: attempt.attempt, cycleAttempt: attempt.cycleAttempt, atMilliseconds: attempt.startedAt), nil))
        }
    }

    /// Records the end of an attempt and tells its queue.
    private func finish(_ completion: Completion) {
        guard let attempt = attempts.removeValue(forKey: completion.messageID) else { return }
        let route = routes[attempt.route].config
        let now = Self.nowMilliseconds()
        if case .failure(let error) = completion.result, error.isCancelled {
            // Shutting down: the message stays in flight in the journal and is sent again on restart.
            return
        }
        let result: AttemptResult
        var response: StoredResponse?
        var transportError: String?
        switch completion.result {
        case .success(let answer):
            result = .response(status: answer.status, retryAfter: answer.header("Retry-After"))
            response = StoredResponse(status: answer.status, headers: answer.headers, body: answer.body)
        case .failure(let error):
            result = .transportError(error.message)
            transportError = error.description
        }
        let verdict = route.retry.verdict(
            result, attempt: attempt.cycleAttempt, cycleStart: attempt.message.cycleStart, now: now,
            random: Double.random(in: 0..<1, using: &random))
        let state: MessageState
        let lastError: String?
        let outcome: RouteQueues.Outcome
        var nextAttemptAt: Int64?
        upstreamTimer(route: attempt.route, status: response?.status).recordMilliseconds(now - attempt.startedAt)
        switch verdict {
        case .delivered:
            routes[attempt.route].delivered.increment()
            (state, lastError, outcome) = (.delivered, nil, .final)
        case .retry(let at):
            lastAttempts[attempt.message.id] = (attempt.attempt, attempt.cycleAttempt)
            routes[attempt.route].retried.increment()
            (state, outcome) = (.queued, .retry(atMilliseconds: at))
            lastError = transportError ?? "HTTP \(response?.status ?? 0)"
            nextAttemptAt = at
        case .failed(let reason):
            routes[attempt.route].failed.increment()
            state = .failed
            lastError = (transportError ?? "HTTP \(response?.status ?? 0)") + "; " + reason
            outcome = route.onExhausted == .block ? .blocked : .final
        }
        let id = attempt.message.id
        let correlationID = attempt.message.correlationID
        let final = state.isFinal ? FinalOutcome(state: state, response: response, lastError: lastError) : nil
        shared.withLock { _ = $0.unrecorded.insert(id) }
        let finished = FinishedAttempt(
            messageID: id, attempt: attempt.attempt, cycleAttempt: attempt.cycleAttempt, durationMilliseconds: now - attempt.startedAt,
            response: response, error: transportError, state: state, nextAttemptAt: nextAttemptAt, lastError: lastError,
            atMilliseconds: now)
        updates.append(
            (
                .finished(finished),
                { [weak self] result in self?.outcomeWritten(result, finished: finished, correlationID: correlationID, final: final) }
            ))
        routes[attempt.route].queues.finish(attempt.message.id, outcome: outcome)
        if let final { board.publish(correlationID, final) }
        // One line per final outcome (a failure is a warning); retries only at debug level.
        let (level, text): (Logger.Level, Logger.Message) =
            switch state {
            case .delivered: (.info, "delivered")
            case .failed: (.warning, "delivery failed")
            default: (.debug, "attempt failed; retrying")
            }
        guard logger.logLevel <= level else { return }  // the metadata costs more than the delivery's bookkeeping
        var metadata: Logger.Metadata = [
            "message.id": "\(attempt.message.correlationID)", "route": "\(route.name)", "attempt": "\(attempt.attempt)",
            "upstream.status": "\(response.map { String($0.status) } ?? "-")", "state": "\(state.rawValue)",
        ]
        if let lastError { metadata["last_error"] = "\(lastError)" }
        logger.log(level: level, text, metadata: metadata)
    }

    /// `waypost_upstream_duration_seconds` of a route and status class (`2xx`…, or `error`
    /// without a response), made on first use.
    private func upstreamTimer(route index: Int, status: Int?) -> Timer {
        let statusClass = status.map { min(max($0 / 100, 1), 5) } ?? 0
        if let timer = routes[index].upstreamTimers[statusClass] { return timer }
        let timer = Timer(
            label: "waypost_upstream_duration_seconds",
            dimensions: [("route", routes[index].config.name), ("status_class", statusClass == 0 ? "error" : "\(statusClass)xx")])
        routes[index].upstreamTimers[statusClass] = timer
        return timer
    }

    static func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

/// The contents kept for sends to come (handed over by the writer for first attempts, or read
/// ahead for a fifo route), by row id, holding at most `Forwarder.handedBytesLimit` bytes of
/// bodies: a message that does not fit is read from the journal when it is sent, like any
/// other.
struct HandedContents {
    private var contents: [Int64: MessageForDelivery] = [:]
    private var bytes = 0

    mutating func keep(_ content: MessageForDelivery) {
        guard bytes + content.body.count <= Forwarder.handedBytesLimit else { return }
        contents[content.id] = content
        bytes += content.body.count
    }

    mutating func take(_ id: Int64) -> MessageForDelivery? {
        guard let content = contents.removeValue(forKey: id) else { return nil }
        bytes -= content.body.count
        return content
    }

    mutating func removeAll() {
        contents.removeAll()
        bytes = 0
    }

    var isEmpty: Bool { contents.isEmpty }

    func contains(_ id: Int64) -> Bool { contents[id] != nil }
}

/// The forwarder cannot start.
public struct ForwarderError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
