import Foundation
import Logging
import Synchronization
import Testing
import WaypostCore

@testable import WaypostForwarder

/// Runs `body` with a fresh client and upstream, and stops both afterwards whatever happens.
private func withClient(
    upstream handler: @escaping @Sendable (RecordedRequest) -> TestUpstream.Reply = { _ in .ok },
    _ body: (CurlClient, TestUpstream) async throws -> Void
) async throws {
    let upstream = try await TestUpstream.start(handler)
    let client = try CurlClient(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    do {
        try await body(client, upstream)
    } catch {
        client.shutdown()
        await upstream.stop()
        throw error
    }
    client.shutdown()
    await upstream.stop()
}

/// The error `execute` threw, or nil when it returned a response.
private func executeError(_ client: CurlClient, _ request: CurlRequest) async -> CurlError? {
    do {
        _ = try await client.execute(request)
        return nil
    } catch {
        return error
    }
}

/// Polls `condition` until it holds, for at most `limit`.
private func eventually(within limit: Duration = .seconds(5), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        guard ContinuousClock.now < deadline else { return }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Collects the results of `submit` completions, which run on the client's thread.
private final class Completions: Sendable {
    let results = Mutex<[CurlClient.RequestID: Result<CurlResponse, CurlError>]>([:])

    func handler(for id: @escaping @Sendable () -> CurlClient.RequestID) -> @Sendable (Result<CurlResponse, CurlError>) -> Void {
        { result in self.results.withLock { $0[id()] = result } }
    }

    var count: Int { results.withLock { $0.count } }
    var all: [Result<CurlResponse, CurlError>] { results.withLock { Array($0.values) } }
}

/// Collects completions in order of arrival.
private final class ResultBox: Sendable {
    let results = Mutex<[Result<CurlResponse, CurlError>]>([])
    func append(_ result: Result<CurlResponse, CurlError>) { results.withLock { $0.append(result) } }
    var all: [Result<CurlResponse, CurlError>] { results.withLock { $0 } }
}

private let code = (
    unsupportedProtocol: Int32(1), couldntConnect: Int32(7), timedOut: Int32(28),
    abortedByCallback: Int32(42), badFunctionArgument: Int32(43), gotNothing: Int32(52)
)

@Suite("CurlClient against a loopback upstream", .timeLimit(.minutes(1)))
struct CurlClientTests {
    @Test("a POST's binary body arrives byte for byte, its headers in order, nothing added but Host and Content-Length")
    func postBinaryBody() async throws {
        try await withClient(upstream: { _ in .respond(status: 201) }) { client, upstream in
            // Over 1 MiB: above the size at which curl 7.88 would send "Expect: 100-continue".
            let body = (0..<(1 << 20) + 4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) } + [0, 0, 0xFF, 0x0D, 0x0A]
            let headers = [
                HeaderField(name: "X-Second", value: "2"),
                HeaderField(name: "content-type", value: "application/octet-stream"),
                HeaderField(name: "X-First", value: "1"),
                HeaderField(name: "X-Dup", value: "a"),
                HeaderField(name: "X-Empty", value: ""),
                HeaderField(name: "X-Dup", value: "b, c"),
            ]
            let response = try await client.execute(CurlRequest(url: upstream.url + "/hooks/a?x=1&y=%20", headers: headers, body: body))
            #expect(response.status == 201)
            let received = try #require(upstream.requests.first)
            #expect(received.method == "POST")
            #expect(received.uri == "/hooks/a?x=1&y=%20")
            #expect(received.body == body)
            #expect(received.headersWithoutFraming == headers)
            #expect(received.header("Content-Length") == String(body.count))
            #expect(received.header("Host") == "127.0.0.1:\(upstream.port)")
            #expect(received.header("Expect") == nil)
            #expect(received.header("Accept") == nil)
        }
    }

    @Test("a body without headers gets no Content-Type, Accept, Expect or User-Agent from curl")
    func noHeadersAdded() async throws {
        try await withClient { client, upstream in
            _ = try await client.execute(CurlRequest(url: upstream.url + "/", body: Array("a=b".utf8)))
            _ = try await client.execute(CurlRequest(url: upstream.url + "/", method: "PUT"))
            let requests = upstream.requests
            try #require(requests.count == 2)
            #expect(requests[0].headers.map { $0.name.lowercased() } == ["host", "content-length"])
            #expect(requests[0].body == Array("a=b".utf8))
            #expect(requests[1].method == "PUT")
            #expect(requests[1].headers.map { $0.name.lowercased() } == ["host", "content-length"])
            #expect(requests[1].header("Content-Length") == "0")
        }
    }

    @Test("headers the caller gives replace curl's defaults; a caller's Content-Length is replaced by the real one")
    func callerHeadersWin() async throws {
        try await withClient { client, upstream in
            let headers = [
                HeaderField(name: "Accept", value: "application/json"),
                HeaderField(name: "Content-Length", value: "999"),
                HeaderField(name: "Host", value: "integration.internal"),
            ]
            _ = try await client.execute(CurlRequest(url: upstream.url + "/", method: "PATCH", headers: headers, body: [1, 2, 3]))
            let received = try #require(upstream.requests.first)
            #expect(received.method == "PATCH")
            #expect(received.header("Accept") == "application/json")
            #expect(received.header("Host") == "integration.internal")
            #expect(received.headers.filter { $0.name.lowercased() == "content-length" }.map(\.value) == ["3"])
            #expect(received.body == [1, 2, 3])
        }
    }

    @Test("status, headers in order and body are captured, also for a 500")
    func responseCaptured() async throws {
        let answerHeaders = [
            HeaderField(name: "X-One", value: "1"),
            HeaderField(name: "Content-Type", value: "text/plain"),
            HeaderField(name: "x-two", value: "two words"),
            HeaderField(name: "X-One", value: "again"),
        ]
        try await withClient(upstream: { _ in .respond(status: 500, headers: answerHeaders, body: Array("boom\u{0}\u{FF}".utf8)) }) {
            client, upstream in
            let response = try await client.execute(CurlRequest(url: upstream.url + "/x"))
            #expect(response.status == 500)
            #expect(response.headers == answerHeaders + [HeaderField(name: "Content-Length", value: "7")])
            #expect(response.body == Array("boom\u{0}\u{FF}".utf8))
            #expect(!response.bodyTruncated)
            #expect(response.duration > .zero && response.duration < .seconds(5))
        }
    }

    @Test("a 302 with Location is returned, not followed")
    func redirectNotFollowed() async throws {
        try await withClient(upstream: { request in
            request.uri == "/start" ? .respond(status: 302, headers: [HeaderField(name: "Location", value: "/elsewhere")]) : .ok
        }) { client, upstream in
            let response = try await client.execute(CurlRequest(url: upstream.url + "/start"))
            #expect(response.status == 302)
            #expect(response.header("location") == "/elsewhere")
            #expect(upstream.requests.map(\.uri) == ["/start"])
        }
    }

    @Test("interim 1xx responses are dropped: only the final response's headers are kept")
    func interimResponsesDropped() async throws {
        let raw =
            "HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok"
        try await withClient(upstream: { _ in .raw(Array(raw.utf8), close: false) }) { client, upstream in
            let response = try await client.execute(CurlRequest(url: upstream.url + "/"))
            #expect(response.status == 200)
            #expect(response.headers == [HeaderField(name: "X-Final", value: "yes"), HeaderField(name: "Content-Length", value: "2")])
            #expect(response.body == Array("ok".utf8))
        }
    }

    @Test("HEAD and GET send no body; HEAD reads none; DELETE and OPTIONS without body send none")
    func bodilessMethods() async throws {
        try await withClient(upstream: { _ in .respond(body: Array("0123456789".utf8)) }) { client, upstream in
            let head = try await client.execute(CurlRequest(url: upstream.url + "/h", method: "HEAD"))
            let get = try await client.execute(CurlRequest(url: upstream.url + "/g", method: "GET"))
            _ = try await client.execute(CurlRequest(url: upstream.url + "/d", method: "DELETE"))
            _ = try await client.execute(CurlRequest(url: upstream.url + "/o", method: "OPTIONS"))
            #expect(head.status == 200)
            #expect(head.header("Content-Length") == "10")
            #expect(head.body.isEmpty)
            #expect(get.body == Array("0123456789".utf8))
            let requests = upstream.requests
            #expect(requests.map(\.method) == ["HEAD", "GET", "DELETE", "OPTIONS"])
            for request in requests {
                #expect(request.body.isEmpty)
                #expect(request.header("Content-Length") == nil, "\(request.method)")
                #expect(request.header("Transfer-Encoding") == nil, "\(request.method)")
                #expect(request.headers.map { $0.name.lowercased() } == ["host"], "\(request.method)")
            }
            // Reading the HEAD answer's Content-Length as a body length would have broken the
            // connection; all four went over one.
            #expect(upstream.connectionCount == 1)
        }
    }

    @Test("the total timeout ends a transfer to an upstream that answers too late")
    func totalTimeout() async throws {
        try await withClient(upstream: { _ in .respond(delay: .seconds(30)) }) { client, upstream in
            let started = ContinuousClock.now
            let error = await executeError(client, CurlRequest(url: upstream.url + "/slow", totalTimeout: .milliseconds(300)))
            let elapsed = ContinuousClock.now - started
            let failure = try #require(error)
            #expect(failure.isTimeout)
            #expect(failure.code == code.timedOut)
            #expect(!failure.isCancelled)
            #expect(failure.message.contains("timed out"), "\(failure.message)")
            // Cut at the 300 ms timeout, long before the 30 s reply (a CI machine starting
            // every test at once once took 4.5 s here).
            #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(20), "\(elapsed)")
        }
    }

    @Test("connection refused is an error with curl's message")
    func connectionRefused() async throws {
        let closed = try await TestUpstream.start()
        let port = closed.port
        await closed.stop()
        let client = try CurlClient(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        defer { client.shutdown() }
        let failure = try #require(await executeError(client, CurlRequest(url: "http://127.0.0.1:\(port)/")))
        #expect(failure.code == code.couldntConnect)
        #expect(failure.message.contains("127.0.0.1"), "\(failure.message)")
        #expect(failure.description.contains("curl error 7"))
        #expect(!failure.isTimeout && !failure.isCancelled)
    }

    @Test("a connection closed without an answer is an error")
    func closedWithoutAnswer() async throws {
        try await withClient(upstream: { _ in .closeConnection }) { client, upstream in
            let failure = try #require(await executeError(client, CurlRequest(url: upstream.url + "/")))
            #expect(failure.code == code.gotNothing)
            #expect(!failure.message.isEmpty)
            #expect(!failure.isTimeout && !failure.isCancelled)
        }
    }

    @Test("an upstream that closes the connection in the middle of a large upload is an error, not a SIGPIPE")
    func closedDuringUpload() async throws {
        let upstream = try await TestUpstream.start(maxBodyBytes: 64 * 1024)
        let client = try CurlClient(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        defer { client.shutdown() }
        let body = [UInt8](repeating: 0x61, count: 32 << 20)
        let failure = try #require(await executeError(client, CurlRequest(url: upstream.url + "/big", body: body)))
        #expect(!failure.isTimeout && !failure.isCancelled)
        #expect(!failure.message.isEmpty)
        #expect(upstream.requests.isEmpty)
        await upstream.stop()
    }

    @Test("an answer that is not HTTP is an error")
    func garbageAnswer() async throws {
        try await withClient(upstream: { _ in .garbage }) { client, upstream in
            let failure = try #require(await executeError(client, CurlRequest(url: upstream.url + "/")))
            #expect(failure.code != 0)
            #expect(!failure.message.isEmpty)
            #expect(!failure.isTimeout && !failure.isCancelled)
            #expect(upstream.requests.count == 1)
        }
    }

    @Test("the response body is cut at the cap, the transfer still completes and its connection is reused")
    func bodyCap() async throws {
        let big = (0..<100_000).map { UInt8(truncatingIfNeeded: $0) }
        try await withClient(upstream: { _ in .respond(body: big) }) { client, upstream in
            let capped = try await client.execute(CurlRequest(url: upstream.url + "/", maxResponseBodyBytes: 1000))
            #expect(capped.bodyTruncated)
            #expect(capped.body.count == 1000)
            #expect(capped.body == Array(big.prefix(1000)))
            let exact = try await client.execute(CurlRequest(url: upstream.url + "/", maxResponseBodyBytes: big.count))
            #expect(!exact.bodyTruncated)
            #expect(exact.body == big)
            #expect(upstream.connectionCount == 1)
        }
    }

    @Test("50 sequential requests reuse one TCP connection")
    func connectionReuse() async throws {
        try await withClient(upstream: { request in .respond(body: request.body) }) { client, upstream in
            for index in 0..<50 {
                let response = try await client.execute(CurlRequest(url: upstream.url + "/\(index)", body: Array("\(index)".utf8)))
                #expect(response.body == Array("\(index)".utf8))
            }
            #expect(upstream.requests.count == 50)
            #expect(upstream.connectionCount == 1)
            #expect(Set(upstream.requests.map(\.connection)) == [1])
        }
    }

    @Test("200 concurrent requests all complete, each with its own answer")
    func concurrentRequests() async throws {
        try await withClient(upstream: { request in .respond(body: Array((request.header("X-N") ?? "?").utf8)) }) {
            client, upstream in
            let bodies = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let request = CurlRequest(
                            url: upstream.url + "/", headers: [HeaderField(name: "X-N", value: "\(index)")], body: Array("\(index)".utf8))
                        let response = try await client.execute(request)
                        return (index, String(decoding: response.body, as: UTF8.self))
                    }
                }
                var bodies: [Int: String] = [:]
                for try await (index, body) in group { bodies[index] = body }
                return bodies
            }
            #expect(bodies.count == 200)
            #expect(bodies.allSatisfy { String($0.key) == $0.value })
            #expect(upstream.requests.count == 200)
        }
    }

    @Test("cancelling the task awaiting execute cancels the request at once")
    func taskCancellation() async throws {
        try await withClient(upstream: { request in request.uri == "/slow" ? .respond(delay: .seconds(20)) : .ok }) {
            client, upstream in
            let task = Task { try await client.execute(CurlRequest(url: upstream.url + "/slow")) }
            try await eventually { upstream.requests.count == 1 }
            try #require(upstream.requests.count == 1)
            let cancelledAt = ContinuousClock.now
            task.cancel()
            let result = await task.result
            // Far sooner than the 20 s reply; the bound is loose for a loaded 2-core machine.
            #expect(ContinuousClock.now - cancelledAt < .seconds(10))
            guard case .failure(let failure) = result, let error = failure as? CurlError else {
                Issue.record("expected a cancellation, got \(result)")
                return
            }
            #expect(error.isCancelled)
            #expect(error.code == code.abortedByCallback)
            // The client still works afterwards.
            let alreadyCancelled = Task { () -> CurlError? in
                withUnsafeCurrentTask { $0?.cancel() }
                return await executeError(client, CurlRequest(url: upstream.url + "/never"))
            }
            #expect(await alreadyCancelled.value?.isCancelled == true)
            #expect(try await client.execute(CurlRequest(url: upstream.url + "/after")).status == 200)
            #expect(!upstream.requests.contains { $0.uri == "/never" })
        }
    }

    @Test("cancel(id) completes a running request with isCancelled; cancelling a finished one does nothing")
    func cancelByID() async throws {
        try await withClient(upstream: { request in request.uri == "/slow" ? .respond(delay: .seconds(20)) : .ok }) {
            client, upstream in
            let results = ResultBox()
            let fast = client.submit(CurlRequest(url: upstream.url + "/fast")) { results.append($0) }
            try await eventually { results.all.count == 1 }
            client.cancel(fast)
            client.cancel(999_999)
            let slow = client.submit(CurlRequest(url: upstream.url + "/slow")) { results.append($0) }
            try await eventually { upstream.requests.count == 2 }
            client.cancel(slow)
            try await eventually { results.all.count == 2 }
            let all = results.all
            try #require(all.count == 2)
            #expect((try? all[0].get())?.status == 200)
            guard case .failure(let error) = all[1] else {
                Issue.record("expected a cancellation, got \(all[1])")
                return
            }
            #expect(error.isCancelled)
            #expect(slow != fast)
        }
    }

    @Test("URLs of other schemes are refused without any I/O", arguments: ["ftp", "file", "gopher", "dict"])
    func otherSchemesRefused(scheme: String) async throws {
        try await withClient { client, upstream in
            let url = scheme == "file" ? "file:///etc/hostname" : "\(scheme)://127.0.0.1:\(upstream.port)/x"
            let failure = try #require(await executeError(client, CurlRequest(url: url, method: "GET")))
            #expect(failure.code == code.unsupportedProtocol, "\(failure)")
            #expect(upstream.connectionCount == 0)
        }
    }

    @Test("a header with CR or LF, or an invalid method, is refused before any I/O")
    func headerInjectionRefused() async throws {
        try await withClient { client, upstream in
            let injected = CurlRequest(url: upstream.url + "/", headers: [HeaderField(name: "X-A", value: "1\r\nX-Injected: yes")])
            let badName = CurlRequest(url: upstream.url + "/", headers: [HeaderField(name: "X A", value: "1")])
            let badMethod = CurlRequest(url: upstream.url + "/", method: "GET /other HTTP/1.1\r\n")
            for request in [injected, badName, badMethod] {
                let failure = try #require(await executeError(client, request))
                #expect(failure.code == code.badFunctionArgument, "\(failure)")
            }
            #expect(upstream.connectionCount == 0)
            // The refused handles went back to the pool in a clean state.
            #expect(try await client.execute(CurlRequest(url: upstream.url + "/ok", method: "GET")).status == 200)
            #expect(upstream.requests.map(\.uri) == ["/ok"])
        }
    }

    @Test("close() completes the requests in flight with isCancelled; later submits fail at once; the waker is then inert")
    func closeCancelsInFlight() async throws {
        let upstream = try await TestUpstream.start { _ in .respond(delay: .seconds(20)) }
        let multi = try CurlMulti(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        var results: [Result<CurlResponse, CurlError>] = []
        for index in 0..<5 {
            multi.submit(CurlRequest(url: upstream.url + "/\(index)")) { results.append($0) }
        }
        #expect(multi.count == 5)
        let deadline = ContinuousClock.now + .seconds(10)
        while upstream.requests.count < 5 && ContinuousClock.now < deadline {
            multi.perform()
            multi.poll(timeoutMilliseconds: 20)
        }
        #expect(upstream.requests.count == 5)
        #expect(results.isEmpty)
        multi.close()
        #expect(multi.count == 0)
        #expect(results.count == 5)
        for result in results {
            guard case .failure(let error) = result else {
                Issue.record("expected a cancellation, got \(result)")
                continue
            }
            #expect(error.isCancelled)
        }
        multi.close()  // idempotent
        multi.waker.wake()  // does nothing once the handle is freed
        var late: [Result<CurlResponse, CurlError>] = []
        multi.submit(CurlRequest(url: upstream.url + "/late")) { late.append($0) }
        #expect(late.count == 1)
        #expect((try? late.first?.get()) == nil)
        await upstream.stop()
        #expect(!upstream.requests.contains { $0.uri == "/late" })
    }

    @Test("a completion may submit the next request; a wake-up from another thread ends a long poll at once")
    func reentrantCompletionAndWakeup() async throws {
        let upstream = try await TestUpstream.start()
        let multi = try CurlMulti(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        var statuses: [Int] = []
        let url = upstream.url
        multi.submit(CurlRequest(url: url + "/first")) { first in
            statuses.append((try? first.get().status) ?? -1)
            multi.submit(CurlRequest(url: url + "/second")) { second in statuses.append((try? second.get().status) ?? -1) }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while statuses.count < 2 && ContinuousClock.now < deadline {
            multi.perform()
            multi.poll(timeoutMilliseconds: 20)
        }
        #expect(statuses == [200, 200])
        #expect(upstream.requests.map(\.uri) == ["/first", "/second"])

        let waker = multi.waker
        let thread = Thread {
            usleep(100_000)
            waker.wake()
        }
        thread.start()
        let started = ContinuousClock.now
        multi.poll(timeoutMilliseconds: 30_000)
        // Far sooner than the 30 s timeout; the bound is loose for a loaded 2-core machine.
        #expect(ContinuousClock.now - started < .seconds(10))
        multi.close()
        await upstream.stop()
    }
}
