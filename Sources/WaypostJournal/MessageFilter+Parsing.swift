import WaypostCore

/// A filter value an operator gave that Waypost cannot use: which key, and why.
public struct FilterError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The filter key (`state`, `since`, `limit`, …) as the operator wrote it.
    public var key: String
    /// What is wrong, in words a person can act on.
    public var message: String

    public var description: String { "\(key): \(message)" }
}

extension MessageFilter {
    /// How many messages one page may hold.
    public static let limits = 1...1000

    /// Sets filter `key` from an operator's text, as the admin API's query and replay filter
    /// and the CLI's flags give it: `state` (one of `states`, every state by default), `route`, `destination`, `since` and `until`
    /// (a duration ago such as `2h`, or an RFC 3339 UTC time), `limit` (``limits``) and `cursor`
    /// (a `next_cursor` value). An empty value leaves the key unset.
    ///
    /// - Throws: ``FilterError`` naming the key when it is unknown or its value is out of range
    ///   or not written as above (an invalid calendar date such as `2026-13-45T99:99:99Z`
    ///   included).
    public mutating func set(
        _ key: String, _ value: String, states: [MessageState] = MessageState.allCases, now: Int64 = Timestamp.now()
    )
        throws(FilterError)
    {
        guard !value.isEmpty else { return }
        func fail(_ message: String) -> FilterError { FilterError(key: key, message: message) }
        switch key {
        case "state":
            guard let parsed = MessageState(rawValue: value), states.contains(parsed) else {
                throw fail("must be one of \(states.map(\.rawValue).joined(separator: ", ")); got '\(value.prefix(30))'")
            }
            state = parsed
        case "route":
            route = value
        case "destination":
            destination = value
        case "since", "until":
            guard let bound = Timestamp.filterBound(value, now: now) else {
                throw fail(
                    "must be a duration ago such as 2h or 7d (at most 36500d, no sign), or an RFC 3339 UTC time such as "
                        + "2026-11-30T08:00:00Z; got '\(value.prefix(40))'")
            }
            if key == "since" { since = bound } else { until = bound }
        case "limit":
            guard let number = parseDigits(Substring(value), clampedTo: Int64(Self.limits.upperBound) + 1),
                Self.limits.contains(Int(number))
            else {
                throw fail("must be a whole number from \(Self.limits.lowerBound) to \(Self.limits.upperBound); got '\(value.prefix(30))'")
            }
            limit = Int(number)
        case "cursor":
            guard let number = parseDigits(Substring(value), clampedTo: .max), number < .max else {
                throw fail("must be a next_cursor value from an earlier page; got '\(value.prefix(30))'")
            }
            afterID = number
        default:
            throw fail("is not a filter; the filters are state, route, destination, since, until, limit and cursor")
        }
    }
}
