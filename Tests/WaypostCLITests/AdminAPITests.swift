// The admin API and metrics (SPEC §5, §6) end to end: a real `waypost serve` with its admin
// listener on a loopback port and `$WAYPOST_ADMIN_TOKEN` set, a python3 upstream whose answer
// depends on the path (see AdminTestSupport.swift), and curl as the operator's client.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Expects an RFC 9457 problem answer with `status`: `application/problem+json` carrying `type`,
/// `title`, `status` and a non-empty `detail`.
private func expectProblem(
    _ answer: HTTPAnswer, _ status: Int, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(answer.status == status, "\(what): \(answer.status) \(answer.body)", sourceLocation: sourceLocation)
    #expect(
        answer.header("Content-Type")?.hasPrefix("application/problem+json") == true,
        "\(what): Content-Type \(answer.header("Content-Type") ?? "none")", sourceLocation: sourceLocation)
    guard let problem = try? answer.jsonObject() else {
        Issue.record("\(what): the problem is not a JSON object: \(answer.body)", sourceLocation: sourceLocation)
        return
    }
    #expect((problem["status"] as? Int) == status, "\(what): \(answer.body)", sourceLocation: sourceLocation)
    #expect((problem["type"] as? String)?.isEmpty == false, "\(what): \(answer.body)", sourceLocation: sourceLocation)
    #expect((problem["title"] as? String)?.isEmpty == false, "\(what): \(answer.body)", sourceLocation: sourceLocation)
    #expect((problem["detail"] as? String)?.isEmpty == false, "\(what): \(answer.body)", sourceLocation: sourceLocation)
}

/// The messages of ``sendKnownTraffic(_:)``, by what happened to them.
private struct KnownTraffic {
    /// Three messages the upstream answered 200 at once.
    var delivered: [String]
    /// One the upstream answered 422: failed after one attempt.
    var failed: String
    /// One the upstream answered 503, then 200: delivered on its second attempt.
    var retried: String

    /// Every accepted message, in the order of acceptance.
    var all: [String] { delivered + [failed, retried] }
}

/// Sends 3 messages the upstream accepts, 1 it answers 422, 1 it answers 503 then 200, and 1
/// request the intake rejects (a `..` segment: `400 dot-segments`), then waits until the five
/// accepted messages reach their final states.
private func sendKnownTraffic(_ server: AdminTestServer) async throws -> KnownTraffic {
    var delivered: [String] = []
    for n in 1...3 { delivered.append(try await server.accept("/hooks/ok/\(n)", body: "{\"n\":\(n)}")) }
    let failed = try await server.accept("/hooks/fail/1")
    let retried = try await server.accept("/hooks/flaky/1")
    let rejected = try await server.intake("POST", "/hooks/a/../b", body: "{}", headers: ["Content-Type: application/json"])
    expectProblem(rejected, 400, "POST /hooks/a/../b")
    #expect((try? rejected.jsonObject())?["type"] as? String == "urn:waypost:problem:dot-segments", "\(rejected.body)")
    let traffic = KnownTraffic(delivered: delivered, failed: failed, retried: retried)
    try await server.waitForStates("3 + 1 delivered, 1 failed") { states in
        delivered.allSatisfy { states[$0] == "delivered" } && states[failed] == "failed" && states[retried] == "delivered"
    }
    return traffic
}

/// The ids of one `GET /messages...` page and its `next_cursor` (nil when JSON null).
private func listPage(_ server: AdminTestServer, _ query: String) async throws -> (ids: [String], next: String?) {
    let answer = try await server.admin("GET", "/messages" + query)
    try #require(answer.status == 200, "GET /messages\(query): \(answer.status) \(answer.body)")
    let object = try answer.jsonObject()
    let messages = try #require(object["messages"] as? [[String: Any]], "GET /messages\(query): \(answer.body)")
    try #require(object.keys.contains("next_cursor"), "GET /messages\(query) has no next_cursor: \(answer.body)")
    let ids = try messages.map { try #require($0["id"] as? String, "\(answer.body)") }
    if object["next_cursor"] is NSNull { return (ids, nil) }
    let next = try #require(object["next_cursor"] as? String, "next_cursor is neither a string nor null: \(answer.body)")
    return (ids, next)
}

/// The HTTP status of each attempt in a `GET /messages/{id}` document, in order.
private func attemptStatuses(_ attempts: [[String: Any]]) -> [Int?] {
    attempts.map { $0["status"] as? Int }
}

@Suite("admin API: probes, metrics, token, messages, replay, skip, pause", .timeLimit(.minutes(2)))
struct AdminAPITests {
    // MARK: Probes and metrics

    @Test("/healthz, /readyz and /metrics answer without a token", arguments: JournalBackend.allCases)
    func openEndpoints(backend: JournalBackend) async throws {
        try await withAdminServer(backend) { server, _ in
            for token in [nil, "wrong-token"] as [String?] {
                let who = token == nil ? "without a token" : "with a wrong token"
                let health = try await server.admin("GET", "/healthz", token: token)
                #expect(health.status == 200, "/healthz \(who): \(health.status) \(health.body)")
                #expect(health.header("Content-Type")?.hasPrefix("application/json") == true, "/healthz \(who): \(health.headers)")
                #expect((try? health.jsonObject())?["status"] as? String == "ok", "/healthz \(who): \(health.body)")

                let ready = try await server.admin("GET", "/readyz", token: token)
                #expect(ready.status == 200, "/readyz \(who): \(ready.status) \(ready.body)")
                #expect(ready.header("Content-Type")?.hasPrefix("application/json") == true, "/readyz \(who): \(ready.headers)")

                let metrics = try await server.admin("GET", "/metrics", token: token)
                #expect(metrics.status == 200, "/metrics \(who): \(metrics.status) \(metrics.body)")
                let contentType = metrics.header("Content-Type") ?? ""
                #expect(contentType.hasPrefix("text/plain") && contentType.contains("version=0.0.4"), "/metrics \(who): \(contentType)")
                let text = PrometheusText(metrics.body)
                #expect(text.malformed.isEmpty, "lines that are not Prometheus samples: \(text.malformed)")
                #expect(text.types["waypost_accepted_total"] == "counter", "\(text)")
                #expect(text.value("waypost_accepted_total", ["route": "orders"]) == 0, "\(text)")
                #expect(text.value("waypost_delivered_total", ["route": "orders", "destination": "orders"]) == 0, "\(text)")
                #expect(text.value("waypost_queue_depth", ["route": "orders"]) == 0, "\(text)")
                for sample in text.samples {
                    var family = sample.name
                    for suffix in ["_bucket", "_sum", "_count"] where text.types[family] == nil && family.hasSuffix(suffix) {
                        family.removeLast(suffix.count)
                    }
                    #expect(text.types[family] != nil, "\(sample.name) has no # TYPE line:\n\(text)")
                }
            }
            // Anything else on the admin listener needs the token, and then is a 404 problem.
            let unknown = try await server.admin("GET", "/nothing-here")
            expectProblem(unknown, 404, "GET /nothing-here")
        }
    }

    // MARK: The token

    @Test("every protected endpoint answers 401 Bearer without the right token, and does nothing", arguments: JournalBackend.allCases)
    func tokenRequired(backend: JournalBackend) async throws {
        try await withAdminServer(backend) { server, upstream in
            let failed = try await server.accept("/hooks/fail/1")
            try await server.waitForStates("the message failed") { $0[failed] == "failed" }

            let endpoints: [(method: String, path: String, body: String?)] = [
                ("GET", "/messages", nil),
                ("GET", "/messages?state=failed", nil),
                ("GET", "/messages/\(failed)", nil),
                ("POST", "/messages/\(failed)/replay", nil),
                ("POST", "/messages/\(failed)/skip", nil),
                ("POST", "/replay", "{\"state\":\"failed\"}"),
                ("POST", "/routes/orders/pause", nil),
                ("POST", "/routes/orders/resume", nil),
            ]
            let credentials: [(what: String, header: String?)] = [
                ("no Authorization", nil),
                ("a wrong token", "Authorization: Bearer wrong-token"),
                ("a prefix of the token", "Authorization: Bearer secret-toke"),
                ("the token with more after it", "Authorization: Bearer secret-token-and-more"),
                ("an empty token", "Authorization: Bearer "),
                ("the token without the Bearer scheme", "Authorization: secret-token"),
                ("the token in Basic", "Authorization: Basic c2VjcmV0LXRva2Vu"),
            ]
            for endpoint in endpoints {
                for credential in credentials {
                    let what = "\(endpoint.method) \(endpoint.path) with \(credential.what)"
                    let answer = try await server.admin(
                        endpoint.method, endpoint.path, body: endpoint.body, token: nil, headers: credential.header.map { [$0] } ?? [])
                    expectProblem(answer, 401, what)
                    #expect(answer.header("WWW-Authenticate")?.hasPrefix("Bearer") == true, "\(what): \(answer.headers)")
                    #expect(!answer.body.contains(adminTestToken), "\(what): the answer shows the token: \(answer.body)")
                }
            }

            // Nothing happened: the message was neither replayed nor skipped, the route not paused.
            try await Task.sleep(for: .seconds(1))  // a replay would be picked up within a second
            let (message, attempts) = try await server.message(failed)
            #expect(message["state"] as? String == "failed", "\(message)")
            #expect(attemptStatuses(attempts) == [422], "\(attempts)")
            let later = try await server.accept("/hooks/ok/after")
            try await server.waitForStates("a message after the refused calls delivered") { $0[later] == "delivered" }
            #expect(upstream.requests.map(\.correlationID) == [failed, later], "\(upstream.requests)")

            // With the token (the scheme's case does not matter, RFC 9110 §11.1) they work.
            for header in [
                "Authorization: Bearer secret-token", "Authorization: bearer secret-token", "Authorization: BEARER  secret-token",
            ] {
                let answer = try await server.admin("GET", "/messages/\(failed)", token: nil, headers: [header])
                #expect(answer.status == 200, "\(header): \(answer.status) \(answer.body)")
            }
            let list = try await server.admin("GET", "/messages")
            #expect(list.status == 200 && list.header("Content-Type")?.hasPrefix("application/json") == true, "\(list.status) \(list.body)")
            let pause = try await server.admin("POST", "/routes/orders/pause")
            #expect(pause.status == 200, "\(pause.status) \(pause.body)")
            let resume = try await server.admin("POST", "/routes/orders/resume")
            #expect(resume.status == 200, "\(resume.status) \(resume.body)")
            let skip = try await server.admin("POST", "/messages/\(failed)/skip")
            #expect(skip.status == 200, "\(skip.status) \(skip.body)")
        }
    }

    // MARK: Metrics after known traffic

    @Test("/metrics counts the known traffic exactly", arguments: JournalBackend.allCases)
    func metricsAfterKnownTraffic(backend: JournalBackend) async throws {
        try await withAdminServer(backend) { server, upstream in
            _ = try await sendKnownTraffic(server)
            #expect(upstream.requests.count == 6, "3 + 1 + 2 requests: \(upstream.requests)")
            let metrics = try await server.metrics()
            let route = ["route": "orders"]
            // Delivery metrics are per destination (SPEC §11); this route's one is named like it.
            let destination = ["route": "orders", "destination": "orders"]
            #expect(metrics.malformed.isEmpty, "\(metrics.malformed)")
            #expect(metrics.value("waypost_accepted_total", route) == 5, "\(metrics)")
            #expect(metrics.value("waypost_rejected_total", ["reason": "dot-segments"]) == 1, "\(metrics)")
            #expect(metrics.value("waypost_delivered_total", destination) == 4, "\(metrics)")
            #expect(metrics.value("waypost_failed_total", destination) == 1, "\(metrics)")
            #expect(metrics.value("waypost_retried_total", destination) == 1, "\(metrics)")
            for (name, kind) in [
                ("waypost_accepted_total", "counter"), ("waypost_rejected_total", "counter"), ("waypost_delivered_total", "counter"),
                ("waypost_failed_total", "counter"), ("waypost_retried_total", "counter"), ("waypost_queue_depth", "gauge"),
                ("waypost_in_flight", "gauge"), ("waypost_oldest_queued_age_seconds", "gauge"),
                ("waypost_ack_duration_seconds", "histogram"), ("waypost_commit_duration_seconds", "histogram"),
                ("waypost_commit_batch_size", "histogram"), ("waypost_upstream_duration_seconds", "histogram"),
            ] {
                #expect(metrics.types[name] == kind, "# TYPE \(name) \(kind):\n\(metrics)")
            }
            // Everything reached a final state: nothing waits.
            #expect(metrics.value("waypost_queue_depth", route) == 0, "\(metrics)")
            #expect(metrics.value("waypost_in_flight", route) == 0, "\(metrics)")
            #expect(metrics.value("waypost_oldest_queued_age_seconds", route) == 0, "\(metrics)")
            // One acknowledgement per accepted (asynchronous) message; every accepted message was in a commit.
            #expect(metrics.value("waypost_ack_duration_seconds_count") == 5, "\(metrics)")
            #expect((metrics.value("waypost_commit_batch_size_count") ?? 0) >= 1, "\(metrics)")
            #expect((metrics.value("waypost_commit_batch_size_sum") ?? 0) >= 5, "\(metrics)")
            #expect((metrics.value("waypost_commit_duration_seconds_count") ?? 0) >= 1, "\(metrics)")
            // Upstream latency per status class: 4 answers 200, one 422, one 503.
            let upstreamCount = { (statusClass: String) in
                metrics.value(
                    "waypost_upstream_duration_seconds_count", ["route": "orders", "destination": "orders", "status_class": statusClass])
            }
            #expect(upstreamCount("2xx") == 4, "\(metrics)")
            #expect(upstreamCount("4xx") == 1, "\(metrics)")
            #expect(upstreamCount("5xx") == 1, "\(metrics)")
            #expect(
                metrics.value(
                    "waypost_upstream_duration_seconds_bucket",
                    ["route": "orders", "destination": "orders", "status_class": "2xx", "le": "+Inf"]) == 4,
                "\(metrics)")

            // The queue gauges follow the journal: a paused route's waiting messages show up.
            let pause = try await server.admin("POST", "/routes/orders/pause")
            try #require(pause.status == 200, "\(pause.status) \(pause.body)")
            try await Task.sleep(for: .seconds(1))  // the forwarder notices a pause within half a second
            let waiting = [try await server.accept("/hooks/ok/w1"), try await server.accept("/hooks/ok/w2")]
            try await Task.sleep(for: .milliseconds(600))
            let paused = try await server.metrics()
            #expect(paused.value("waypost_queue_depth", route) == 2, "\(paused)")
            #expect(paused.value("waypost_in_flight", route) == 0, "\(paused)")
            #expect((paused.value("waypost_oldest_queued_age_seconds", route) ?? 0) >= 0.5, "\(paused)")
            #expect(paused.value("waypost_accepted_total", route) == 7, "\(paused)")
            let resume = try await server.admin("POST", "/routes/orders/resume")
            try #require(resume.status == 200, "\(resume.status) \(resume.body)")
            try await server.waitForStates("the two waiting messages delivered") { states in
                waiting.allSatisfy { states[$0] == "delivered" }
            }
            let after = try await server.metrics()
            #expect(after.value("waypost_delivered_total", destination) == 6, "\(after)")
            #expect(after.value("waypost_queue_depth", route) == 0, "\(after)")
            #expect(after.value("waypost_ready") == 1, "\(after)")
            #expect(after.value("waypost_destination_tripped", destination) == 0, "\(after)")

            // The shipped dashboard and alerting rules use only metrics Waypost exports (a replay
            // makes the last counter appear).
            _ = try await server.admin("POST", "/replay", body: "{\"state\":\"failed\"}")
            let exported = Set(try await server.metrics().types.keys)
            for file in ["deploy/grafana/waypost.json", "deploy/prometheus/waypost-alerts.yaml"] {
                let text = try String(contentsOf: packageRoot.appendingPathComponent(file), encoding: .utf8)
                let used = Set(text.matches(of: /waypost_[a-z_]+/).map { String($0.output) })
                #expect(!used.isEmpty, "\(file) names no metric")
                for name in used {
                    let family = ["_bucket", "_sum", "_count"].reduce(name) { name, suffix in
                        name.hasSuffix(suffix) && exported.contains(String(name.dropLast(suffix.count)))
                            ? String(name.dropLast(suffix.count)) : name
                    }
                    #expect(exported.contains(family), "\(file) uses \(name), which Waypost does not export: \(exported.sorted())")
                }
            }
        }
    }

    // MARK: Listing and showing messages

    @Test(
        "GET /messages lists in order, filters, pages with next_cursor; GET /messages/{id} shows the attempts",
        arguments: JournalBackend.allCases)
    func listAndShow(backend: JournalBackend) async throws {
        try await withAdminServer(backend) { server, _ in
            let traffic = try await sendKnownTraffic(server)

            let all = try await listPage(server, "")
            #expect(all.ids == traffic.all, "in the order of acceptance")
            #expect(all.next == nil)
            let answer = try await server.admin("GET", "/messages")
            let summaries = try #require(try answer.jsonObject()["messages"] as? [[String: Any]])
            for summary in summaries {
                #expect(summary["route"] as? String == "orders", "\(summary)")
                let expected = summary["id"] as? String == traffic.failed ? "failed" : "delivered"
                #expect(summary["state"] as? String == expected, "\(summary)")
            }

            #expect(try await listPage(server, "?state=failed").ids == [traffic.failed])
            #expect(try await listPage(server, "?state=delivered").ids == traffic.delivered + [traffic.retried])
            #expect(try await listPage(server, "?state=queued").ids == [])
            #expect(try await listPage(server, "?route=orders").ids == traffic.all)
            let elsewhere = try await listPage(server, "?route=elsewhere")
            #expect(elsewhere.ids.isEmpty && elsewhere.next == nil, "\(elsewhere)")
            #expect(try await listPage(server, "?since=1h").ids == traffic.all)

            // Pages of two: every id once, in order, and the last page says there is no more.
            var paged: [String] = []
            var query = "?limit=2"
            for _ in 0..<10 {
                let page = try await listPage(server, query)
                #expect(page.ids.count <= 2, "\(query): \(page.ids)")
                paged += page.ids
                guard let next = page.next else { break }
                #expect(page.ids.count == 2, "a page with a next_cursor is full: \(query)")
                query = "?limit=2&cursor=" + (next.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? next)
            }
            #expect(paged == traffic.all, "paging with limit=2")
            // A filter and a cursor together.
            let first = try await listPage(server, "?state=delivered&limit=3")
            #expect(first.ids == traffic.delivered)
            let cursor = try #require(first.next, "a full page has a next_cursor")
            let second = try await listPage(server, "?state=delivered&limit=3&cursor=\(cursor)")
            #expect(second.ids == [traffic.retried] && second.next == nil, "\(second)")

            for query in ["?state=bogus", "?state=FAILED", "?limit=0", "?limit=1001", "?limit=two", "?cursor=abc", "?since=banana"] {
                expectProblem(try await server.admin("GET", "/messages" + query), 400, "GET /messages\(query)")
            }

            // One message: the document of the status API plus every attempt.
            let (retried, retriedAttempts) = try await server.message(traffic.retried)
            #expect(retried["id"] as? String == traffic.retried, "\(retried)")
            #expect(retried["route"] as? String == "orders", "\(retried)")
            #expect(retried["state"] as? String == "delivered", "\(retried)")
            #expect(retried["attempts"] as? Int == 2, "\(retried)")
            #expect((retried["delivered_at"] as? String)?.hasSuffix("Z") == true, "\(retried)")
            #expect((retried["response"] as? [String: Any])?["status"] as? Int == 200, "\(retried)")
            #expect(attemptStatuses(retriedAttempts) == [503, 200], "\(retriedAttempts)")
            #expect(retriedAttempts.map { $0["attempt"] as? Int } == [1, 2], "\(retriedAttempts)")
            #expect(retriedAttempts.allSatisfy { ($0["started_at"] as? String)?.hasSuffix("Z") == true }, "\(retriedAttempts)")

            let (failed, failedAttempts) = try await server.message(traffic.failed)
            #expect(failed["state"] as? String == "failed", "\(failed)")
            #expect(failed["attempts"] as? Int == 1, "\(failed)")
            #expect((failed["last_error"] as? String)?.contains("422") == true, "\(failed)")
            #expect((failed["response"] as? [String: Any])?["status"] as? Int == 422, "\(failed)")
            #expect(attemptStatuses(failedAttempts) == [422], "\(failedAttempts)")

            expectProblem(try await server.admin("GET", "/messages/01UNKNOWNID0000000000000000"), 404, "GET /messages/UNKNOWN")
        }
    }

    // MARK: Replay and skip one message

    @Test(
        "replay and skip one message: 200 from a final state, 409 from queued, in flight or delivered, 404 unknown",
        arguments: JournalBackend.allCases)
    func replayAndSkipOne(backend: JournalBackend) async throws {
        try await withAdminServer(backend) { server, upstream in
            let first = try await server.accept("/hooks/fail/1")
            let second = try await server.accept("/hooks/fail/2")
            try await server.waitForStates("both failed") { $0[first] == "failed" && $0[second] == "failed" }

            let unknown = "01UNKNOWNID0000000000000000"
            expectProblem(try await server.admin("POST", "/messages/\(unknown)/replay"), 404, "replay of an unknown id")
            expectProblem(try await server.admin("POST", "/messages/\(unknown)/skip"), 404, "skip of an unknown id")

            // Skip a failed message: it is never sent again.
            let skip = try await server.admin("POST", "/messages/\(second)/skip")
            #expect(skip.status == 200, "\(skip.status) \(skip.body)")
            #expect((try? skip.jsonObject())?["skipped"] as? Int == 1, "\(skip.body)")
            #expect(try await server.message(second).message["state"] as? String == "skipped")

            // Replay a failed message once the upstream accepts it: delivered within a few seconds.
            upstream.answerFailuresOK()
            let replay = try await server.admin("POST", "/messages/\(first)/replay")
            #expect(replay.status == 200, "\(replay.status) \(replay.body)")
            #expect((try? replay.jsonObject())?["replayed"] as? Int == 1, "\(replay.body)")
            try await server.waitForStates("the replayed message delivered", timeout: .seconds(5)) { $0[first] == "delivered" }
            let (replayed, attempts) = try await server.message(first)
            #expect(replayed["attempts"] as? Int == 2, "\(replayed)")
            #expect(attemptStatuses(attempts) == [422, 200], "\(attempts)")
            let sent = upstream.requests.filter { $0.correlationID == first }.map { "\($0.attempt) \($0.status)" }
            #expect(sent == ["1 422", "2 200"], "\(upstream.requests)")

            // A delivered message cannot be skipped.
            expectProblem(try await server.admin("POST", "/messages/\(first)/skip"), 409, "skip of a delivered message")
            #expect(try await server.message(first).message["state"] as? String == "delivered")

            // A message in flight (the upstream holds it) and one queued behind it (fifo).
            let held = try await server.accept("/hooks/hold/1")
            let queued = try await server.accept("/hooks/ok/behind")
            try await server.waitForStates("one in flight, one queued behind it") { $0[held] == "in_flight" && $0[queued] == "queued" }
            expectProblem(try await server.admin("POST", "/messages/\(held)/replay"), 409, "replay of a message in flight")
            expectProblem(try await server.admin("POST", "/messages/\(held)/skip"), 409, "skip of a message in flight")
            expectProblem(try await server.admin("POST", "/messages/\(queued)/replay"), 409, "replay of a queued message")
            let skipQueued = try await server.admin("POST", "/messages/\(queued)/skip")
            #expect(skipQueued.status == 200, "skip of a queued message: \(skipQueued.status) \(skipQueued.body)")
            #expect(try await server.message(queued).message["state"] as? String == "skipped")
            try await Task.sleep(for: .seconds(1))  // the forwarder notices a skip within half a second
            upstream.releaseHeld()
            try await server.waitForStates("the held message delivered") { $0[held] == "delivered" }
            let after = try await server.accept("/hooks/ok/after")
            try await server.waitForStates("a later message delivered") { $0[after] == "delivered" }

            #expect(try await server.message(queued).message["state"] as? String == "skipped")
            #expect(try await server.message(second).message["state"] as? String == "skipped")
            let sentIDs = upstream.requests.map(\.correlationID)
            #expect(!sentIDs.contains(queued), "the skipped queued message reached the upstream: \(upstream.requests)")
            #expect(sentIDs.filter { $0 == second }.count == 1, "the skipped failed message was sent again: \(upstream.requests)")
        }
    }

    // The forwarder learns of a skip only at its next half-second reload; until then it still holds
    // the skipped message in its queue, sends it when the message ahead ends, and records the
    // outcome over `skipped` (the skip answered 200, yet the upstream gets it and it ends `delivered`).
    @Test(
        "a queued message skipped just before its predecessor ends is not sent", arguments: JournalBackend.allCases)
    func skipRacesDispatch(backend: JournalBackend) async throws {
        try await withAdminServer(backend) { server, upstream in
            var skipped: [String] = []
            for round in 1...3 {
                let held = try await server.accept("/hooks/hold/\(round)")
                let queued = try await server.accept("/hooks/ok/behind-\(round)")
                try await server.waitForStates("one in flight, one queued behind it") { $0[held] == "in_flight" && $0[queued] == "queued" }
                let skip = try await server.admin("POST", "/messages/\(queued)/skip")
                try #require(skip.status == 200, "\(skip.status) \(skip.body)")
                skipped.append(queued)
                upstream.releaseHeld()  // the message ahead ends at once
                try await server.waitForStates("the held message delivered") { $0[held] == "delivered" }
                try await Task.sleep(for: .seconds(1))
                upstream.holdAgain()
            }
            let states = try await server.states()
            for id in skipped {
                #expect(states[id] == "skipped", "\(id) after a 200 skip: \(states[id] ?? "missing")")
                #expect(!upstream.requests.contains { $0.correlationID == id }, "\(id) reached the upstream after a 200 skip")
            }
        }
    }

    // MARK: Bulk replay

    @Test("POST /replay replays the failed messages and refuses bad filters", arguments: JournalBackend.allCases)
    func bulkReplay(backend: JournalBackend) async throws {
        try await withAdminServer(backend) { server, upstream in
            var failed: [String] = []
            for n in 1...3 { failed.append(try await server.accept("/hooks/fail/\(n)")) }
            let delivered = try await server.accept("/hooks/ok/1")
            try await server.waitForStates("3 failed, 1 delivered") { states in
                failed.allSatisfy { states[$0] == "failed" } && states[delivered] == "delivered"
            }

            for body in [
                "not json", "{\"state\":\"failed\"", "[\"failed\"]", "\"failed\"", "{\"state\":\"failed\",\"bogus\":1}",
                "{\"State\":\"failed\"}",
                "{\"state\":\"queued\"}", "{\"state\":\"in_flight\"}", "{\"state\":\"banana\"}", "{\"state\":1}", "{\"route\":5}",
                "{\"since\":\"banana\"}", "{\"until\":\"yesterday\"}",
            ] {
                let answer = try await server.admin("POST", "/replay", body: body, headers: ["Content-Type: application/json"])
                expectProblem(answer, 400, "POST /replay \(body)")
            }
            let unknownKey = try await server.admin("POST", "/replay", body: "{\"state\":\"failed\",\"bogus\":1}")
            #expect(unknownKey.body.contains("bogus"), "the problem names the unknown key: \(unknownKey.body)")

            let otherRoute = try await server.admin("POST", "/replay", body: "{\"state\":\"failed\",\"route\":\"elsewhere\"}")
            #expect(
                otherRoute.status == 200 && (try? otherRoute.jsonObject())?["replayed"] as? Int == 0,
                "\(otherRoute.status) \(otherRoute.body)")
            let tooOld = try await server.admin("POST", "/replay", body: "{\"state\":\"failed\",\"until\":\"2000-01-01T00:00:00Z\"}")
            #expect(tooOld.status == 200 && (try? tooOld.jsonObject())?["replayed"] as? Int == 0, "\(tooOld.status) \(tooOld.body)")
            try await Task.sleep(for: .seconds(1))  // a replay would be picked up within a second
            #expect(upstream.requests.count == 4, "the refused and empty replays sent nothing: \(upstream.requests)")
            let unchanged = try await server.states()
            #expect(failed.allSatisfy { unchanged[$0] == "failed" }, "\(unchanged)")

            upstream.answerFailuresOK()
            let replay = try await server.admin("POST", "/replay", body: "{\"state\":\"failed\",\"route\":\"orders\",\"since\":\"1h\"}")
            #expect(replay.status == 200, "\(replay.status) \(replay.body)")
            #expect(replay.header("Content-Type")?.hasPrefix("application/json") == true, "\(replay.headers)")
            #expect((try? replay.jsonObject())?["replayed"] as? Int == 3, "\(replay.body)")
            try await server.waitForStates("the three replayed messages delivered", timeout: .seconds(10)) { states in
                failed.allSatisfy { states[$0] == "delivered" }
            }
            let again = try await server.admin("POST", "/replay", body: "{\"state\":\"failed\"}")
            #expect(again.status == 200 && (try? again.jsonObject())?["replayed"] as? Int == 0, "\(again.status) \(again.body)")
            let retries = upstream.requests.filter { $0.attempt == "2" }.map(\.correlationID)
            #expect(retries == failed, "second attempts, in order: \(upstream.requests)")
            #expect(!upstream.requests.contains { $0.correlationID == delivered && $0.attempt != "1" }, "\(upstream.requests)")
        }
    }

    // MARK: Pause and resume

    @Test("a paused route accepts and journals but delivers nothing until resumed", arguments: JournalBackend.allCases)
    func pauseAndResume(backend: JournalBackend) async throws {
        try await withAdminServer(backend) { server, upstream in
            for action in ["pause", "resume"] {
                let unknown = try await server.admin("POST", "/routes/elsewhere/\(action)")
                expectProblem(unknown, 404, "\(action) of an unknown route")
                #expect(unknown.body.contains("elsewhere"), "\(unknown.body)")
            }

            let pause = try await server.admin("POST", "/routes/orders/pause")
            #expect(pause.status == 200, "\(pause.status) \(pause.body)")
            #expect((try? pause.jsonObject())?["paused"] as? Bool == true, "\(pause.body)")
            // The forwarder notices within half a second (see pauseTakesEffectAtOnce for the gap).
            try await Task.sleep(for: .seconds(1))
            var ids: [String] = []
            for n in 1...3 { ids.append(try await server.accept("/hooks/ok/\(n)")) }
            let deadline = ContinuousClock.now + .seconds(2)
            while ContinuousClock.now < deadline {
                #expect(upstream.requests.isEmpty, "a paused route delivered: \(upstream.requests)")
                let states = try await server.states()
                #expect(ids.allSatisfy { states[$0] == "queued" }, "\(states)")
                if !upstream.requests.isEmpty { break }
                try await Task.sleep(for: .milliseconds(200))
            }

            let resume = try await server.admin("POST", "/routes/orders/resume")
            #expect(resume.status == 200, "\(resume.status) \(resume.body)")
            #expect((try? resume.jsonObject())?["paused"] as? Bool == false, "\(resume.body)")
            let resumedAt = ContinuousClock.now
            try await server.waitForStates("delivered after resume") { states in ids.allSatisfy { states[$0] == "delivered" } }
            #expect(ContinuousClock.now - resumedAt < .seconds(5), "delivered \(ContinuousClock.now - resumedAt) after resume")
            #expect(upstream.requests.map(\.correlationID) == ids, "in order, once each: \(upstream.requests)")
        }
    }

    // POST /routes/NAME/pause answers 200 at once, but the forwarder reads the pause only at its
    // next half-second check of the journal, and a message accepted in between is delivered at once.
    @Test(
        "a message accepted right after a pause answered 200 is not delivered", arguments: JournalBackend.allCases)
    func pauseTakesEffectAtOnce(backend: JournalBackend) async throws {
        try await withAdminServer(backend) { server, upstream in
            var ids: [String] = []
            for n in 1...3 {
                let pause = try await server.admin("POST", "/routes/orders/pause")
                try #require(pause.status == 200, "\(pause.status) \(pause.body)")
                ids.append(try await server.accept("/hooks/ok/\(n)"))
                try await Task.sleep(for: .seconds(1))
                #expect(upstream.requests.isEmpty, "round \(n): delivered while paused: \(upstream.requests)")
                let states = try await server.states()
                #expect(states[ids[n - 1]] == "queued", "round \(n): \(states)")
                let resume = try await server.admin("POST", "/routes/orders/resume")
                try #require(resume.status == 200, "\(resume.status) \(resume.body)")
                try await server.waitForStates("delivered after resume") { $0[ids[n - 1]] == "delivered" }
                upstream.forgetRequests()
            }
        }
    }

    // MARK: Start-up rules

    @Test(
        "a non-loopback admin address without the token exits 78 naming the address and the variable",
        arguments: [[:], ["WAYPOST_ADMIN_TOKEN": ""]] as [[String: String]])
    func nonLoopbackWithoutToken(environment: [String: String]) async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let port = try freeLoopbackPort()
        let result = try await waypost(
            arguments: [
                "serve", "--upstream", "http://127.0.0.1:9/", "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:\(port)",
                "--journal", dir.file("j.db"),
            ],
            environment: environment, directory: dir.path)
        #expect(result.status == 78, "\(result)")
        #expect(result.stderr.contains("0.0.0.0:\(port)"), "names the address: \(result)")
        #expect(result.stderr.contains("WAYPOST_ADMIN_TOKEN"), "names the variable: \(result)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("j.db")), "a refused start created the journal")
    }

    @Test("admin.token_env names the variable: the default one does not count")
    func tokenEnvFromConfig() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let port = try freeLoopbackPort()
        let config = try dir.write(
            "waypost.yaml", adminTestConfig(upstream: "http://127.0.0.1:9/", extra: "admin: { token_env: OPS_ADMIN_TOKEN }\n"))
        let result = try await waypost(
            "serve", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:\(port)", "--journal", dir.file("j.db"),
            environment: ["WAYPOST_ADMIN_TOKEN": adminTestToken], directory: dir.path)
        #expect(result.status == 78, "\(result)")
        #expect(result.stderr.contains("0.0.0.0:\(port)") && result.stderr.contains("OPS_ADMIN_TOKEN"), "\(result)")

        // With that variable set, it is the token.
        let server = try await AdminTestServer.start(
            config: config, journal: dir.file("j.db"), directory: dir.path, environment: ["OPS_ADMIN_TOKEN": "ops-token"])
        do {
            #expect(try await server.admin("GET", "/messages", token: "ops-token").status == 200)
            expectProblem(try await server.admin("GET", "/messages", token: adminTestToken), 401, "the default variable's token")
        } catch {
            await server.child.kill()
            throw error
        }
        let status = await server.terminate()
        #expect(status == 0, "\(server.child.stderr.text)")
    }

    @Test("a non-loopback admin address with the token starts, and the token is required there")
    func nonLoopbackWithToken() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let (child, _, port) = try await startServe(
            environment: ["WAYPOST_ADMIN_TOKEN": adminTestToken], directory: dir.path,
            arguments: [
                "serve", "--upstream", "http://127.0.0.1:9/", "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0", "--journal",
                dir.file("j.db"),
            ])
        do {
            #expect(child.stdout.text.contains("admin=0.0.0.0:\(port)"), "\(child.stdout.text)")
            let health = try await httpRequest("GET", "http://127.0.0.1:\(port)/healthz")
            #expect(health.status == 200, "\(health.status) \(health.body)")
            let refused = try await httpRequest("GET", "http://127.0.0.1:\(port)/messages")
            expectProblem(refused, 401, "GET /messages without the token")
            let allowed = try await httpRequest(
                "GET", "http://127.0.0.1:\(port)/messages", headers: ["Authorization: Bearer \(adminTestToken)"])
            #expect(allowed.status == 200, "\(allowed.status) \(allowed.body)")
        } catch {
            await child.kill()
            throw error
        }
        child.send(SIGTERM)
        let status = await child.waitForExit(timeout: .seconds(10))
        if status == nil { await child.kill() }
        #expect(status == 0, "after SIGTERM; stderr:\n\(child.stderr.text)")
    }

    @Test("an admin address in use stops start-up with exit 1, naming the address")
    func adminAddressInUse() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let occupied = try LoopbackListener()
        defer { occupied.close() }
        let intakePort = try freeLoopbackPort()
        let result = try await waypost(
            "serve", "--upstream", "http://127.0.0.1:9/", "--listen", "127.0.0.1:\(intakePort)", "--admin-listen",
            "127.0.0.1:\(occupied.port)", "--journal", dir.file("j.db"), environment: ["WAYPOST_ADMIN_TOKEN": adminTestToken],
            directory: dir.path)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("cannot listen on 127.0.0.1:\(occupied.port): address already in use"), "\(result)")
        #expect(!acceptsConnections(port: intakePort), "the intake listener outlived the refused start")
    }
}
