#if canImport(Glibc)
    import Glibc
#endif

/// RFC 3339 UTC timestamps with milliseconds, as the journal and the APIs write them:
/// `2026-11-29T23:53:36.123Z`. The text sorts in time order, so SQL compares it directly.
public enum Timestamp {
    /// The instants the format can write: 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z.
    public static let representable: ClosedRange<Int64> = -62_167_219_200_000...253_402_300_799_999

    /// Formats milliseconds since the Unix epoch, clamped to ``representable``.
    public static func format(millisecondsSince1970 unclamped: Int64) -> String {
        let ms = min(max(unclamped, representable.lowerBound), representable.upperBound)
        let days = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        let msOfDay = ms - days * 86_400_000
        let (year, month, day) = civilDate(daysSince1970: days)
        var out = [UInt8]()
        out.reserveCapacity(24)
        func append(_ value: Int64, digits: Int) {
            var divisor: Int64 = 1
            for _ in 1..<digits { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        append(year, digits: 4)
        out.append(UInt8(ascii: "-"))
        append(month, digits: 2)
        out.append(UInt8(ascii: "-"))
        append(day, digits: 2)
        out.append(UInt8(ascii: "T"))
        append(msOfDay / 3_600_000, digits: 2)
        out.append(UInt8(ascii: ":"))
        append(msOfDay / 60_000 % 60, digits: 2)
        out.append(UInt8(ascii: ":"))
        append(msOfDay / 1000 % 60, digits: 2)
        out.append(UInt8(ascii: "."))
        append(msOfDay % 1000, digits: 3)
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    /// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
    public static func daysSince1970(year y0: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// Milliseconds since the Unix epoch of a timestamp written by ``format(millisecondsSince1970:)``
    /// (`2026-11-29T23:53:36.123Z`). Nil unless every field is in its calendar range:
    /// `2026-13-45T99:99:99.000Z` and `2026-02-30T00:00:00.000Z` are not times.
    public static func parse(_ text: String) -> Int64? {
        let u = Array(text.utf8)
        guard u.count == 24, u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"), u[10] == UInt8(ascii: "T"),
            u[13] == UInt8(ascii: ":"), u[16] == UInt8(ascii: ":"), u[19] == UInt8(ascii: "."), u[23] == UInt8(ascii: "Z")
        else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for byte in u[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19), let ms = number(20..<23)
        else { return nil }
        return civil(year: year, month: month, day: day, hour: hour, minute: minute, second: second, millisecond: ms)
    }

    /// Milliseconds since the Unix epoch of a UTC civil time, or nil when a field is out of its
    /// range (year 0…9999, month 1…12, day 1…the month's last, hour 0…23, minute and second
    /// 0…59, millisecond 0…999).
    public static func civil(
        year: Int64, month: Int64, day: Int64, hour: Int64, minute: Int64, second: Int64, millisecond: Int64 = 0
    )
        -> Int64?
    {
        guard (0...9999).contains(year), (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day),
            (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second), (0...999).contains(millisecond)
        else { return nil }
        return ((daysSince1970(year: year, month: month, day: day) * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millisecond
    }

    /// The number of days in `month` (1…12) of `year` in the proleptic Gregorian calendar.
    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// A time bound given by an operator (`--since`, `--until`, filters of the admin API), as
    /// stored text: a duration before `now` (`2h`, `7d`), or an RFC 3339 UTC time with or
    /// without milliseconds (`2026-11-30T08:00:00Z`). Nil when it is neither.
    public static func filterBound(_ text: String, now: Int64 = Timestamp.now()) -> String? {
        if let duration = parseDuration(text) { return format(millisecondsSince1970: now.clampedAdding(-duration.milliseconds)) }
        if let ms = parse(text) { return format(millisecondsSince1970: ms) }
        if text.count == 20, text.hasSuffix("Z"), let ms = parse(String(text.dropLast()) + ".000Z") {
            return format(millisecondsSince1970: ms)
        }
        return nil
    }

    /// Now, in milliseconds since the Unix epoch.
    public static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }

    /// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    static func civilDate(daysSince1970 z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

extension Duration {
    /// The duration in whole nanoseconds (saturating).
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? (seconds > 0 ? .max : .min) : product.clampedAdding(attoseconds / 1_000_000_000)
    }

    /// The duration in whole milliseconds (saturating).
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        return overflow ? (seconds > 0 ? .max : .min) : product.clampedAdding(attoseconds / 1_000_000_000_000_000)
    }
}
