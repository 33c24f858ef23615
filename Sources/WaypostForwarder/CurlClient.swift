import CCurl
import Dispatch
import Foundation
import Logging
import Synchronization
import WaypostCore

/// `curl_global_init`, run once per process, on first use, by Swift's thread-safe lazy
/// initialization of globals. Never undone: other clients may come later.
private let curlGlobalInitResult: CURLcode = curl_global_init(Int(CURL_GLOBAL_ALL))

/// An HTTP client over libcurl's multi interface, for delivering to upstreams (SPEC §3).
///
/// One client owns one multi handle, driven by one dedicated thread that sleeps in
/// [`curl_multi_poll`](https://curl.se/libcurl/c/curl_multi_poll.html). Requests reach it
/// through a lock-protected inbox plus
/// [`curl_multi_wakeup`](https://curl.se/libcurl/c/curl_multi_wakeup.html); results leave it
/// through completion handlers (or continuations, with ``execute(_:)``). Nothing blocks a NIO
/// event loop or the Swift cooperative pool, and there is no `Task` per request.
///
/// Connections live in the multi handle's cache, so consecutive requests to one upstream reuse
/// one connection (HTTP/1.1 keep-alive), and HTTPS upstreams that offer HTTP/2 through ALPN
/// get it, with requests multiplexed over one connection. Every request is sent with:
/// no redirects followed (a 3xx is an answer), only `http` and `https`, no proxy (whatever
/// `http_proxy` and friends say), `CURLOPT_NOSIGNAL`, and its own connect and total timeouts.
///
/// ```swift
/// let client = try CurlClient(logger: logger)
/// defer { client.shutdown() }
/// let response = try await client.execute(CurlRequest(url: "http://127.0.0.1:9000/hook", body: bytes))
/// print(response.status)
/// ```
public final class CurlClient: Sendable {
    /// Identifies a submitted request, for ``cancel(_:)``.
    public typealias RequestID = UInt64

    private let shared: CurlShared

    /// Creates the multi handle and starts the client's thread.
    ///
    /// - Throws: ``CurlError`` when `curl_global_init` or `curl_multi_init` fails.
    public init(logger: Logger) throws(CurlError) {
        let globalInit = curlGlobalInitResult
        guard globalInit == CURLE_OK else { throw CurlError(globalInit) }
        guard let multi = curl_multi_init() else { throw CurlError(CURLE_OUT_OF_MEMORY) }
        let shared = CurlShared(multi: multi)
        self.shared = shared
        shared.exited.enter()
        let thread = Thread {
            CurlLoop(shared: shared, logger: logger).run()
            shared.exited.leave()
        }
        thread.name = "wp-curl"  // Linux thread names hold 15 bytes
        shared.state.withLock { $0.thread = ObjectIdentifier(thread) }
        thread.start()
        logger.debug("curl client started", metadata: ["curl.version": "\(String(cString: curl_version()))"])
    }

    deinit {
        shutdown()
    }

    /// Hands `request` to the client's thread and returns at once. Thread-safe.
    ///
    /// `completion` runs exactly once, on the client's thread (it must not block; hop to
    /// your own executor for real work): with the upstream's response, whatever its status,
    /// or with a ``CurlError`` when there is none. After ``shutdown()`` it runs at once, on
    /// the caller's thread, with an error whose ``CurlError/isCancelled`` is true.
    @discardableResult
    public func submit(_ request: CurlRequest, completion: @escaping @Sendable (Result<CurlResponse, CurlError>) -> Void) -> RequestID {
        let (id, accepted) = shared.state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            guard !state.stopping else { return (id, false) }
            state.inbox.append(CurlShared.Submission(id: id, request: request, completion: completion))
            // Under the lock: the thread frees the multi handle only after it has seen
            // `stopping`, so the handle is alive here.
            curl_multi_wakeup(shared.multi.pointer)
            return (id, true)
        }
        if !accepted { completion(.failure(.cancelled("the curl client is shut down"))) }
        return id
    }

    /// Cancels the request `id`: if it has not completed yet, its connection is dropped and
    /// its completion runs (soon, on the client's thread) with ``CurlError/isCancelled``.
    /// Cancelling a completed or unknown request does nothing. Thread-safe.
    public func cancel(_ id: RequestID) {
        shared.state.withLock { state in
            guard !state.stopping else { return }
            state.cancellations.append(id)
            curl_multi_wakeup(shared.multi.pointer)
        }
    }

    /// Sends `request` and returns the upstream's response, whatever its status.
    ///
    /// Cancelling the calling task cancels the request: this then throws at once with
    /// ``CurlError/isCancelled``.
    ///
    /// - Throws: ``CurlError`` when there is no response: connection refused or reset,
    ///   timeout (``CurlError/isTimeout``), TLS failure, a malformed answer, a URL that is
    ///   not `http`/`https`, cancellation, or a client that is shut down.
    public func execute(_ request: CurlRequest) async throws(CurlError) -> CurlResponse {
        if Task.isCancelled { throw .cancelled("the task was cancelled") }
        let submitted = SubmittedRequest()
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<CurlResponse, CurlError>, Never>) in
                let id = submit(request) { continuation.resume(returning: $0) }
                if submitted.record(id) { cancel(id) }
            }
        } onCancel: {
            if let id = submitted.cancel() { cancel(id) }
        }
        return try result.get()
    }

    /// Stops the client: completes every request still pending with
    /// ``CurlError/isCancelled``, removes and frees every easy handle, frees the multi handle
    /// and waits for the client's thread to end.
    ///
    /// Idempotent and thread-safe. Called from a completion handler (on the client's own
    /// thread) it does not wait; the thread ends after that handler returns. It blocks the
    /// caller only for the thread's current turn, not for any transfer.
    public func shutdown() {
        let onClientThread = shared.state.withLock { state in
            if !state.stopping {
                state.stopping = true
                curl_multi_wakeup(shared.multi.pointer)
            }
            return state.thread == ObjectIdentifier(Thread.current)
        }
        if !onClientThread { shared.exited.wait() }
    }
}

/// What ``CurlClient/execute(_:)`` shares with its cancellation handler, which may run
/// before, during or after the submission.
private final class SubmittedRequest: Sendable {
    private let state = Mutex<(id: CurlClient.RequestID?, cancelled: Bool)>((nil, false))

    /// Records the id; true when the task was cancelled already, so the caller cancels it.
    func record(_ id: CurlClient.RequestID) -> Bool {
        state.withLock { state in
            state.id = id
            return state.cancelled
        }
    }

    /// Marks the task cancelled; the id to cancel, if the request was submitted already.
    func cancel() -> CurlClient.RequestID? {
        state.withLock { state in
            state.cancelled = true
            return state.id
        }
    }
}

/// The multi handle's pointer, shared between threads.
///
/// @unchecked Sendable: only the client's thread uses the handle, except for
/// `curl_multi_wakeup`, which curl documents as callable from any thread, and which
/// ``CurlClient`` calls only while holding `CurlShared.state` with `stopping` false, that is
/// before the thread has begun to free the handle.
struct MultiHandle: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
}

/// What the client's callers and its thread share: the inbox, behind a lock.
final class CurlShared: Sendable {
    struct Submission: Sendable {
        var id: CurlClient.RequestID
        var request: CurlRequest
        var completion: @Sendable (Result<CurlResponse, CurlError>) -> Void
    }

    struct State {
        var nextID: CurlClient.RequestID = 1
        var inbox: [Submission] = []
        var cancellations: [CurlClient.RequestID] = []
        /// Set once by ``CurlClient/shutdown()``; then nothing more enters the inbox.
        var stopping = false
        /// The client's thread, so that `shutdown()` does not wait for itself.
        var thread: ObjectIdentifier?
    }

    let state = Mutex(State())
    let multi: MultiHandle
    /// Entered before the thread starts, left when it has freed everything.
    let exited = DispatchGroup()

    init(multi: UnsafeMutableRawPointer) {
        self.multi = MultiHandle(pointer: multi)
    }

    /// Everything the callers asked for since the last turn.
    func takeWork() -> (submissions: [Submission], cancellations: [CurlClient.RequestID], stopping: Bool) {
        state.withLock { state in
            defer {
                state.inbox.removeAll(keepingCapacity: true)
                state.cancellations.removeAll(keepingCapacity: true)
            }
            return (state.inbox, state.cancellations, state.stopping)
        }
    }
}

/// The client's thread: drives the multi handle. Not Sendable; it lives and dies on that
/// thread, with the easy handles and the transfers.
final class CurlLoop {
    /// How long `curl_multi_poll` sleeps at most when curl has no earlier timeout of its own
    /// and nobody calls `curl_multi_wakeup`.
    private static let pollMilliseconds: Int32 = 1000
    /// Reset easy handles kept for the next requests.
    private static let poolLimit = 32

    private let shared: CurlShared
    private let multi: UnsafeMutableRawPointer
    private let logger: Logger
    private var transfers: [CurlClient.RequestID: CurlTransfer] = [:]
    private var pool: [EasyHandle] = []

    init(shared: CurlShared, logger: Logger) {
        self.shared = shared
        self.multi = shared.multi.pointer
        self.logger = logger
    }

    func run() {
        while true {
            let work = shared.takeWork()
            if work.stopping {
                stop(notStarted: work.submissions)
                return
            }
            for submission in work.submissions { start(submission) }
            for id in work.cancellations {
                if let transfer = transfers[id] {
                    finish(transfer, .failure(.cancelled("the request was cancelled")))
                }
            }
            var stillRunning: Int32 = 0
            let performed = curl_multi_perform(multi, &stillRunning)
            if performed != CURLM_OK {
                logger.error("curl_multi_perform failed", metadata: ["curl.error": "\(String(cString: curl_multi_strerror(performed)))"])
            }
            collectFinished()
            let polled = curl_multi_poll(multi, nil, 0, Self.pollMilliseconds, nil)
            if polled != CURLM_OK {
                logger.error("curl_multi_poll failed", metadata: ["curl.error": "\(String(cString: curl_multi_strerror(polled)))"])
                usleep(10_000)  // never spin on a persistent failure
            }
        }
    }

    /// Prepares an easy handle for `submission` and adds it to the multi handle.
    private func start(_ submission: CurlShared.Submission) {
        let easy: EasyHandle
        if let pooled = pool.popLast() {
            easy = pooled
        } else if let created = curl_easy_init() {
            easy = EasyHandle(pointer: created)
        } else {
            submission.completion(.failure(CurlError(CURLE_OUT_OF_MEMORY)))
            return
        }
        let transfer = CurlTransfer(id: submission.id, easy: easy, request: submission.request, completion: submission.completion)
        do {
            try transfer.configure(submission.request)
        } catch {
            recycle(easy)
            submission.completion(.failure(error))
            return
        }
        let added = curl_multi_add_handle(multi, easy.pointer)
        guard added == CURLM_OK else {
            recycle(easy)
            let message = String(cString: curl_multi_strerror(added))
            submission.completion(.failure(CurlError(code: Int32(bitPattern: CURLE_FAILED_INIT.rawValue), message: message)))
            return
        }
        transfers[submission.id] = transfer
    }

    /// Completes every transfer that curl reports done.
    private func collectFinished() {
        var queued: Int32 = 0
        while let message = curl_multi_info_read(multi, &queued) {
            guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle else { continue }
            let code = waypost_msg_result(message)
            var context: UnsafeMutableRawPointer?
            guard waypost_easy_getinfo_pointer(handle, CURLINFO_PRIVATE, &context) == CURLE_OK, let context else { continue }
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
            let result: Result<CurlResponse, CurlError> =
                code == CURLE_OK ? .success(transfer.response()) : .failure(CurlError(code, errorBuffer: transfer.errorText))
            finish(transfer, result)
        }
    }

    /// Takes `transfer` out of the multi handle, keeps or frees its easy handle, and runs its
    /// completion.
    private func finish(_ transfer: CurlTransfer, _ result: Result<CurlResponse, CurlError>) {
        curl_multi_remove_handle(multi, transfer.easy.pointer)
        transfers[transfer.id] = nil
        recycle(transfer.easy)
        // The handle no longer points into `transfer`, which is freed after this call.
        transfer.completion(result)
    }

    /// Resets an easy handle that is not in the multi handle, and keeps it for the next
    /// request, or frees it when the pool is full.
    private func recycle(_ easy: EasyHandle) {
        curl_easy_reset(easy.pointer)
        if pool.count < Self.poolLimit {
            pool.append(easy)
        } else {
            curl_easy_cleanup(easy.pointer)
        }
    }

    /// Completes everything with `isCancelled` and frees every handle.
    private func stop(notStarted: [CurlShared.Submission]) {
        let cancelled = CurlError.cancelled("the curl client shut down")
        for submission in notStarted { submission.completion(.failure(cancelled)) }
        let pending = transfers.values.sorted { $0.id < $1.id }
        for transfer in pending { finish(transfer, .failure(cancelled)) }
        for easy in pool { curl_easy_cleanup(easy.pointer) }
        pool.removeAll()
        curl_multi_cleanup(multi)
        logger.debug("curl client stopped", metadata: ["requests.cancelled": "\(notStarted.count + pending.count)"])
    }
}
