// Flow control (SPEC §11): the token bucket of `rate_limit`, the breaker, and both inside the
// `DeliveryScheduler`, driven by explicit times.

import Testing
import WaypostCore

@Suite struct FlowControlTests {
    @Test("a bucket starts full with one second's worth, refills at the rate, and says when the next token is there")
    func tokenBucket() {
        var flow = FlowControl(rateLimit: RateLimit(count: 10, perMilliseconds: 1000), now: 0)
        #expect(flow.allowance(now: 0) == 10)
        flow.started(10, now: 0)
        #expect(flow.allowance(now: 0) == 0)
        #expect(flow.delayed(0) == 100, "one token per 100 ms")
        #expect(flow.allowance(now: 50) == 0)
        #expect(flow.allowance(now: 100) == 1)
        #expect(flow.allowance(now: 10_000) == 10, "never more than the burst")
        #expect(flow.delayed(10_000) == 10_000, "a token is there: no delay")
    }

    @Test("N/m: a burst of one minute's rate per second (at least one), refilling per minute")
    func perMinute() {
        #expect(RateLimit(count: 60, perMilliseconds: 60_000).burst == 1)
        #expect(RateLimit(count: 30, perMilliseconds: 60_000).burst == 1)
        #expect(RateLimit(count: 600, perMilliseconds: 60_000).burst == 10)
        #expect(RateLimit(count: 5, perMilliseconds: 1000, burst: 50).burst == 50)
        var flow = FlowControl(rateLimit: RateLimit(count: 30, perMilliseconds: 60_000), now: 0)
        flow.started(flow.allowance(now: 0), now: 0)
        #expect(flow.delayed(0) == 2000, "30 per minute: one every 2 s")
    }

    @Test("which answers count as the destination failing")
    func failures() {
        #expect(Breaker.isFailure(status: nil))
        #expect(Breaker.isFailure(status: 429))
        #expect(Breaker.isFailure(status: 500) && Breaker.isFailure(status: 503))
        #expect(!Breaker.isFailure(status: 200) && !Breaker.isFailure(status: 404) && !Breaker.isFailure(status: 422))
    }

    @Test("the breaker trips after N failures in a row, probes one at a time with a doubling interval, and recovers on success")
    func breaker() {
        var flow = FlowControl(breaker: BreakerPolicy(failures: 3, probeIntervalMilliseconds: 1000))
        func attempt(status: Int?, at now: Int64) -> Breaker.Change? {
            flow.started(1, now: now)
            return flow.ended(reachedUpstream: true, status: status, now: now)
        }
        #expect(attempt(status: 503, at: 0) == nil)
        #expect(attempt(status: 503, at: 10) == nil)
        #expect(attempt(status: 200, at: 20) == nil, "a success resets the count")
        #expect(attempt(status: nil, at: 30) == nil)
        #expect(attempt(status: 422, at: 35) == nil, "a 4xx is the message's problem, not the destination's")
        #expect(attempt(status: 500, at: 40) == nil)
        #expect(attempt(status: 502, at: 50) == nil)
        #expect(attempt(status: 504, at: 60) == .tripped)
        #expect(flow.breaker?.isTripped == true)
        #expect(flow.allowance(now: 500) == 0)
        #expect(flow.delayed(500) == 1060, "the first probe a probe_interval after the trip")
        #expect(flow.allowance(now: 1060) == 1)
        flow.started(1, now: 1060)
        #expect(flow.allowance(now: 1070) == 0, "one probe at a time")
        #expect(flow.delayed(1070) == nil, "waits for the probe's end")
        #expect(flow.ended(reachedUpstream: true, status: 503, now: 1100) == nil)
        #expect(flow.delayed(1100) == 3100, "the interval doubles after a failed probe")
        flow.started(1, now: 3100)
        #expect(flow.ended(reachedUpstream: false, status: nil, now: 3105) == nil, "a send that never reached the upstream tells nothing")
        #expect(flow.allowance(now: 3105) == 1, "the probe may go again")
        flow.started(1, now: 3110)
        #expect(flow.ended(reachedUpstream: true, status: 204, now: 3120) == .recovered)
        #expect(flow.allowance(now: 3120) == .max)
    }

    @Test("a breaker follows another node's: tripped there, it waits a probe interval here; closed there, it closes here")
    func followsAnotherNode() throws {
        var scheduler = DeliveryScheduler(
            routes: [Self.destination(.key, concurrency: 4, breaker: BreakerPolicy(failures: 3, probeIntervalMilliseconds: 1000))],
            now: 0)
        _ = scheduler.tick(now: 0)
        scheduler.followBreaker(route: 0, trippedSince: 400, now: 500)
        #expect(scheduler.breakerState(route: 0) == .tripped(since: 400, nextProbeAt: 1500, interval: 1000))
        scheduler.pageLoaded(
            route: 0, messages: [QueuedMessage(id: 1, orderingKey: "a"), QueuedMessage(id: 2, orderingKey: "b")], complete: true)
        #expect(Self.sends(scheduler.tick(now: 1000)).isEmpty, "tripped: nothing before the probe")
        #expect(Self.sends(scheduler.tick(now: 1500)) == [1], "one probe")
        scheduler.followBreaker(route: 0, trippedSince: 900, now: 1600)
        #expect(scheduler.breakerState(route: 0) == .tripped(since: 400, nextProbeAt: 1500, interval: 1000), "its own schedule stands")
        scheduler.followBreaker(route: 0, trippedSince: nil, now: 1700)
        #expect(scheduler.breakerState(route: 0) == .closed)
        #expect(Self.sends(scheduler.tick(now: 1700)) == [2], "closed there: delivering here again")
    }

    @Test("an attempt in flight when the breaker tripped does not move the probe schedule when it fails, and closes it when it succeeds")
    func attemptsInFlightAtTheTrip() {
        var flow = FlowControl(breaker: BreakerPolicy(failures: 1, probeIntervalMilliseconds: 1000))
        flow.started(3, now: 0)
        #expect(flow.ended(reachedUpstream: true, status: 500, now: 10) == .tripped)
        #expect(flow.ended(reachedUpstream: true, status: 500, now: 2000) == nil, "a late failure of an old attempt")
        #expect(flow.delayed(2000) == nil, "one old attempt is still in flight: no probe beside it")
        #expect(flow.ended(reachedUpstream: true, status: 200, now: 2100) == .recovered, "an old attempt's success closes it")
    }

    @Test("the probe interval doubles up to 10 minutes, and a longer configured one stays as it is")
    func probeIntervalCap() {
        var flow = FlowControl(breaker: BreakerPolicy(failures: 1, probeIntervalMilliseconds: 200_000))
        var now: Int64 = 0
        flow.started(1, now: now)
        #expect(flow.ended(reachedUpstream: true, status: 500, now: now) == .tripped)
        var waits: [Int64] = []
        for _ in 0..<3 {
            guard let next = flow.delayed(now) else { break }
            waits.append(next - now)
            now = next
            flow.started(1, now: now)
            _ = flow.ended(reachedUpstream: true, status: 500, now: now)
        }
        #expect(waits == [200_000, 400_000, 600_000])
        var long = FlowControl(breaker: BreakerPolicy(failures: 1, probeIntervalMilliseconds: 900_000))
        long.started(1, now: 0)
        _ = long.ended(reachedUpstream: true, status: 500, now: 0)
        long.started(1, now: 900_000)
        _ = long.ended(reachedUpstream: true, status: 500, now: 900_000)
        #expect(long.delayed(900_000) == 1_800_000)
    }

    // MARK: - In the scheduler

    private static let retry = RetryPolicy(
        initial: .milliseconds(100), factor: 1, maxDelay: .milliseconds(100), maxAttempts: 1000, maxAge: .seconds(3600))

    /// Destination `name` with `retry` and dead letters: the scheduler tests' one.
    private static func destination(
        _ ordering: Ordering, concurrency: Int, rateLimit: RateLimit? = nil, breaker: BreakerPolicy? = nil, name: String = "r/d"
    ) -> DeliveryScheduler.DestinationPolicy {
        .init(
            name: name, ordering: ordering, concurrency: concurrency, retry: retry, onExhausted: .deadLetter, rateLimit: rateLimit,
            breaker: breaker)
    }

    private static func sends(_ actions: [DeliveryScheduler.Action]) -> [Int64] {
        actions.compactMap { if case .send(_, let message) = $0 { message.id } else { nil } }
    }

    @Test("the scheduler sends no more than the rate; waiting for a token is no attempt")
    func schedulerRateLimit() {
        var scheduler = DeliveryScheduler(
            routes: [Self.destination(.none, concurrency: 16, rateLimit: RateLimit(count: 2, perMilliseconds: 1000))], now: 0)
        _ = scheduler.tick(now: 0)
        scheduler.pageLoaded(route: 0, messages: (1...5).map { QueuedMessage(id: $0) }, complete: true)
        let first = Self.sends(scheduler.tick(now: 0))
        #expect(first == [1, 2])
        for id in first {
            _ = scheduler.attemptStarted(id, attempts: 0, cycleAttempts: 0, cycleStart: 0, correlationID: "c\(id)", now: 0)
            _ = scheduler.attemptEnded(id, result: .response(status: 200, retryAfter: nil), now: 10, random: 0)
        }
        #expect(Self.sends(scheduler.tick(now: 10)).isEmpty)
        #expect(scheduler.nextWake == 500)
        #expect(Self.sends(scheduler.tick(now: 500)) == [3])
        #expect(Self.sends(scheduler.tick(now: 999)).isEmpty)
        #expect(Self.sends(scheduler.tick(now: 1000)) == [4])
    }

    @Test("attempts made before a restart take their tokens: no second burst")
    func schedulerSpendsEarlierAttempts() {
        var scheduler = DeliveryScheduler(
            routes: [Self.destination(.none, concurrency: 16, rateLimit: RateLimit(count: 2, perMilliseconds: 1000))], now: 0)
        scheduler.spend(route: 0, attempts: 2, now: 0)
        _ = scheduler.tick(now: 0)
        scheduler.pageLoaded(route: 0, messages: (1...3).map { QueuedMessage(id: $0) }, complete: true)
        #expect(Self.sends(scheduler.tick(now: 0)).isEmpty)
        #expect(scheduler.nextWake == 500)
        #expect(Self.sends(scheduler.tick(now: 500)) == [1])
    }

    @Test("the scheduler trips the breaker, keeps order behind it, sends one probe at a time, and resumes on success")
    func schedulerBreaker() throws {
        var scheduler = DeliveryScheduler(
            routes: [
                Self.destination(.fifo, concurrency: 1, breaker: BreakerPolicy(failures: 2, probeIntervalMilliseconds: 1000)),
                Self.destination(.none, concurrency: 16, name: "r/other"),
            ], now: 0)
        _ = scheduler.tick(now: 0)
        scheduler.pageLoaded(route: 0, messages: (1...3).map { QueuedMessage(id: $0) }, complete: true)
        scheduler.pageLoaded(route: 1, messages: (11...12).map { QueuedMessage(id: $0) }, complete: true)
        func attempt(_ id: Int64, status: Int, at now: Int64) throws -> DeliveryScheduler.AttemptEnd {
            _ = scheduler.attemptStarted(id, attempts: 0, cycleAttempts: 0, cycleStart: 0, correlationID: "c\(id)", now: now)
            let end = scheduler.attemptEnded(id, result: .response(status: status, retryAfter: nil), now: now, random: 0)
            return try #require(end)
        }
        #expect(Set(Self.sends(scheduler.tick(now: 0))) == [1, 11, 12])
        #expect(try attempt(1, status: 503, at: 0).breaker == nil)
        _ = try attempt(11, status: 200, at: 0)
        #expect(Self.sends(scheduler.tick(now: 49)) == [], "the retry of 1 is due at 50 ms (half of 100 with random 0)")
        #expect(Self.sends(scheduler.tick(now: 50)) == [1])
        let tripped = try attempt(1, status: 503, at: 50)
        #expect(tripped.breaker == .tripped && tripped.state == .queued)
        #expect(scheduler.breakerState(route: 0) == .tripped(since: 50, nextProbeAt: 1050, interval: 1000))
        #expect(Self.sends(scheduler.tick(now: 200)) == [], "the retry falls due, but the breaker holds it")
        #expect(scheduler.nextWake == 1050)
        _ = try attempt(12, status: 200, at: 200)
        #expect(scheduler.breakerState(route: 1) == .closed, "the other destination goes on")
        #expect(Self.sends(scheduler.tick(now: 1050)) == [1], "the probe is the head of the queue: order kept")
        #expect(Self.sends(scheduler.tick(now: 1100)) == [])
        let probe = try attempt(1, status: 503, at: 1150)
        #expect(probe.breaker == nil && probe.attempt == 3)
        #expect(scheduler.nextWake == 3150)
        // An operator's action (a replay, skip, pause or resume) makes it probe at once.
        scheduler.generationChanged(paused: [], now: 1300)
        scheduler.pageLoaded(route: 0, messages: (1...3).map { QueuedMessage(id: $0) }, complete: true)
        #expect(scheduler.nextWake == 1300)
        #expect(Self.sends(scheduler.tick(now: 1300)) == [1])
        let recovered = try attempt(1, status: 200, at: 3160)
        #expect(recovered.breaker == .recovered && recovered.state == .delivered)
        #expect(Self.sends(scheduler.tick(now: 3160)) == [2])
    }
}
