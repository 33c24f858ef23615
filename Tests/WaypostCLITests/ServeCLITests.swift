// `waypost serve` as an operator starts and stops it (SPEC §6, §10): refusals at start-up with
// their exit codes and messages, the environment defaults, and a graceful stop on a signal.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@Suite("waypost serve start-up and shutdown", .timeLimit(.minutes(1)))
struct ServeCLITests {
    @Test("an address in use stops start-up with exit 1, naming the address")
    func addressInUse() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let occupied = try LoopbackListener()
        defer { occupied.close() }
        let result = try await waypost(
            "serve", "--upstream", "http://127.0.0.1:9/", "--listen", "127.0.0.1:\(occupied.port)",
            "--admin-listen", "127.0.0.1:0", "--journal", dir.file("j.db"), directory: dir.path)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("cannot listen on 127.0.0.1:\(occupied.port): address already in use"), "\(result)")
    }

    @Test("serve without --upstream, --config or $WAYPOST_UPSTREAM exits 64 naming --upstream")
    func noUpstream() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let result = try await waypost("serve", "--listen", "127.0.0.1:0", directory: dir.path)
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains("needs --upstream URL (or $WAYPOST_UPSTREAM), or --config FILE"), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("waypost.db")), "a refused start created ./waypost.db")
    }

    @Test(
        "an unusable --upstream or --listen exits 64 naming the flag",
        arguments: [
            (["--upstream", "ftp://example.com/"], "--upstream"),
            (["--upstream", "http://127.0.0.1:9/", "--listen", "localhost"], "--listen"),
        ])
    func badFlagValues(flags: [String], named flag: String) async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let result = try await waypost(arguments: ["serve"] + flags, directory: dir.path)
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains(flag), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("waypost.db")), "a refused start created ./waypost.db")
    }

    @Test("--upstream together with --config exits 64")
    func upstreamWithConfig() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let config = try dir.write("w.yaml", "routes:\n  - { name: a, path: /, upstream: \"http://127.0.0.1:9/\" }\n")
        let result = try await waypost(
            "serve", "--config", config, "--upstream", "http://127.0.0.1:9/", "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0", "--journal", dir.file("j.db"), directory: dir.path)
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains("--upstream applies only without --config"), "\(result)")
    }

    @Test("a sign secret that is not set makes serve exit 78 naming the variable, before anything is created")
    func signRefused() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let config = try dir.write(
            "sync.yaml",
            """
            routes:
              - name: orders
                path: /hooks/orders
                upstream: http://127.0.0.1:9/
                sign: { scheme: standard-webhooks, secret_env: SIGNING_SECRET }

            """)
        let result = try await waypost(
            "serve", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--journal", dir.file("j.db"), directory: dir.path)
        #expect(result.status == 78, "\(result)")
        #expect(result.stderr.contains("SIGNING_SECRET"), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("j.db")), "a refused start created the journal")
    }

    @Test("an add_headers value naming an unset variable makes serve exit 78 naming the key and the variable, before anything is created")
    func addHeadersVariableRefused() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let config = try dir.write(
            "w.yaml",
            """
            routes:
              - name: a
                path: /
                upstream: http://127.0.0.1:9/
                add_headers: { X-Token: "Bearer ${WAYPOST_TEST_UNSET_TOKEN}" }

            """)
        let result = try await waypost(
            "serve", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--journal", dir.file("j.db"), directory: dir.path)
        #expect(result.status == 78, "\(result)")
        #expect(result.stderr.contains("invalid configuration: routes[0].add_headers.X-Token"), "\(result)")
        #expect(result.stderr.contains("WAYPOST_TEST_UNSET_TOKEN is not set"), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("j.db")), "a refused start created the journal")
    }

    @Test("an invalid config makes serve exit 78 naming the file and the key")
    func invalidConfigRefused() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let config = try dir.write("w.yaml", "routes:\n  - { name: a, path: /, upstream: \"http://127.0.0.1:9/\", retyr: {} }\n")
        let result = try await waypost(
            "serve", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--journal", dir.file("j.db"), directory: dir.path)
        #expect(result.status == 78, "\(result)")
        #expect(result.stderr.contains(config), "\(result)")
        #expect(result.stderr.contains("routes[0].retyr"), "\(result)")
    }

    @Test("$WAYPOST_UPSTREAM and $WAYPOST_JOURNAL stand in for the flags")
    func environmentDefaults() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let journal = dir.file("env.db")
        let server = try await RunningServer.start(
            journal: journal, directory: dir.path, arguments: [],
            environment: ["WAYPOST_UPSTREAM": "http://127.0.0.1:9/", "WAYPOST_JOURNAL": journal])
        do {
            let answer = try await curl("PUT", server.baseURL + "/anything", body: "plain text")
            #expect(answer.status == 202, "\(answer.body)")
            let id = try #require(answer.header("X-Correlation-ID"))
            #expect(answer.header("Location") == "/_waypost/messages/\(id)")
            let shown = try await waypost("show", "--journal", journal, id, directory: dir.path)
            #expect(shown.status == 0, "\(shown)")
            #expect(shown.lines.contains("PUT /anything"), "\(shown)")
            #expect(shown.lines.contains("plain text"), "\(shown)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("waypost.db")), "the server used ./waypost.db, not $WAYPOST_JOURNAL")
        } catch {
            await server.child.kill()
            throw error
        }
        #expect(await server.terminate() == 0, "stderr:\n\(server.child.stderr.text)")
    }

    @Test("a signal stops the server with exit 0 within 10 s; the journal keeps the message", arguments: [SIGTERM, SIGINT])
    func gracefulStop(signal: Int32) async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let server = try await RunningServer.start(journal: dir.file("j.db"), directory: dir.path)
        let id: String
        do {
            let answer = try await curl("POST", server.baseURL + "/hooks/orders", body: "{\"order\":9}")
            try #require(answer.status == 202, "\(answer.body)")
            id = try #require(answer.header("X-Correlation-ID"))
        } catch {
            await server.child.kill()
            throw error
        }
        server.child.send(signal)
        let status = await server.child.waitForExit(timeout: .seconds(10))
        if status == nil { await server.child.kill() }
        #expect(status == 0, "exit \(status.map(String.init) ?? "none within 10 s"); stderr:\n\(server.child.stderr.text)")
        let stderr = server.child.stderr.text
        #expect(stderr.contains("intake stopped"), "stderr:\n\(stderr)")
        #expect(stderr.contains("journal writer stopped"), "stderr:\n\(stderr)")
        #expect(!acceptsConnections(port: server.port), "the intake still accepts connections after exit")

        let listed = try await waypost("list", "--journal", dir.file("j.db"), "--json", directory: dir.path)
        #expect(listed.status == 0, "\(listed)")
        let ids = (try listed.json()["messages"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
        #expect(ids == [id], "\(listed)")
    }
}
