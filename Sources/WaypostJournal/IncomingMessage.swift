import WaypostCore

/// What the journal did with an ``IncomingMessage``. Every case is durable when reported:
/// the transaction that stored (or found) the message has committed.
public enum IntakeResult: Sendable, Equatable {
    /// Stored as a new message.
    case stored(correlationID: String)
    /// Nothing stored: the route already holds this message (same idempotency key inside the
    /// dedup window, or the same source-supplied correlation id). Carries the existing id and
    /// its state.
    case duplicate(correlationID: String, state: MessageState)
    /// Nothing stored: the source-supplied correlation id names a message of another route.
    case conflict(correlationID: String, otherRoute: String)
}

/// Why the journal could not take a message. Nothing of it was stored.
public enum JournalUnavailable: Error, Sendable, CustomStringConvertible {
    /// `max_backlog` messages are already queued or in flight.
    case backlogFull(limit: Int)
    /// SQLite failed (disk full, I/O error, busy past its timeout, ...).
    case storage(JournalError)
    /// The writer is stopping.
    case shuttingDown

    public var description: String {
        switch self {
        case .backlogFull(let limit): "the backlog limit of \(limit) queued messages is reached"
        case .storage(let error): "the journal could not store the message: \(error.message)"
        case .shuttingDown: "Waypost is shutting down"
        }
    }
}
