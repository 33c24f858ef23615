/// The RFC 7240 preferences Waypost honours: `respond-async` and `wait=N`.
public struct Preferences: Sendable, Equatable {
    public var respondAsync = false
    /// Seconds the source is willing to wait for the synchronous answer.
    public var wait: Int?

    public init(respondAsync: Bool = false, wait: Int? = nil) {
        self.respondAsync = respondAsync
        self.wait = wait
    }

    /// The preferences in `Prefer` header values (comma-separated; parameters after `;` are
    /// ignored; unknown preferences are ignored, as RFC 7240 §2 asks).
    public init(headerValues: [String]) {
        for value in headerValues {
            for item in value.split(separator: ",") {
                let preference = item.split(separator: ";", maxSplits: 1).first.map { $0.trimmingHTTPWhitespace() } ?? ""
                let parts = preference.split(separator: "=", maxSplits: 1).map { $0.trimmingHTTPWhitespace() }
                guard let token = parts.first?.lowercased() else { continue }
                if token == "respond-async" && parts.count == 1 {
                    respondAsync = true
                } else if token == "wait", parts.count == 2 {
                    let number =
                        parts[1].hasPrefix("\"") && parts[1].hasSuffix("\"") && parts[1].count >= 2
                        ? parts[1].dropFirst().dropLast() : parts[1]
                    if let seconds = Int(number), seconds >= 0 { wait = seconds }
                }
            }
        }
    }
}

/// How one request is answered: at once (asynchronous) or after the upstream's outcome
/// (synchronous), and which preference that honoured.
public enum ResponsePattern: Sendable, Equatable {
    case async(preferenceApplied: String?)
    case sync(budget: Duration, preferenceApplied: String?)

    /// SPEC §1: the route's `mode` sets the default; `Prefer: respond-async` forces the
    /// asynchronous answer; `Prefer: wait=N` asks for the synchronous answer with a budget of
    /// N seconds, capped by `sync_timeout` (with both, the wait is tried first, and the
    /// asynchronous answer is the fallback, as it always is).
    public static func choose(mode: DeliveryMode, syncTimeout: Duration, preferences: Preferences) -> ResponsePattern {
        if let wait = preferences.wait {
            let applied = min(wait, Int(syncTimeout.milliseconds / 1000))
            return .sync(budget: min(.seconds(wait), syncTimeout), preferenceApplied: "wait=\(applied)")
        }
        if preferences.respondAsync { return .async(preferenceApplied: "respond-async") }
        return mode == .sync ? .sync(budget: syncTimeout, preferenceApplied: nil) : .async(preferenceApplied: nil)
    }
}
