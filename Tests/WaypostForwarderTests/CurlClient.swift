import Dispatch
import Foundation
import Logging
import Synchronization
import WaypostForwarder

/// A ``CurlMulti`` on a thread of its own, callable from any thread and from async code: how
/// the tests use curl as a client (the forwarder drives its multi handle from its delivery
/// thread instead).
final class CurlClient: @unchecked Sendable {
    // @unchecked Sendable: `state` is behind its lock; `multi` and `running` are touched only
    // by the client's thread.
    typealias RequestID = UInt64

    private struct Submission {
        var id: RequestID
        var request: CurlRequest
        var completion: @Sendable (Result<CurlResponse, CurlError>) -> Void
    }

    private struct State {
        var nextID: RequestID = 1
        var inbox: [Submission] = []
        var cancellations: [RequestID] = []
        var stopping = false
        var thread: ObjectIdentifier?
    }

    private let state = Mutex(State())
    private let multi: CurlMulti
    /// The multi's id of each running request, by the client's id.
    private var running: [RequestID: CurlMulti.RequestID] = [:]
    private let exited = DispatchGroup()

    init(logger: Logger) throws {
        multi = try CurlMulti(logger: logger)
        exited.enter()
        let thread = Thread { [self] in
            while true {
                let (submissions, cancellations, stopping) = state.withLock { state in
                    defer {
                        state.inbox.removeAll()
                        state.cancellations.removeAll()
                    }
                    return (state.inbox, state.cancellations, state.stopping)
                }
                if stopping {
                    for submission in submissions { submission.completion(.failure(.cancelled("the curl client shut down"))) }
                    break
                }
                for submission in submissions { start(submission) }
                for id in cancellations { if let running = running[id] { multi.cancel(running) } }
                multi.perform()
                multi.poll(timeoutMilliseconds: 1000)
            }
            multi.close()
            exited.leave()
        }
        state.withLock { $0.thread = ObjectIdentifier(thread) }
        thread.start()
    }

    deinit {
        shutdown()
    }

    private func start(_ submission: Submission) {
        let id = submission.id
        var completed = false  // a refused request completes inside `submit`
        let multiID = multi.submit(submission.request) { [self] result in
            completed = true
            running[id] = nil
            submission.completion(result)
        }
        if !completed { running[id] = multiID }
    }

    /// Hands `request` to the client's thread; `completion` runs there, exactly once.
    @discardableResult
    func submit(_ request: CurlRequest, completion: @escaping @Sendable (Result<CurlResponse, CurlError>) -> Void) -> RequestID {
        let (id, accepted) = state.withLock { state in
            defer { state.nextID += 1 }
            guard !state.stopping else { return (state.nextID, false) }
            state.inbox.append(Submission(id: state.nextID, request: request, completion: completion))
            return (state.nextID, true)
        }
        if accepted { multi.waker.wake() } else { completion(.failure(.cancelled("the curl client is shut down"))) }
        return id
    }

    /// Cancels `id` if it has not completed; its completion then runs with `isCancelled`.
    func cancel(_ id: RequestID) {
        state.withLock { $0.cancellations.append(id) }
        multi.waker.wake()
    }

    /// Sends `request`; cancelling the calling task cancels it.
    func execute(_ request: CurlRequest) async throws(CurlError) -> CurlResponse {
        if Task.isCancelled { throw .cancelled("the task was cancelled") }
        let submitted = Mutex<(id: RequestID?, cancelled: Bool)>((nil, false))
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<CurlResponse, CurlError>, Never>) in
                let id = submit(request) { continuation.resume(returning: $0) }
                let cancelled = submitted.withLock { state in
                    state.id = id
                    return state.cancelled
                }
                if cancelled { cancel(id) }
            }
        } onCancel: {
            let id = submitted.withLock { state in
                state.cancelled = true
                return state.id
            }
            if let id { cancel(id) }
        }
        return try result.get()
    }

    /// Cancels everything pending, frees curl's handles and waits for the thread to end
    /// (unless called on that thread, from a completion).
    func shutdown() {
        let onClientThread = state.withLock { state in
            state.stopping = true
            return state.thread == ObjectIdentifier(Thread.current)
        }
        multi.waker.wake()
        if !onClientThread { exited.wait() }
    }
}
