// Durations and sizes as written in the configuration and on the command line (SPEC §8).

/// Parses a duration written as a non-negative integer followed by a unit:
/// `ms`, `s`, `m`, `h` or `d` (`250ms`, `5s`, `10m`, `72h`, `7d`).
///
/// A unit is required, fractions, signs, spaces and compound forms (`1h30m`) are refused.
///
/// - Returns: The duration, or `nil` when `s` is not written as above or does not fit.
public func parseDuration(_ s: String) -> Duration? {
    guard let (value, unit) = splitNumber(s) else { return nil }
    let seconds: Int64
    switch unit {
    case "ms": return .milliseconds(value)
    case "s": seconds = 1
    case "m": seconds = 60
    case "h": seconds = 3_600
    case "d": seconds = 86_400
    default: return nil
    }
    let (total, overflow) = value.multipliedReportingOverflow(by: seconds)
    return overflow ? nil : .seconds(total)
}

/// Parses a size in bytes: a non-negative integer, alone or followed by `B`, `KiB`, `MiB` or
/// `GiB` (`512`, `512B`, `64KiB`, `5MiB`, `1GiB`). Units are binary and case-sensitive; decimal
/// units (`KB`, `MB`) are refused rather than guessed at.
///
/// - Returns: The number of bytes, or `nil` when `s` is not written as above or does not fit.
public func parseSize(_ s: String) -> Int? {
    guard let (value, unit) = splitNumber(s) else { return nil }
    let multiplier: Int64
    switch unit {
    case "", "B": multiplier = 1
    case "KiB": multiplier = 1 << 10
    case "MiB": multiplier = 1 << 20
    case "GiB": multiplier = 1 << 30
    default: return nil
    }
    let (total, overflow) = value.multipliedReportingOverflow(by: multiplier)
    return overflow ? nil : Int(exactly: total)
}

/// Splits `"123abc"` into `(123, "abc")`; `nil` without leading ASCII digits or on overflow.
private func splitNumber(_ s: String) -> (Int64, Substring)? {
    let digits = s.prefix { $0.isASCII && $0.isWholeNumber }
    guard !digits.isEmpty, let value = Int64(digits) else { return nil }
    return (value, s[digits.endIndex...])
}
