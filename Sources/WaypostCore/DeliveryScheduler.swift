/// The forwarder's decisions (SPEC §3) as a value-type state machine: no I/O, no clock, no
/// randomness of its own. Events come in (messages stored, a page loaded, an attempt started
/// or ended, the replay generation changed, a tick); actions come out (load a page, send a
/// message, read one ahead, record an attempt's start); an attempt's end comes out as the
/// ``AttemptEnd`` to record and, when final, to publish to waiting sources.
///
/// It schedules each destination of each route on its own (SPEC §11); "route" below means
/// one such destination, whose ``DestinationPolicy/name`` is unique among them, and a
/// message means one delivery (its row id). Per destination it keeps the ``RouteQueues`` (what may be sent, in order) and where the journal
/// was paged up to (`cursor`, and whether more may follow). The journal is paged, never loaded
/// whole: a route holds at most ``pageSize`` messages and is topped up when it falls below
/// half of that. Messages that the writer has just committed join a route's queues directly
/// when the route holds everything before them; otherwise the route pages them later.
public struct DeliveryScheduler: Sendable {
    /// Messages held per route.
    public static let pageSize = 1000
    /// An attempt's start is recorded only once it has lasted this long: a quick attempt is
    /// recorded once, at its end, which halves the journal work of a delivery. A crash before
    /// then leaves the message `queued`, so it is sent again: the same at-least-once.
    public static let recordStartAfterMilliseconds: Int64 = 50

    /// What the scheduler needs of a destination's configuration.
    public struct DestinationPolicy: Sendable {
        /// Unique among the scheduler's destinations (the forwarder uses `route/destination`).
        public var name: String
        public var ordering: Ordering
        public var concurrency: Int
        public var retry: RetryPolicy
        public var onExhausted: OnExhausted
        public var rateLimit: RateLimit?
        /// Nil: `breaker: off`.
        public var breaker: BreakerPolicy?

        public init(
            name: String, ordering: Ordering, concurrency: Int, retry: RetryPolicy, onExhausted: OnExhausted, rateLimit: RateLimit? = nil,
            breaker: BreakerPolicy? = nil
        ) {
            self.name = name
            self.ordering = ordering
            self.concurrency = concurrency
            self.retry = retry
            self.onExhausted = onExhausted
            self.rateLimit = rateLimit
            self.breaker = breaker
        }
    }

    /// A message the journal writer has just committed.
    public struct Stored: Sendable, Equatable {
        public var id: Int64
        public var route: String
        public var orderingKey: String?

        public init(id: Int64, route: String, orderingKey: String?) {
            self.id = id
            self.route = route
            self.orderingKey = orderingKey
        }
    }

    /// What the forwarder is to do.
    public enum Action: Sendable, Equatable {
        /// Read route `route`'s waiting messages after row `afterID` (at most `limit`, failed
        /// ones too when `includeFailed`), and report them with ``pageLoaded(route:messages:complete:)``.
        case loadPage(route: Int, afterID: Int64, limit: Int, includeFailed: Bool)
        /// Read message `id` and send it: report ``attemptStarted(_:attempts:cycleAttempts:cycleStart:correlationID:now:)``,
        /// or ``messageGone(_:)`` / ``readFailed(_:now:)`` when it cannot be read.
        case send(route: Int, QueuedMessage)
        /// Read message `id` now, so that its send needs no read: it is next in a fifo queue.
        case readAhead(id: Int64)
        /// Record that attempt `attempt` of message `id` started at `at`: it has lasted
        /// ``recordStartAfterMilliseconds``.
        case recordStart(id: Int64, attempt: Int, cycleAttempt: Int, at: Int64)
    }

    /// The end of an attempt, as the journal records it and waiting sources learn it.
    public struct AttemptEnd: Sendable, Equatable {
        public var id: Int64
        public var route: Int
        public var correlationID: String
        public var attempt: Int
        public var cycleAttempt: Int
        public var startedAt: Int64
        /// `delivered`, `failed`, or `queued` for a retry.
        public var state: MessageState
        public var nextAttemptAt: Int64?
        public var lastError: String?
        /// The destination's breaker tripped or recovered with this attempt.
        public var breaker: Breaker.Change?
    }

    private struct Route: Sendable {
        let policy: DestinationPolicy
        var queues: RouteQueues
        var flow: FlowControl
        /// The highest row id loaded so far.
        var cursor: Int64 = 0
        /// Whether the journal may hold waiting messages after `cursor`.
        var mayHaveMore = true
    }

    private struct Attempt: Sendable {
        let route: Int
        var correlationID = ""
        var number = 0
        var cycleNumber = 0
        var cycleStart: Int64 = 0
        var startedAt: Int64 = 0
        /// False between the `send` action and ``attemptStarted``.
        var started = false
        var startRecorded = false
    }

    private var routes: [Route]
    private var attempts: [Int64: Attempt] = [:]
    /// The last attempt numbers (in all, and in the cycle) of messages waiting for a retry: the
    /// journal may not have them yet, as an attempt's end is written after the fact.
    private var lastAttempts: [Int64: (attempt: Int, cycleAttempt: Int)] = [:]

    /// - Parameter paused: the names of the routes an operator paused.
    /// - Parameters:
    ///   - paused: the names of the routes an operator paused.
    ///   - now: the rate limits' buckets start full at this time.
    public init(routes: [DestinationPolicy], paused: Set<String> = [], now: Int64 = 0) {
        self.routes = routes.map { policy in
            var queues = RouteQueues(ordering: policy.ordering, concurrency: policy.concurrency)
            queues.paused = paused.contains(policy.name)
            return Route(policy: policy, queues: queues, flow: FlowControl(rateLimit: policy.rateLimit, breaker: policy.breaker, now: now))
        }
    }

    /// Attempts between their `send` action and their end.
    public var inFlightCount: Int { attempts.count }

    /// Messages held by route `route` (waiting, in flight or blocking).
    public func heldCount(route: Int) -> Int { routes[route].queues.count }

    /// Up to `limit` messages after `id` in its `fifo` queue, in order (``RouteQueues/inLine(after:limit:)``).
    public func inLine(after id: Int64, limit: Int) -> [Int64] {
        guard let route = attempts[id]?.route ?? routes.firstIndex(where: { $0.queues.contains(id) }) else { return [] }
        return routes[route].queues.inLine(after: id, limit: limit)
    }

    /// Whether message `id` of route `name` is yet to be sent: waiting in its queues, or after
    /// what was paged of them (a cluster's node pages its new messages, and keeps the contents
    /// its writer hands over for those yet to be sent only).
    public func awaitsSend(_ id: Int64, route name: String) -> Bool {
        guard attempts[id] == nil, let route = routes.first(where: { $0.policy.name == name }) else { return false }
        return id > route.cursor || route.queues.contains(id)
    }

    /// Whether route `route` is paused.
    public func isPaused(route: Int) -> Bool { routes[route].queues.paused }

    /// Takes from route `route`'s rate-limit bucket the `count` attempts it made before this
    /// scheduler started (as the journal records them), so that a restart releases no burst
    /// above the limit.
    public mutating func spend(route: Int, attempts count: Int, now: Int64) {
        routes[route].flow.bucket?.take(count, now: now)
    }

    /// Route `route`'s breaker follows another node's: tripped at `since`, or (nil) closed
    /// (``Breaker/follow(trippedSince:now:)``).
    public mutating func followBreaker(route: Int, trippedSince since: Int64?, now: Int64) {
        routes[route].flow.breaker?.follow(trippedSince: since, now: now)
    }

    /// Route `route`'s breaker state (closed when it has none).
    public func breakerState(route: Int) -> Breaker.State { routes[route].flow.breaker?.state ?? .closed }

    /// Attempts of route `route` between their `send` action and their end.
    public func inFlightCount(route: Int) -> Int { routes[route].queues.inFlightCount }

    // MARK: - Events

    /// The writer committed `messages` (in row id order). Each route that holds everything
    /// before them, and has room, queues its own; the others page them later.
    ///
    /// - Returns: The ids queued here, whose contents the caller may keep for their sends.
    public mutating func messagesStored(_ messages: [Stored]) -> [Int64] {
        guard let first = messages.first?.id, let last = messages.last?.id else { return [] }
        var queued: [Int64] = []
        for index in routes.indices {
            let mine = messages.filter { $0.route == routes[index].policy.name }
            let route = routes[index]
            // Row ids only grow, unless rows at the end were purged and SQLite reused their ids.
            guard !route.mayHaveMore, first > route.cursor, route.queues.count + mine.count <= Self.pageSize else {
                if !mine.isEmpty { pageLater(route: index, from: first) }
                continue
            }
            routes[index].queues.add(mine.map { QueuedMessage(id: $0.id, orderingKey: $0.orderingKey) })
            routes[index].cursor = last
            queued += mine.map(\.id)
        }
        return queued
    }

    /// The writer committed messages from row `id` on that it could not hand over (no room):
    /// every route pages them from the journal.
    public mutating func messagesDropped(from id: Int64) {
        for index in routes.indices { pageLater(route: index, from: id) }
    }

    private mutating func pageLater(route index: Int, from id: Int64) {
        routes[index].mayHaveMore = true
        routes[index].cursor = min(routes[index].cursor, id - 1)
    }

    /// A page asked for with ``Action/loadPage(route:afterID:limit:includeFailed:)``: the waiting
    /// messages in id order, `complete` when no more follow. Messages in flight here (which the
    /// journal may still show as `queued`) are left out.
    public mutating func pageLoaded(route index: Int, messages: [QueuedMessage], complete: Bool) {
        routes[index].queues.add(messages.filter { attempts[$0.id] == nil })
        routes[index].cursor = messages.last?.id ?? routes[index].cursor
        routes[index].mayHaveMore = !complete
    }

    /// An operator replayed or skipped messages, or paused or resumed a route: every route drops
    /// what it holds (but what is in flight) and pages the journal again from the start, and a
    /// tripped destination may probe at once (an operator who acted may know it is back).
    ///
    /// - Parameters:
    ///   - paused: the routes paused now.
    ///   - now: the time, for the probes; nil leaves the breakers as they are.
    public mutating func generationChanged(paused: Set<String>, now: Int64? = nil) {
        for index in routes.indices {
            routes[index].queues.paused = paused.contains(routes[index].policy.name)
            routes[index].queues.removeWaiting()
            routes[index].cursor = 0
            routes[index].mayHaveMore = true
            if let now { routes[index].flow.breaker?.probeNow(now) }
        }
    }

    /// In a cluster (SPEC §12), this node delivers the queues of `held` of the
    /// ``QueuePartition/count`` partitions. A destination whose queues spread over the
    /// partitions (`ordering: key` by key, `none` by delivery) gets that share of its
    /// `concurrency` and `rate_limit`, so that the nodes together keep within them (at least
    /// one attempt at a time, and one per period, each); one with a single queue (`fifo`) has
    /// the whole of them on the node that holds it.
    public mutating func share(held: Int, now: Int64) {
        let count = QueuePartition.count
        func part(_ value: Int) -> Int { max(1, value * held / count) }
        for index in routes.indices where routes[index].policy.ordering != .fifo {
            let policy = routes[index].policy
            routes[index].queues.concurrency = part(policy.concurrency)
            if let limit = policy.rateLimit, let bucket = routes[index].flow.bucket {
                let shared = RateLimit(count: part(limit.count), perMilliseconds: limit.perMilliseconds, burst: part(limit.burst))
                routes[index].flow.bucket = bucket.changed(to: shared, now: now)
            }
        }
    }

    /// What to do at `now`: pages to load, messages to send (the queues count them in flight
    /// from here), fifo messages to read ahead, attempt starts to record.
    public mutating func tick(now: Int64) -> [Action] {
        var actions: [Action] = []
        for index in routes.indices where routes[index].mayHaveMore && routes[index].queues.count < Self.pageSize / 2 {
            let route = routes[index]
            actions.append(
                .loadPage(
                    route: index, afterID: route.cursor, limit: Self.pageSize - route.queues.count,
                    includeFailed: route.policy.onExhausted == .block))
        }
        for index in routes.indices {
            // Rate limit and breaker first: waiting for a token or a probe is not an attempt.
            let allowance = routes[index].flow.allowance(now: now)
            guard allowance > 0 else { continue }
            let ready = routes[index].queues.nextReady(now: now, limit: allowance)
            routes[index].flow.started(ready.count, now: now)
            for message in ready {
                attempts[message.id] = Attempt(route: index)
                actions.append(.send(route: index, message))
            }
        }
        for index in routes.indices {
            if let next = routes[index].queues.nextInLine { actions.append(.readAhead(id: next.id)) }
        }
        var due: [Int64] = []
        for (id, attempt) in attempts
        where attempt.started && !attempt.startRecorded && now - attempt.startedAt >= Self.recordStartAfterMilliseconds {
            due.append(id)
        }
        due.sort()
        for id in due {
            attempts[id]!.startRecorded = true
            let attempt = attempts[id]!
            actions.append(.recordStart(id: id, attempt: attempt.number, cycleAttempt: attempt.cycleNumber, at: attempt.startedAt))
        }
        return actions
    }

    /// The message of a `send` was read and goes out now. `attempts` and `cycleAttempts` are the
    /// journal's counts (which may lag behind this process's), `cycleStart` its receipt or last
    /// replay.
    ///
    /// - Returns: The attempt's number in all and in its cycle.
    public mutating func attemptStarted(
        _ id: Int64, attempts stored: Int, cycleAttempts storedCycle: Int, cycleStart: Int64, correlationID: String, now: Int64
    ) -> (attempt: Int, cycleAttempt: Int) {
        let last = lastAttempts.removeValue(forKey: id) ?? (0, 0)
        let numbers = (attempt: max(stored, last.attempt) + 1, cycleAttempt: max(storedCycle, last.cycleAttempt) + 1)
        guard attempts[id] != nil else { return numbers }
        attempts[id]!.correlationID = correlationID
        attempts[id]!.number = numbers.attempt
        attempts[id]!.cycleNumber = numbers.cycleAttempt
        attempts[id]!.cycleStart = cycleStart
        attempts[id]!.startedAt = now
        attempts[id]!.started = true
        return numbers
    }

    /// The message of a `send` is no longer waiting (skipped or purged meanwhile): its queue
    /// moves on.
    public mutating func messageGone(_ id: Int64) {
        guard let attempt = attempts.removeValue(forKey: id) else { return }
        lastAttempts[id] = nil
        routes[attempt.route].queues.finish(id, outcome: .final)
        _ = routes[attempt.route].flow.ended(reachedUpstream: false, status: nil, now: 0)
    }

    /// The message of a `send` could not be read: it is tried again a second later.
    public mutating func readFailed(_ id: Int64, now: Int64) {
        guard let attempt = attempts.removeValue(forKey: id) else { return }
        routes[attempt.route].queues.finish(id, outcome: .retry(atMilliseconds: now.clampedAdding(1000)))
        _ = routes[attempt.route].flow.ended(reachedUpstream: false, status: nil, now: now)
    }

    /// The attempt was cut off (at shutdown, or its queue's lease lost): the message stays in
    /// flight in the journal, to be sent again by whoever delivers its queue next, and waits
    /// here again, until a reload drops it.
    public mutating func attemptCancelled(_ id: Int64, now: Int64) {
        guard let attempt = attempts.removeValue(forKey: id) else { return }
        routes[attempt.route].queues.finish(id, outcome: .retry(atMilliseconds: now))
        _ = routes[attempt.route].flow.ended(reachedUpstream: false, status: nil, now: now)
    }

    /// An attempt ended at `now` with `result` (a transport error carries the text to record).
    /// The route's retry policy gives the verdict (`random` in `0..<1` jitters the backoff); the
    /// message's queue moves on, waits for the retry, or (failed under `on_exhausted: block`)
    /// waits for an operator.
    ///
    /// - Returns: What to record, and to publish when the state is final; nil for an unknown id.
    public mutating func attemptEnded(_ id: Int64, result: AttemptResult, now: Int64, random: Double) -> AttemptEnd? {
        guard let attempt = attempts.removeValue(forKey: id), attempt.started else { return nil }
        let policy = routes[attempt.route].policy
        var end = AttemptEnd(
            id: id, route: attempt.route, correlationID: attempt.correlationID, attempt: attempt.number, cycleAttempt: attempt.cycleNumber,
            startedAt: attempt.startedAt, state: .delivered)
        let outcome: RouteQueues.Outcome
        switch result {
        case .filtered:
            end.breaker = routes[attempt.route].flow.ended(reachedUpstream: false, status: nil, now: now)
            end.state = .filtered
            outcome = .final
        case .transformFailed(let error):
            // At once, whatever the retry policy: the same program fails the same way again.
            end.breaker = routes[attempt.route].flow.ended(reachedUpstream: false, status: nil, now: now)
            (end.state, end.lastError) = (.failed, error)
            outcome = policy.onExhausted == .block ? .blocked : .final
        case .response, .transportError:
            let verdict = policy.retry.verdict(
                result, attempt: attempt.cycleNumber, cycleStart: attempt.cycleStart, now: now, random: random)
            var answer = ""
            var status: Int?
            switch result {
            case .response(let code, _): (answer, status) = ("HTTP \(code)", code)
            case .transportError(let error): answer = error
            case .filtered, .transformFailed: break
            }
            end.breaker = routes[attempt.route].flow.ended(reachedUpstream: true, status: status, now: now)
            switch verdict {
            case .delivered:
                outcome = .final
            case .retry(let at):
                lastAttempts[id] = (attempt.number, attempt.cycleNumber)
                (end.state, end.nextAttemptAt, end.lastError) = (.queued, at, answer)
                outcome = .retry(atMilliseconds: at)
            case .failed(let reason):
                (end.state, end.lastError) = (.failed, answer + "; " + reason)
                outcome = policy.onExhausted == .block ? .blocked : .final
            }
        }
        routes[attempt.route].queues.finish(id, outcome: outcome)
        return end
    }

    /// When something is next due (milliseconds): a queue's head, or an attempt's start to
    /// record; nil when nothing is.
    public var nextWake: Int64? {
        var wake = routes.compactMap { route in route.queues.nextWake.flatMap(route.flow.delayed) }.min()
        for attempt in attempts.values where attempt.started && !attempt.startRecorded {
            let due = attempt.startedAt + Self.recordStartAfterMilliseconds
            wake = min(wake ?? due, due)
        }
        return wake
    }
}

extension DeliveryScheduler.AttemptEnd {
    init(
        id: Int64, route: Int, correlationID: String, attempt: Int, cycleAttempt: Int, startedAt: Int64, state: MessageState
    ) {
        self.init(
            id: id, route: route, correlationID: correlationID, attempt: attempt, cycleAttempt: cycleAttempt, startedAt: startedAt,
            state: state, nextAttemptAt: nil, lastError: nil, breaker: nil)
    }
}
