/// What a destination may be sent, beside its queues' order and `concurrency` (SPEC §11, "Flow
/// control"): a token bucket for `rate_limit`, and the breaker that stops hammering a
/// destination that keeps failing. Pure: the scheduler gives it the time.
public struct FlowControl: Sendable, Equatable {
    /// `rate_limit`, or nil for none.
    public var bucket: TokenBucket?
    /// `breaker`, or nil for `breaker: off`.
    public var breaker: Breaker?

    public init(rateLimit: RateLimit? = nil, breaker: BreakerPolicy? = nil, now: Int64 = 0) {
        self.bucket = rateLimit.map { TokenBucket($0, now: now) }
        self.breaker = breaker.map(Breaker.init)
    }

    /// How many attempts may start at `now`.
    public mutating func allowance(now: Int64) -> Int {
        min(bucket?.available(now: now) ?? .max, breaker?.allowance(now: now) ?? .max)
    }

    /// `count` attempts start at `now`.
    public mutating func started(_ count: Int, now: Int64) {
        guard count > 0 else { return }
        bucket?.take(count, now: now)
        breaker?.started(count)
    }

    /// When a message that is ready at `wake` may start: then, or later when it waits for a
    /// token or a probe; nil when it waits for an attempt's end (a probe in flight).
    public func delayed(_ wake: Int64) -> Int64? {
        var time = wake
        if let breaker, breaker.isTripped {
            guard let probe = breaker.nextProbe else { return nil }
            time = max(time, probe)
        }
        if let token = bucket?.nextToken { time = max(time, token) }
        return time
    }

    /// An attempt that started ended at `now` without reaching the upstream (the message was
    /// skipped or could not be read), or with `status` (nil: a transport error).
    ///
    /// - Returns: The breaker's change, if the end tripped or closed it.
    public mutating func ended(reachedUpstream: Bool, status: Int?, now: Int64) -> Breaker.Change? {
        guard reachedUpstream else {
            breaker?.abandoned()
            return nil
        }
        return breaker?.ended(failed: Breaker.isFailure(status: status), now: now)
    }
}

/// `rate_limit: N/s | N/m` with its burst (`rate_limit_burst`, default one second's worth).
public struct RateLimit: Sendable, Equatable {
    /// Attempts per `perMilliseconds`.
    public var count: Int
    public var perMilliseconds: Int64
    public var burst: Int

    public init(count: Int, perMilliseconds: Int64, burst: Int? = nil) {
        self.count = count
        self.perMilliseconds = perMilliseconds
        // One second's worth, at least one attempt.
        self.burst = burst ?? max(1, Int((Double(count) * 1000 / Double(perMilliseconds)).rounded(.down)))
    }
}

/// A token bucket: starts full with `burst` tokens, refills at the rate, one token per attempt.
public struct TokenBucket: Sendable, Equatable {
    public let limit: RateLimit
    private var tokens: Double
    private var updatedAt: Int64

    init(_ limit: RateLimit, now: Int64) {
        self.limit = limit
        tokens = Double(limit.burst)
        updatedAt = now
    }

    private var perMillisecond: Double { Double(limit.count) / Double(limit.perMilliseconds) }

    private mutating func refill(now: Int64) {
        guard now > updatedAt else { return }
        tokens = min(Double(limit.burst), tokens + Double(now - updatedAt) * perMillisecond)
        updatedAt = now
    }

    /// Whole tokens at `now`.
    mutating func available(now: Int64) -> Int {
        refill(now: now)
        return Int(tokens.rounded(.down))
    }

    public mutating func take(_ count: Int, now: Int64) {
        refill(now: now)
        tokens = max(0, tokens - Double(count))
    }

    /// The same bucket at another rate (a cluster node's share of `rate_limit`), keeping at
    /// most the tokens it has: a change of share releases no burst.
    func changed(to limit: RateLimit, now: Int64) -> TokenBucket {
        var bucket = self
        bucket.refill(now: now)
        let tokens = min(bucket.tokens, Double(limit.burst))
        bucket = TokenBucket(limit, now: now)
        bucket.tokens = tokens
        return bucket
    }

    /// When the next whole token is there, if there was none at the last look.
    var nextToken: Int64? {
        guard tokens < 1 else { return nil }
        return updatedAt.clampedAdding(Int64(((1 - tokens) / perMillisecond).rounded(.up)))
    }
}

/// `breaker: { failures, probe_interval }`.
public struct BreakerPolicy: Sendable, Equatable {
    /// Consecutive failed attempts that trip it.
    public var failures: Int
    /// The first wait between probes; it doubles after each failed probe, up to ``maxProbeInterval``.
    public var probeIntervalMilliseconds: Int64

    public static let maxProbeInterval: Int64 = 600_000

    public init(failures: Int = 20, probeIntervalMilliseconds: Int64 = 30_000) {
        self.failures = failures
        self.probeIntervalMilliseconds = probeIntervalMilliseconds
    }
}

/// A destination's breaker: closed until `failures` attempts in a row fail, then tripped: one
/// probe attempt at a time, the first `probe_interval` after the trip, each further one twice
/// as long after the last probe failed (at most 10 minutes), until a probe succeeds.
///
/// An attempt fails, for the breaker, when the destination itself is in trouble: a transport
/// error (no answer, timeout), `429` or a `5xx`. Other answers (a `4xx` refusing one message)
/// close it like a success.
public struct Breaker: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case closed
        /// Tripped; the next probe may start at `nextProbeAt`, then `interval` doubles.
        case tripped(since: Int64, nextProbeAt: Int64, interval: Int64)
    }

    /// What an attempt's end did to the breaker.
    public enum Change: Sendable, Equatable {
        case tripped
        case recovered
    }

    public let policy: BreakerPolicy
    public private(set) var state = State.closed
    private var consecutiveFailures = 0
    /// Attempts started and not ended: while tripped, the probe, or attempts that were in flight
    /// when it tripped (a probe starts only when none is).
    private var inFlight = 0
    /// A probe is in flight (started while tripped).
    private var probing = false

    public init(_ policy: BreakerPolicy) {
        self.policy = policy
    }

    public var isTripped: Bool { state != .closed }

    /// Whether an answer (nil: none, a transport error) counts as the destination failing.
    public static func isFailure(status: Int?) -> Bool {
        guard let status else { return true }
        return status == 429 || status >= 500
    }

    mutating func allowance(now: Int64) -> Int {
        guard case .tripped(_, let nextProbeAt, _) = state else { return .max }
        return inFlight == 0 && now >= nextProbeAt ? 1 : 0
    }

    mutating func started(_ count: Int) {
        inFlight += count
        if isTripped { probing = true }
    }

    /// While tripped with no attempt in flight: when the next probe may start.
    var nextProbe: Int64? {
        guard case .tripped(_, let nextProbeAt, _) = state, inFlight == 0 else { return nil }
        return nextProbeAt
    }

    /// While tripped: the next probe may start at `now`, the interval as it is.
    mutating func probeNow(_ now: Int64) {
        guard case .tripped(let since, let nextProbeAt, let interval) = state, nextProbeAt > now else { return }
        state = .tripped(since: since, nextProbeAt: now, interval: interval)
    }

    /// An attempt that started never reached the upstream: it tells nothing.
    mutating func abandoned() {
        inFlight = max(0, inFlight - 1)
        if inFlight == 0 { probing = false }
    }

    /// Another node's breaker of the same destination tripped at `since`, or (nil) is closed
    /// (SPEC §12: breaker state is the cluster's). This one follows without a change of its
    /// own to record: a trip waits a probe interval from `now` before its first probe.
    mutating func follow(trippedSince since: Int64?, now: Int64) {
        switch (state, since) {
        case (.closed, let since?):
            let interval = policy.probeIntervalMilliseconds
            state = .tripped(since: since, nextProbeAt: now.clampedAdding(interval), interval: interval)
        case (.tripped, nil):
            state = .closed
            consecutiveFailures = 0
        default:
            break
        }
    }

    /// An attempt started through this breaker ended at `now`.
    mutating func ended(failed: Bool, now: Int64) -> Change? {
        inFlight = max(0, inFlight - 1)
        switch state {
        case .closed:
            guard failed else {
                consecutiveFailures = 0
                return nil
            }
            consecutiveFailures += 1
            guard consecutiveFailures >= policy.failures else { return nil }
            let interval = policy.probeIntervalMilliseconds
            state = .tripped(since: now, nextProbeAt: now.clampedAdding(interval), interval: interval)
            return .tripped
        case .tripped(let since, _, let interval):
            let wasProbe = probing
            probing = false
            guard failed else {
                state = .closed
                consecutiveFailures = 0
                return .recovered
            }
            // A failed probe: wait twice as long for the next. An attempt that was in flight
            // when it tripped leaves the schedule as it is.
            guard wasProbe else { return nil }
            let next = max(interval, min(interval * 2, BreakerPolicy.maxProbeInterval))
            state = .tripped(since: since, nextProbeAt: now.clampedAdding(next), interval: next)
            return nil
        }
    }
}
