/// Where a message is on its way to the upstream (SPEC §3), as the journal stores it in
/// `messages.state`: `queued` → `in_flight` → `delivered` | `failed` | `skipped`, and back to
/// `queued` for a retry or an operator's replay.
public enum MessageState: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    case queued
    case inFlight = "in_flight"
    case delivered
    case failed
    case skipped
    /// A destination's filter did not match the message (SPEC §11): that delivery ends at once.
    case filtered

    /// Whether the message has an outcome: only an operator's replay moves it on from here.
    public var isFinal: Bool {
        switch self {
        case .queued, .inFlight: false
        case .delivered, .failed, .skipped, .filtered: true
        }
    }

    /// The word the journal and every answer use: `in_flight`, not the case's name.
    public var description: String { rawValue }

    /// The states an operator may replay a message from: the final ones but `filtered` (a
    /// filtered delivery is not sent again: its destination does not take the message).
    public static let replayable = allCases.filter { $0.isFinal && $0 != .filtered }

    /// The states, in the order of the words above: `queued, in_flight, delivered, …`.
    public static let names = allCases.map(\.rawValue).joined(separator: ", ")
}
