// Numbers from outside are parsed into bounded ranges (SPEC §2): nothing a source, an operator, an
// upstream or a file writes can make these functions trap, spin or return a value that overflows
// when added to a timestamp.

import Testing
import WaypostCore

@Suite("Bounds: durations, digits, dates, Retry-After, query strings, networks")
struct BoundsTests {
    @Test(
        "parseDuration: at most 36500d, no overflow however many digits",
        arguments: [
            ("36500d", Optional<Int64>(36_500 * 86_400_000)), ("876000h", 876_000 * 3_600_000), ("36501d", nil), ("876001h", nil),
            ("99999999999999999999d", nil), ("9223372036854775807ms", nil), ("9223372036854775807d", nil), ("-2h", nil),
            ("+2h", nil), ("2 h", nil), ("", nil), ("0s", 0),
        ] as [(String, Int64?)])
    func durationBounds(text: String, milliseconds: Int64?) {
        #expect(parseDuration(text)?.milliseconds == milliseconds, "'\(text)'")
    }

    @Test(
        "parseDigits: digits only, clamped to the maximum",
        arguments: [
            ("0", Optional<Int64>(0)), ("60", 60), ("61", 60), ("99999999999999999999999999999", 60), ("-1", nil), ("+1", nil),
            (" 1", nil), ("1 ", nil), ("", nil), ("1.5", nil), ("1e3", nil), ("٣", nil),
        ] as [(String, Int64?)])
    func digits(text: String, value: Int64?) {
        #expect(parseDigits(Substring(text), clampedTo: 60) == value, "'\(text)'")
    }

    @Test("parseDigits near Int64.max saturates instead of overflowing")
    func digitsNearMax() {
        #expect(parseDigits("9223372036854775807", clampedTo: .max) == .max)
        #expect(parseDigits("9223372036854775808", clampedTo: .max) == .max)
        #expect(parseDigits("99999999999999999999999", clampedTo: .max) == .max)
    }

    @Test("Duration.milliseconds and .nanoseconds saturate")
    func durationSaturates() {
        #expect(Duration.seconds(Int64.max).milliseconds == .max)
        #expect(Duration.seconds(Int64.min).milliseconds == .min)
        #expect(Duration.seconds(Int64.max).nanoseconds == .max)
        #expect(Int64.max.clampedAdding(1) == .max)
        #expect(Int64.min.clampedAdding(-1) == .min)
    }

    @Test(
        "Timestamp.parse and filterBound refuse invalid calendar dates",
        arguments: [
            "2026-13-45T99:99:99.000Z", "2026-13-01T00:00:00.000Z", "2026-00-10T00:00:00.000Z", "2026-02-29T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z", "2026-01-00T00:00:00.000Z", "2026-01-01T24:00:00.000Z", "2026-01-01T00:60:00.000Z",
            "2026-01-01T00:00:60.000Z", "2026-01-01X00:00:00.000Z", "2026/01/01T00:00:00.000Z", "2026-01-01T00-00-00.000Z",
        ])
    func invalidDates(text: String) {
        #expect(Timestamp.parse(text) == nil, "'\(text)'")
        #expect(Timestamp.filterBound(text) == nil, "'\(text)'")
        #expect(Timestamp.filterBound(String(text.dropLast(5)) + "Z") == nil, "'\(text)' without milliseconds")
    }

    @Test("leap days and the last instants of a month are dates")
    func validDates() {
        #expect(Timestamp.parse("2024-02-29T23:59:59.999Z") != nil)
        #expect(Timestamp.parse("2000-02-29T00:00:00.000Z") != nil)
        #expect(Timestamp.parse("1900-02-29T00:00:00.000Z") == nil, "1900 is not a leap year")
        #expect(Timestamp.filterBound("2026-12-31T23:59:59Z") == "2026-12-31T23:59:59.000Z")
        #expect(Timestamp.filterBound("36500d", now: 0) != nil)
        #expect(Timestamp.filterBound("36501d", now: 0) == nil)
    }

    @Test(
        "HTTPDate.parse refuses dates that are not on the calendar, and years of more than four digits",
        arguments: [
            "Mon, 30 Feb 2026 08:00:00 GMT", "Fri, 31 Dec 99999 23:59:59 GMT", "Fri, 31 Dec 9223372036854775807 23:59:59 GMT",
            "Fri, 31 Dec 2026 99:99:99 GMT", "Fri, 31 Dec 2026 1:2:3 GMT", "Fri, 031 Dec 2026 23:59:59 GMT",
            "Fri Dec 31 23:59:59 99999", "Friday, 31-Dec-999 23:59:59 GMT",
        ])
    func invalidHTTPDates(text: String) {
        #expect(HTTPDate.parse(Substring(text)) == nil, "'\(text)'")
    }

    @Test("a Retry-After of any size is a bounded delay, and past max_age it means no retry")
    func hugeRetryAfter() {
        let policy = RetryPolicy(maxAge: maximumDuration)
        for value in ["99999999999999999999999999", "9223372036854775807", "Fri, 31 Dec 9999 23:59:59 GMT"] {
            let delay = RetryPolicy.parseRetryAfter(value, now: 0)
            #expect(
                delay.map { $0 > maximumDuration && $0 <= maximumDuration + .seconds(1) } == true, "\(value): \(String(describing: delay))")
            let verdict = policy.verdict(.response(status: 503, retryAfter: value), attempt: 1, cycleStart: 0, now: 0, random: 0)
            guard case .failed(let reason) = verdict else {
                Issue.record("\(value): \(verdict)")
                continue
            }
            #expect(reason.contains("max_age"), "\(reason)")
        }
    }

    @Test("verdicts on times and attempt counts at the ends of their types do not trap")
    func extremeVerdicts() {
        let policy = RetryPolicy(factor: 1, maxAttempts: .max)
        for (attempt, cycleStart, now) in [(Int.max, Int64.max, Int64.max), (Int.min, Int64.min, Int64.min), (Int.max, 0, Int64.max)] {
            _ = policy.verdict(
                .response(status: 503, retryAfter: "99999999999"), attempt: attempt, cycleStart: cycleStart, now: now, random: 0.999)
            _ = policy.verdict(.transportError("x"), attempt: attempt, cycleStart: cycleStart, now: now, random: 0.999)
        }
        // Factor 1 and a huge attempt count: no loop as long as the count (that would spin).
        let clock = ContinuousClock()
        let elapsed = clock.measure { _ = RetryPolicy(factor: 1.5).backoff(afterAttempt: .max, random: 0.5) }
        #expect(elapsed < .seconds(1), "\(elapsed)")
        #expect(RetryPolicy(factor: 100).backoff(afterAttempt: .max, random: 0.999) <= RetryPolicy().maxDelay)
    }

    @Test(
        "QueryString.items: malformed items are errors, never traps",
        arguments: ["=", "=x", "a=%", "a=%z1", "a=%ff", "%=1", "a=%e2%82"])
    func malformedQuery(query: String) {
        #expect(throws: QueryString.Malformed.self, "'\(query)'") { try QueryString.items(Substring(query)) }
    }

    @Test("QueryString.items decodes + and %XX, keeps order, skips empty items")
    func query() throws {
        let items = try QueryString.items("a=1&&b=two+words&c=%2Fx%20y&d&e=")
        #expect(items.map { "\($0.name)=\($0.value)" } == ["a=1", "b=two words", "c=/x y", "d=", "e="])
        #expect(throws: QueryString.Malformed.self) { try QueryString.dictionary("a=1&a=2", allowed: ["a"]) }
        #expect(throws: QueryString.Malformed.self) { try QueryString.dictionary("b=1", allowed: ["a"]) }
        #expect(QueryString.query(ofTarget: "/x?y=1?z") == "y=1?z")
        #expect(QueryString.query(ofTarget: "/x") == "")
    }

    @Test("CIDR: IPv4 and IPv6 networks, single addresses, IPv4-mapped peers")
    func networks() throws {
        let v4 = try #require(CIDR("10.0.0.0/8"))
        #expect(v4.contains("10.255.1.2") && !v4.contains("11.0.0.1") && v4.contains("::ffff:10.1.2.3"))
        #expect(try #require(CIDR("192.0.2.7")).contains("192.0.2.7"))
        #expect(try #require(CIDR("192.0.2.7")).contains("192.0.2.8") == false)
        let v6 = try #require(CIDR("2001:db8::/32"))
        #expect(v6.contains("2001:db8:1::5") && !v6.contains("2001:db9::1") && !v6.contains("10.0.0.1"))
        #expect(try #require(CIDR("10.1.2.3/12")).description == "10.0.0.0/12")
        #expect(try #require(CIDR("0.0.0.0/0")).contains("203.0.113.9"))
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/-1", "10.0.0.0/", "example.com", "10.0.0.0/8/8", "10.0.0.0/0008"] {
            #expect(CIDR(bad) == nil, "'\(bad)'")
        }
        #expect(!v4.contains("not an address") && !v4.contains(""))
    }
}
