import Foundation
import Testing
import WaypostCore

/// Foundation's RFC 3339 rendering with milliseconds, in UTC: the reference for `Timestamp`.
private func foundationFormat(_ ms: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    formatter.timeZone = TimeZone(identifier: "UTC")
    // Whole seconds through the formatter and the milliseconds by hand, so that binary floating
    // point (1.123 s is 1.12299… s) cannot shift the last digit.
    let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
    let millis = ms - seconds * 1000
    let whole = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    #expect(whole.hasSuffix(".000Z"), "\(whole)")
    return String(whole.dropLast(4)) + String(format: "%03lldZ", millis)
}

/// Milliseconds of midnight UTC on a civil date, from Foundation's Gregorian calendar.
private func midnight(_ year: Int, _ month: Int, _ day: Int) -> Int64 {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    let date = calendar.date(from: DateComponents(year: year, month: month, day: day))!
    return Int64(date.timeIntervalSince1970.rounded()) * 1000
}

@Suite struct TimestampTests {

    @Test(
        "known instants",
        arguments: [
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (999, "1970-01-01T00:00:00.999Z"),
            (1000, "1970-01-01T00:00:01.000Z"),
            (59_999, "1970-01-01T00:00:59.999Z"),
            (3_600_000, "1970-01-01T01:00:00.000Z"),
            (86_399_999, "1970-01-01T23:59:59.999Z"),
            (86_400_000, "1970-01-02T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-86_400_000, "1969-12-31T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (946_684_799_999, "1999-12-31T23:59:59.999Z"),
            (1_234_567_890_123, "2009-02-13T23:31:30.123Z"),
            (1_709_164_800_123, "2024-02-29T00:00:00.123Z"),
            (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (1_795_996_416_123, "2026-11-29T23:53:36.123Z"),
            (2_147_483_648_000, "2038-01-19T03:14:08.000Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (13_574_563_200_000, "2400-02-29T00:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ] as [(Int64, String)]
    )
    func knownInstants(ms: Int64, expected: String) {
        #expect(Timestamp.format(millisecondsSince1970: ms) == expected)
        #expect(foundationFormat(ms) == expected)
    }

    /// Around the days where calendars go wrong: leap days, century years, year ends.
    @Test(
        "agrees with Foundation around leap days and year ends",
        arguments: [
            (1900, 2, 28), (1900, 3, 1), (1970, 1, 1), (1999, 12, 31), (2000, 2, 29), (2000, 3, 1),
            (2023, 2, 28), (2023, 3, 1), (2024, 2, 28), (2024, 2, 29), (2024, 3, 1), (2024, 12, 31),
            (2025, 1, 1), (2099, 12, 31), (2100, 2, 28), (2100, 3, 1), (2100, 12, 31), (2400, 2, 29),
            (2400, 12, 31), (9999, 12, 30),
        ] as [(Int, Int, Int)]
    )
    func leapDaysAndYearEnds(year: Int, month: Int, day: Int) {
        let start = midnight(year, month, day)
        let offsets: [Int64] = [-1, 0, 1, 999, 1000, 43_200_000, 86_399_999, 86_400_000]
        for offset in offsets {
            let ms = start + offset
            #expect(Timestamp.format(millisecondsSince1970: ms) == foundationFormat(ms), "ms = \(ms)")
        }
        let text = Timestamp.format(millisecondsSince1970: start)
        #expect(text == String(format: "%04d-%02d-%02dT00:00:00.000Z", year, month, day))
    }

    /// The last instant RFC 3339's four-digit years can write, and the first one they cannot.
    @Test func lastWritableInstant() {
        #expect(Timestamp.format(millisecondsSince1970: 253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
    }

    /// Past 9999-12-31 the text is clamped rather than letting the year digit overflow into `:`
    /// (reachable only through absurd configured durations or `Retry-After` values).
    @Test(arguments: [253_402_300_800_000, 300_000_000_000_000] as [Int64])
    func beyondYear9999StaysWellFormed(ms: Int64) {
        let text = Timestamp.format(millisecondsSince1970: ms)
        let isDigit: (Character) -> Bool = { ("0"..."9").contains($0) }
        let halves = text.split(separator: "T")
        #expect(halves.count == 2, "\(text)")
        let date = halves.first?.split(separator: "-") ?? []
        #expect(date.count == 3 && date.allSatisfy { !$0.isEmpty && $0.allSatisfy(isDigit) }, "\(text)")
        #expect(text >= Timestamp.format(millisecondsSince1970: 253_402_300_799_999))
    }

    @Test func agreesWithFoundationOverFiveCenturies() {
        // An irregular step (13 days, 1 h, 2 min, 3.457 s) visits every month, weekday and hour.
        let step: Int64 = 13 * 86_400_000 + 3_723_457
        var ms = midnight(1900, 1, 1)
        let end = midnight(2401, 1, 1)
        var mismatches = 0
        while ms < end {
            let ours = Timestamp.format(millisecondsSince1970: ms)
            let theirs = foundationFormat(ms)
            if ours != theirs {
                mismatches += 1
                if mismatches <= 5 { Issue.record("ms \(ms): \(ours) != \(theirs)") }
            }
            ms += step
        }
        #expect(mismatches == 0)
    }

    @Test func textSortsInTimeOrder() {
        var instants: [Int64] = [-86_400_001, -1, 0, 1, 9, 10, 99, 100, 999, 1000, 59_999, 60_000, 86_399_999, 86_400_000]
        for year in [1969, 1970, 1999, 2000, 2024, 2099, 2100, 2101, 2400, 9999] {
            let start = midnight(year, 1, 1)
            instants += [start - 1, start, start + 1, midnight(year, 2, 28), midnight(year, 3, 1) - 1]
        }
        var value: Int64 = 0
        for _ in 0..<2000 {
            value = (value &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407)
            instants.append(abs(value % 253_402_300_799_999))
        }
        instants = Array(Set(instants)).sorted()
        let texts = instants.map { Timestamp.format(millisecondsSince1970: $0) }
        for (index, (earlier, later)) in zip(texts, texts.dropFirst()).enumerated() {
            #expect(earlier < later, "\(instants[index]) → \(earlier) should sort before \(instants[index + 1]) → \(later)")
        }
        #expect(texts.allSatisfy { $0.utf8.count == 24 })
    }

    // MARK: Duration.milliseconds

    @Test(
        arguments: [
            (.zero, 0),
            (.milliseconds(1), 1),
            (.milliseconds(250), 250),
            (.seconds(5), 5000),
            (.seconds(600), 600_000),
            (.seconds(72 * 3600), 259_200_000),
            (.seconds(7 * 86_400), 604_800_000),
            (.microseconds(1999), 1),
            (.microseconds(999), 0),
            (.nanoseconds(999_999), 0),
            (.nanoseconds(1_000_000), 1),
            (.seconds(1) + .nanoseconds(1), 1000),
            (.seconds(1) + .microseconds(999_999), 1999),
            (.milliseconds(-1500), -1500),
            (.seconds(-1), -1000),
            (.milliseconds(Int64(1) << 50), Int64(1) << 50),
        ] as [(Duration, Int64)]
    )
    func durationMilliseconds(duration: Duration, expected: Int64) {
        #expect(duration.milliseconds == expected)
    }

    /// What an operator writes in the configuration comes back as the milliseconds meant.
    @Test(arguments: [("250ms", 250), ("5s", 5000), ("10m", 600_000), ("72h", 259_200_000), ("7d", 604_800_000)] as [(String, Int64)])
    func configuredDurationInMilliseconds(text: String, expected: Int64) throws {
        let duration = try #require(parseDuration(text))
        #expect(duration.milliseconds == expected)
    }
}
