// `waypost serve` and the CLI on a PostgreSQL journal (SPEC §12): a database that goes away and
// comes back, the configuration's `journal.url` and `password_env`, and a database without a
// journal. The tests that do not depend on the journal run on both backends elsewhere
// (`JournalBackend`).

import Foundation
import Testing

@Suite("a PostgreSQL journal: selected, down and back, refused", .timeLimit(.minutes(2)))
struct PostgresJournalCLITests {
    @Test(
        "while the database is down the intake answers 503 with Retry-After and /readyz is not ready; once back, both recover and every acknowledged message is delivered"
    )
    func databaseDownAndBack() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        // A server of the test's own, which it stops and starts.
        let database = try await PostgresServer.start()
        defer { database.stop() }
        let location = database.url.replacingOccurrences(of: "postgres://waypost@", with: "postgres://waypost:\(PostgresServer.password)@")
        let upstream = try await SettableUpstream.start()
        try await withServer(
            config: adminTestConfig(upstream: upstream.url), at: .location(location), upstreams: [upstream]
        ) { server, _ in
            var acknowledged: [String] = []
            for index in 1...3 { acknowledged.append(try await server.accept("/hooks/before-\(index)")) }

            database.halt()
            let refused = try await server.intake("POST", "/hooks/during", body: "{}", headers: ["Content-Type: application/json"])
            #expect(refused.status == 503, "POST with the database down: \(refused.status) \(refused.body)")
            #expect(refused.header("Retry-After") != nil, "no Retry-After on the 503: \(refused.headers)")
            let notReady = try await eventually(timeout: .seconds(10)) {
                try await server.admin("GET", "/readyz").status == 503
            }
            #expect(notReady, "/readyz still ready 10 s after the database went down")
            let detail = try await server.admin("GET", "/readyz").body
            #expect(detail.contains("journal database"), "/readyz does not say why: \(detail)")

            try database.resume()
            let ready = try await eventually(timeout: .seconds(15)) {
                try await server.admin("GET", "/readyz").status == 200
            }
            #expect(ready, "/readyz not ready 15 s after the database came back")
            for index in 1...3 { acknowledged.append(try await server.accept("/hooks/after-\(index)")) }
            let delivered = await eventually(timeout: .seconds(20)) { Set(acknowledged).isSubset(of: Set(upstream.ids)) }
            #expect(delivered, "acknowledged but not delivered: \(Set(acknowledged).subtracting(upstream.ids).sorted())")
        }
    }

    @Test(
        "journal.url and password_env: a bad URL, a path beside a URL, durability, and an unset password variable stop check-config with 78 naming the key"
    )
    func configurationRefused() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let cases: [(journal: String, expected: String)] = [
            ("{ url: mysql://db/waypost }", "journal.url"),
            ("{ url: postgres://db.internal/waypost }", "names no user"),
            ("{ url: 'postgres://waypost@db.internal/waypost?sslmode=sometimes' }", "sslmode"),
            ("{ url: postgres://waypost@db.internal/waypost, path: /tmp/j.db }", "not both"),
            ("{ url: postgres://waypost@db.internal/waypost, durability: relaxed }", "journal.durability"),
            ("{ path: /tmp/j.db, password_env: WAYPOST_DB_PASSWORD }", "journal.password_env"),
            ("{ url: postgres://waypost@db.internal/waypost, password_env: WAYPOST_TEST_UNSET_PASSWORD }", "WAYPOST_TEST_UNSET_PASSWORD"),
        ]
        for (index, (journal, expected)) in cases.enumerated() {
            let config = try dir.write("bad-\(index).yaml", "journal: \(journal)\n" + adminTestConfig(upstream: "http://127.0.0.1:9/"))
            let result = try await waypost("check-config", "--config", config, directory: dir.path)
            #expect(result.status == 78, "journal: \(journal)\n\(result)")
            #expect(result.stderr.contains(expected), "journal: \(journal): stderr does not name \(expected)\n\(result)")
        }
        // With the variable set, the same configuration is valid.
        let config = try dir.write(
            "good.yaml",
            "journal: { url: postgres://waypost@db.internal/waypost, password_env: WAYPOST_DB_PASSWORD }\n"
                + adminTestConfig(upstream: "http://127.0.0.1:9/"))
        let valid = try await waypost(
            "check-config", "--config", config, environment: ["WAYPOST_DB_PASSWORD": "s3cret"], directory: dir.path)
        #expect(valid.status == 0, "\(valid)")
        #expect(!valid.stdout.contains("s3cret") && !valid.stderr.contains("s3cret"), "the password was printed:\n\(valid)")
    }

    @Test("the CLI on a database without a journal exits 1 saying so; serve creates it, with the password from password_env")
    func emptyDatabase() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let journal = try await TestJournal.make(.postgres, in: dir)
        defer { journal.stop() }
        let database = try #require(journal.database)
        let status = try await waypost("status", "--journal", journal.location, directory: dir.path)
        #expect(status.status == 1, "\(status)")
        #expect(status.stderr.contains("no Waypost journal"), "\(status)")
        #expect(!status.stderr.contains(":\(PostgresServer.password)@"), "the password was printed:\n\(status)")

        let bare = database.url.replacingOccurrences(of: ":\(PostgresServer.password)@", with: "@")
        let wrong = try await waypost(
            "status", "--journal", bare, environment: ["PGPASSWORD": "not-the-password"], directory: dir.path)
        #expect(wrong.status == 1, "\(wrong)")
        #expect(wrong.stderr.contains("password"), "a wrong password is not named:\n\(wrong)")

        let upstream = try await SettableUpstream.start()
        try await withServer(
            config: "journal: { url: '\(bare)', password_env: TEST_DB_PASSWORD }\n" + adminTestConfig(upstream: upstream.url),
            at: .configured, upstreams: [upstream], environment: ["TEST_DB_PASSWORD": PostgresServer.password]
        ) { server, _ in
            let id = try await server.accept("/hooks/first")
            #expect(await eventually(timeout: .seconds(10)) { upstream.ids.contains(id) }, "not delivered: \(upstream.ids)")
        }
        let after = try await waypost("list", "--journal", journal.location, "--json", directory: dir.path)
        #expect(after.status == 0, "\(after)")
        #expect(after.stdout.contains("delivered"), "\(after)")
    }
}

extension PostgresJournalCLITests {
    @Test("a second server with the same node name on a PostgreSQL journal is refused with exit 1, naming the key; the first goes on")
    func secondServerRefused() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let journal = try await TestJournal.make(.postgres, in: dir)
        defer { journal.stop() }
        let upstream = try await SettableUpstream.start()
        try await withServer(
            config: adminTestConfig(upstream: upstream.url), at: .location(journal.location), upstreams: [upstream]
        ) { server, _ in
            let second = try await waypost(
                "serve", "--upstream", upstream.url, "--journal", journal.location, "--listen", "127.0.0.1:0", "--admin-listen",
                "127.0.0.1:0", directory: dir.path)
            #expect(second.status == 1, "\(second)")
            #expect(second.stderr.contains("runs on this journal; give each node its own cluster.node"), "\(second)")
            let id = try await server.accept("/hooks/still-served")
            #expect(await eventually(timeout: .seconds(10)) { upstream.ids.contains(id) }, "not delivered: \(upstream.ids)")
        }
    }
}
