import Synchronization
import WaypostCore

/// The final outcome of a message, as the forwarder publishes it.
public struct FinalOutcome: Sendable, Equatable {
    /// A final state.
    public var state: MessageState
    /// The upstream's last answer, if it answered.
    public var response: StoredResponse?
    public var lastError: String?
    /// The attempts made (what a `reply` program sees as `attempts`).
    public var attempts: Int

    public init(state: MessageState, response: StoredResponse?, lastError: String?, attempts: Int = 0) {
        self.state = state
        self.response = response
        self.lastError = lastError
        self.attempts = attempts
    }
}

extension FinalOutcome {
    /// The outcome of a message whose `reply_from` delivery is final; nil while it is still on
    /// its way.
    public init?(record: MessageRecord) {
        guard record.replyState.isFinal else { return nil }
        self.init(state: record.replyState, response: record.storedResponse, lastError: record.lastError, attempts: record.attempts)
    }
}

extension MessageRecord {
    /// The upstream's stored answer, if it answered.
    public var storedResponse: StoredResponse? {
        guard let status = responseStatus else { return nil }
        return StoredResponse(status: status, headers: JSON.decodeHeaders(responseHeadersJSON ?? "[]") ?? [], body: responseBody ?? [])
    }
}

/// Where waiting requests (synchronous sources, long-polling status readers) learn a
/// message's final outcome the moment the forwarder knows it, without polling the journal.
///
/// The forwarder publishes a final outcome as soon as it has it, while its commit is still on
/// its way, so a synchronous source does not wait for that second commit (its message was
/// committed before it was sent; a crash before the outcome is recorded sends it again, as
/// for any message). Until the forwarder reports the outcome ``recorded(_:)``, readers of the
/// journal wait for it (``afterRecorded(_:_:)``) and new watchers get the outcome at once:
/// the status API never shows an older state than the one a source was told.
///
/// Watchers register by correlation id before they look at the journal, so an outcome
/// published in between is not missed: either the look sees it, or the watcher is called.
public final class OutcomeBoard: Sendable {
    public typealias Token = UInt64
    public typealias Callback = @Sendable (FinalOutcome) -> Void

    private struct Recording {
        var outcome: FinalOutcome
        /// Journal reads that wait until the outcome is recorded.
        var readers: [@Sendable () -> Void] = []
    }

    private struct State {
        var nextToken: Token = 0
        var watchers: [String: [(Token, Callback)]] = [:]
        /// Published outcomes whose commit has not ended yet.
        var recording: [String: Recording] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Calls `callback` once, on the publishing thread (or at once, on this one, when the
    /// outcome is published and not recorded yet), with the message's final outcome. It
    /// must not block.
    public func watch(_ correlationID: String, _ callback: @escaping Callback) -> Token {
        let (token, published) = state.withLock { state -> (Token, FinalOutcome?) in
            state.nextToken += 1
            if let recording = state.recording[correlationID] { return (state.nextToken, recording.outcome) }
            state.watchers[correlationID, default: []].append((state.nextToken, callback))
            return (state.nextToken, nil)
        }
        if let published { callback(published) }
        return token
    }

    /// Removes a watcher that is no longer interested (its budget ran out, its source left).
    public func cancel(_ correlationID: String, _ token: Token) {
        state.withLock { state in
            state.watchers[correlationID]?.removeAll { $0.0 == token }
            if state.watchers[correlationID]?.isEmpty == true { state.watchers[correlationID] = nil }
        }
    }

    /// Calls and removes every watcher of the message; journal reads of it wait until
    /// ``recorded(_:)``.
    public func publish(_ correlationID: String, _ outcome: FinalOutcome) {
        let callbacks = state.withLock { state -> [(Token, Callback)] in
            state.recording[correlationID] = Recording(outcome: outcome, readers: state.recording[correlationID]?.readers ?? [])
            return state.watchers.removeValue(forKey: correlationID) ?? []
        }
        for (_, callback) in callbacks { callback(outcome) }
    }

    /// Calls and removes every watcher of the message, for an outcome that is in the journal
    /// already (an operator's skip, which the forwarder learns of after the fact).
    public func notify(_ correlationID: String, _ outcome: FinalOutcome) {
        let callbacks = state.withLock { $0.watchers.removeValue(forKey: correlationID) ?? [] }
        for (_, callback) in callbacks { callback(outcome) }
    }

    /// The messages that have watchers now.
    public var watchedIDs: [String] { state.withLock { Array($0.watchers.keys) } }

    /// The commit of the message's published outcome ended, whether it succeeded or not
    /// (a failed one is retried, and the journal shows the older state meanwhile): the
    /// journal reads that waited for it go on.
    public func recorded(_ correlationID: String) {
        let readers = state.withLock { $0.recording.removeValue(forKey: correlationID)?.readers } ?? []
        for reader in readers { reader() }
    }

    /// Runs `read` at once, on this thread, or, when the message's outcome is published
    /// but not recorded yet, on the recording thread once it is. It must not block.
    public func afterRecorded(_ correlationID: String, _ read: @escaping @Sendable () -> Void) {
        let now = state.withLock { state in
            guard state.recording[correlationID] != nil else { return true }
            state.recording[correlationID]!.readers.append(read)
            return false
        }
        if now { read() }
    }

    /// Watchers registered now (for tests and metrics).
    public var watcherCount: Int { state.withLock { $0.watchers.values.reduce(0) { $0 + $1.count } } }
}
