// Transforms and replies (SPEC §11) end to end: a real `waypost serve` whose jq programs run in
// its transform workers; upstreams that record exactly what they receive; runaway programs
// that must cost only their own delivery; a synchronous source answered by a reply program;
// `check-config` and `waypost transform`.

import Crypto
import Foundation
import Testing
import WaypostTestSupport
import WaypostTransform

private func hexSHA256(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// Runs `waypost transform ARGUMENTS < input` and collects what it printed.
private func transformCommand(_ arguments: [String], input: String, in dir: ScratchDirectory) async throws -> CommandResult {
    let inputPath = try dir.write("input.json", input)
    guard let executable = waypostExecutable else { throw CLITestError("no waypost executable") }
    return try await runCommand(
        executable: URL(fileURLWithPath: "/bin/sh"),
        ["-c", "exec \"$0\" transform \"$@\" < \"\(inputPath)\"", executable.path] + arguments, directory: dir.path,
        timeout: .seconds(20))
}

@Suite("transforms and replies: jq programs in worker processes (SPEC §11)")
struct TransformTests {
    @Test("the upstream receives exactly the transformed bytes, path, query and headers; an untouched body goes as received; null filters")
    func transformedBytes() async throws {
        let erp = try await SettableUpstream.start()
        let audit = try await SettableUpstream.start()
        let pings = try await SettableUpstream.start()
        let config = """
            routes:
              - name: shop
                path: /shop
                destinations:
                  - name: erp
                    upstream: "\(erp.url)"
                    remove_headers: [X-Secret]
                    transform: >-
                      select(.body.order) | .body |= {id: .order.id, total: (.order.total_cents / 100), note: "é🚀"}
                      | .headers = {"content-type": .headers["content-type"], "x-erp": "1", "x-env": ($ENV | length | tostring), "x-secret": "from the program"}
                      | .path = "/orders/" + .body.id | .query = "src=waypost" | .method = "PUT"
                  - name: audit
                    upstream: "\(audit.url)"
                    transform: '.headers["x-seen"] = "yes"'
                  - name: pings
                    upstream: "\(pings.url)"
                    transform: 'if .body.type == "ping" then null else {body: {type: .body.type}} end'
            """
        try await withServer(config: config, upstreams: [erp, audit, pings]) { server, _ in
            let body = #"{"type": "order", "order": {"id": "A1", "total_cents": 1250, "big": 12345678901234567890}}"#
            let answer = try await server.intake(
                "POST", "/shop/in?x=1", body: body, headers: ["Content-Type: application/json", "X-Secret: s3cret"])
            try #require(answer.status == 202, "\(answer.status) \(answer.body)")
            let id = try #require(answer.header("X-Correlation-ID"))
            let ping = try await server.accept("/shop", body: #"{"type":"ping"}"#)
            try await server.waitForStates("both final") { states in states[id] == "delivered" && states[ping] == "delivered" }

            let sent = try #require(erp.upstream.requests.first, "erp got nothing")
            let expectedBody = Array(#"{"id":"A1","total":12.5,"note":"é🚀"}"#.utf8)
            #expect(sent.method == "PUT" && sent.uri == "/orders/A1?src=waypost", "\(sent.method) \(sent.uri)")
            #expect(sent.body == expectedBody, "\(String(decoding: sent.body, as: UTF8.self))")
            #expect(sent.header("x-erp") == "1" && sent.header("content-type") == "application/json", "\(sent.headers)")
            #expect(sent.header("x-env") == "0", "the program's $ENV is empty: \(sent.headers)")
            // remove_headers applies after the program; Waypost's own headers are its own.
            #expect(sent.header("x-secret") == nil, "\(sent.headers)")
            #expect(sent.header("X-Correlation-ID") == id && sent.header("X-Waypost-Attempt") == "1", "\(sent.headers)")

            // A program that leaves the body alone sends the stored bytes, big number and spaces included.
            let audited = try #require(audit.upstream.requests.first)
            #expect(audited.body == Array(body.utf8), "\(String(decoding: audited.body, as: UTF8.self))")
            #expect(audited.header("x-seen") == "yes" && audited.uri == "/in?x=1", "\(audited.uri) \(audited.headers)")

            // null output or none (select): that delivery is filtered, nothing sent.
            #expect(pings.upstream.requests.map { String(decoding: $0.body, as: UTF8.self) } == [#"{"type":"order"}"#])
            #expect(erp.upstream.requests.count == 1, "\(erp.upstream.requests)")
            let pingDeliveries = try await server.deliveries(ping)
            #expect(pingDeliveries.mapValues { $0["state"] as? String } == ["erp": "filtered", "audit": "delivered", "pings": "filtered"])

            // Each attempt records the size and SHA-256 of what it sent.
            let erpAttempts = try #require(try await server.deliveries(id)["erp"]?["attempt_log"] as? [[String: Any]])
            let (message, topAttempts) = try await server.message(id)
            let attempts = erpAttempts.isEmpty ? topAttempts : erpAttempts
            #expect(attempts.first?["body_bytes"] as? Int == expectedBody.count, "\(message)")
            #expect(attempts.first?["body_sha256"] as? String == hexSHA256(expectedBody), "\(message)")
            let show = try await waypost("show", id, "--journal", server.journal)
            #expect(show.stdout.contains("sha256 \(hexSHA256(expectedBody))"), "\(show)")
            let rows = try sqlite3(server.journal, "SELECT body_bytes, body_sha256 FROM attempts ORDER BY delivery_id, attempt")
            #expect(rows.contains("\(expectedBody.count)|\(hexSHA256(expectedBody))"), "\(rows)")
        }
    }

    @Test(
        "runaway programs (a loop, a terabyte of output, a crash, an error) fail only their delivery, at once; the intake and the others go on"
    )
    func runawayPrograms() async throws {
        let good = try await SettableUpstream.start()
        let never = try await SettableUpstream.start()
        let config = """
            transform_timeout: 2s
            transform_memory: 64MiB
            routes:
              - name: shop
                path: /shop
                ordering: none
                retry: { initial: 100ms, max_attempts: 5 }
                destinations:
                  - { name: good, upstream: "\(good.url)" }
                  - name: loop
                    upstream: "\(never.url)"
                    transform: 'def f: f; f'
                  - name: huge
                    upstream: "\(never.url)"
                    transform: '{body: (reduce range(40) as $i ("x"; . + .))}'
                  - name: crash
                    upstream: "\(never.url)"
                    # 300,000 levels: deep enough to overflow an 8 MiB stack (100,000 are not), built in
                    # a seventh of a second, well within transform_timeout on a loaded machine.
                    transform: 'reduce range(300000) as $i (null; [.]) | {body: tojson}'
                  - name: broken
                    upstream: "\(never.url)"
                    transform: '.body.n + "text"'
            """
        try await withServer(config: config, upstreams: [good, never]) { server, _ in
            var ids: [String] = []
            for n in 0..<10 { ids.append(try await server.accept("/shop", body: "{\"n\":\(n)}")) }
            // The intake answered all ten while programs looped; the good destination gets them all.
            let deadline = ContinuousClock.now + .seconds(60)
            var states: [String: [String: Any]] = [:]
            while ContinuousClock.now < deadline {
                states = try await server.deliveries(ids[9])
                if ["loop", "huge", "crash", "broken"].allSatisfy({ states[$0]?["state"] as? String == "failed" }) { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(Set(good.ids) == Set(ids), "\(good.ids.count) of 10 at the good destination")
            #expect(never.ids.isEmpty, "nothing was sent by a failed transform: \(never.ids)")
            func lastError(_ name: String) -> String { states[name]?["last_error"] as? String ?? "\(states[name] ?? [:])" }
            #expect(lastError("loop").contains("transform_timeout"), "\(lastError("loop"))")
            #expect(lastError("huge").contains("memory cap"), "\(lastError("huge"))")
            #expect(lastError("crash").contains("signal 11"), "jq 1.6 overflows its C stack printing deep arrays: \(lastError("crash"))")
            #expect(
                lastError("broken").contains("transform error") && lastError("broken").contains("cannot be added"), "\(lastError("broken"))"
            )
            // No retry: one attempt each, whatever max_attempts says.
            for name in ["loop", "huge", "crash", "broken"] {
                #expect(states[name]?["attempts"] as? Int == 1, "\(name): \(states[name] ?? [:])")
            }
            // The workers were restarted: every message's deliveries end, and the server lives.
            try await server.waitForStates("every message final", timeout: .seconds(90)) { states in
                ids.allSatisfy { states[$0] == "failed" }
            }
            let health = try await server.admin("GET", "/healthz", token: nil)
            #expect(health.status == 200)
        }
    }

    @Test("a replay runs the program as configured now: a delivery a broken program failed is delivered after the fix")
    func replayRunsTheFixedProgram() async throws {
        let erp = try await SettableUpstream.start()
        let saved = try ScratchDirectory()
        defer { saved.remove() }
        func config(_ program: String) -> String {
            """
            routes:
              - name: shop
                path: /shop
                upstream: "\(erp.url)"
                transform: '\(program)'
            """
        }
        var id = ""
        try await withServer(config: config(#".body |= {id: .order.id, total: (.order.total / 100)}"#), upstreams: []) { server, _ in
            id = try await server.accept("/shop", body: #"{"order":{"id":"A1","total_cents":1250}}"#)
            try await server.waitForStates("failed") { $0[id] == "failed" }
            // The journal at rest, its write-ahead log with it (the server is idle now).
            try FileManager.default.copyItem(atPath: server.journal, toPath: saved.file("j.db"))
            try FileManager.default.copyItem(atPath: server.journal + "-wal", toPath: saved.file("j.db-wal"))
        }
        #expect(erp.ids.isEmpty)
        try await withServer(
            config: config(#".body |= {id: .order.id, total: (.order.total_cents / 100)}"#), journal: saved.file("j.db"), upstreams: [erp]
        ) { server, _ in
            let replay = try await server.admin("POST", "/messages/\(id)/replay")
            #expect(replay.status == 200, "\(replay.status) \(replay.body)")
            try await server.waitForStates("delivered after the replay") { $0[id] == "delivered" }
            #expect(erp.upstream.requests.map { String(decoding: $0.body, as: UTF8.self) } == [#"{"id":"A1","total":12.5}"#])
        }
    }

    @Test("a synchronous source gets the reply program's answer; a failing reply is a 502 that says so; a filtered reply_from is a 202")
    func replies() async throws {
        let erp = try await SettableUpstream.start(status: 201, body: #"{"id":"E-9","status":"booked"}"#)
        let config = """
            routes:
              - name: shop
                path: /shop
                mode: sync
                sync_timeout: 10s
                reply: '{status: (if .status < 300 then 200 else 502 end), headers: {"x-reply": "yes"}, body: {ok: (.status < 300), erp_id: .body.id, attempts, id}}'
                upstream: "\(erp.url)"
                transform: 'if .body.kind == "skip" then null else . end'
              - name: broken
                path: /broken
                mode: sync
                sync_timeout: 10s
                reply: '.body.id + 1'
                upstream: "\(erp.url)"
            """
        try await withServer(config: config, upstreams: [erp]) { server, _ in
            let answer = try await server.intake("POST", "/shop", body: #"{"kind":"order"}"#, headers: ["Content-Type: application/json"])
            let id = try #require(answer.header("X-Correlation-ID"), "\(answer.status) \(answer.body)")
            #expect(answer.status == 200, "\(answer.status) \(answer.body)")
            #expect(answer.header("x-reply") == "yes" && answer.header("Content-Type") == "application/json", "\(answer)")
            let document = try answer.jsonObject()
            #expect(document["ok"] as? Bool == true && document["erp_id"] as? String == "E-9", "\(answer.body)")
            #expect(document["attempts"] as? Int == 1 && document["id"] as? String == id, "\(answer.body)")
            // The delivery's own outcome stands, with the upstream's own answer.
            let status = try await server.intake("GET", "/_waypost/messages/\(id)/response")
            #expect(status.status == 201 && status.body.contains("booked"), "\(status.status) \(status.body)")

            let broken = try await server.intake("POST", "/broken", body: "{}", headers: ["Content-Type: application/json"])
            #expect(broken.status == 502, "\(broken.status) \(broken.body)")
            #expect(broken.body.contains("reply-failed") && broken.body.contains("cannot be added"), "\(broken.body)")
            let brokenID = try #require(broken.header("X-Correlation-ID"))
            #expect(try await server.states()[brokenID] == "delivered", "the delivery itself succeeded")

            let skipped = try await server.intake("POST", "/shop", body: #"{"kind":"skip"}"#, headers: ["Content-Type: application/json"])
            #expect(
                skipped.status == 202 && (try? skipped.jsonObject())?["state"] as? String == "filtered", "\(skipped.status) \(skipped.body)"
            )
        }
    }

    @Test(
        "a program that does not compile stops check-config and serve with 78, naming the key and jq's message; waypost transform tries one"
    )
    func compileErrorsAndTheCommand() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let broken = try dir.write(
            "broken.yaml",
            """
            routes:
              - name: shop
                path: /shop
                destinations:
                  - { name: erp, upstream: "http://127.0.0.1:9/", transform: '.body | {id: .order.id' }
            """)
        let check = try await waypost("check-config", "--config", broken)
        #expect(check.status == 78, "\(check)")
        #expect(check.stderr.contains("routes[0].destinations[0].transform") && check.stderr.contains("syntax error"), "\(check)")
        let serve = try await waypost("serve", "--config", broken, "--journal", dir.file("j.db"))
        #expect(serve.status == 78, "\(serve)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("j.db")), "no journal is created")
        let asyncReply = try dir.write(
            "reply.yaml", "routes:\n  - { name: a, path: /a, upstream: \"http://127.0.0.1:9/\", reply: '.' }\n")
        let replyCheck = try await waypost("check-config", "--config", asyncReply)
        #expect(replyCheck.status == 78 && replyCheck.stderr.contains("mode: sync"), "\(replyCheck)")

        let good = try dir.write(
            "good.yaml",
            """
            routes:
              - name: shop
                path: /shop
                mode: sync
                reply: '{status: 200, body: {ok: (.status < 300)}}'
                destinations:
                  - { name: erp, upstream: "http://127.0.0.1:9/", transform: '.body |= {id: .order.id} | .headers["x-a"] = "1"' }
                  - { name: fails, upstream: "http://127.0.0.1:9/", transform: 'error("no such order")' }
            """)
        let tried = try await transformCommand(
            ["--config", good, "--route", "shop"],
            input: #"{"path":"/x","headers":{"Content-Type":"application/json"},"body":{"order":{"id":7}}}"#,
            in: dir)
        #expect(tried.status == 0, "\(tried)")
        #expect(
            tried.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                == #"{"method":"POST","path":"/x","query":"","headers":{"content-type":"application/json","x-a":"1"},"body":{"id":7}}"#,
            "\(tried)")
        let failed = try await transformCommand(["--config", good, "--route", "shop", "--destination", "fails"], input: "{}", in: dir)
        #expect(failed.status == 1 && failed.stderr.contains("no such order"), "\(failed)")
        let reply = try await transformCommand(
            ["--config", good, "--route", "shop", "--reply"], input: #"{"status":201,"headers":{},"body":null,"id":"x","attempts":1}"#,
            in: dir)
        #expect(reply.status == 0 && reply.stdout.contains(#"{"status":200,"body":{"ok":true}}"#), "\(reply)")
    }

    @Test("a request written while its worker starts slowly has its whole transform_timeout from the worker's set-up, not from its start")
    func slowWorkerStart() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let executable = try #require(waypostExecutable)
        // A worker that takes longer to start than the timeout (a loaded machine), then runs a
        // program that takes a tenth of it (0.3 s here): its answer cannot come with the set-up.
        let slow = try dir.write("slow-worker", "#!/bin/sh\n/bin/sleep 4\nexec \"\(executable.path)\" \"$@\"\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: slow)
        let workers = TransformWorkers(
            TransformSetup(
                executable: slow, programs: ["{body: (reduce range(1000000) as $i (0; . + 1))}"], memoryLimit: 64 << 20,
                timeout: .seconds(3),
                workers: 1))
        workers.submit(tag: 7, TransformRequest(program: 0, mode: .document, input: Array(#"{"body":0}"#.utf8)))
        var ended: [(tag: Int64, result: TransformWorkers.Result)] = []
        let deadline = ContinuousClock.now + .seconds(15)
        while ended.isEmpty, ContinuousClock.now < deadline {
            var polled = workers.descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            _ = poll(&polled, nfds_t(polled.count), 50)
            ended = workers.collect()
        }
        try #require(ended.count == 1, "no answer within 15 s")
        #expect(ended[0].tag == 7)
        guard case .success(.document(let output)) = ended[0].result else {
            Issue.record("the request failed: \(ended[0].result)")
            return
        }
        #expect(output == #"{"body":1000000}"#)
        _ = workers.stop(failing: .start("test over"))
    }
}
