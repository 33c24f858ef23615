// `waypost status`, `list` and `show` on a journal written by a real `waypost serve`, read while
// that server still runs (SPEC §6, §7), and how the journal path is resolved.

import Foundation
import Testing

// The upstream, http://127.0.0.1:9/, refuses connections, so no message is ever delivered. Today
// `serve` has no forwarder and every message stays `queued`; once a forwarder runs, a message is
// `in_flight` for the few milliseconds of each refused attempt. The tests therefore count
// "waiting" messages as queued + in_flight, and never expect delivered or failed ones.
let waitingStates: Set<String> = ["queued", "in_flight"]

/// One request sent to the server, and the correlation id its `202` answer carried.
struct SentMessage {
    var path: String
    var body: String
    var id: String
}

/// Starts a server on a fresh journal, sends three requests to two paths, runs `body` while the
/// server still runs, then stops it with SIGTERM and checks that it exits 0 within 10 s and
/// logs that the journal writer stopped. The child is killed and the directory removed on every
/// exit path.
func withServerAndThreeMessages(
    _ backend: JournalBackend = .sqlite, _ body: (RunningServer, ScratchDirectory, [SentMessage]) async throws -> Void
) async throws {
    let dir = try ScratchDirectory()
    defer { dir.remove() }
    let journal = try await TestJournal.make(backend, in: dir)
    defer { journal.stop() }
    let server = try await RunningServer.start(journal: journal.location, directory: dir.path)
    do {
        let requests = [
            ("/hooks/orders", "{\"order\":1}"),
            ("/hooks/billing?invoice=7", "{\"invoice\":7}"),
            ("/hooks/orders", "{\"order\":2}"),
        ]
        var sent: [SentMessage] = []
        for (path, text) in requests {
            let answer = try await curl("POST", server.baseURL + path, body: text, headers: ["Content-Type: application/json"])
            try #require(answer.status == 202, "POST \(path): \(answer.status) \(answer.body)")
            let id = try #require(answer.header("X-Correlation-ID"), "POST \(path): no X-Correlation-ID in \(answer.headers)")
            sent.append(SentMessage(path: path, body: text, id: id))
        }
        try #require(Set(sent.map(\.id)).count == 3, "correlation ids are not distinct: \(sent.map(\.id))")
        try await body(server, dir, sent)
    } catch {
        await server.child.kill()
        throw error
    }
    let status = await server.terminate(timeout: .seconds(10))
    #expect(
        status == 0,
        "waypost serve after SIGTERM: exit \(status.map(String.init) ?? "none within 10 s"); stderr:\n\(server.child.stderr.text)")
    #expect(server.child.stderr.text.contains("journal writer stopped"), "stderr:\n\(server.child.stderr.text)")
}

@Suite("waypost status/list/show on a live server's journal", .timeLimit(.minutes(1)))
struct JournalCommandsCLITests {
    @Test("status shows the route with 3 messages waiting (queued)", arguments: JournalBackend.allCases)
    func statusTable(backend: JournalBackend) async throws {
        try await withServerAndThreeMessages(backend) { server, dir, _ in
            let result = try await waypost("status", "--journal", server.journal, directory: dir.path)
            #expect(result.status == 0, "\(result)")
            #expect(
                result.lines.first?.split(separator: " ") == [
                    "ROUTE", "QUEUED", "IN_FLIGHT", "DELIVERED", "FAILED", "SKIPPED", "FILTERED", "OLDEST", "QUEUED",
                ], "\(result)")
            let row = try #require(result.lines.first { $0.hasPrefix("default ") }, "no row for route default: \(result)")
            let cells = row.split(separator: " ").map(String.init)
            try #require(cells.count >= 7, "\(result)")
            #expect(cells[0] == "default", "\(result)")
            #expect(Int(cells[1]).flatMap { queued in Int(cells[2]).map { queued + $0 } } == 3, "queued + in_flight: \(result)")
            #expect(Array(cells[3...5]) == ["0", "0", "0"], "delivered, failed, skipped: \(result)")
            switch backend {
            case .sqlite:
                #expect(result.lines.count == 2, "\(result)")
            case .postgres:
                // The cluster's one node, with every partition and the intake it listens on.
                try #require(result.lines.count == 4, "\(result)")
                #expect(result.lines[2].split(separator: " ").first == "NODE", "\(result)")
                let node = result.lines[3].split(separator: " ").map(String.init)
                #expect(node.count >= 5 && node[1] == "127.0.0.1:\(server.port)" && node[2] == "256", "\(result)")
            }
        }
    }

    @Test("status --json parses and counts 3 waiting (queued) messages", arguments: JournalBackend.allCases)
    func statusJSON(backend: JournalBackend) async throws {
        try await withServerAndThreeMessages(backend) { server, dir, _ in
            let result = try await waypost("status", "--journal", server.journal, "--json", directory: dir.path)
            #expect(result.status == 0, "\(result)")
            let routes = try #require(try result.json()["routes"] as? [[String: Any]], "\(result)")
            try #require(routes.count == 1, "\(result)")
            #expect(routes[0]["route"] as? String == "default", "\(result)")
            let queued = try #require(routes[0]["queued"] as? Int, "\(result)")
            let inFlight = try #require(routes[0]["in_flight"] as? Int, "\(result)")
            #expect(queued + inFlight == 3, "\(result)")
            #expect(queued >= 2, "\(result)")
            #expect(routes[0]["delivered"] as? Int == 0, "\(result)")
            #expect(routes[0]["failed"] as? Int == 0, "\(result)")
            #expect(routes[0]["oldest_queued_at"] is String, "\(result)")
            let age = try #require(routes[0]["oldest_queued_age_seconds"] as? Int, "\(result)")
            #expect((0..<60).contains(age), "\(result)")
        }
    }

    @Test("list --json lists the 3 ids in order of acceptance, with method and path", arguments: JournalBackend.allCases)
    func listJSON(backend: JournalBackend) async throws {
        try await withServerAndThreeMessages(backend) { server, dir, sent in
            let result = try await waypost("list", "--journal", server.journal, "--json", directory: dir.path)
            #expect(result.status == 0, "\(result)")
            let messages = try #require(try result.json()["messages"] as? [[String: Any]], "\(result)")
            #expect(messages.compactMap { $0["id"] as? String } == sent.map(\.id), "\(result)")
            #expect(messages.compactMap { $0["path"] as? String } == sent.map(\.path), "\(result)")
            #expect(
                messages.allSatisfy { $0["method"] as? String == "POST" && waitingStates.contains($0["state"] as? String ?? "") },
                "\(result)")
            #expect(messages.compactMap { $0["body_bytes"] as? Int } == sent.map(\.body.utf8.count), "\(result)")
        }
    }

    @Test("list as a table shows the ids in order", arguments: JournalBackend.allCases)
    func listTable(backend: JournalBackend) async throws {
        try await withServerAndThreeMessages(backend) { server, dir, sent in
            let result = try await waypost("list", "--journal", server.journal, directory: dir.path)
            #expect(result.status == 0, "\(result)")
            #expect(result.lines.first?.hasPrefix("ID ") == true, "\(result)")
            let rows = result.lines.dropFirst()
            #expect(rows.map { String($0.prefix { $0 != " " }) } == sent.map(\.id), "\(result)")
            #expect(rows.allSatisfy { $0.contains("POST /hooks/") }, "\(result)")
        }
    }

    @Test("list filters by state, and refuses an unknown state with 64", arguments: JournalBackend.allCases)
    func listStateFilter(backend: JournalBackend) async throws {
        try await withServerAndThreeMessages(backend) { server, dir, sent in
            let delivered = try await waypost("list", "--journal", server.journal, "--state", "delivered", "--json", directory: dir.path)
            #expect(delivered.status == 0, "\(delivered)")
            #expect((try delivered.json()["messages"] as? [Any])?.isEmpty == true, "\(delivered)")

            let deliveredTable = try await waypost("list", "--journal", server.journal, "--state", "delivered", directory: dir.path)
            #expect(deliveredTable.status == 0, "\(deliveredTable)")
            #expect(deliveredTable.stdout == "No messages match.\n", "\(deliveredTable)")

            let queued = try await waypost("list", "--journal", server.journal, "--state", "queued", "--json", directory: dir.path)
            #expect(queued.status == 0, "\(queued)")
            let queuedMessages = try #require(try queued.json()["messages"] as? [[String: Any]], "\(queued)")
            #expect(queuedMessages.count >= 2, "\(queued)")
            #expect(queuedMessages.allSatisfy { $0["state"] as? String == "queued" }, "\(queued)")
            let queuedIDs = queuedMessages.compactMap { $0["id"] as? String }
            #expect(queuedIDs == sent.map(\.id).filter(queuedIDs.contains), "in order of acceptance: \(queued)")

            let failed = try await waypost("list", "--journal", server.journal, "--state", "failed", "--json", directory: dir.path)
            #expect(failed.status == 0, "\(failed)")
            #expect((try failed.json()["messages"] as? [Any])?.isEmpty == true, "\(failed)")

            let limited = try await waypost("list", "--journal", server.journal, "--limit", "2", "--json", directory: dir.path)
            let limitedIDs = (try limited.json()["messages"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
            #expect(limitedIDs == Array(sent.map(\.id).prefix(2)), "\(limited)")

            let bogus = try await waypost("list", "--journal", server.journal, "--state", "bogus", directory: dir.path)
            #expect(bogus.status == 64, "\(bogus)")
            #expect(bogus.stderr.contains("--state must be one of"), "\(bogus)")
            #expect(bogus.stderr.contains("'bogus'"), "\(bogus)")
            #expect(bogus.stdout.isEmpty, "\(bogus)")
        }
    }

    @Test("show prints the id, the request line and the body; an unknown id exits 1", arguments: JournalBackend.allCases)
    func show(backend: JournalBackend) async throws {
        try await withServerAndThreeMessages(backend) { server, dir, sent in
            let message = sent[1]
            let result = try await waypost("show", "--journal", server.journal, message.id, directory: dir.path)
            #expect(result.status == 0, "\(result)")
            #expect(result.lines.first == "id:              \(message.id)", "\(result)")
            #expect(result.lines.contains("route:           default"), "\(result)")
            #expect(result.lines.contains("state:           queued") || result.lines.contains("state:           in_flight"), "\(result)")
            #expect(result.lines.contains("POST \(message.path)"), "\(result)")
            #expect(result.lines.contains("Content-Type: application/json"), "\(result)")
            #expect(result.lines.contains(message.body), "\(result)")
            #expect(!result.stdout.contains(sent[0].body), "\(result)")

            let unknown = try await waypost("show", "--journal", server.journal, "01NOSUCHMESSAGE0000000000", directory: dir.path)
            #expect(unknown.status == 1, "\(unknown)")
            #expect(unknown.stderr.contains("no message with id 01NOSUCHMESSAGE0000000000"), "\(unknown)")
            #expect(unknown.stdout.isEmpty, "\(unknown)")
        }
    }

    @Test("the journal comes from $WAYPOST_JOURNAL, or from --config's journal.path; --journal wins")
    func journalResolution() async throws {
        try await withServerAndThreeMessages { server, dir, sent in
            func ids(_ result: CommandResult) throws -> [String]? {
                (try result.json()["messages"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
            }
            // A directory without ./waypost.db, so the default cannot stand in for the journal.
            let elsewhere = try ScratchDirectory()
            defer { elsewhere.remove() }

            let fromEnvironment = try await waypost(
                "list", "--json", environment: ["WAYPOST_JOURNAL": server.journal], directory: elsewhere.path)
            #expect(fromEnvironment.status == 0, "\(fromEnvironment)")
            #expect(try ids(fromEnvironment) == sent.map(\.id), "\(fromEnvironment)")

            let config = try dir.write(
                "waypost.yaml",
                """
                journal: { path: \(server.journal) }
                routes:
                  - name: default
                    path: /
                    upstream: http://127.0.0.1:9/

                """)
            let fromConfig = try await waypost(
                "list", "--config", config, "--json", environment: ["WAYPOST_JOURNAL": elsewhere.file("none.db")],
                directory: elsewhere.path)
            #expect(fromConfig.status == 0, "\(fromConfig)")
            #expect(try ids(fromConfig) == sent.map(\.id), "\(fromConfig)")

            let statusFromConfig = try await waypost("status", "--config", config, "--json", directory: elsewhere.path)
            #expect(statusFromConfig.status == 0, "\(statusFromConfig)")
            let route = (try statusFromConfig.json()["routes"] as? [[String: Any]])?.first
            #expect(route?["route"] as? String == "default", "\(statusFromConfig)")
            #expect(((route?["queued"] as? Int) ?? 0) + ((route?["in_flight"] as? Int) ?? 0) == 3, "\(statusFromConfig)")

            let flagWins = try await waypost(
                "list", "--journal", server.journal, "--json", environment: ["WAYPOST_JOURNAL": elsewhere.file("none.db")],
                directory: elsewhere.path)
            #expect(flagWins.status == 0, "\(flagWins)")
            #expect(try ids(flagWins) == sent.map(\.id), "\(flagWins)")

            let byDefault = try await waypost("list", directory: elsewhere.path)
            #expect(byDefault.status == 1, "\(byDefault)")
            #expect(byDefault.stderr.contains("no journal at ./waypost.db"), "\(byDefault)")
        }
    }
}

@Suite("waypost journal commands without a journal", .timeLimit(.minutes(1)))
struct MissingJournalCLITests {
    @Test("status on a journal that does not exist exits 1 and names the path", arguments: [["status"], ["list"], ["show", "01ANYID"]])
    func missingJournal(command: [String]) async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let result = try await waypost(
            arguments: command + ["--journal", "/nonexistent/x.db"], directory: dir.path)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("cannot read the journal: no journal at /nonexistent/x.db"), "\(result)")
        #expect(result.stdout.isEmpty, "\(result)")
        #expect(!FileManager.default.fileExists(atPath: "/nonexistent/x.db"))
    }

    @Test("a config file that names no readable journal exits 1; an invalid one exits 78")
    func configWithoutJournal() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let good = try dir.write(
            "good.yaml",
            "journal: { path: \(dir.file("absent.db")) }\nroutes:\n  - { name: a, path: /, upstream: \"http://127.0.0.1:9/\" }\n")
        let missing = try await waypost("status", "--config", good, directory: dir.path)
        #expect(missing.status == 1, "\(missing)")
        #expect(missing.stderr.contains("no journal at \(dir.file("absent.db"))"), "\(missing)")

        let bad = try dir.write("bad.yaml", "jurnal: { path: x.db }\n")
        let invalid = try await waypost("status", "--config", bad, directory: dir.path)
        #expect(invalid.status == 78, "\(invalid)")
        #expect(invalid.stderr.contains("\(bad):1: jurnal: unknown key"), "\(invalid)")
    }
}
