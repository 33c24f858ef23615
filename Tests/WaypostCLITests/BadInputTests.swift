// What a hostile or broken client can do to the intake (SPEC §2 limits, RFC 9112 framing), and
// broken configuration files (SPEC §6, §8): the server answers with a problem+json 4xx or
// closes the connection, stores nothing, never crashes, keeps its memory bounded, and serves
// the next good request.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A malformed or refused request, and the statuses an answer to it may have.
struct BadRequestCase: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var statuses: Set<Int>

    init(_ name: String, _ text: String, _ statuses: Set<Int> = [400]) {
        self.name = name
        self.bytes = Array(text.utf8)
        self.statuses = statuses
    }

    init(_ name: String, bytes: [UInt8], _ statuses: Set<Int>) {
        self.name = name
        self.bytes = bytes
        self.statuses = statuses
    }

    var testDescription: String { name }
}

private let badRequests: [BadRequestCase] = [
    BadRequestCase("not HTTP at all", "GARBAGE GARBAGE GARBAGE\r\n\r\n"),
    BadRequestCase("a request line without a version", "POST /hooks\r\n\r\n"),
    BadRequestCase("HTTP/9.9", "POST /hooks HTTP/9.9\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", [400, 505]),
    BadRequestCase("a method with a space in it", "PO ST /hooks HTTP/1.1\r\nHost: a\r\n\r\n"),
    BadRequestCase("a header line without a colon", "POST /hooks HTTP/1.1\r\nHost: a\r\nNoColonHere\r\nContent-Length: 2\r\n\r\nhi"),
    BadRequestCase("a space before the colon", "POST /hooks HTTP/1.1\r\nHost : a\r\nContent-Length: 2\r\n\r\nhi"),
    BadRequestCase("a NUL byte in a header value", "POST /hooks HTTP/1.1\r\nHost: a\r\nX-A: a\u{0}b\r\nContent-Length: 2\r\n\r\nhi"),
    BadRequestCase("obsolete line folding", "POST /hooks HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nhi"),
    BadRequestCase("a Content-Length that is not a number", "POST /hooks HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"),
    BadRequestCase("a negative Content-Length", "POST /hooks HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello"),
    BadRequestCase(
        "two different Content-Lengths", "POST /hooks HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    BadRequestCase(
        "Content-Length and Transfer-Encoding: chunked together",
        "POST /hooks HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    BadRequestCase(
        "a chunk size that is not hex", "POST /hooks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n"),
    BadRequestCase(
        "a chunk size that overflows 64 bits",
        "POST /hooks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n", [400, 413]),
    BadRequestCase(
        "a chunk without its CRLF", "POST /hooks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
    BadRequestCase(
        "an unknown transfer coding", "POST /hooks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, banana\r\n\r\n0\r\n\r\n",
        [400, 501]),
    BadRequestCase(
        "an absolute-form target", "POST http://169.254.169.254/latest HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", [400, 404]),
    BadRequestCase("a dot segment", "POST /hooks/../admin HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"),
    BadRequestCase(
        "a 70 KiB header",
        "POST /hooks HTTP/1.1\r\nHost: a\r\nX-Big: \(String(repeating: "a", count: 70_000))\r\nContent-Length: 2\r\n\r\nhi", [431]),
    BadRequestCase(
        "2,000 small headers (80 KiB in all)",
        "POST /hooks HTTP/1.1\r\nHost: a\r\n" + (0..<2000).map { "X-H\($0): \(String(repeating: "b", count: 30))\r\n" }.joined()
            + "Content-Length: 2\r\n\r\nhi", [431]),
    BadRequestCase("a Content-Length over max_body_bytes", "POST /hooks HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n", [413]),
    BadRequestCase(
        "an X-Correlation-ID with a slash", "POST /hooks HTTP/1.1\r\nHost: a\r\nX-Correlation-ID: a/b\r\nContent-Length: 2\r\n\r\nhi"),
]

/// Random garbage of several kinds: raw bytes, a valid request with bytes flipped, a valid
/// request cut short, header soup. Each ends with a blank line so that a parser waiting for the
/// end of a head finds one.
private func garbage(_ generator: inout some RandomNumberGenerator) -> [UInt8] {
    let valid = Array(
        rawRequest("POST", "/hooks/x?q=1", headers: [("X-Key", "a"), ("Content-Type", "application/json")], body: Array("{\"a\":1}".utf8)))
    var bytes: [UInt8]
    switch Int.random(in: 0..<4, using: &generator) {
    case 0:
        bytes = (0..<Int.random(in: 1...600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
    case 1:
        bytes = valid
        for _ in 0..<Int.random(in: 1...6, using: &generator) {
            bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
        }
    case 2:
        bytes = Array(valid.prefix(Int.random(in: 1..<valid.count, using: &generator)))
    default:
        let pieces = [
            "GET", "POST", " ", "/", "HTTP/1.1", "\r\n", ":", "Content-Length", "Transfer-Encoding", "chunked", "0", "\n", "\u{0}",
            "ffffffff", "Host", "\t", "%00", "..", "Expect: 100-continue",
        ]
        bytes = Array((0..<Int.random(in: 1...60, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined().utf8)
    }
    return bytes + Array("\r\n\r\n".utf8)
}

/// A broken configuration and the key its error message must name.
struct BrokenConfig: Sendable, CustomTestStringConvertible {
    var name: String
    var yaml: String
    var key: String
    var testDescription: String { name }
}

private let route = "routes:\n  - name: a\n    path: /hooks\n    upstream: http://127.0.0.1:9/\n"

private let brokenConfigs: [BrokenConfig] = [
    BrokenConfig(name: "an unknown top-level key", yaml: "listne: 127.0.0.1:8080\n" + route, key: "listne"),
    BrokenConfig(name: "an unknown route key", yaml: route + "    upstreem: http://x/\n", key: "routes[0].upstreem"),
    BrokenConfig(name: "a duration without a unit", yaml: "shutdown_grace: 10\n" + route, key: "shutdown_grace"),
    BrokenConfig(name: "a size that is not a size", yaml: "defaults: { max_body_bytes: lots }\n" + route, key: "defaults.max_body_bytes"),
    BrokenConfig(name: "an unknown ordering", yaml: route + "    ordering: alphabetical\n", key: "routes[0].ordering"),
    BrokenConfig(name: "ordering: key without ordering_key", yaml: route + "    ordering: key\n", key: "ordering_key"),
    BrokenConfig(
        name: "an upstream that is not http(s)", yaml: "routes:\n  - { name: a, path: /hooks, upstream: \"ftp://x/\" }\n",
        key: "routes[0].upstream"),
    BrokenConfig(name: "an unknown durability", yaml: "journal: { durability: sometimes }\n" + route, key: "journal.durability"),
    BrokenConfig(name: "routes is not a list", yaml: "routes: { name: a }\n", key: "routes"),
    BrokenConfig(
        name: "a route without a path", yaml: "routes:\n  - { name: a, upstream: \"http://127.0.0.1:9/\" }\n", key: "routes[0].path"),
    BrokenConfig(name: "YAML that does not parse", yaml: "routes:\n  - name: a\n   path: [unclosed\n", key: "yaml"),
    BrokenConfig(name: "max_attempts of zero", yaml: route + "    retry: { max_attempts: 0 }\n", key: "routes[0].retry.max_attempts"),
    BrokenConfig(name: "a listen address without a port", yaml: "listen: localhost\n" + route, key: "listen"),
]

extension Reliability {
    @Suite("BadInputTests: malformed requests, slow clients, garbage floods, broken configurations", .serialized, .timeLimit(.minutes(3)))
    struct BadInputTests {
        /// A server with one route `/hooks` to an upstream that refuses connections (the
        /// messages stay queued; what matters here is what the intake does).
        private static func startServer(in dir: ScratchDirectory) async throws -> ServerUnderTest {
            let journal = dir.file("journal.db")
            let server = try ServerUnderTest(
                dir: dir, journal: journal,
                config: reliabilityConfig(
                    journal: journal,
                    routes: """
                          - name: hooks
                            path: /hooks
                            upstream: http://127.0.0.1:9/
                            retry: { initial: 10s, max_delay: 10s }
                        """))
            try await server.start()
            return server
        }

        private static func storedCount(_ server: ServerUnderTest) async throws -> Int {
            Int(try sqlite3(server.journal, "SELECT count(*) FROM messages")) ?? -1
        }

        @Test(
            "malformed, oversized and refused requests: a problem+json 4xx or a closed connection, nothing stored", arguments: badRequests)
        func malformedRequest(_ bad: BadRequestCase) async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir)
            do {
                let port = server.port
                let bytes = bad.bytes
                let (answer, closed) = await onThread { () -> (RawResponse?, Bool) in
                    guard let connection = RawConnection(port: port, timeout: 5) else { return (nil, false) }
                    connection.send(bytes)
                    let answer = connection.readResponse()
                    return (answer, connection.readToEnd(timeout: 2).closed)
                }
                let response = try #require(answer, "no answer to \(bad.name)")
                print("BadInputTests malformed: \(bad.name) -> \(response.status)\(closed ? ", connection closed" : "")")
                #expect(bad.statuses.contains(response.status), "\(bad.name): \(response)")
                #expect(response.header("Content-Type") == "application/problem+json", "\(bad.name): \(response)")
                if response.status == 400 || response.status == 431 {
                    #expect(closed, "\(bad.name): the connection stays open after a framing error")
                }
                #expect(try await Self.storedCount(server) == 0, "\(bad.name) was stored")
                let good = await post(port: port, path: "/hooks", body: Array("{}".utf8))
                #expect(good?.status == 202, "the next good request: \(good.map(String.init(describing:)) ?? "no answer")")
                #expect(server.isRunning)
                await expectCleanStop(server)
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("a chunked body over max_body_bytes is refused with 413 and not stored; a valid chunked body is stored whole")
        func chunkedBodies() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir)
            do {
                let port = server.port
                // 1.5 MiB in 64 KiB chunks (the default max_body_bytes is 1 MiB).
                let chunk = [UInt8](repeating: 0x61, count: 65_536)
                let tooLarge = await onThread { () -> RawResponse? in
                    guard let connection = RawConnection(port: port, timeout: 5) else { return nil }
                    connection.send(rawRequest("POST", "/hooks", headers: [("Transfer-Encoding", "chunked")]))
                    for _ in 0..<24 {
                        if !connection.send(Array("10000\r\n".utf8) + chunk + Array("\r\n".utf8)) { break }
                    }
                    connection.send("0\r\n\r\n")
                    return connection.readResponse()
                }
                #expect(tooLarge?.status == 413, "\(tooLarge.map(String.init(describing:)) ?? "no answer")")
                #expect(try await Self.storedCount(server) == 0, "a body over the limit was stored")

                let pieces = (0..<5).map { _ in randomBytes(Int.random(in: 1...5000)) }
                var request = rawRequest("POST", "/hooks", headers: [("Transfer-Encoding", "chunked")])
                for piece in pieces { request += Array(String(piece.count, radix: 16).utf8) + [13, 10] + piece + [13, 10] }
                request += Array("0\r\n\r\n".utf8)
                let chunked = request
                let accepted = await onThread { exchange(port: port, chunked) }
                #expect(accepted?.status == 202, "\(accepted.map(String.init(describing:)) ?? "no answer")")
                let stored = try sqlite3(server.journal, "SELECT lower(hex(body)) FROM messages")
                #expect(
                    stored == pieces.joined().map { String(format: "%02x", $0) }.joined(), "the stored body differs from the chunks sent")
                await expectCleanStop(server)
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("a body cut short by the client closing (Content-Length or chunked) is never stored")
        func truncatedBodies() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir)
            do {
                let port = server.port
                let requests: [[UInt8]] = [
                    Array("POST /hooks HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b".utf8),
                    Array("POST /hooks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".utf8),
                    Array("POST /hooks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhalf".utf8),
                ]
                for request in requests {
                    // Half-close (the server reads end of file), then a hard close.
                    let answer = await onThread { () -> RawResponse? in
                        guard let connection = RawConnection(port: port, timeout: 3) else { return nil }
                        connection.send(request)
                        connection.shutdownWrite()
                        return connection.readResponse()
                    }
                    #expect(answer == nil || answer!.status >= 400, "a truncated request was answered \(answer!)")
                    _ = await onThread { () -> Bool in
                        guard let connection = RawConnection(port: port, timeout: 3) else { return false }
                        return connection.send(request)
                    }
                }
                try await Task.sleep(for: .milliseconds(300))
                #expect(try await Self.storedCount(server) == 0, "a truncated body was stored")
                let good = await post(port: port, path: "/hooks", body: Array("{}".utf8))
                #expect(good?.status == 202)
                await expectCleanStop(server)
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("slow clients (half a head, then silence; a body that never ends) do not stop others from being served")
        func slowClients() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir)
            do {
                let port = server.port
                // 200 connections that stall: half a head, or a head announcing a body never sent.
                var stalled: [RawConnection] = []
                for index in 0..<200 {
                    guard let connection = RawConnection(port: port, timeout: 5) else { continue }
                    if index.isMultiple(of: 2) {
                        connection.send("POST /hooks HTTP/1.1\r\nHost: a\r\nX-Partial: ")
                    } else {
                        connection.send("POST /hooks HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nonly a little")
                    }
                    stalled.append(connection)
                }
                #expect(stalled.count == 200, "only \(stalled.count) of 200 slow connections were accepted")
                // Meanwhile, good requests are answered at once.
                let started = ContinuousClock.now
                var statuses: [Int] = []
                for seq in 0..<20 {
                    let answer = await post(
                        port: port, path: "/hooks", headers: [("X-Seq", String(seq))], body: Array("{}".utf8), timeout: 5)
                    statuses.append(answer?.status ?? 0)
                }
                let elapsed = ContinuousClock.now - started
                #expect(statuses == Array(repeating: 202, count: 20), "\(statuses)")
                #expect(elapsed < .seconds(5), "20 good requests beside 200 stalled connections took \(elapsed)")
                // The stalled connections are still open: the server's idle timeout
                // (HTTPListener.idleTimeout, 60 s) has not passed, too long to wait for here.
                let stalledConnections = stalled
                let stillOpen = await onThread { () -> Int in
                    stalledConnections.prefix(10).count { connection in
                        connection.setTimeout(0.05)
                        return !connection.readToEnd(timeout: 0.05).closed
                    }
                }
                #expect(stillOpen == 10)
                #expect(try await Self.storedCount(server) == 20, "a partial request was stored")
                print("BadInputTests slow clients: 20 good requests beside 200 stalled connections in \(elapsed)")
                withExtendedLifetime(stalled) {}
                #expect(server.isRunning)
                _ = await server.stop(timeout: .seconds(15))
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("10,000 requests of random garbage over 8 parallel connections: no crash, bounded memory, the next good request gets 202")
        func garbageFlood() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir)
            do {
                let port = server.port
                let pid = server.pid
                _ = await post(port: port, path: "/hooks", body: Array("{}".utf8))
                let rssBefore = try #require(residentKiB(pid))
                let started = ContinuousClock.now
                let outcomes = await withTaskGroup(of: [String: Int].self) { group in
                    for _ in 0..<8 {
                        group.addTask {
                            await onThread {
                                var generator = SystemRandomNumberGenerator()
                                var local: [String: Int] = [:]
                                for _ in 0..<1250 {
                                    guard let connection = RawConnection(port: port, timeout: 3) else {
                                        local["refused", default: 0] += 1
                                        continue
                                    }
                                    connection.send(garbage(&generator))
                                    connection.shutdownWrite()
                                    let (bytes, closed) = connection.readToEnd(timeout: 3)
                                    let statusLine = String(decoding: bytes.prefix(12), as: UTF8.self)
                                    let status = statusLine.hasPrefix("HTTP/1.1 ") ? String(statusLine.dropFirst(9).prefix(3)) : "none"
                                    local[closed ? status : "\(status) (still open after 3 s)", default: 0] += 1
                                }
                                return local
                            }
                        }
                    }
                    var all: [String: Int] = [:]
                    for await local in group { all.merge(local, uniquingKeysWith: +) }
                    return all
                }
                let elapsed = ContinuousClock.now - started
                try await Task.sleep(for: .milliseconds(500))
                let rssAfter = residentKiB(pid) ?? 0
                #expect(server.isRunning, "the server died: \(server.stderr.suffix(2000))")
                #expect(outcomes.values.reduce(0, +) == 10_000)
                #expect(outcomes["refused"] == nil, "connections refused: \(outcomes)")
                #expect(!outcomes.keys.contains { $0.contains("still open") }, "connections left hanging: \(outcomes)")
                #expect(!outcomes.keys.contains { $0.hasPrefix("5") }, "server errors: \(outcomes)")
                #expect(rssAfter < 200 * 1024, "RSS \(rssBefore) KiB before, \(rssAfter) KiB after")
                let good = await post(port: port, path: "/hooks", body: Array("{\"after\":true}".utf8))
                #expect(good?.status == 202, "the next good request: \(good.map(String.init(describing:)) ?? "no answer")")
                print(
                    "BadInputTests garbage flood: 10000 connections in \(elapsed), answers \(outcomes.sorted { $0.key < $1.key }), "
                        + "RSS \(rssBefore / 1024) MiB before, \(rssAfter / 1024) MiB after, stored \(try await Self.storedCount(server))")
                await expectCleanStop(server)
                #expect(try integrityCheck(server.journal) == "ok")
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("a broken configuration makes serve exit 78 naming the key, never crash, and creates no journal", arguments: brokenConfigs)
        func brokenConfig(_ broken: BrokenConfig) async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let path = try dir.write("broken.yaml", broken.yaml)
            let result = try await waypost(
                "serve", "--config", path, "--journal", dir.file("j.db"), "--listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0", directory: dir.path)
            #expect(result.status == 78, "\(broken.name): \(result)")
            #expect(result.status < 128, "\(broken.name): crashed with \(result.status)")
            #expect(result.stderr.contains(path), "\(broken.name): the message names the file: \(result.stderr)")
            if broken.key != "yaml" {
                #expect(result.stderr.contains(broken.key), "\(broken.name): the message names \(broken.key): \(result.stderr)")
            }
            #expect(!result.stderr.contains("Fatal error"), "\(broken.name): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("j.db")), "\(broken.name): a refused start created the journal")
        }
    }
}
