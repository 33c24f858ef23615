/// What one delivery attempt produced, as far as the retry rules care.
public enum AttemptResult: Sendable, Equatable {
    /// The upstream answered with `status`; `retryAfter` is its `Retry-After` value, if any.
    case response(status: Int, retryAfter: String?)
    /// No answer: connection refused or reset, timeout, malformed response.
    case transportError(String)
    /// Nothing was sent: the destination's transform produced no output or `null` (SPEC §11).
    case filtered
    /// Nothing was sent: the transform failed (an error, its timeout, its memory cap). The
    /// program, not the upstream, is at fault: no retry, and the breaker does not count it.
    case transformFailed(String)
}

/// The decision after an attempt (SPEC §3).
public enum Verdict: Sendable, Equatable {
    /// 2xx: done.
    case delivered
    /// Try again at this time (milliseconds since the Unix epoch).
    case retry(atMilliseconds: Int64)
    /// No more attempts: not retryable, `max_attempts` reached, or past `max_age`.
    case failed(reason: String)
}

extension RetryPolicy {
    /// The statuses retried when `retry_on` is not set: 408, 425, 429 and every 5xx.
    public static let defaultRetryable: [StatusRange] = [
        StatusRange(lower: 408, upper: 408), StatusRange(lower: 425, upper: 425), StatusRange(lower: 429, upper: 429),
        StatusRange(lower: 500, upper: 599),
    ]

    /// Whether an answer with `status` is retried under this policy.
    public func isRetryable(status: Int) -> Bool {
        (retryOn ?? Self.defaultRetryable).contains { $0.contains(status) }
    }

    /// The delay before attempt `attempt + 1`: `initial × factor^(attempt−1)`, capped at
    /// `max_delay`, with "equal jitter" (a uniformly random half of it) so that retries of
    /// many messages do not arrive together. `random` is in `0..<1`.
    public func backoff(afterAttempt attempt: Int, random: Double) -> Duration {
        let initialMilliseconds = Double(initial.milliseconds)
        let capMilliseconds = Double(maxDelay.milliseconds)
        let full = min(capMilliseconds, initialMilliseconds * power(factor, attempt > 1 ? attempt - 1 : 0))
        return .milliseconds(Int64(full / 2 + full / 2 * random))
    }

    /// The verdict on attempt number `attempt` (counted from the message's receipt or its
    /// last replay, `cycleStart`), which ended at `now` with `result`.
    public func verdict(
        _ result: AttemptResult, attempt: Int, cycleStart: Int64, now: Int64, random: Double
    ) -> Verdict {
        var delay: Duration
        switch result {
        case .response(let status, _) where (200..<300).contains(status):
            return .delivered
        case .response(let status, let retryAfter):
            guard isRetryable(status: status) else { return .failed(reason: "HTTP \(status) is not retryable") }
            delay = backoff(afterAttempt: attempt, random: random)
            // The upstream's own Retry-After wins, even past max_delay.
            if let retryAfter, let wait = Self.parseRetryAfter(retryAfter, now: now) { delay = wait }
        case .transportError:
            delay = backoff(afterAttempt: attempt, random: random)
        case .filtered, .transformFailed:
            // Decided by the scheduler before any verdict: a transform's end is final.
            return .failed(reason: "the transform decided")
        }
        guard attempt < maxAttempts else { return .failed(reason: "\(maxAttempts) attempts made (max_attempts)") }
        let at = now.clampedAdding(delay.milliseconds)
        guard at <= cycleStart.clampedAdding(maxAge.milliseconds) else {
            return .failed(reason: "the next attempt would fall after max_age (\(maxAge))")
        }
        return .retry(atMilliseconds: at)
    }

    /// A `Retry-After` value (RFC 9110 §10.2.3) as a delay from `now`: delay-seconds, or an
    /// HTTP date. Nil when it is neither; a date in the past is no delay. However large the
    /// value, the delay is at most a little over ``maximumDuration``, which is past any
    /// `max_age`: the retry is then not made.
    public static func parseRetryAfter(_ value: String, now: Int64) -> Duration? {
        let trimmed = Substring(value).trimmingHTTPWhitespace()
        let ceiling = maximumDuration.milliseconds / 1000 + 1
        if let seconds = parseDigits(trimmed, clampedTo: ceiling) { return .seconds(seconds) }
        guard let date = HTTPDate.parse(trimmed) else { return nil }
        return .milliseconds(min(max(0, date - now), ceiling * 1000))
    }
}

/// HTTP dates (RFC 9110 §5.6.7): the preferred IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`,
/// and the obsolete forms a recipient must still accept, RFC 850
/// `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`.
public enum HTTPDate {
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Milliseconds since the Unix epoch, or nil when `text` is none of the three forms or
    /// names no real time (`Sun, 45 Foo 2026 99:00:00 GMT`).
    public static func parse(_ text: Substring) -> Int64? {
        let parts = text.split(separator: " ")
        if parts.count == 6, parts[0].hasSuffix(","), parts[5] == "GMT", parts[1].utf8.count == 2, parts[3].utf8.count == 4 {
            // IMF-fixdate.
            return make(year: parts[3], month: parts[2], day: parts[1], clock: parts[4])
        }
        if parts.count == 4, parts[0].hasSuffix(","), parts[3] == "GMT" {
            // RFC 850: a two-digit year more than 50 years ahead is in the past century.
            let date = parts[1].split(separator: "-")
            guard date.count == 3, date[0].utf8.count == 2, date[2].utf8.count == 2, let shortYear = number(date[2]) else { return nil }
            return make(year: (shortYear < 50 ? 2000 : 1900) + shortYear, month: date[1], day: date[0], clock: parts[2])
        }
        if parts.count == 5, !parts[0].hasSuffix(","), parts[2].utf8.count <= 2, parts[4].utf8.count == 4 {
            // asctime.
            return make(year: parts[4], month: parts[1], day: parts[2], clock: parts[3])
        }
        return nil
    }

    /// One to four decimal digits.
    private static func number(_ text: Substring) -> Int64? {
        text.utf8.count <= 4 ? parseDigits(text, clampedTo: 9999) : nil
    }

    private static func make(year: Substring, month: Substring, day: Substring, clock: Substring) -> Int64? {
        guard let year = number(year) else { return nil }
        return make(year: year, month: month, day: day, clock: clock)
    }

    private static func make(year: Int64, month: Substring, day: Substring, clock: Substring) -> Int64? {
        let time = clock.split(separator: ":", omittingEmptySubsequences: false)
        guard let monthIndex = months.firstIndex(of: String(month)), let day = number(day), time.count == 3,
            time.allSatisfy({ $0.utf8.count == 2 }), let hour = number(time[0]), let minute = number(time[1]),
            let second = number(time[2])
        else { return nil }
        // RFC 9110 allows a leap second (60); it is read as the next instant.
        let leap: Int64 = second == 60 ? 1000 : 0
        return Timestamp.civil(
            year: year, month: Int64(monthIndex + 1), day: day, hour: hour, minute: minute, second: second == 60 ? 59 : second
        ).map { $0 + leap }
    }
}

/// `base` raised to `exponent` without Foundation, by squaring: at most 64 rounds whatever the
/// exponent (an attempt count read from the journal), and `+infinity` once it overflows.
private func power(_ base: Double, _ exponent: Int) -> Double {
    var result = 1.0
    var square = base
    var remaining = exponent
    while remaining > 0 && result.isFinite {
        if remaining & 1 == 1 { result *= square }
        square *= square
        remaining >>= 1
    }
    return result
}
