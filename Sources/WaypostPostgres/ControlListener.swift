import Logging
import PostgresNIO
import Synchronization

/// Learns at once when an operator changed a PostgreSQL journal (a replay, a skip, a pause or
/// a resume, SPEC §5, §12), from any process or node: each such change notifies the channel
/// `waypost_control` in its transaction, delivered at its commit, and this listens to it on a
/// connection of its own, connecting again a second after it is lost. While it is not
/// listening it cannot tell, and says so.
final class ControlListener: Sendable {
    /// The channel operator actions notify.
    static let channel = "waypost_control"

    /// What the listening task learned; the task holds this, not the listener, so that the
    /// listener's end cancels it.
    private final class Flags: Sendable {
        let state = Mutex((listening: false, changed: true))
    }

    private let flags = Flags()
    private let task: Task<Void, Never>

    init(connect: @escaping @Sendable () async throws -> PostgresConnection, logger: Logger) {
        let flags = flags
        task = Task { await Self.listen(flags, connect: connect, logger: logger) }
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

    private static func listen(
        _ flags: Flags, connect: @escaping @Sendable () async throws -> PostgresConnection, logger: Logger
    ) async {
        while !Task.isCancelled {
            do {
                let connection = try await connect()
                do {
                    try await connection.listen(on: Self.channel) { notifications in
                        // Whatever happened while nobody listened counts as a change.
                        flags.state.withLock { $0 = (listening: true, changed: true) }
                        for try await _ in notifications { flags.state.withLock { $0.changed = true } }
                    }
                } catch {
                    logger.debug("the journal's control channel was lost", metadata: ["error": "\(PostgresJournalError(error))"])
                }
                try? await connection.close()
            } catch {
                logger.debug("cannot listen to the journal's control channel", metadata: ["error": "\(PostgresJournalError(error))"])
            }
            flags.state.withLock { $0.listening = false }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
