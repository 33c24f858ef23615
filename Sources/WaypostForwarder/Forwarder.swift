import Crypto
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import Tracing
import WaypostCore
import WaypostJournal
import WaypostTransform

/// Delivers the journal to the upstreams (SPEC §3).
///
/// One thread runs the delivery loop, which carries out the decisions of a
/// ``DeliveryScheduler``: it hands it the messages the ``JournalWriter`` has just committed,
/// reads the pages of the journal it asks for (when a route has fallen behind, after a restart
/// or an operator's replay), sends what it releases through its own ``CurlMulti``, reports
/// each attempt's end, and hands every state change to the ``JournalWriter``, which batches
/// them with the intake's commits. The loop sleeps in `curl_multi_poll` until an
/// upstream answers, new messages are committed, a retry falls due, or half a second passes
/// (when it checks whether an operator replayed or skipped messages): an attempt starts and
/// ends on this one thread.
public final class Forwarder: Service, @unchecked Sendable {
    // @unchecked Sendable: `shared` is behind its lock and `multi.waker` is thread-safe;
    // everything else is touched only by the delivery thread.

    /// Body bytes held in memory for messages handed over by the writer: those waiting for the
    /// loop (``Shared/stored``) and, separately, the contents kept for sends to come
    /// (``HandedContents``). Beyond it, the journal has them.
    public static let handedBytesLimit = 8 << 20

    /// A destination's delivery settings and metrics; its queues are the scheduler's.
    private struct Route {
        let config: RouteConfig
        let destination: DestinationConfig
        /// ``RouteConfig/key(of:)``: `route/destination`.
        let key: String
        /// Whether its answers are what the route's waiting sources get (`reply_from`).
        let replies: Bool
        let addHeaders: [HeaderField]
        /// The index of its `transform` in the transform workers' programs.
        let transform: Int?
        let delivered: Counter
        let failed: Counter
        let retried: Counter
        /// `waypost_destination_tripped`: 1 while its breaker is tripped.
        let tripped: Gauge
        /// `waypost_destination_trips_total`: how often its breaker tripped.
        let trips: Counter
        /// `waypost_upstream_duration_seconds` by status class: 1…5 for `1xx`…`5xx`, 0 for `error`.
        var upstreamTimers: [Int: Timer] = [:]
    }

    private struct Completion {
        let deliveryID: Int64
        let ending: Ending
        /// What the attempt sent, when it sent anything.
        let sent: SentBody?
        /// The attempt's trace id (``AttemptTrace``), for its log line; nil when nothing was sent.
        var traceID: String? = nil
        /// The attempt's span, when spans are exported.
        var span: (any Span)?
    }

    private enum Ending {
        /// libcurl's end of the attempt.
        case curl(Result<CurlResponse, CurlError>)
        /// The transform ended it before anything was sent: `filtered` or `transformFailed`.
        case transform(AttemptResult)
    }

    /// What became of a transform.
    private enum Transformed {
        case send(TransformDocument)
        case end(AttemptResult)
    }

    /// An attempt whose request is with a transform worker.
    private struct Transforming {
        let document: TransformDocument
        let message: MessageForDelivery
        let attempt: Int
        let route: Int
        /// The attempt's span and the transform's, when spans are exported.
        let span: (any Span)?
        let transformSpan: (any Span)?
    }

    private typealias Update = (DeliveryUpdate, (@Sendable (Result<Void, JournalError>) -> Void)?)

    /// What other threads hand to the delivery thread.
    private struct Shared {
        /// Messages committed since the loop last looked, as the writer handed them over, in
        /// commit order: at most a page of messages and `handedBytesLimit` bytes of bodies.
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
        var started = false
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

    /// Every destination of every route, in the order of the file: the scheduler's routes.
    private var routes: [Route]
    private var scheduler: DeliveryScheduler
    /// The content of messages handed over by the writer, and of the next fifo message read
    /// ahead, until they are sent (or dropped from the queues by a reload): their sends need
    /// no read of the journal.
    private var handed = HandedContents()
    /// The contents of the next messages of a `fifo` queue, read ahead from the journal
    /// together (``readAheadCount`` at a time) while the one before them is with the upstream.
    private var ahead: [Int64: MessageForDelivery] = [:]
    /// How many messages are read ahead at once: up to 32, as many as `handedBytesLimit` holds
    /// at the largest `max_body_bytes` of the routes.
    private let readAheadCount: Int
    private let reader: any DeliveryReading
    private let writer: any JournalWriting
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
    /// The intake's scheme, the `X-Forwarded-Proto` Waypost sends: `https` with `tls`.
    private let intakeScheme: String
    /// The worker processes that run the destinations' transforms, driven by this loop (their
    /// answers are polled beside libcurl's sockets); nil when no destination has a transform.
    private let transforms: TransformWorkers?
    /// Makes the attempts' spans, when spans are exported.
    private let spans: AttemptSpans?
    /// Deliveries delivered and failed per minute, for the console.
    private let throughput: Throughput?
    /// Attempts waiting for their transform, by delivery row id.
    private var transforming: [Int64: Transforming] = [:]
    /// In a cluster (SPEC §12): the partitions whose queues this node may deliver; nil: every queue.
    private let ownership: (any DeliveryOwnership)?
    /// The partitions held at the last look, with their epochs.
    private var held: [Int: Int64] = [:]
    /// When the first of those leases runs out, unless renewed.
    private var leaseDeadline: ContinuousClock.Instant?
    /// The ownership's ``DeliveryOwnership/generation`` at the last look.
    private var leaseGeneration: Int?
    /// Messages watched here whose final outcome is to be read (again, after a failure).
    private var outcomesToRead: Set<String> = []
    /// In a cluster, the attempts between their send and their end: their transfer (once with
    /// libcurl), their queue's partition, and the lease they are made under.
    private var sending: [Int64: (request: CurlMulti.RequestID?, partition: Int, epoch: Int64)] = [:]

    /// The `add_headers` of every destination, with `${NAME}` expanded from `environment`, by
    /// ``RouteConfig/key(of:)``. Start-up calls this before it opens anything.
    ///
    /// - Throws: ``ForwarderError`` naming the key (and the variable), when a value names an
    ///   unset environment variable or holds a control character once expanded.
    public static func addHeaders(
        of configuration: WaypostConfig, environment: [String: String]
    ) throws(ForwarderError) -> [String: [HeaderField]] {
        var expanded: [String: [HeaderField]] = [:]
        for (index, route) in configuration.routes.enumerated() {
            for (number, destination) in route.destinations.enumerated() {
                let path = route.keyPath(index: index, destination: number)
                var headers: [HeaderField] = []
                for field in destination.addHeaders {
                    let value: String
                    do {
                        value = try OutboundRequest.expandEnvironment(field.value, environment: environment)
                    } catch {
                        throw ForwarderError(
                            message: "\(path).add_headers.\(field.name): the environment variable \(error.name) is not set")
                    }
                    // A CR or LF would end the header line: every attempt would then fail.
                    if value.utf8.contains(where: { ($0 < 0x20 && $0 != UInt8(ascii: "\t")) || $0 == 0x7F }) {
                        throw ForwarderError(
                            message:
                                "\(path).add_headers.\(field.name): the value (after ${…} expansion) holds a control character such as CR or LF; a header value cannot"
                        )
                    }
                    headers.append(HeaderField(name: field.name, value: value))
                }
                expanded[route.key(of: destination)] = headers
            }
        }
        return expanded
    }

    /// Prepares delivery for every route of `configuration`: reads the journal's replay
    /// generation and paused routes, and starts libcurl. The delivery thread starts with
    /// ``run()`` (or ``start()``).
    ///
    /// - Parameters:
    ///   - addHeaders: each route's `add_headers`, expanded (``addHeaders(of:environment:)``), by route name.
    ///   - secrets: the outbound signers of the routes with `sign` (replaced on SIGHUP).
    ///   - transforms: how to run `programs`, where the destinations' `transform` programs are.
    ///   - ownership: in a cluster, the partitions whose queues this node delivers; nil: all.
    /// - Throws: ``ForwarderError`` when the journal cannot be read or libcurl cannot start.
    public init(
        configuration: WaypostConfig, journal: any Journal, writer: any JournalWriting, board: OutcomeBoard,
        addHeaders: [String: [HeaderField]] = [:],
        secrets: RouteSecrets = RouteSecrets(), transforms: TransformSetup? = nil, programs: ProgramTable? = nil,
        tracer: (any Tracer)? = nil, throughput: Throughput? = nil, ownership: (any DeliveryOwnership)? = nil, logger: Logger
    ) throws(ForwarderError) {
        var routes: [Route] = []
        for route in configuration.routes {
            for (index, destination) in route.destinations.enumerated() {
                let key = route.key(of: destination)
                let dimensions = [("route", route.name), ("destination", destination.name)]
                routes.append(
                    Route(
                        config: route, destination: destination, key: key, replies: index == route.replyFrom,
                        addHeaders: addHeaders[key] ?? [], transform: programs?.transforms[key],
                        delivered: Counter(label: "waypost_delivered_total", dimensions: dimensions),
                        failed: Counter(label: "waypost_failed_total", dimensions: dimensions),
                        retried: Counter(label: "waypost_retried_total", dimensions: dimensions),
                        tripped: Gauge(label: "waypost_destination_tripped", dimensions: dimensions),
                        trips: Counter(label: "waypost_destination_trips_total", dimensions: dimensions)))
            }
        }
        self.routes = routes
        self.trustedProxies = configuration.trustedProxies
        self.intakeScheme = configuration.tls == nil ? "http" : "https"
        self.secrets = secrets
        self.transforms = (programs?.transforms.isEmpty ?? true) ? nil : transforms.map(TransformWorkers.init)
        do {
            reader = try journal.deliveryReader()
            generation = try reader.replayGeneration()
            scheduler = DeliveryScheduler(
                routes: routes.map {
                    DeliveryScheduler.DestinationPolicy(
                        name: $0.key, ordering: $0.destination.ordering, concurrency: $0.destination.concurrency,
                        retry: $0.destination.retry, onExhausted: $0.destination.onExhausted, rateLimit: $0.destination.rateLimit,
                        breaker: $0.destination.breaker)
                },
                paused: Self.pausedKeys(try reader.pausedRoutes(), of: routes), now: Self.nowMilliseconds())
            // A rate limit counts the attempts made before a restart, within the time its
            // bucket takes to fill: a restart releases no burst above the limit.
            let now = Self.nowMilliseconds()
            for (index, route) in routes.enumerated() {
                guard let limit = route.destination.rateLimit else { continue }
                let window = Int64(limit.burst) * limit.perMilliseconds / Int64(limit.count)
                let since = Timestamp.format(millisecondsSince1970: now - window)
                let made = try reader.attempts(route: route.config.name, destination: route.destination.name, since: since)
                scheduler.spend(route: index, attempts: made, now: now)
            }
            // Deliveries to destinations the configuration no longer has are never sent: say so.
            let configured = Set(routes.map(\.key))
            for (route, destination) in try reader.waitingDestinations()
            where !configured.contains(RouteConfig.destinationKey(route: route, destination: destination)) {
                logger.warning(
                    "the journal has deliveries waiting for a destination the configuration does not have; they are not sent",
                    metadata: ["route": "\(route)", "destination": "\(destination)"])
            }
        } catch {
            throw ForwarderError(message: "cannot read the journal: \(error.message)", cause: error)
        }
        do {
            multi = try CurlMulti(logger: logger)
        } catch {
            throw ForwarderError(message: "cannot start libcurl: \(error)", cause: error)
        }
        self.writer = writer
        self.board = board
        self.logger = logger
        spans = tracer.map(AttemptSpans.init)
        self.throughput = throughput
        self.shutdownGrace = configuration.shutdownGrace
        let largestBody = configuration.routes.map(\.maxBodyBytes).max() ?? 1
        self.readAheadCount = min(32, max(1, Self.handedBytesLimit / max(1, largestBody)))
        self.ownership = ownership
        writer.onStored { [weak self] messages in self?.messagesStored(messages) }
        reader.onOthersCommitted { [weak self] in self?.tell { _ in } }
        ownership?.onChange { [weak self] in self?.tell { _ in } }
    }

    /// Starts the delivery thread, once.
    public func start() {
        let start = shared.withLock { shared in
            defer { shared.started = true }
            return !shared.started
        }
        if start { startDedicatedThread(named: "wp-forwarder") { [self] in deliveryLoop() } }
    }

    /// Whether the delivery thread is running.
    public var isRunning: Bool {
        shared.withLock { !$0.exited }
    }

    /// Runs until graceful shutdown, then lets the attempts in flight finish within
    /// `shutdown_grace`.
    public func run() async throws {
        start()
        await untilGracefulShutdown { await shutdown(grace: shutdownGrace) }
    }

    /// Stops sending, waits up to `grace` for the attempts in flight, then cancels the rest
    /// (they stay `in_flight` in the journal and are sent again after a restart). A forwarder
    /// that never started starts to stop: it has nothing in flight, and closes libcurl.
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
            // Stopping is set first: a thread that starts now sends nothing.
            start()
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
        // Row ids of deliveries grow with those of their messages: the first is the smallest.
        guard let first = messages.lazy.flatMap(\.deliveries).first?.id else { return }
        let bytes = messages.reduce(0) { $0 + $1.content.body.count }
        let count = messages.reduce(0) { $0 + $1.deliveries.count }
        tell { shared in
            if shared.storedCount + count <= DeliveryScheduler.pageSize && shared.storedBytes + bytes <= Self.handedBytesLimit {
                shared.stored.append(messages)
                shared.storedCount += count
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
        _ result: Result<Void, JournalError>, finished: FinishedAttempt, correlationID: String, final: FinalOutcome?,
        rewritten: Bool = false
    ) {
        shared.withLock { shared in
            switch result {
            case .success:
                shared.unrecorded.remove(finished.deliveryID)
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
        transforms?.warmUp()  // on this thread: the workers die with it
        while true {
            // Before a byte more goes out: a lease that ran out (a frozen process waking) stops its queues.
            let leasesChanged = checkLeases()
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
                    stored: shared.stored, droppedFrom: shared.droppedFrom, reload: shared.reloadRequested, rewrite: rewrite,
                    stop: shared.stopping,
                    graceOver: Date() >= shared.graceDeadline
                )
            }
            if let transforms {
                let ended = transforms.collect()
                for (id, result) in ended { transformEnded(id, result) }
                if !ended.isEmpty { multi.perform() }  // what they made goes on the wire now
            }
            let completions = ended
            ended.removeAll(keepingCapacity: true)
            for completion in completions { finish(completion) }
            updates += turn.rewrite
            if turn.stop {
                writer.record(updates)
                updates.removeAll()
                if scheduler.inFlightCount == 0 { break }
                if turn.graceOver {
                    logger.info("shutdown grace over; cancelling attempts in flight", metadata: ["attempts": "\(scheduler.inFlightCount)"])
                    break
                }
                multi.poll(timeoutMilliseconds: 100, alsoReadable: transforms?.descriptors ?? [])
                continue
            }
            if leasesChanged { reload() }
            if let dropped = turn.droppedFrom { scheduler.messagesDropped(from: dropped) }
            for messages in turn.stored { take(messages) }
            takeOthersNews()
            if turn.reload { nextGenerationCheck = .distantPast }
            checkForReplays()
            carryOut(scheduler.tick(now: Self.nowMilliseconds()))
            writer.record(updates)
            updates.removeAll(keepingCapacity: true)
            if ended.isEmpty { multi.poll(timeoutMilliseconds: pollTimeout(), alsoReadable: transforms?.descriptors ?? []) }
        }
        _ = transforms?.stop(failing: .start("the server is stopping"))
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
        var wake = min(now + 500, Int64(nextGenerationCheck.timeIntervalSince1970 * 1000))
        if let due = scheduler.nextWake { wake = min(wake, due) }
        var timeout = Int32(clamping: max(0, wake - now))
        if let leaseDeadline { timeout = min(timeout, Int32(clamping: max(0, (leaseDeadline - .now).milliseconds + 1))) }
        if let due = transforms?.nextDeadline { timeout = min(timeout, Int32(clamping: max(0, (due - .now).milliseconds + 1))) }
        return timeout
    }

    /// Every half second: when another process replayed or skipped messages, reload the
    /// waiting messages of every route from the start.
    private func checkForReplays() {
        // While contents are kept in memory, every turn: a send read from the journal checks
        // the message's state itself, one from memory relies on this to see a skip.
        guard Date() >= nextGenerationCheck || ((!handed.isEmpty || !ahead.isEmpty) && reader.mayHaveChanged()) else { return }
        nextGenerationCheck = Date().addingTimeInterval(0.5)
        guard let current = try? reader.replayGeneration(), current != generation else { return }
        generation = current
        logger.info("messages were replayed or skipped, or a route paused or resumed; reloading the queues")
        reload(probe: true)
        // An operator's skip is a final outcome the forwarder never published: wake whoever
        // waits for one of those messages (a synchronous source, a long-polling reader).
        readOutcomes(of: board.watchedIDs)
    }

    /// Drops every queue's waiting messages and the contents kept for them, to page the journal
    /// again from the start; with `probe`, a tripped destination may probe at once.
    private func reload(probe: Bool = false) {
        scheduler.generationChanged(
            paused: Self.pausedKeys((try? reader.pausedRoutes()) ?? [], of: routes), now: probe ? Self.nowMilliseconds() : nil)
        handed.removeAll()
        ahead.removeAll()
    }

    /// In a cluster: whether the partitions held changed since the last look (a heartbeat took
    /// or gave some, or a deadline passed). The attempts of those no longer held are cut off
    /// now: their transfers cancelled, before another node can lease them; the caller reloads
    /// the queues once their ends are taken in.
    private func checkLeases() -> Bool {
        guard let ownership else { return false }
        // Looked at again only after a heartbeat, or once the first deadline passed: not at every turn.
        let (now, generation) = (ContinuousClock.now, ownership.generation)
        guard generation != leaseGeneration || leaseDeadline.map({ $0 <= now }) == true else { return false }
        leaseGeneration = generation
        let leases = ownership.leases(at: now)
        leaseDeadline = leases.values.map(\.deadline).min()
        let epochs = leases.mapValues(\.epoch)
        guard epochs != held else { return false }
        held = epochs
        scheduler.share(held: epochs.count, now: Self.nowMilliseconds())
        let cut = sending.filter { epochs[$0.value.partition] != $0.value.epoch }
        for (id, attempt) in cut {
            if let request = attempt.request {
                multi.cancel(request)  // its end, cancelled, is taken in this turn
            } else if transforming.removeValue(forKey: id) != nil {
                sending[id] = nil
                scheduler.attemptCancelled(id, now: Self.nowMilliseconds())
            }
        }
        logger.info(
            "delivering the queues of \(epochs.count) partitions", metadata: ["attempts.cut_off": "\(cut.count)"])
        return true
    }

    /// What the cluster's nodes committed: deliveries (to page, for the queues this node holds),
    /// final outcomes (for the sources waiting here) and breakers' changes (to follow).
    private func takeOthersNews() {
        let news = reader.othersCommitted()
        if let from = news.storedFrom { scheduler.messagesDropped(from: from) }
        for (key, since) in news.breakers {
            guard let index = routes.firstIndex(where: { $0.key == key }) else { continue }
            scheduler.followBreaker(route: index, trippedSince: since, now: Self.nowMilliseconds())
            routes[index].tripped.record(scheduler.breakerState(route: index) == .closed ? 0 : 1)
        }
        guard news.outcomesMissed || !news.outcomes.isEmpty || !outcomesToRead.isEmpty else { return }
        readOutcomes(of: news.outcomesMissed ? board.watchedIDs : news.outcomes)
    }

    /// Reads the final outcomes of those of messages `ids` that someone waits for here (a
    /// synchronous source, a long-poll), and of those whose read failed before, and wakes their
    /// watchers; a read that fails is tried again next turn.
    private func readOutcomes(of ids: [String]) {
        outcomesToRead.formUnion(ids)
        outcomesToRead.formIntersection(board.watchedIDs)
        for id in outcomesToRead {
            do {
                if let outcome = try reader.finalOutcome(correlationID: id) { board.notify(id, outcome) }
                outcomesToRead.remove(id)
            } catch {
                logger.error("cannot read a message's outcome", metadata: ["correlation_id": "\(id)", "error": "\(error)"])
                break
            }
        }
    }

    /// The keys of the destinations paused, from what the journal says is: a route's name
    /// pauses all of its destinations.
    private static func pausedKeys(_ paused: Set<String>, of routes: [Route]) -> Set<String> {
        Set(routes.filter { paused.contains($0.key) || paused.contains($0.config.name) }.map(\.key))
    }

    /// Hands the deliveries the writer has just committed to the scheduler, and keeps the
    /// contents of those it queued for their first attempt. In a cluster, the queues learn of
    /// new messages from the nodes' notifications instead, in commit order across the nodes
    /// (``ControlListener``), this node's own too; the contents of those of its partitions
    /// yet to be sent are kept all the same, for their first attempt.
    private func take(_ messages: [StoredMessage]) {
        var stored: [DeliveryScheduler.Stored] = []
        var yetToSend: [Int64] = []
        for message in messages {
            for delivery in message.deliveries {
                let key = RouteConfig.destinationKey(route: message.route, destination: delivery.destination)
                stored.append(.init(id: delivery.id, route: key, orderingKey: delivery.orderingKey))
                if ownership != nil, held[delivery.partition] != nil, scheduler.awaitsSend(delivery.id, route: key) {
                    yetToSend.append(delivery.id)
                }
            }
        }
        let queued = ownership == nil ? scheduler.messagesStored(stored) : yetToSend
        guard !queued.isEmpty else { return }
        let ids = Set(queued)
        for message in messages {
            for delivery in message.deliveries where ids.contains(delivery.id) {
                var content = message.content
                content.id = delivery.id
                handed.keep(content)
            }
        }
    }

    /// Carries out the scheduler's actions: sends first (and on the wire at once, before any
    /// journal work), then page loads, reads ahead and attempt starts.
    private func carryOut(_ actions: [DeliveryScheduler.Action]) {
        // The contents the writer did not hand over, read together: one query, not one a send.
        let unread = actions.compactMap { action -> Int64? in
            guard case .send(_, let message) = action, !handed.contains(message.id), ahead[message.id] == nil else { return nil }
            return message.id
        }
        var read: [Int64: MessageForDelivery]?
        if unread.count > 1 {
            do {
                read = try reader.messages(ids: unread)
            } catch {
                logger.error("cannot read messages to send", metadata: ["messages": "\(unread.count)", "error": "\(error)"])
            }
        }
        var sent = false
        for case .send(let route, let message) in actions {
            send(message, route: route, read: read)
            sent = true
        }
        if sent { multi.perform() }
        for action in actions {
            switch action {
            case .send:
                break
            case .loadPage(let route, let afterID, let limit, let includeFailed):
                let name = routes[route].config.name
                do {
                    let page = try reader.waiting(
                        route: name, destination: routes[route].destination.name, afterID: afterID, limit: limit,
                        includeFailed: includeFailed, partitions: ownership == nil ? nil : held.keys.sorted())
                    // Messages whose end is not committed yet can still read as `queued`.
                    let unrecorded = shared.withLock { $0.unrecorded }
                    scheduler.pageLoaded(
                        route: route, messages: page.messages.filter { !unrecorded.contains($0.id) }, complete: page.complete)
                } catch {
                    logger.error(
                        "cannot read waiting messages",
                        metadata: ["route": "\(name)", "destination": "\(routes[route].destination.name)", "error": "\(error)"])
                }
            case .readAhead(let id):
                // The next fifo message, read while the one before it is with the upstream, with
                // those after it: one read of the journal for the next few sends.
                guard !handed.contains(id), ahead[id] == nil else { break }
                let ids = [id] + scheduler.inLine(after: id, limit: readAheadCount - 1).filter { !handed.contains($0) }
                ahead = (try? reader.messages(ids: ids)) ?? [:]
            case .recordStart(let id, let attempt, let cycleAttempt, let at):
                // A slow attempt shows `in_flight` in the journal.
                updates.append(
                    (
                        .started(
                            deliveryID: id, attempt: attempt, cycleAttempt: cycleAttempt, atMilliseconds: at, epoch: sending[id]?.epoch),
                        nil
                    ))
            }
        }
    }

    /// Sends `queued` to its route's upstream; its content is the writer's, else in `read`
    /// (where a delivery that no longer waits is absent), else read now.
    private func send(_ queued: QueuedMessage, route index: Int, read: [Int64: MessageForDelivery]?) {
        let now = Self.nowMilliseconds()
        if ownership != nil {
            // Its partition, as the journal stores it (pages carry it in a cluster).
            guard let partition = queued.partition, let epoch = held[partition] else {
                // Not this node's to send (another node holds its partition): its queue here
                // lets it go.
                return scheduler.messageGone(queued.id)
            }
            sending[queued.id] = (nil, partition, epoch)
        }
        let message: MessageForDelivery
        do {
            let content =
                try handed.take(queued.id) ?? ahead.removeValue(forKey: queued.id)
                ?? (read.map { $0[queued.id] } ?? reader.message(id: queued.id))
            guard let found = content else {
                sending[queued.id] = nil
                scheduler.messageGone(queued.id)  // skipped or purged meanwhile
                return
            }
            message = found
        } catch {
            logger.error("cannot read a message to send", metadata: ["message.row": "\(queued.id)", "error": "\(error)"])
            sending[queued.id] = nil
            scheduler.readFailed(queued.id, now: now)
            return
        }
        let attempt = scheduler.attemptStarted(
            message.id, attempts: message.attempts, cycleAttempts: message.cycleAttempts, cycleStart: message.cycleStart,
            correlationID: message.correlationID, now: now
        ).attempt
        let route = routes[index]
        let document = TransformDocument(
            method: message.method, requestTarget: message.path, routePath: route.config.path, headers: message.headers, body: message.body)
        let span = spans?.start(message, attempt: attempt, route: route.config.name, destination: route.destination.name)
        guard let program = route.transform, let transforms else {
            // The query byte for byte, as received.
            let url = OutboundRequest.targetURL(
                upstream: route.destination.upstream, routePath: route.config.path, requestTarget: message.path)
            return transmit(document, url: url, message: message, attempt: attempt, route: index, span: span)
        }
        // The program runs in a worker process; the loop goes on, and sends when it ends.
        transforming[message.id] = Transforming(
            document: document, message: message, attempt: attempt, route: index, span: span,
            transformSpan: span.map { spans?.transform(in: $0) } ?? nil)
        transforms.submit(tag: message.id, TransformRequest(transforming: document, program: program))
    }

    /// A transform ended: sends what it made, or ends the attempt.
    private func transformEnded(_ id: Int64, _ result: TransformWorkers.Result) {
        guard let pending = transforming.removeValue(forKey: id) else { return }
        let transformed = Self.transformed(pending.document, result)
        if let transformSpan = pending.transformSpan {
            var error: String?
            if case .end(.transformFailed(let message)) = transformed { error = message }
            AttemptSpans.endTransform(transformSpan, error: error)
        }
        switch transformed {
        case .send(let document):
            let url = OutboundRequest.targetURL(
                upstream: routes[pending.route].destination.upstream, path: document.path, query: document.query)
            transmit(document, url: url, message: pending.message, attempt: pending.attempt, route: pending.route, span: pending.span)
        case .end(let result):
            ended.append(Completion(deliveryID: id, ending: .transform(result), sent: nil, span: pending.span))
        }
    }

    /// What a transform's end means for its attempt: what to send, or the attempt's end.
    private static func transformed(_ document: TransformDocument, _ result: TransformWorkers.Result) -> Transformed {
        switch result {
        case .success(.shaped(let output)):
            var body: [UInt8]?
            if case .replaced(let bytes) = output.body { body = bytes }
            do throws(TransformOutputError) {
                return .send(try document.applying(rest: output.rest, body: body))
            } catch {
                return .end(.transformFailed("transform output cannot be sent: \(error.message)"))
            }
        case .success(.none): return .end(.filtered)
        case .success(.error(let message)): return .end(.transformFailed("transform error: \(message)"))
        case .success(.document): return .end(.transformFailed("transform: the worker answered a document"))
        case .failure(let failure): return .end(.transformFailed("transform: \(failure)"))
        }
    }

    /// Sends attempt `attempt` of `message`, as `document` says, to `url`.
    private func transmit(
        _ document: TransformDocument, url: String, message: MessageForDelivery, attempt: Int, route index: Int, span: (any Span)?
    ) {
        let destination = routes[index].destination
        var trace = span.map { spans?.sending($0, method: document.method, url: url) ?? [] } ?? []
        if trace.isEmpty {
            trace = AttemptTrace.headers(AttemptTrace.context(stored: message.headers, correlationID: message.correlationID))
        }
        let traceID = trace.first.map { AttemptTrace.traceID(ofTraceParent: $0.value) }
        var headers = OutboundRequest.headers(
            stored: document.headers, correlationID: message.correlationID, idempotencyKey: message.idempotencyKey,
            attempt: attempt, clientAddress: message.clientAddress,
            trustedPeer: message.clientAddress.map { address in trustedProxies.contains { $0.contains(address) } } ?? false,
            scheme: intakeScheme, trace: trace, removeHeaders: destination.removeHeaders,
            addHeaders: routes[index].addHeaders)
        if let signer = secrets.signer(routes[index].key) {
            // The source's own webhook-* headers are replaced, not duplicated.
            headers.removeAll { field in OutboundSigner.headerNames.contains { $0.caseInsensitiveEquals(field.name) } }
            headers += signer.headers(
                messageID: message.correlationID, timestampSeconds: Self.nowMilliseconds() / 1000, body: document.body)
        }
        let request = CurlRequest(
            url: url, method: document.method, headers: headers, body: document.body, connectTimeout: destination.timeouts.connect,
            totalTimeout: destination.timeouts.total, caFile: destination.caFile)
        let sent = SentBody(bytes: document.body.count, sha256: Self.hexSHA256(document.body))
        let id = message.id
        let transfer = multi.submit(request) { [unowned self] result in
            ended.append(Completion(deliveryID: id, ending: .curl(result), sent: sent, traceID: traceID, span: span))
        }
        if sending[id] != nil { sending[id]!.request = transfer }
    }

    /// Lower-case hex of the SHA-256 of `bytes`.
    static func hexSHA256(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in SHA256.hash(data: bytes) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// Reports the end of an attempt to the scheduler, and records and publishes its outcome.
    private func finish(_ completion: Completion) {
        let now = Self.nowMilliseconds()
        let epoch = sending.removeValue(forKey: completion.deliveryID)?.epoch
        if case .curl(.failure(let error)) = completion.ending, error.isCancelled {
            // Shutting down, or the lease lost: the message stays in flight in the journal and
            // is sent again on restart, or by the partition's next holder.
            completion.span?.end()
            return scheduler.attemptCancelled(completion.deliveryID, now: now)
        }
        var response: StoredResponse?
        var transportError: String?
        let result: AttemptResult
        switch completion.ending {
        case .curl(.success(let answer)):
            result = .response(status: answer.status, retryAfter: answer.header("Retry-After"))
            response = StoredResponse(status: answer.status, headers: answer.headers, body: answer.body)
        case .curl(.failure(let error)):
            result = .transportError(error.description)
            transportError = error.description
        case .transform(let ending):
            result = ending
            if case .transformFailed(let error) = ending { transportError = error }
            if case .filtered = ending { transportError = "filtered: the transform's output is null or empty; nothing was sent" }
        }
        let end = scheduler.attemptEnded(
            completion.deliveryID, result: result, now: now, random: Double.random(in: 0..<1, using: &random))
        if let span = completion.span { AttemptSpans.end(span, status: response?.status, error: transportError, state: end?.state) }
        guard let end else { return }
        let route = routes[end.route]
        if case .curl = completion.ending {
            upstreamTimer(route: end.route, status: response?.status).recordMilliseconds(now - end.startedAt)
        }
        switch end.state {
        case .delivered:
            routes[end.route].delivered.increment()
            throughput?.record(.delivered, key: route.key, atMilliseconds: now)
        case .queued: routes[end.route].retried.increment()
        case .filtered: break
        default:
            routes[end.route].failed.increment()
            if end.state == .failed { throughput?.record(.failed, key: route.key, atMilliseconds: now) }
        }
        // Waiting sources learn the outcome of the route's `reply_from` destination alone.
        let final =
            end.state.isFinal && route.replies
            ? FinalOutcome(state: end.state, response: response, lastError: end.lastError, attempts: end.attempt) : nil
        shared.withLock { _ = $0.unrecorded.insert(end.id) }
        let finished = FinishedAttempt(
            deliveryID: end.id, attempt: end.attempt, cycleAttempt: end.cycleAttempt, durationMilliseconds: now - end.startedAt,
            response: response, error: transportError, sentBody: completion.sent, state: end.state, nextAttemptAt: end.nextAttemptAt,
            lastError: end.lastError, atMilliseconds: now, epoch: epoch, announce: final == nil ? nil : end.correlationID)
        let correlationID = end.correlationID
        updates.append(
            (
                .finished(finished),
                { [weak self] result in self?.outcomeWritten(result, finished: finished, correlationID: correlationID, final: final) }
            ))
        if let final { board.publish(correlationID, final) }
        if let change = end.breaker { breakerChanged(change, route: end.route, now: now, lastError: end.lastError) }
        // One line per final outcome (a failure is a warning); retries only at debug level.
        let (level, text): (Logger.Level, Logger.Message) =
            switch end.state {
            case .delivered: (.info, "delivered")
            case .filtered: (.info, "filtered by the transform")
            case .failed: (.warning, "delivery failed")
            default: (.debug, "attempt failed; retrying")
            }
        guard logger.logLevel <= level else { return }  // the metadata costs more than the delivery's bookkeeping
        var metadata: Logger.Metadata = [
            "message.id": "\(correlationID)", "route": "\(route.config.name)", "destination": "\(route.destination.name)",
            "attempt": "\(end.attempt)",
            "upstream.status": "\(response.map { String($0.status) } ?? "-")", "state": "\(end.state)",
        ]
        if let lastError = end.lastError { metadata["last_error"] = "\(lastError)" }
        if let traceID = completion.traceID { metadata["trace_id"] = "\(traceID)" }
        logger.log(level: level, text, metadata: metadata)
    }

    /// Logs a trip or a recovery of a destination's breaker, sets its gauge, and records it in
    /// the journal.
    private func breakerChanged(_ change: Breaker.Change, route index: Int, now: Int64, lastError: String?) {
        let route = routes[index]
        var metadata: Logger.Metadata = ["route": "\(route.config.name)", "destination": "\(route.destination.name)"]
        switch change {
        case .tripped:
            let policy = route.destination.breaker ?? BreakerPolicy()
            metadata["failures"] = "\(policy.failures)"
            metadata["probe_interval_ms"] = "\(policy.probeIntervalMilliseconds)"
            if let lastError { metadata["last_error"] = "\(lastError)" }
            logger.warning("destination tripped: only probe attempts until one succeeds", metadata: metadata)
            route.tripped.record(1)
            route.trips.increment()
            updates.append((.breaker(key: route.key, trippedSince: now), nil))
        case .recovered:
            logger.notice("destination recovered: delivering again", metadata: metadata)
            route.tripped.record(0)
            updates.append((.breaker(key: route.key, trippedSince: nil), nil))
        }
    }

    /// `waypost_upstream_duration_seconds` of a route and status class (`2xx`…, or `error`
    /// without a response), made on first use.
    private func upstreamTimer(route index: Int, status: Int?) -> Timer {
        let statusClass = status.map { min(max($0 / 100, 1), 5) } ?? 0
        if let timer = routes[index].upstreamTimers[statusClass] { return timer }
        let timer = Timer(
            label: "waypost_upstream_duration_seconds",
            dimensions: [
                ("route", routes[index].config.name), ("destination", routes[index].destination.name),
                ("status_class", statusClass == 0 ? "error" : "\(statusClass)xx"),
            ])
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
    /// The failure behind it (a ``JournalError``, a ``CurlError``), when there is one.
    public var cause: (any Error & Sendable)?

    public init(message: String, cause: (any Error & Sendable)? = nil) {
        self.message = message
        self.cause = cause
    }

    public var description: String { message }
}
