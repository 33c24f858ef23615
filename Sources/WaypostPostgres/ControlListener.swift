import Logging
import PostgresNIO
import Synchronization
import WaypostJournal

/// Learns at once what other processes commit to a PostgreSQL journal (SPEC §5, §12), on a
/// connection of its own, connecting again a second after it is lost:
///
/// - `waypost_control`: an operator's replay, skip, pause or resume, from any process;
/// - `waypost_stored`: `NODE FIRST_ID`, deliveries a node stored, this one included: their
///   queues may be ours;
/// - `waypost_outcomes`: `NODE ID ID …`, final outcomes another node recorded (a source here may
///   wait for one);
/// - `waypost_breakers`: `NODE tripped SINCE KEY` or `NODE closed 0 KEY`, another node's breaker
///   of destination KEY changed.
///
/// A notification is delivered at its transaction's commit, to every listener in the order of
/// the commits: a node learns of a message after every message committed before it, wherever
/// that was committed. This is why a node's forwarder pages its own new messages too, in the
/// order of these notifications, rather than taking them from its writer: a source's next
/// message, sent to this node once the previous one was acknowledged by another, is never
/// seen before it. This node's own outcomes (`node`) are ignored: its forwarder published them.
/// While it is not listening it cannot tell, and says so: a change may have happened, any
/// stored delivery may be new, and any watched message may have its outcome.
final class ControlListener: Sendable {
    static let channel = "waypost_control"
    static let storedChannel = "waypost_stored"
    static let outcomesChannel = "waypost_outcomes"
    static let breakersChannel = "waypost_breakers"

    /// What the listening task learned; the task holds this, not the listener, so that the
    /// listener's end cancels it.
    private final class Flags: Sendable {
        struct News {
            var listening = false
            var changed = true
            var others = OthersCommitted()
            var wake: (@Sendable () -> Void)?
        }
        let state = Mutex(News())

        /// Applies `change`, and wakes the forwarder when it says there is news.
        func update(_ change: (inout News) -> Bool) {
            let wake = state.withLock { news in change(&news) ? news.wake : nil }
            wake?()
        }
    }

    private let flags = Flags()
    private let task: Task<Void, Never>

    init(connect: @escaping @Sendable () async throws -> PostgresConnection, node: String, logger: Logger) {
        let flags = flags
        task = Task { await Self.listen(flags, node: node, connect: connect, logger: logger) }
    }

    deinit {
        task.cancel()
    }

    /// Whether a change was notified since the last call, or may have been (not listening).
    func takeChange() -> Bool {
        flags.state.withLock { state in
            defer { state.changed = false }
            return state.changed || !state.listening
        }
    }

    /// What other nodes committed since the last call.
    func takeOthers() -> OthersCommitted {
        flags.state.withLock { state in
            defer { state.others = OthersCommitted() }
            return state.others
        }
    }

    /// `wake` runs after each notification taken in.
    func onNotification(_ wake: @escaping @Sendable () -> Void) {
        flags.state.withLock { $0.wake = wake }
    }

    private static func listen(
        _ flags: Flags, node: String, connect: @escaping @Sendable () async throws -> PostgresConnection, logger: Logger
    ) async {
        while !Task.isCancelled {
            do {
                let connection = try await connect()
                do {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for channel in [channel, storedChannel, outcomesChannel, breakersChannel] {
                            group.addTask {
                                try await connection.listen(on: channel) { notifications in
                                    // Whatever happened while nobody listened counts as news.
                                    flags.update { news in
                                        news.listening = true
                                        news.changed = true
                                        news.others.storedFrom = 1
                                        news.others.outcomesMissed = true
                                        return true
                                    }
                                    for try await notification in notifications {
                                        flags.update { news in
                                            guard channel != Self.channel else {
                                                news.changed = true
                                                return true
                                            }
                                            return news.others.take(notification.payload, on: channel, node: node)
                                        }
                                    }
                                }
                            }
                        }
                        try await group.next()
                        group.cancelAll()
                    }
                } catch {
                    logger.warning(
                        "the journal's notification channels were lost; listening again",
                        metadata: ["error": "\(PostgresJournalError(error))"])
                }
                try? await connection.close()
            } catch {
                logger.debug("cannot listen to the journal's notification channels", metadata: ["error": "\(PostgresJournalError(error))"])
            }
            flags.state.withLock { $0.listening = false }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}

extension OthersCommitted {
    /// Takes in the payload of a notification on one of the cluster's channels
    /// (``ControlListener``); whether it is news for node `node` (its own outcomes and
    /// breakers' changes are not; a payload that does not parse is not either).
    public mutating func take(_ payload: String, on channel: String, node: String) -> Bool {
        // Correlation ids hold no space (CorrelationID.isValidSupplied); a node's name may be empty.
        var words = payload.split(separator: " ", omittingEmptySubsequences: false)
        guard let sender = words.first else { return false }
        words = words.dropFirst().filter { !$0.isEmpty }
        switch channel {
        case ControlListener.storedChannel:
            guard let first = words.first.flatMap({ Int64($0) }) else { return false }
            storedFrom = min(storedFrom ?? first, first)
            return true
        case ControlListener.outcomesChannel where sender != node[...]:
            outcomes += words.map(String.init)
            return true
        case ControlListener.breakersChannel where sender != node[...]:
            guard words.count >= 3, let since = Int64(words[1]) else { return false }
            breakers.append((words[2...].joined(separator: " "), words[0] == "tripped" ? since : nil))
            return true
        default:
            return false
        }
    }
}
