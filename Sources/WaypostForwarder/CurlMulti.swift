import CCurl
import Foundation
import Logging
import Synchronization
import WaypostCore

/// `curl_global_init`, run once per process, on first use, by Swift's thread-safe lazy
/// initialization of globals. Never undone: other handles may come later.
private let curlGlobalInitResult: CURLcode = curl_global_init(Int(CURL_GLOBAL_ALL))

/// An HTTP client over libcurl's multi interface, for delivering to upstreams (SPEC §3),
/// driven by the thread that owns it.
///
/// One value owns one multi handle. It is confined to one thread, which calls ``submit(_:completion:)``,
/// ``perform()`` and ``poll(timeoutMilliseconds:)`` in its own loop: the forwarder's delivery
/// thread, so that an attempt's start and end need no hand-off to another thread. Other
/// threads wake a sleeping ``poll(timeoutMilliseconds:)`` through ``waker``
/// ([`curl_multi_wakeup`](https://curl.se/libcurl/c/curl_multi_wakeup.html)).
///
/// Connections live in the multi handle's cache, so consecutive requests to one upstream reuse
/// one connection (HTTP/1.1 keep-alive), and HTTPS upstreams that offer HTTP/2 through ALPN
/// get it, with requests multiplexed over one connection. Every request is sent with:
/// no redirects followed (a 3xx is an answer), only `http` and `https`, no proxy (whatever
/// `http_proxy` and friends say), `CURLOPT_NOSIGNAL`, and its own connect and total timeouts.
///
/// ```swift
/// let multi = try CurlMulti(logger: logger)
/// defer { multi.close() }
/// multi.submit(CurlRequest(url: "http://127.0.0.1:9000/hook", body: bytes)) { print($0) }
/// while multi.count > 0 {
///     multi.perform()
///     multi.poll(timeoutMilliseconds: 1000)
/// }
/// ```
public final class CurlMulti {
    /// Identifies a submitted request, for ``cancel(_:)``.
    public typealias RequestID = UInt64
    public typealias Completion = (Result<CurlResponse, CurlError>) -> Void

    /// Reset easy handles kept for the next requests.
    private static let poolLimit = 32

    /// Wakes ``poll(timeoutMilliseconds:)`` from any thread.
    public let waker: CurlWaker
    private let multi: UnsafeMutableRawPointer
    private let logger: Logger
    private var nextID: RequestID = 1
    private var transfers: [RequestID: CurlTransfer] = [:]
    private var pool: [EasyHandle] = []
    private var closed = false

    /// Creates the multi handle.
    ///
    /// - Throws: ``CurlError`` when `curl_global_init` or `curl_multi_init` fails.
    public init(logger: Logger) throws(CurlError) {
        let globalInit = curlGlobalInitResult
        guard globalInit == CURLE_OK else { throw CurlError(globalInit) }
        guard let multi = curl_multi_init() else { throw CurlError(CURLE_OUT_OF_MEMORY) }
        self.multi = multi
        self.waker = CurlWaker(multi: multi)
        self.logger = logger
        logger.debug("curl started", metadata: ["curl.version": "\(String(cString: curl_version()))"])
    }

    deinit {
        close()
    }

    /// Requests submitted and not completed yet.
    public var count: Int { transfers.count }

    /// Adds `request` to the multi handle; it is sent by the next ``perform()``.
    ///
    /// `completion` runs exactly once, on this thread: inside a later ``perform()`` with the
    /// upstream's response, whatever its status, or with a ``CurlError`` when there is none;
    /// inside ``cancel(_:)`` or ``close()`` with ``CurlError/isCancelled``; or at once, before
    /// this returns, when the request is refused before any I/O (a URL that is not
    /// `http`/`https`, a bad method or header) or the handle is closed.
    @discardableResult
    public func submit(_ request: CurlRequest, completion: @escaping Completion) -> RequestID {
        let id = nextID
        nextID += 1
        guard !closed else {
            completion(.failure(.cancelled("the curl handle is closed")))
            return id
        }
        let easy: EasyHandle
        if let pooled = pool.popLast() {
            easy = pooled
        } else if let created = curl_easy_init() {
            easy = EasyHandle(pointer: created)
        } else {
            completion(.failure(CurlError(CURLE_OUT_OF_MEMORY)))
            return id
        }
        let transfer = CurlTransfer(id: id, easy: easy, request: request, completion: completion)
        do {
            try transfer.configure(request)
        } catch {
            recycle(easy)
            completion(.failure(error))
            return id
        }
        let added = curl_multi_add_handle(multi, easy.pointer)
        guard added == CURLM_OK else {
            recycle(easy)
            let message = String(cString: curl_multi_strerror(added))
            completion(.failure(CurlError(code: Int32(bitPattern: CURLE_FAILED_INIT.rawValue), message: message)))
            return id
        }
        transfers[id] = transfer
        return id
    }

    /// Cancels the request `id`: if it has not completed yet, its connection is dropped and
    /// its completion runs now with ``CurlError/isCancelled``. Cancelling a completed or
    /// unknown request does nothing.
    public func cancel(_ id: RequestID) {
        if let transfer = transfers[id] { finish(transfer, .failure(.cancelled("the request was cancelled"))) }
    }

    /// Does whatever I/O is ready without waiting, and runs the completion of every request
    /// that ended.
    public func perform() {
        guard !closed else { return }
        var stillRunning: Int32 = 0
        let performed = curl_multi_perform(multi, &stillRunning)
        if performed != CURLM_OK {
            logger.error("curl_multi_perform failed", metadata: ["curl.error": "\(String(cString: curl_multi_strerror(performed)))"])
        }
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

    /// Sleeps until a connection is ready for I/O, one of curl's own timers (connect and
    /// total timeouts, retransmissions) is due, one of `descriptors` is readable, ``waker`` is
    /// called, or `timeoutMilliseconds`
    /// pass, whichever comes first. Returns at once when a wake-up came since the last call.
    public func poll(timeoutMilliseconds: Int32, alsoReadable descriptors: [Int32] = []) {
        guard !closed else { return }
        var waits = descriptors.map { curl_waitfd(fd: $0, events: Int16(CURL_WAIT_POLLIN), revents: 0) }
        let polled = waits.withUnsafeMutableBufferPointer { waits in
            curl_multi_poll(multi, waits.baseAddress, UInt32(waits.count), max(0, timeoutMilliseconds), nil)
        }
        if polled != CURLM_OK {
            logger.error("curl_multi_poll failed", metadata: ["curl.error": "\(String(cString: curl_multi_strerror(polled)))"])
            usleep(10_000)  // never spin on a persistent failure
        }
    }

    /// Completes every request still pending with ``CurlError/isCancelled``, frees every easy
    /// handle and the multi handle. ``waker`` does nothing from then on. Idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        let pending = transfers.values.sorted { $0.id < $1.id }
        let cancelled = CurlError.cancelled("the curl handle was closed")
        for transfer in pending { finish(transfer, .failure(cancelled)) }
        for easy in pool { curl_easy_cleanup(easy.pointer) }
        pool.removeAll()
        waker.invalidate()
        curl_multi_cleanup(multi)
        logger.debug("curl stopped", metadata: ["requests.cancelled": "\(pending.count)"])
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
}

/// Wakes a ``CurlMulti``'s ``CurlMulti/poll(timeoutMilliseconds:)`` from any thread.
///
/// curl documents `curl_multi_wakeup` as callable from any thread while the multi handle
/// lives; the lock keeps ``CurlMulti/close()`` from freeing the handle during a call.
public final class CurlWaker: Sendable {
    /// @unchecked Sendable: the pointer is only passed to `curl_multi_wakeup`, under the lock.
    private struct Handle: @unchecked Sendable { let pointer: UnsafeMutableRawPointer }
    private let handle: Mutex<Handle?>

    fileprivate init(multi: UnsafeMutableRawPointer) {
        handle = Mutex(Handle(pointer: multi))
    }

    /// Makes the owner's current or next `poll` return at once.
    public func wake() {
        handle.withLock { handle in
            if let handle { curl_multi_wakeup(handle.pointer) }
        }
    }

    fileprivate func invalidate() {
        handle.withLock { $0 = nil }
    }
}
