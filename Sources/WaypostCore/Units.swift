// Numbers written by people and peers: durations and sizes as written in the configuration and
// on the command line (SPEC §8), and the plain decimal numbers of headers and query items. Every
// parser here is total and bounded: out-of-range input is `nil` (or clamped, where the caller
// asks for it), never a trap, and whatever it returns can be added to a timestamp without
// overflow.

/// The longest duration Waypost reads from outside: 36500 days (about 100 years). Any
/// timestamp Waypost writes plus or minus it still fits comfortably in `Int64` milliseconds.
public let maximumDuration: Duration = .seconds(36_500 * 86_400)

/// Parses a duration written as a non-negative integer followed by a unit:
/// `ms`, `s`, `m`, `h` or `d` (`250ms`, `5s`, `10m`, `72h`, `7d`), at most ``maximumDuration``.
///
/// A unit is required, fractions, signs, spaces and compound forms (`1h30m`) are refused.
///
/// - Returns: The duration, or `nil` when `s` is not written as above or is longer than
///   ``maximumDuration``.
public func parseDuration(_ s: String) -> Duration? {
    guard let (value, unit) = splitNumber(s) else { return nil }
    let milliseconds: Int64
    switch unit {
    case "ms": milliseconds = 1
    case "s": milliseconds = 1000
    case "m": milliseconds = 60_000
    case "h": milliseconds = 3_600_000
    case "d": milliseconds = 86_400_000
    default: return nil
    }
    let (total, overflow) = value.multipliedReportingOverflow(by: milliseconds)
    guard !overflow, total <= maximumDuration.milliseconds else { return nil }
    return .milliseconds(total)
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

/// A decimal number of one or more ASCII digits and nothing else (no sign, no spaces, as
/// `delay-seconds`, `Content-Length` and `wait=N` are written), with values above `maximum`
/// taken as `maximum` however many digits they have.
///
/// - Returns: `nil` when `text` is empty or holds anything but digits.
public func parseDigits(_ text: Substring, clampedTo maximum: Int64) -> Int64? {
    guard !text.isEmpty else { return nil }
    var value: Int64 = 0
    for byte in text.utf8 {
        guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
        guard value <= maximum else { continue }  // already past it: only the digits are checked
        let (shifted, overflow) = value.multipliedReportingOverflow(by: 10)
        value = overflow ? .max : shifted.clampedAdding(Int64(byte - UInt8(ascii: "0")))
    }
    return Swift.min(value, maximum)
}

/// Splits `"123abc"` into `(123, "abc")`; `nil` without leading ASCII digits or on overflow.
private func splitNumber(_ s: String) -> (Int64, Substring)? {
    let digits = s.prefix { $0.isASCII && $0.isWholeNumber }
    guard !digits.isEmpty, let value = Int64(digits) else { return nil }
    return (value, s[digits.endIndex...])
}

extension Int64 {
    /// `self + other`, clamped to `Int64`'s range instead of trapping: for sums of a time and
    /// a delay where either may come from outside.
    public func clampedAdding(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}
