import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import WaypostCore
import WaypostForwarder
import WaypostJournal
import WaypostServer

/// The whole path: intake, journal, forwarder and outcome board, on loopback.
final class Gateway: Sendable {
    let delivery: DeliveryHarness
    let server: IntakeServer
    let group: MultiThreadedEventLoopGroup
    let port: Int
    let client: CurlClient

    init(routes: [RouteConfig], verifiers: [String: InboundVerifier] = [:], signers: [String: OutboundSigner] = [:]) async throws {
        delivery = try DeliveryHarness(routes: routes, signers: signers)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = delivery.configuration
        configuration.listen = HostPort(host: "127.0.0.1", port: 0)
        server = IntakeServer(
            configuration: configuration, journal: SQLiteJournal(path: configuration.journal.path), writer: delivery.writer,
            board: delivery.board,
            secrets: RouteSecrets(RouteSecrets.Keys(verifiers: verifiers)), group: group,
            logger: DeliveryHarness.quiet)
        port = try await server.start().port!
        client = try CurlClient(logger: DeliveryHarness.quiet)
    }

    func stop() async {
        client.shutdown()
        await server.shutdown()
        await delivery.stop()
        try? await group.shutdownGracefully()
    }

    func send(
        _ method: String = "POST", _ path: String, headers: [HeaderField] = [], body: String = "",
        timeout: Duration = .seconds(20)
    ) async throws -> CurlResponse {
        try await client.execute(
            CurlRequest(
                url: "http://127.0.0.1:\(port)\(path)", method: method, headers: headers, body: Array(body.utf8),
                totalTimeout: timeout))
    }

    func status(_ id: String, query: String = "", timeout: Duration = .seconds(20)) async throws -> [String: Any] {
        let response = try await send("GET", "/_waypost/messages/\(id)\(query)", timeout: timeout)
        return try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }
}

func withGateway(
    routes: [RouteConfig], verifiers: [String: InboundVerifier] = [:], signers: [String: OutboundSigner] = [:],
    _ body: (Gateway) async throws -> Void
) async throws {
    let gateway = try await Gateway(routes: routes, verifiers: verifiers, signers: signers)
    do {
        try await body(gateway)
    } catch {
        await gateway.stop()
        throw error
    }
    await gateway.stop()
}

@Suite("Request/reply and the status API over real sockets")
struct SyncTests {
    @Test("a sync route answers with the upstream's status, headers (no hop-by-hop) and body, plus X-Correlation-ID")
    func syncRelay() async throws {
        let upstream = try await TestUpstream.start { request in
            .respond(
                status: 201,
                headers: [HeaderField(name: "X-Up", value: "yes"), HeaderField(name: "Keep-Alive", value: "timeout=5")],
                body: Array("created ".utf8) + request.body)
        }
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [RouteConfig(name: "r", path: "/", upstream: upstream.url, mode: .sync)]) { gateway in
            let response = try await gateway.send("POST", "/orders", body: "{\"n\":1}")
            #expect(response.status == 201)
            #expect(String(decoding: response.body, as: UTF8.self) == "created {\"n\":1}")
            #expect(response.header("X-Up") == "yes")
            #expect(response.header("Keep-Alive") == nil)
            #expect(response.header("Preference-Applied") == nil)
            let id = try #require(response.header("X-Correlation-ID"))
            // What the source was told is what the status API shows.
            let status = try await gateway.status(id)
            #expect(status["state"] as? String == "delivered")
            #expect((status["response"] as? [String: Any])?["status"] as? Int == 201)
            // The answer leaves before the outcome's commit; a status read right after it
            // waits for that commit (OutcomeBoardTests checks the gate itself).
            for n in 2...10 {
                let next = try await gateway.send("POST", "/orders", body: "{\"n\":\(n)}")
                #expect(next.status == 201)
                let nextStatus = try await gateway.status(try #require(next.header("X-Correlation-ID")))
                #expect(nextStatus["state"] as? String == "delivered")
                #expect(nextStatus["attempts"] as? Int == 1)
            }
        }
    }

    @Test("Prefer: wait=N on an async route waits; Prefer: respond-async on a sync route does not")
    func preferences() async throws {
        let upstream = try await TestUpstream.start { _ in .respond(status: 200, body: Array("done".utf8)) }
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [
            RouteConfig(name: "a", path: "/async", upstream: upstream.url),
            RouteConfig(name: "s", path: "/sync", upstream: upstream.url, mode: .sync, syncTimeout: .seconds(3)),
        ]) { gateway in
            let waited = try await gateway.send("POST", "/async", headers: [HeaderField(name: "Prefer", value: "wait=10")], body: "x")
            #expect(waited.status == 200)
            #expect(String(decoding: waited.body, as: UTF8.self) == "done")
            #expect(waited.header("Preference-Applied") == "wait=10")
            // On a sync route the wait is capped by sync_timeout.
            let capped = try await gateway.send("POST", "/sync", headers: [HeaderField(name: "Prefer", value: "wait=100")], body: "x")
            #expect(capped.status == 200)
            #expect(capped.header("Preference-Applied") == "wait=3")
            let async = try await gateway.send("POST", "/sync", headers: [HeaderField(name: "Prefer", value: "respond-async")], body: "x")
            #expect(async.status == 202)
            #expect(async.header("Preference-Applied") == "respond-async")
            let plain = try await gateway.send("POST", "/async", body: "x")
            #expect(plain.status == 202)
            #expect(plain.header("Preference-Applied") == nil)
        }
    }

    @Test("when the budget runs out the source gets the honest 202, and delivery goes on")
    func budgetFallback() async throws {
        // The upstream answers long after the budget, so that a loaded machine (the whole suite
        // in parallel) cannot make the 202 look as if it waited for the upstream.
        let upstream = try await TestUpstream.start { _ in .respond(status: 200, delay: .milliseconds(8000)) }
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [RouteConfig(name: "r", path: "/", upstream: upstream.url, mode: .sync, syncTimeout: .seconds(1))]) {
            gateway in
            let start = ContinuousClock.now
            let response = try await gateway.send("POST", "/slow", body: "x")
            let elapsed = ContinuousClock.now - start
            #expect(response.status == 202)
            #expect(elapsed >= .milliseconds(900) && elapsed < .milliseconds(7900), "\(elapsed)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
            let id = try #require(json["id"] as? String)
            #expect(response.header("Location") == "/_waypost/messages/\(id)")
            // The long-poll is woken by the outcome.
            let status = try await gateway.status(id, query: "?wait=20")
            #expect(status["state"] as? String == "delivered")
        }
    }

    @Test("retryable failures are retried inside the budget")
    func retriesInsideBudget() async throws {
        let calls = Mutex(0)
        let upstream = try await TestUpstream.start { _ in
            calls.withLock { count in
                count += 1; return count
            } <= 2 ? .respond(status: 503) : .respond(status: 200, body: Array("third time".utf8))
        }
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [
            RouteConfig(
                name: "r", path: "/", upstream: upstream.url, mode: .sync,
                retry: RetryPolicy(initial: .milliseconds(50), maxDelay: .milliseconds(100)))
        ]) { gateway in
            let response = try await gateway.send("POST", "/x", body: "x")
            #expect(response.status == 200)
            #expect(String(decoding: response.body, as: UTF8.self) == "third time")
        }
    }

    @Test("a failure without any answer from the upstream is a 502 problem naming the error")
    func syncWithoutAnswer() async throws {
        try await withGateway(routes: [
            RouteConfig(
                name: "r", path: "/", upstream: "http://127.0.0.1:9", mode: .sync,
                retry: RetryPolicy(initial: .milliseconds(10), maxAttempts: 2))
        ]) { gateway in
            let response = try await gateway.send("POST", "/x", body: "x")
            #expect(response.status == 502)
            #expect(response.header("Content-Type") == "application/problem+json")
            #expect(response.header("X-Correlation-ID") != nil)
        }
    }

    @Test("a source that disconnects while waiting loses nothing")
    func disconnectingSource() async throws {
        let upstream = try await TestUpstream.start { _ in .respond(status: 200, delay: .milliseconds(600)) }
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [RouteConfig(name: "r", path: "/", upstream: upstream.url, mode: .sync)]) { gateway in
            // The source gives up after 200 ms and closes its connection.
            await #expect(throws: CurlError.self) {
                _ = try await gateway.send(
                    "POST", "/x", headers: [HeaderField(name: "X-Correlation-ID", value: "leaver-1")], body: "x",
                    timeout: .milliseconds(200))
            }
            let status = try await gateway.status("leaver-1", query: "?wait=10")
            #expect(status["state"] as? String == "delivered")
            #expect(upstream.requests.count == 1)
            #expect(gateway.delivery.board.watcherCount == 0)
        }
    }

    @Test("status API: the document, /response verbatim, 409 before an answer, 404 for unknown ids, base64 bodies")
    func statusAPI() async throws {
        let upstream = try await TestUpstream.start { request in
            request.body == Array("binary".utf8)
                ? .respond(
                    status: 200, headers: [HeaderField(name: "Content-Type", value: "application/octet-stream")], body: [0xFF, 0x00, 0xFE])
                : .respond(
                    status: 202, headers: [HeaderField(name: "X-B", value: "1"), HeaderField(name: "X-A", value: "2")],
                    body: Array("ok".utf8))
        }
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [
            RouteConfig(name: "r", path: "/r", upstream: upstream.url),
            RouteConfig(name: "down", path: "/down", upstream: "http://127.0.0.1:9", retry: RetryPolicy(initial: .seconds(60))),
        ]) { gateway in
            let accepted = try await gateway.send("POST", "/r/x", body: "text")
            #expect(accepted.status == 202)
            let id = try #require(accepted.header("X-Correlation-ID"))
            let status = try await gateway.status(id, query: "?wait=10")
            #expect(status["id"] as? String == id)
            #expect(status["route"] as? String == "r")
            #expect(status["state"] as? String == "delivered")
            #expect(status["attempts"] as? Int == 1)
            let receivedAt = try #require(status["received_at"] as? String)
            #expect(Timestamp.parse(receivedAt) != nil, "not RFC 3339 with milliseconds: \(receivedAt)")
            #expect(Timestamp.parse(status["delivered_at"] as? String ?? "") != nil)
            #expect(status["last_error"] is NSNull)
            let response = try #require(status["response"] as? [String: Any])
            #expect(response["status"] as? Int == 202)
            #expect(response["body"] as? String == "ok")
            let headers = try #require(response["headers"] as? [[String]])
            #expect(headers.filter { $0[0].hasPrefix("X-") } == [["X-B", "1"], ["X-A", "2"]])

            let replay = try await gateway.send("GET", "/_waypost/messages/\(id)/response")
            #expect(replay.status == 202)
            #expect(replay.body == Array("ok".utf8))
            #expect(replay.header("X-B") == "1")

            let binary = try await gateway.send("POST", "/r/b", body: "binary")
            let binaryID = try #require(binary.header("X-Correlation-ID"))
            let binaryStatus = try await gateway.status(binaryID, query: "?wait=10")
            let binaryResponse = try #require(binaryStatus["response"] as? [String: Any])
            #expect(binaryResponse["body_encoding"] as? String == "base64")
            #expect(binaryResponse["body"] as? String == Data([0xFF, 0x00, 0xFE]).base64EncodedString())

            let pending = try await gateway.send("POST", "/down/x", body: "x")
            let pendingID = try #require(pending.header("X-Correlation-ID"))
            let noResponse = try await gateway.send("GET", "/_waypost/messages/\(pendingID)/response")
            #expect(noResponse.status == 409)
            #expect(noResponse.header("Content-Type") == "application/problem+json")
            let unknown = try await gateway.send("GET", "/_waypost/messages/no-such-id")
            #expect(unknown.status == 404)
            #expect(unknown.header("Content-Type") == "application/problem+json")
            #expect(try await gateway.send("DELETE", "/_waypost/messages/\(id)").status == 405)
            #expect(try await gateway.send("GET", "/_waypost/messages/\(id)?wait=soon").status == 400)
        }
    }

    @Test("many long-polls on one message are all woken by its outcome")
    func manyWaiters() async throws {
        let release = Mutex(false)
        let upstream = try await TestUpstream.start { _ in release.withLock { $0 } ? .respond(status: 200) : .respond(status: 503) }
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [
            // Retried until the upstream is told to answer, however long the waiters take to
            // register: neither max_attempts nor the breaker may end the message first.
            RouteConfig(
                name: "r", path: "/", upstream: upstream.url,
                retry: RetryPolicy(initial: .milliseconds(300), factor: 1, maxDelay: .milliseconds(300), maxAttempts: 1_000_000),
                breaker: nil)
        ]) { gateway in
            let accepted = try await gateway.send("POST", "/x", body: "x")
            let id = try #require(accepted.header("X-Correlation-ID"))
            let states = try await withThrowingTaskGroup(of: String?.self) { group in
                // Generous budgets: on a machine loaded by the rest of the suite, starting 100
                // requests can take seconds (more than 20 attempts' worth, once, when the
                // message failed before they all waited); the outcome must still wake every one.
                for _ in 0..<100 {
                    group.addTask { try await gateway.status(id, query: "?wait=60", timeout: .seconds(70))["state"] as? String }
                }
                let deadline = ContinuousClock.now + .seconds(45)
                while gateway.delivery.board.watcherCount < 100 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(gateway.delivery.board.watcherCount == 100)
                release.withLock { $0 = true }
                return try await group.reduce(into: [String?]()) { $0.append($1) }
            }
            #expect(states.count == 100)
            #expect(states.allSatisfy { $0 == "delivered" }, "\(states)")
            #expect(gateway.delivery.board.watcherCount == 0)
        }
    }

    @Test("an operator's skip wakes the synchronous source and the long-polls waiting for that message")
    func skipWakesWaiters() async throws {
        let upstream = try await TestUpstream.start { _ in .respond(status: 503, body: Array("busy".utf8)) }
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [
            RouteConfig(
                name: "r", path: "/", upstream: upstream.url, mode: .sync, syncTimeout: .seconds(50),
                retry: RetryPolicy(initial: .seconds(60)))
        ]) { gateway in
            let id = "skipped-1"
            async let answer = gateway.send(
                "POST", "/x", headers: [HeaderField(name: "X-Correlation-ID", value: id)], body: "x", timeout: .seconds(60))
            // The first attempt got 503; the message waits 60 s for its retry, the source with it.
            let deadline = ContinuousClock.now + .seconds(10)
            while upstream.requests.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            async let status = gateway.status(id, query: "?wait=50")
            // A deadline of its own: under the whole suite's load the first attempt can take most of the first one.
            let registered = ContinuousClock.now + .seconds(15)
            while gateway.delivery.board.watcherCount < 2 && ContinuousClock.now < registered {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(gateway.delivery.board.watcherCount == 2, "the source and the long-poll wait")
            let skipped = ContinuousClock.now
            #expect(try JournalOperations(path: gateway.delivery.journalPath).skip(id: id))
            let (response, document) = try await (answer, status)
            let waited = ContinuousClock.now - skipped
            // Woken by the forwarder's half-second look at the journal, not by the 60 s retry or
            // the 50 s budgets (the long-poll's client gives up after 20 s).
            #expect(waited < .seconds(15), "\(waited)")
            #expect(document["state"] as? String == "skipped")
            // The source gets the upstream's last answer, as any later reader of the message would.
            #expect(response.status == 503)
            #expect(response.header("X-Correlation-ID") == id)
            #expect(String(decoding: response.body, as: UTF8.self) == "busy")
            #expect(upstream.requests.count == 1)
            #expect(gateway.delivery.board.watcherCount == 0)
        }
    }

    @Test("idempotency: concurrent and later repeats store one message and get its outcome")
    func idempotentRepeats() async throws {
        let upstream = try await TestUpstream.start { _ in .respond(status: 200, body: Array("the answer".utf8), delay: .milliseconds(200))
        }
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [RouteConfig(name: "r", path: "/", upstream: upstream.url, mode: .sync)]) { gateway in
            let key = HeaderField(name: "Idempotency-Key", value: "evt-1")
            async let first = gateway.send("POST", "/x", headers: [key], body: "1")
            async let second = gateway.send("POST", "/x", headers: [key], body: "1")
            let (a, b) = try await (first, second)
            #expect(a.status == 200 && b.status == 200)
            #expect(a.body == Array("the answer".utf8) && b.body == Array("the answer".utf8))
            #expect(a.header("X-Correlation-ID") == b.header("X-Correlation-ID"))
            // Later, the repeat is answered from the journal.
            let later = try await gateway.send("POST", "/x", headers: [key], body: "1")
            #expect(later.status == 200)
            #expect(later.body == Array("the answer".utf8))
            #expect(later.header("X-Correlation-ID") == a.header("X-Correlation-ID"))
            #expect(upstream.requests.count == 1)
            #expect(gateway.delivery.writer.statistics.messages == 1)
        }
    }

    @Test("an empty idempotency key is no key: such requests are not repeats, and each goes out with its correlation id")
    func emptyIdempotencyKey() async throws {
        let upstream = try await TestUpstream.start()
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [RouteConfig(name: "r", path: "/", upstream: upstream.url)]) { gateway in
            let empty = HeaderField(name: "Idempotency-Key", value: "")
            let first = try await gateway.send("POST", "/x", headers: [empty], body: "1")
            let second = try await gateway.send("POST", "/x", headers: [empty], body: "2")
            let ids = [first, second].compactMap { $0.header("X-Correlation-ID") }
            #expect(ids.count == 2 && ids[0] != ids[1], "two messages: \(ids)")
            try await gateway.delivery.waitForStates(ids, in: ["delivered"])
            #expect(Set(upstream.requests.compactMap { $0.header("Idempotency-Key") }) == Set(ids))
        }
    }
}

@Suite("Header values byte for byte, obs-text included (SPEC §2)")
struct ObsTextTests {
    @Test("a header value that is not UTF-8 is journaled and forwarded as its bytes; UTF-8 values stay text")
    func obsTextKept() async throws {
        let upstream = try await TestUpstream.start()
        defer { Task { await upstream.stop() } }
        try await withGateway(routes: [RouteConfig(name: "r", path: "/hooks", upstream: upstream.url)]) { gateway in
            let obs: [UInt8] = [0xFF, 0xFE, 0x20, 0x6F, 0x6B, 0xE9]  // ÿþ ok é, as Latin-1 bytes
            let sent = [
                // The first one has a body, so the recorder must skip it to find the second head.
                try await gateway.send("POST", "/hooks", headers: [HeaderField(name: "X-Plain", value: "a")], body: "{\"n\":1}"),
                try await gateway.send(
                    "POST", "/hooks",
                    headers: [
                        HeaderField(name: "X-Obs", valueBytes: obs), HeaderField(name: "X-Utf", value: "café"),
                        HeaderField(name: "X-After", value: "b"),
                    ], body: "second"),
            ]
            #expect(sent.map(\.status) == [202, 202])
            let ids = sent.compactMap { $0.header("X-Correlation-ID") }
            try await gateway.delivery.waitForStates(ids, in: ["delivered"])
            let record = try #require(try gateway.delivery.record(ids[1]))
            #expect(record.headersJSON.contains(#"["X-Obs","ÿþ oké","latin1"]"#), "\(record.headersJSON)")
            #expect(record.headersJSON.contains(#"["X-Utf","café"]"#), "\(record.headersJSON)")
            let fields = try #require(JSON.decodeHeaders(record.headersJSON))
            #expect(fields.first { $0.name == "X-Obs" }?.valueBytes == obs)
            let wire = upstream.rawBytes
            #expect(wire.firstRange(of: Array("X-Obs: ".utf8) + obs + [0x0D, 0x0A]) != nil, "the upstream got the bytes")
            #expect(wire.firstRange(of: Array("X-Utf: café\r\n".utf8)) != nil)
        }
    }
}
