// What an attacker can send from outside, tried against a running server (issue: no input can
// crash or stall Waypost): RFC 9112's rules on Host and transfer codings, HEAD, the admin API's
// query items and methods, slow heads and bodies, SIGHUP, and check-config's strictness.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// HMAC-SHA256 in hex, built on the support's SHA-256 (the CLI tests link no crypto library).
private func hmacHex(key: String, _ message: [UInt8]) -> String {
    func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            out.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return out
    }
    var block = Array(key.utf8)
    if block.count > 64 { block = bytes(sha256Hex(block)) }
    block += [UInt8](repeating: 0, count: 64 - block.count)
    let inner = bytes(sha256Hex(block.map { $0 ^ 0x36 } + message))
    return sha256Hex(block.map { $0 ^ 0x5c } + inner)
}

/// User and system CPU time of process `pid` so far, in clock ticks (/proc/PID/stat).
private func cpuTicks(_ pid: pid_t) -> Int {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let end = text.lastIndex(of: ")") else { return 0 }
    let fields = text[text.index(after: end)...].split(separator: " ")
    // After the command: state is field 3, utime 14 and stime 15 of the whole line.
    return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
}

/// Reads everything a connection sends until it closes or `timeout` passes, from a thread.
private func exchangeAll(port: Int, _ bytes: [UInt8], timeout: Double) async -> (text: String, closed: Bool) {
    await onThread {
        guard let connection = RawConnection(port: port, timeout: timeout) else { return ("", false) }
        _ = connection.send(bytes)
        let (read, closed) = connection.readToEnd(timeout: timeout)
        return (String(decoding: read, as: UTF8.self), closed)
    }
}

extension Reliability {
    @Suite("HostileInputTests: HTTP/1.1 rules, the admin API's bounds, slow clients, SIGHUP", .serialized, .timeLimit(.minutes(3)))
    struct HostileInputTests {
        private static func startServer(in dir: ScratchDirectory, extra: String = "", routes: String? = nil) async throws -> ServerUnderTest
        {
            let journal = dir.file("journal.db")
            let server = try ServerUnderTest(
                dir: dir, journal: journal,
                config: extra
                    + reliabilityConfig(
                        journal: journal,
                        routes: routes ?? """
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

        @Test("Host missing or doubled is 400, a coding other than chunked 501, HTTP/1.0 without Host is served; nothing refused is stored")
        func hostAndTransferCoding() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir)
            do {
                let cases: [(String, String, Int)] = [
                    ("no Host", "POST /hooks HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 400),
                    ("two Hosts", "POST /hooks HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 2\r\n\r\nhi", 400),
                    ("two Hosts, same value", "GET /_waypost/messages/x HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
                    (
                        "gzip, chunked", "POST /hooks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
                        501
                    ),
                ]
                let port = server.port
                let adminPort = server.adminPort
                for (name, request, status) in cases {
                    let answer = await onThread { exchange(port: port, Array(request.utf8), timeout: 5) }
                    #expect(answer?.status == status, "\(name): \(answer.map(String.init(describing:)) ?? "no answer")")
                    #expect(answer?.header("Content-Type") == "application/problem+json", "\(name)")
                }
                #expect(try await Self.storedCount(server) == 0)
                let old = await onThread {
                    exchange(port: port, Array("POST /hooks HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi".utf8), timeout: 5)
                }
                #expect(old?.status == 202, "\(old.map(String.init(describing:)) ?? "no answer")")
                // The admin listener follows the same rules.
                let admin = await onThread { exchange(port: adminPort, Array("GET /healthz HTTP/1.1\r\n\r\n".utf8), timeout: 5) }
                #expect(admin?.status == 400, "\(admin.map(String.init(describing:)) ?? "no answer")")
                #expect(server.isRunning)
                await expectCleanStop(server)
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("HEAD answers carry no body: a kept-alive client reads the next answer correctly (status API, admin API)")
        func headHasNoBody() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir)
            do {
                let accepted = try #require(await post(port: server.port, path: "/hooks", body: Array("{}".utf8)))
                let id = try #require(accepted.header("X-Correlation-ID"))
                // Until its first attempt is recorded, the status document can change between the
                // HEAD and the GET; the next attempt is 5-10 s away.
                let settled = ContinuousClock.now + .seconds(10)
                while ContinuousClock.now < settled {
                    let status = await get(port: server.port, path: "/_waypost/messages/\(id)")
                    if status.map({ String(decoding: $0.body, as: UTF8.self).contains("\"attempts\":1") }) == true { break }
                    try await Task.sleep(for: .milliseconds(20))
                }
                for (port, path) in [(server.port, "/_waypost/messages/\(id)"), (server.adminPort, "/healthz")] {
                    let pipelined = rawRequest("HEAD", path) + rawRequest("GET", path)
                    let answers = await onThread { () -> (RawResponse?, RawResponse?, [UInt8]) in
                        guard let connection = RawConnection(port: port, timeout: 5) else { return (nil, nil, []) }
                        _ = connection.send(pipelined)
                        // A HEAD answer's Content-Length describes the GET's body: read the head only.
                        let head = connection.readHeadOnly()
                        let get = connection.readResponse()
                        return (head, get, connection.readToEnd(timeout: 0.5).bytes)
                    }
                    #expect(answers.0?.status == 200, "HEAD \(path): \(answers.0.map(String.init(describing:)) ?? "no answer")")
                    #expect(answers.1?.status == 200, "GET after HEAD \(path): \(answers.1.map(String.init(describing:)) ?? "no answer")")
                    #expect((try? JSONSerialization.jsonObject(with: Data(answers.1?.body ?? []))) != nil, "GET's body is JSON")
                    #expect(answers.0?.header("Content-Length") == answers.1.map { String($0.body.count) }, "HEAD's length is GET's")
                    #expect(answers.2.isEmpty, "nothing after the two answers: \(String(decoding: answers.2, as: UTF8.self))")
                }
                await expectCleanStop(server)
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("the admin API: malformed and out-of-range query items are 400, wrong methods 405 with Allow, and the server lives on")
        func adminBounds() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir)
            let adminPort = server.adminPort
            do {
                for query in [
                    "=", "=x", "&=&", "state=%", "state=%zz", "since=2026-13-45T99:99:99Z", "since=99999999999999999d", "since=-2h",
                    "until=9223372036854775807ms", "limit=99999999999999999999", "limit=0", "limit=1001", "cursor=99999999999999999999999",
                    "cursor=-1", "bogus=1", "limit=1&limit=2",
                ] {
                    let answer = await get(port: server.adminPort, path: "/messages?\(query)", timeout: 5)
                    #expect(answer?.status == 400, "?\(query): \(answer.map(String.init(describing:)) ?? "no answer")")
                    #expect(answer?.header("Content-Type") == "application/problem+json", "?\(query)")
                }
                for body in ["{\"since\":\"99999999999999999d\"}", "{\"until\":\"2026-02-30T00:00:00Z\"}"] {
                    let answer = await onThread {
                        exchange(
                            port: adminPort,
                            rawRequest("POST", "/replay", headers: [("Content-Type", "application/json")], body: Array(body.utf8)),
                            timeout: 5)
                    }
                    #expect(answer?.status == 400, "POST /replay \(body): \(answer.map(String.init(describing:)) ?? "no answer")")
                }
                for (method, path, allow) in [
                    ("POST", "/healthz", "GET, HEAD"), ("DELETE", "/messages", "GET, HEAD"), ("PUT", "/metrics", "GET, HEAD"),
                    ("GET", "/replay", "POST"), ("GET", "/messages/x/replay", "POST"), ("GET", "/routes/hooks/pause", "POST"),
                ] {
                    let answer = await onThread { exchange(port: adminPort, rawRequest(method, path), timeout: 5) }
                    #expect(answer?.status == 405, "\(method) \(path): \(answer.map(String.init(describing:)) ?? "no answer")")
                    #expect(answer?.header("Allow") == allow, "\(method) \(path)")
                }
                // The status API's wait: any whole number (above 60 taken as 60); anything else 400.
                let huge = await get(port: server.port, path: "/_waypost/messages/unknown?wait=99999999999999999999999", timeout: 5)
                #expect(huge?.status == 404, "a huge wait is clamped, not refused: \(huge.map(String.init(describing:)) ?? "no answer")")
                for wait in ["-1", "abc", "1.5", "%"] {
                    let answer = await get(port: server.port, path: "/_waypost/messages/unknown?wait=\(wait)", timeout: 5)
                    #expect(answer?.status == 400, "wait=\(wait): \(answer.map(String.init(describing:)) ?? "no answer")")
                }
                let health = await get(port: server.adminPort, path: "/healthz", timeout: 5)
                #expect(health?.status == 200)
                #expect(server.isRunning)
                #expect(try await Self.storedCount(server) == 0, "nothing was stored")
                await expectCleanStop(server)
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("header_timeout and min_body_rate: a trickled head and a stalled body get 408 and a closed connection; an idle one is kept")
        func slowClients() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir, extra: "header_timeout: 1s\nmin_body_rate: 1KiB\n")
            do {
                let port = server.port
                async let trickledHead = onThread { () -> (String, Bool, Double) in
                    guard let connection = RawConnection(port: port, timeout: 10) else { return ("", false, 0) }
                    let start = Date()
                    // One byte every 200 ms: the old idle timer restarted on every byte.
                    for byte in Array("POST /hooks HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaa".utf8) {
                        guard connection.send([byte]) else { break }
                        usleep(200_000)
                    }
                    let (bytes, closed) = connection.readToEnd(timeout: 5)
                    return (String(decoding: bytes, as: UTF8.self), closed, Date().timeIntervalSince(start))
                }
                async let stalledBody = onThread { () -> (String, Bool, Double) in
                    guard let connection = RawConnection(port: port, timeout: 30) else { return ("", false, 0) }
                    let start = Date()
                    _ = connection.send("POST /hooks HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
                    // 100 bytes a second, far below 1 KiB/s; the first 10 s are free.
                    while Date().timeIntervalSince(start) < 20 {
                        guard connection.send([UInt8](repeating: 0x61, count: 10)) else { break }
                        usleep(100_000)
                    }
                    let (bytes, closed) = connection.readToEnd(timeout: 5)
                    return (String(decoding: bytes, as: UTF8.self), closed, Date().timeIntervalSince(start))
                }
                async let idleThenRequest = onThread { () -> RawResponse? in
                    guard let connection = RawConnection(port: port, timeout: 10) else { return nil }
                    sleep(3)  // three header_timeouts with no byte: idle, not slow
                    _ = connection.send(rawRequest("POST", "/hooks", body: Array("{}".utf8)))
                    return connection.readResponse()
                }
                let head = await trickledHead
                #expect(head.0.hasPrefix("HTTP/1.1 408"), "a trickled head: \(head.0.prefix(200))")
                #expect(head.1, "the connection is closed")
                #expect(head.2 < 8, "408 after \(head.2) s with header_timeout 1s")
                let body = await stalledBody
                #expect(body.0.hasPrefix("HTTP/1.1 408"), "a stalled body: \(body.0.prefix(200))")
                #expect(body.1, "the connection is closed")
                #expect(body.2 >= 10, "the body's first 10 s are free: 408 after \(body.2) s")
                let idle = await idleThenRequest
                #expect(
                    idle?.status == 202,
                    "an idle kept-alive connection is not a slow client: \(idle.map(String.init(describing:)) ?? "closed")")
                #expect(try await Self.storedCount(server) == 1, "only the good request is stored")
                await expectCleanStop(server)
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("out of file descriptors, the accept loop backs off instead of spinning, and serves again once they are free")
        func acceptBackoff() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let server = try await Self.startServer(in: dir)
            do {
                let pid = server.pid
                // The lines reach the test through a pipe: wait until the second one is here.
                let logged = ContinuousClock.now + .seconds(10)
                while !server.stderr.contains("admin listening"), ContinuousClock.now < logged {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(server.stderr.components(separatedBy: "intake listening").count == 2, "logged once: \(server.stderr)")
                #expect(server.stderr.components(separatedBy: "admin listening").count == 2, "logged once: \(server.stderr)")
                let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
                let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
                let openFiles = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
                let softLimit = try #require(openFiles.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first)
                #expect(runSync(["prlimit", "--pid", "\(pid)", "--nofile=\(open + 2):"]) == 0)
                let port = server.port
                let held = await onThread { (0..<40).compactMap { _ in RawConnection(port: port, timeout: 5) } }
                try await Task.sleep(for: .milliseconds(500))
                let before = cpuTicks(pid)
                try await Task.sleep(for: .seconds(2))
                let used = cpuTicks(pid) - before
                // A spinning accept loop burns a whole core: about 200 ticks in 2 s.
                #expect(used < 60, "\(used) ticks of CPU in 2 s with the descriptors used up")
                #expect(server.isRunning)
                withExtendedLifetime(held) {}
                #expect(runSync(["prlimit", "--pid", "\(pid)", "--nofile=\(softLimit):"]) == 0, "back to \(softLimit)")
                let answer = await post(port: port, path: "/hooks", body: Array("{}".utf8))
                #expect(answer?.status == 202, "\(answer.map(String.init(describing:)) ?? "no answer")")
                await expectCleanStop(server)
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("SIGHUP re-reads secret_file secrets without a restart; a reload that fails keeps the old ones")
        func sighupReloadsSecrets() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let secretFile = try dir.write("secret", "old-secret\n")
            let server = try await Self.startServer(
                in: dir,
                routes: """
                      - name: hooks
                        path: /hooks
                        upstream: http://127.0.0.1:9/
                        retry: { initial: 10s, max_delay: 10s }
                        verify: { scheme: hmac-sha256, header: X-Sig, secret_file: \(secretFile) }
                    """)
            do {
                func status(signedWith secret: String) async -> Int? {
                    let body = Array("{\"n\":1}".utf8)
                    return await post(port: server.port, path: "/hooks", headers: [("X-Sig", hmacHex(key: secret, body))], body: body)?
                        .status
                }
                #expect(await status(signedWith: "old-secret") == 202)
                #expect(await status(signedWith: "new-secret") == 401)
                try "new-secret\n".write(toFile: secretFile, atomically: true, encoding: .utf8)
                server.child?.send(SIGHUP)
                #expect(
                    await eventually(timeout: .seconds(10)) { await status(signedWith: "new-secret") == 202 }, "the new secret is in use")
                #expect(await status(signedWith: "old-secret") == 401)
                // A reload that fails (the file is gone) keeps the secret in use.
                try FileManager.default.removeItem(atPath: secretFile)
                server.child?.send(SIGHUP)
                try await Task.sleep(for: .milliseconds(500))
                #expect(server.isRunning, "SIGHUP must never stop the server")
                #expect(await status(signedWith: "new-secret") == 202)
                #expect(server.stderr.contains("reload failed"), "the failed reload is logged: \(server.stderr.suffix(2000))")
                await expectCleanStop(server)
            } catch {
                await server.kill()
                throw error
            }
        }
    }
}

@Suite("check-config applies every check serve applies before it binds (SPEC §6)", .timeLimit(.minutes(1)))
struct StrictCheckConfigTests {
    private static let route = "routes:\n  - name: a\n    path: /hooks\n    upstream: http://127.0.0.1:9/\n"

    @Test("what serve refuses, check-config refuses too, with exit 78 and a message naming the key, variable or file")
    func strict() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.file("secret-dir"), withIntermediateDirectories: true)
        let cases: [(String, String, [String: String], String)] = [
            (
                "a secret variable that is not set", Self.route + "    verify: { scheme: github, secret_env: HOSTILE_UNSET_SECRET }\n", [:],
                "HOSTILE_UNSET_SECRET"
            ),
            (
                "a secret file that is a directory",
                Self.route + "    verify: { scheme: github, secret_file: \(dir.file("secret-dir")) }\n", [:], "secret-dir"
            ),
            (
                "a public admin listener without a token", "admin: { listen: 0.0.0.0:9901, token_env: HOSTILE_NO_TOKEN }\n" + Self.route,
                [:], "HOSTILE_NO_TOKEN"
            ),
            (
                "an add_headers value holding CR LF", Self.route + "    add_headers: { X-Key: \"a\\r\\nX-Injected: 1\" }\n", [:],
                "add_headers.X-Key"
            ),
            (
                "an add_headers variable holding CR LF", Self.route + "    add_headers: { X-Key: \"${HOSTILE_VALUE}\" }\n",
                ["HOSTILE_VALUE": "a\r\nb"], "add_headers.X-Key"
            ),
            ("a duration past 36500d", "shutdown_grace: 99999999999d\n" + Self.route, [:], "shutdown_grace"),
        ]
        for (name, yaml, environment, mentions) in cases {
            let path = try dir.write("config.yaml", yaml)
            let checked = try await waypost("check-config", "--config", path, environment: environment)
            #expect(checked.status == 78, "check-config, \(name): \(checked)")
            #expect(checked.stderr.contains(mentions), "check-config, \(name): \(checked)")
            // Without --admin-listen: the public admin address is one of the cases. Each case stops
            // start-up before anything binds.
            let served = try await waypost("serve", "--config", path, "--listen", "127.0.0.1:0", environment: environment)
            #expect(served.status == 78, "serve, \(name): \(served)")
        }
    }

    @Test("a configuration file over 1 MiB, or not UTF-8, is exit 78 with a clear message")
    func fileSizeAndEncoding() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let big = try dir.write("big.yaml", Self.route + "#" + String(repeating: "x", count: 1 << 20) + "\n")
        let large = try await waypost("check-config", "--config", big)
        #expect(large.status == 78 && large.stderr.contains("larger than 1 MiB"), "\(large)")
        let latin1 = dir.file("latin1.yaml")
        try Data(Array("# caf".utf8) + [0xE9] + Array("\n\(Self.route)".utf8)).write(to: URL(fileURLWithPath: latin1))
        let notUTF8 = try await waypost("check-config", "--config", latin1)
        #expect(notUTF8.status == 78 && notUTF8.stderr.contains("not UTF-8"), "\(notUTF8)")
        let directory = try await waypost("check-config", "--config", dir.path)
        #expect(directory.status == 78 && directory.stderr.contains("directory"), "\(directory)")
    }

    @Test("flags a person gets wrong get messages a person understands (exit 64)")
    func flagMessages() async throws {
        let cases: [([String], String)] = [
            (["list", "--journal", "/nonexistent/j.db", "--since", "-2h"], "--since must be a duration ago"),
            (["list", "--journal", ""], "--journal needs the path"),
            (["list", "--journal", "/nonexistent/j.db", "--since", "2026-13-45T99:99:99Z"], "--since must be"),
            (["list", "--journal", "/nonexistent/j.db", "--limit", "5000"], "--limit must be a whole number from 1 to 1000"),
            (["replay", "--journal", "/nonexistent/j.db", "--state", "failed", "--until", "99999999999999d"], "--until must be"),
            (["purge", "--journal", "/nonexistent/j.db", "--delivered-older-than", "-7d"], "--delivered-older-than must be"),
        ]
        for (arguments, mentions) in cases {
            let result = try await waypost(arguments: arguments)
            #expect(result.status == 64, "\(arguments): \(result)")
            #expect(result.stderr.contains(mentions), "\(arguments): \(result)")
        }
    }
}
