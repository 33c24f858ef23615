import Synchronization

/// The final outcome of a message, as published once it is committed.
public struct FinalOutcome: Sendable, Equatable {
    /// `delivered`, `failed` or `skipped`.
    public var state: String
    /// The upstream's last answer, if it answered.
    public var response: StoredResponse?
    public var lastError: String?

    public init(state: String, response: StoredResponse?, lastError: String?) {
        self.state = state
        self.response = response
        self.lastError = lastError
    }
}

/// Where waiting requests (synchronous sources, long-polling status readers) learn a
/// message's final outcome the moment it is committed, without polling the journal.
///
/// Watchers register by correlation id before they look at the journal, so an outcome
/// committed in between is not missed: either the look sees it, or the watcher is called.
public final class OutcomeBoard: Sendable {
    public typealias Token = UInt64
    public typealias Callback = @Sendable (FinalOutcome) -> Void

    private struct State {
        var nextToken: Token = 0
        var watchers: [String: [(Token, Callback)]] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Calls `callback` once, on the publishing thread, when the message's final outcome is
    /// published. It must not block.
    public func watch(_ correlationID: String, _ callback: @escaping Callback) -> Token {
        state.withLock { state in
            state.nextToken += 1
            state.watchers[correlationID, default: []].append((state.nextToken, callback))
            return state.nextToken
        }
    }

    /// Removes a watcher that is no longer interested (its budget ran out, its source left).
    public func cancel(_ correlationID: String, _ token: Token) {
        state.withLock { state in
            state.watchers[correlationID]?.removeAll { $0.0 == token }
            if state.watchers[correlationID]?.isEmpty == true { state.watchers[correlationID] = nil }
        }
    }

    /// Calls and removes every watcher of the message.
    public func publish(_ correlationID: String, _ outcome: FinalOutcome) {
        let callbacks = state.withLock { $0.watchers.removeValue(forKey: correlationID) } ?? []
        for (_, callback) in callbacks { callback(outcome) }
    }

    /// Watchers registered now (for tests and metrics).
    public var watcherCount: Int { state.withLock { $0.watchers.values.reduce(0) { $0 + $1.count } } }
}
