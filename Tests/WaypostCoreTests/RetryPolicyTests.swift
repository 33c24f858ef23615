// The outcome of one delivery attempt and the retry schedule (SPEC §3): which statuses are
// retried, the backoff with its jitter bounds, Retry-After, max_attempts and max_age.

import Foundation
import Testing
import WaypostCore

/// 1994-11-06T08:49:37Z, RFC 9110's example date, in milliseconds.
private let rfcExampleMilliseconds: Int64 = 784_111_777_000

private let defaultPolicy = RetryPolicy()

@Suite("RetryPolicy: verdicts and backoff (SPEC §3)")
struct RetryPolicyTests {
    // MARK: - Which statuses are retried

    @Test("2xx is delivered, whatever the attempt", arguments: [200, 201, 202, 204, 226, 299])
    func successIsDelivered(status: Int) {
        for attempt in [1, 5, defaultPolicy.maxAttempts] {
            let verdict = defaultPolicy.verdict(
                .response(status: status, retryAfter: "30"), attempt: attempt, cycleStart: 0, now: 1_000, random: 0.5)
            #expect(verdict == .delivered, "HTTP \(status) on attempt \(attempt)")
        }
    }

    @Test("408, 425, 429 and every 5xx are retried by default", arguments: [408, 425, 429, 500, 501, 502, 503, 504, 507, 599])
    func retryableByDefault(status: Int) {
        #expect(defaultPolicy.isRetryable(status: status))
        let verdict = defaultPolicy.verdict(
            .response(status: status, retryAfter: nil), attempt: 1, cycleStart: 0, now: 10_000, random: 0)
        #expect(verdict == .retry(atMilliseconds: 10_500), "HTTP \(status): half the 1s initial delay with random 0")
    }

    @Test(
        "other statuses, 3xx included, fail at once",
        arguments: [300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 409, 410, 413, 422, 426, 451])
    func notRetryableByDefault(status: Int) throws {
        #expect(!defaultPolicy.isRetryable(status: status))
        let verdict = defaultPolicy.verdict(
            .response(status: status, retryAfter: "1"), attempt: 1, cycleStart: 0, now: 0, random: 0.5)
        guard case .failed(let reason) = verdict else {
            Issue.record("HTTP \(status): \(verdict), expected failed")
            return
        }
        #expect(reason.contains(String(status)), "the reason names the status: \(reason)")
    }

    @Test(
        "retry_on [409, 5xx] replaces the retryable set",
        arguments: [(409, true), (500, true), (503, true), (599, true), (429, false), (408, false), (425, false), (400, false)])
    func retryOnReplaces(status: Int, retried: Bool) {
        let policy = RetryPolicy(retryOn: [StatusRange(lower: 409, upper: 409), StatusRange(lower: 500, upper: 599)])
        #expect(policy.isRetryable(status: status) == retried)
        let verdict = policy.verdict(.response(status: status, retryAfter: nil), attempt: 1, cycleStart: 0, now: 0, random: 0)
        if retried {
            #expect(verdict == .retry(atMilliseconds: 500), "HTTP \(status)")
        } else {
            #expect(verdict.isFailed, "HTTP \(status): \(verdict)")
        }
    }

    @Test(
        "transport errors are retried under any retry_on",
        arguments: [nil, [], [StatusRange(lower: 409, upper: 409)]] as [[StatusRange]?])
    func transportErrorsRetry(retryOn: [StatusRange]?) {
        let policy = RetryPolicy(retryOn: retryOn)
        for error in ["connection refused", "timeout after 30s", "malformed response"] {
            let verdict = policy.verdict(.transportError(error), attempt: 2, cycleStart: 0, now: 0, random: 0)
            #expect(verdict == .retry(atMilliseconds: 1_000), "\(error) with retry_on \(String(describing: retryOn))")
        }
    }

    @Test("an empty retry_on retries no status at all")
    func emptyRetryOn() {
        let policy = RetryPolicy(retryOn: [])
        for status in [408, 429, 500, 503] {
            #expect(!policy.isRetryable(status: status), "HTTP \(status)")
        }
    }

    // MARK: - Backoff

    @Test(
        "backoff: initial × factor^(attempt−1), capped at max_delay, with equal jitter",
        arguments: [
            // (attempt, random, expected milliseconds) under initial 1s, factor 2, max_delay 10m
            (1, 0.0, 500), (1, 0.5, 750), (2, 0.0, 1_000), (2, 0.5, 1_500), (3, 0.0, 2_000), (4, 0.0, 4_000),
            (10, 0.0, 256_000), (10, 0.5, 384_000),
            (11, 0.0, 300_000), (11, 0.5, 450_000), (20, 0.0, 300_000), (1_000, 0.5, 450_000),
        ] as [(Int, Double, Int64)])
    func backoffTable(attempt: Int, random: Double, expected: Int64) {
        #expect(defaultPolicy.backoff(afterAttempt: attempt, random: random).milliseconds == expected)
    }

    @Test("backoff with another factor and initial")
    func backoffOtherFactor() {
        let policy = RetryPolicy(initial: .milliseconds(200), factor: 3, maxDelay: .seconds(5))
        let full: [Int64] = [200, 600, 1_800, 5_000, 5_000]
        for (index, expected) in full.enumerated() {
            #expect(policy.backoff(afterAttempt: index + 1, random: 0).milliseconds == expected / 2, "attempt \(index + 1)")
        }
        #expect(policy.backoff(afterAttempt: 3, random: 0.5).milliseconds == 1_350)
    }

    @Test(
        "backoff stays within [full/2, full] for random in 0..<1, and never shrinks from one attempt to the next",
        arguments: [0.0, 0.1, 0.25, 0.5, 0.75, 0.999_999])
    func backoffBounds(random: Double) {
        let policies = [
            defaultPolicy,
            RetryPolicy(initial: .milliseconds(250), factor: 1.5, maxDelay: .seconds(30)),
            RetryPolicy(initial: .seconds(2), factor: 1, maxDelay: .seconds(2)),
        ]
        for policy in policies {
            var previous: Int64 = 0
            for attempt in 1...40 {
                let full = min(
                    Double(policy.maxDelay.milliseconds),
                    Double(policy.initial.milliseconds) * pow(policy.factor, Double(attempt - 1)))
                let delay = policy.backoff(afterAttempt: attempt, random: random).milliseconds
                #expect(
                    Double(delay) >= (full / 2).rounded(.down) && Double(delay) <= full,
                    "attempt \(attempt), factor \(policy.factor): \(delay) ms not in [\(full / 2), \(full)]")
                #expect(delay >= previous, "attempt \(attempt), factor \(policy.factor): \(delay) < \(previous)")
                previous = delay
            }
        }
    }

    @Test("the retry lands at now + backoff")
    func retryTime() {
        let now: Int64 = 1_700_000_000_000
        for attempt in 1...12 {
            let expected = now + defaultPolicy.backoff(afterAttempt: attempt, random: 0.3).milliseconds
            let verdict = defaultPolicy.verdict(
                .response(status: 503, retryAfter: nil), attempt: attempt, cycleStart: now - 1_000, now: now, random: 0.3)
            #expect(verdict == .retry(atMilliseconds: expected), "attempt \(attempt)")
        }
    }

    // MARK: - Retry-After

    @Test(
        "Retry-After is honoured, even beyond max_delay",
        arguments: [
            ("120", 120_000), ("0", 0), (" 30 ", 30_000), ("3600", 3_600_000),
            ("Sun, 06 Nov 1994 10:49:37 GMT", 7_200_000),  // two hours after `now`
            ("Sun, 06 Nov 1994 08:49:38 GMT", 1_000),
            ("Sun, 06 Nov 1994 08:49:37 GMT", 0),  // now
            ("Sat, 05 Nov 1994 08:49:37 GMT", 0),  // in the past: no delay
        ] as [(String, Int64)])
    func retryAfterHonoured(value: String, delay: Int64) {
        let policy = RetryPolicy(maxDelay: .seconds(10))
        for status in [429, 503] {
            let verdict = policy.verdict(
                .response(status: status, retryAfter: value), attempt: 3, cycleStart: rfcExampleMilliseconds - 60_000,
                now: rfcExampleMilliseconds, random: 0.5)
            #expect(verdict == .retry(atMilliseconds: rfcExampleMilliseconds + delay), "HTTP \(status), Retry-After '\(value)'")
        }
    }

    @Test(
        "an unparseable Retry-After falls back to the backoff",
        arguments: ["soon", "", "-5", "1.5", "1e3", "12 s", "0x10", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994"])
    func retryAfterUnparseable(value: String) {
        let now: Int64 = 1_000_000
        let verdict = defaultPolicy.verdict(
            .response(status: 503, retryAfter: value), attempt: 2, cycleStart: 0, now: now, random: 0.5)
        #expect(verdict == .retry(atMilliseconds: now + 1_500), "Retry-After '\(value)'")
    }

    @Test("Retry-After does not make a non-retryable status retried")
    func retryAfterOnNonRetryable() {
        let verdict = defaultPolicy.verdict(.response(status: 400, retryAfter: "5"), attempt: 1, cycleStart: 0, now: 0, random: 0)
        #expect(verdict.isFailed, "\(verdict)")
    }

    @Test(
        "parseRetryAfter: delay-seconds and IMF-fixdate",
        arguments: [
            ("5", Optional<Int64>(5_000)), ("\t7\t", 7_000), ("Sun, 06 Nov 1994 08:50:37 GMT", 60_000), ("later", nil),
            ("-1", nil),
        ] as [(String, Int64?)])
    func parseRetryAfter(value: String, milliseconds: Int64?) {
        #expect(RetryPolicy.parseRetryAfter(value, now: rfcExampleMilliseconds)?.milliseconds == milliseconds, "'\(value)'")
    }

    @Test(
        "Retry-After in the obsolete HTTP-date forms, which RFC 9110 §5.6.7 says a recipient MUST accept",
        arguments: ["Sunday, 06-Nov-94 10:49:37 GMT", "Sun Nov  6 10:49:37 1994"])
    func retryAfterObsoleteDates(value: String) {
        #expect(RetryPolicy.parseRetryAfter(value, now: rfcExampleMilliseconds)?.milliseconds == 7_200_000, "'\(value)'")
    }

    // MARK: - Exhaustion

    @Test("max_attempts reached: failed, the reason naming max_attempts", arguments: [1, 3, 20])
    func maxAttempts(maxAttempts: Int) throws {
        let policy = RetryPolicy(maxAttempts: maxAttempts)
        let results: [AttemptResult] = [
            .response(status: 503, retryAfter: nil), .response(status: 429, retryAfter: "1"), .transportError("refused"),
        ]
        for result in results {
            if maxAttempts > 1 {
                let before = policy.verdict(result, attempt: maxAttempts - 1, cycleStart: 0, now: 0, random: 0)
                #expect(!before.isFailed, "\(result) on attempt \(maxAttempts - 1) of \(maxAttempts): \(before)")
            }
            let last = policy.verdict(result, attempt: maxAttempts, cycleStart: 0, now: 0, random: 0)
            #expect(last.failureReason?.contains("max_attempts") == true, "\(result) on attempt \(maxAttempts): \(last)")
        }
    }

    @Test("a retry that would land after cycleStart + max_age is not made")
    func maxAge() throws {
        let policy = RetryPolicy(maxAge: .seconds(3_600))
        let cycleStart: Int64 = 50_000_000
        let end = cycleStart + 3_600_000
        // attempt 1, random 0: 500 ms of backoff.
        #expect(
            policy.verdict(.transportError("refused"), attempt: 1, cycleStart: cycleStart, now: end - 500, random: 0)
                == .retry(atMilliseconds: end), "landing exactly at the end of max_age is allowed")
        let late = policy.verdict(.transportError("refused"), attempt: 1, cycleStart: cycleStart, now: end - 499, random: 0)
        #expect(late.failureReason?.contains("max_age") == true, "\(late)")
        let status = policy.verdict(.response(status: 502, retryAfter: nil), attempt: 4, cycleStart: cycleStart, now: end, random: 0)
        #expect(status.failureReason?.contains("max_age") == true, "\(status)")
    }

    @Test("a Retry-After past max_age fails the message, the reason naming max_age")
    func retryAfterPastMaxAge() {
        let policy = RetryPolicy(maxAge: .seconds(60))
        let inside = policy.verdict(
            .response(status: 503, retryAfter: "59"), attempt: 1, cycleStart: 0, now: 1_000, random: 0)
        #expect(inside == .retry(atMilliseconds: 60_000))
        let outside = policy.verdict(
            .response(status: 503, retryAfter: "60"), attempt: 1, cycleStart: 0, now: 1_000, random: 0)
        #expect(outside.failureReason?.contains("max_age") == true, "\(outside)")
    }

    @Test("max_age counts from the cycle start (a replay starts a new cycle), not from the first receipt")
    func maxAgeFromCycleStart() {
        let policy = RetryPolicy(maxAge: .seconds(3_600))
        let replayedAt: Int64 = 10 * 86_400_000
        let verdict = policy.verdict(.transportError("refused"), attempt: 1, cycleStart: replayedAt, now: replayedAt + 1_000, random: 0)
        #expect(verdict == .retry(atMilliseconds: replayedAt + 1_500))
    }

    // MARK: - HTTP dates

    @Test(
        "HTTPDate.parse reads IMF-fixdate",
        arguments: [
            ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777_000),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            ("Sat, 29 Feb 2020 12:00:00 GMT", 1_582_977_600_000),
            ("Wed, 01 Mar 2000 00:00:00 GMT", 951_868_800_000),
            ("Tue, 19 Jan 2038 03:14:08 GMT", 2_147_483_648_000),
            ("Fri, 31 Dec 9999 23:59:59 GMT", 253_402_300_799_000),
        ] as [(String, Int64)])
    func httpDate(text: String, milliseconds: Int64) {
        #expect(HTTPDate.parse(Substring(text)) == milliseconds)
    }

    @Test(
        "HTTPDate.parse refuses anything else",
        arguments: [
            "", "garbage", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra", "Sun, xx Nov 1994 08:49:37 GMT", "1994-11-06T08:49:37Z",
        ])
    func httpDateGarbage(text: String) {
        #expect(HTTPDate.parse(Substring(text)) == nil, "'\(text)'")
    }
}

extension Verdict {
    fileprivate var isFailed: Bool {
        if case .failed = self { return true }
        return false
    }

    fileprivate var failureReason: String? {
        if case .failed(let reason) = self { return reason }
        return nil
    }
}
