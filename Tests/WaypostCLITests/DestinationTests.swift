// Destinations (SPEC §11) end to end: a real `waypost serve` delivering one route's messages to
// several test upstreams, each with its own queue, filter and outcome; replay and skip of one
// delivery; a synchronous source answered by `reply_from`; and a version-2 journal migrated
// under a waiting backlog.

import Foundation
import Synchronization
import Testing
import WaypostTestSupport

/// The repository's `Tests/Fixtures` directory.
private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

extension AdminTestServer {
    /// `GET /messages/{id}`'s `deliveries`, by destination: each one's state.
    fileprivate func deliveryStates(_ id: String) async throws -> [String: String] {
        var states: [String: String] = [:]
        for (destination, delivery) in try await deliveries(id) { states[destination] = try #require(delivery["state"] as? String) }
        return states
    }

    /// The status API's document of message `id`.
    fileprivate func status(_ id: String) async throws -> [String: Any] {
        let answer = try await intake("GET", "/_waypost/messages/\(id)")
        try #require(answer.status == 200, "GET /_waypost/messages/\(id): \(answer.status) \(answer.body)")
        return try answer.jsonObject()
    }
}

@Suite("destinations: fan-out, filters, one delivery replayed or skipped, reply_from, a version-2 journal (SPEC §11)")
struct DestinationTests {
    @Test(
        "fan-out to three upstreams, one down for a while: the other two keep delivering, the third catches up in order",
        arguments: JournalBackend.allCases)
    func fanOutWithOneDown(backend: JournalBackend) async throws {
        let erp = try await SettableUpstream.start()
        let analytics = try await SettableUpstream.start()
        let audit = try await SettableUpstream.start(status: 503)
        let config = """
            routes:
              - name: shop
                path: /shop
                retry: { initial: 100ms, factor: 1, max_delay: 100ms, max_attempts: 100000 }
                destinations:
                  - { name: erp, upstream: "\(erp.url)", ordering: fifo }
                  - { name: analytics, upstream: "\(analytics.url)", ordering: none }
                  - name: audit
                    upstream: "\(audit.url)"
                    ordering: key
                    ordering_key: "header:X-Key"
                    breaker: { failures: 5, probe_interval: 200ms }
            """
        try await withServer(config: config, backend: backend, upstreams: [erp, analytics, audit]) { server, _ in
            var ids: [String] = []
            for n in 0..<12 {
                let answer = try await server.intake(
                    "POST", "/shop/orders", body: "{\"n\":\(n)}", headers: ["Content-Type: application/json", "X-Key: k\(n % 3)"])
                try #require(answer.status == 202, "\(answer.status) \(answer.body)")
                ids.append(try #require(answer.header("X-Correlation-ID")))
            }
            // erp and analytics deliver everything while audit answers 503.
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline, Set(erp.ids) != Set(ids) || Set(analytics.ids) != Set(ids) {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(erp.ids == ids, "erp (fifo) got every message once, in order")
            #expect(Set(analytics.ids) == Set(ids) && analytics.ids.count == ids.count, "\(analytics.ids)")
            #expect(audit.ids.count >= 3, "audit was tried meanwhile: \(audit.ids)")
            for id in ids {
                let states = try await server.deliveryStates(id)
                #expect(states["erp"] == "delivered" && states["analytics"] == "delivered", "\(id): \(states)")
                #expect(states["audit"] == "queued" || states["audit"] == "in_flight", "\(id): \(states)")
            }
            let waiting = try await server.states()
            #expect(ids.allSatisfy { waiting[$0] == "queued" || waiting[$0] == "in_flight" }, "the messages wait for audit: \(waiting)")

            audit.answer(200)
            try await server.waitForStates("audit catches up") { states in ids.allSatisfy { states[$0] == "delivered" } }
            // Per key, audit got each message in the order of acceptance.
            let delivered = audit.lastOrder
            #expect(Set(delivered) == Set(ids), "\(delivered)")
            for key in 0..<3 {
                let ofKey = ids.enumerated().filter { $0.offset % 3 == key }.map(\.element)
                #expect(delivered.filter(ofKey.contains) == ofKey, "key k\(key): \(delivered)")
            }
            #expect(erp.ids.count == ids.count && analytics.ids.count == ids.count, "nobody else got a repeat")
            let status = try await server.status(ids[0])
            let deliveries = try #require(status["deliveries"] as? [[String: Any]], "\(status)")
            #expect(deliveries.map { $0["destination"] as? String } == ["erp", "analytics", "audit"], "\(status)")
            #expect(deliveries.allSatisfy { $0["state"] as? String == "delivered" }, "\(status)")
            let auditAttempts = deliveries[2]["attempts"] as? Int ?? 0
            #expect(auditAttempts >= 2, "\(status)")
            #expect(status["attempts"] as? Int == 1, "the top level is erp's (reply_from, the first): \(status)")
        }
    }

    @Test(
        "a filter sends a message to a subset; the others' deliveries are filtered, and the message is delivered",
        arguments: JournalBackend.allCases)
    func filters(backend: JournalBackend) async throws {
        let billing = try await SettableUpstream.start()
        let everything = try await SettableUpstream.start()
        let config = """
            routes:
              - name: shop
                path: /shop
                destinations:
                  - name: billing
                    upstream: "\(billing.url)"
                    filter: { body: { type: { $in: [order.paid, order.refunded] } }, headers: { x-shop: main } }
                  - { name: everything, upstream: "\(everything.url)" }
            """
        try await withServer(config: config, backend: backend, upstreams: [billing, everything]) { server, dir in
            func post(_ type: String, shop: String = "main") async throws -> String {
                let answer = try await server.intake(
                    "POST", "/shop", body: "{\"type\":\"\(type)\"}", headers: ["Content-Type: application/json", "X-Shop: \(shop)"])
                guard answer.status == 202, let id = answer.header("X-Correlation-ID") else {
                    throw CLITestError("POST /shop: \(answer.status) \(answer.body)")
                }
                return id
            }
            let paid = try await post("order.paid")
            let created = try await post("order.created")
            let otherShop = try await post("order.paid", shop: "outlet")
            try await server.waitForStates("all delivered") { states in
                [paid, created, otherShop].allSatisfy { states[$0] == "delivered" }
            }
            #expect(billing.ids == [paid], "\(billing.ids)")
            #expect(everything.ids == [paid, created, otherShop], "\(everything.ids)")
            #expect(try await server.deliveryStates(created) == ["billing": "filtered", "everything": "delivered"])
            #expect(try await server.deliveryStates(otherShop) == ["billing": "filtered", "everything": "delivered"])
            let filtered = try await server.admin("GET", "/messages?destination=billing&state=filtered")
            let items = try #require(try filtered.jsonObject()["messages"] as? [[String: Any]], "\(filtered.body)")
            #expect(items.compactMap { $0["id"] as? String } == [created, otherShop], "\(filtered.body)")

            // `waypost status` counts each destination's deliveries.
            let status = try await waypost("status", "--journal", server.journal, "--json", directory: dir.path)
            #expect(status.status == 0, "\(status)")
            let document = try #require(try? JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "\(status)")
            let route = try #require((document["routes"] as? [[String: Any]])?.first, "\(status)")
            #expect(route["delivered"] as? Int == 3, "\(status)")
            let destinations = try #require(route["destinations"] as? [[String: Any]], "\(status)")
            #expect(destinations.map { $0["destination"] as? String } == ["billing", "everything"], "\(status)")
            #expect(destinations.map { $0["filtered"] as? Int } == [2, 0], "\(status)")
            #expect(destinations.map { $0["delivered"] as? Int } == [1, 3], "\(status)")
            let table = try await waypost("status", "--journal", server.journal, directory: dir.path)
            #expect(table.lines.contains { $0.split(separator: " ").prefix(2) == ["shop", "billing"] }, "\(table)")
        }
    }

    @Test("one delivery replayed, one skipped (?destination=), the other destination untouched", arguments: JournalBackend.allCases)
    func replayAndSkipOneDelivery(backend: JournalBackend) async throws {
        let strict = try await SettableUpstream.start(status: 422)
        let lenient = try await SettableUpstream.start()
        let config = """
            routes:
              - name: shop
                path: /shop
                destinations:
                  - { name: strict, upstream: "\(strict.url)", on_exhausted: block }
                  - { name: lenient, upstream: "\(lenient.url)" }
            """
        try await withServer(config: config, backend: backend, upstreams: [strict, lenient]) { server, _ in
            let first = try await server.accept("/shop")
            let second = try await server.accept("/shop")
            try await server.waitForStates("the first fails at strict, the second waits behind it") { states in
                states[first] == "failed" && states[second] == "queued"
            }
            #expect(try await server.deliveryStates(first) == ["strict": "failed", "lenient": "delivered"])
            #expect(lenient.ids == [first, second], "lenient does not wait for strict: \(lenient.ids)")

            // Skip the blocking delivery: strict moves on to the second message (which it refuses too).
            let skip = try await server.admin("POST", "/messages/\(first)/skip?destination=strict")
            #expect(skip.status == 200, "\(skip.status) \(skip.body)")
            try await server.waitForStates("the first skipped, the second failed at strict") { states in
                states[first] == "skipped" && states[second] == "failed"
            }
            #expect(try await server.deliveryStates(first) == ["strict": "skipped", "lenient": "delivered"])

            // Replay only strict's delivery of the second, once strict accepts.
            strict.answer(200)
            let replay = try await server.admin("POST", "/messages/\(second)/replay?destination=strict")
            #expect(replay.status == 200, "\(replay.status) \(replay.body)")
            try await server.waitForStates("the second delivered") { $0[second] == "delivered" }
            #expect(strict.ids == [first, second, second], "\(strict.ids)")
            #expect(lenient.ids == [first, second], "lenient was not sent anything again: \(lenient.ids)")

            let unknown = try await server.admin("POST", "/routes/shop/pause?destination=nope")
            #expect(unknown.status == 404, "\(unknown.status) \(unknown.body)")
            for (path, status) in [
                ("/messages/\(second)/replay?destination=nope", 404), ("/messages/\(second)/skip?destination=nope", 404),
                ("/messages/\(second)/skip?destination=strict%ZZ", 400), ("/messages/\(second)/skip?Destination=strict", 400),
            ] {
                let answer = try await server.admin("POST", path)
                #expect(answer.status == status, "POST \(path): \(answer.status) \(answer.body)")
            }
            let replayFiltered = try await server.admin("POST", "/replay", body: "{\"state\":\"filtered\"}")
            #expect(replayFiltered.status == 400, "a filtered delivery is not replayed: \(replayFiltered.status) \(replayFiltered.body)")
            let pause = try await server.admin("POST", "/routes/shop/pause?destination=lenient")
            #expect(pause.status == 200, "\(pause.status) \(pause.body)")
            let third = try await server.accept("/shop")
            try await server.waitForStates("strict delivers the third while lenient is paused") { _ in strict.ids.last == third }
            try await Task.sleep(for: .milliseconds(700))
            #expect(!lenient.ids.contains(third), "a paused destination is sent nothing: \(lenient.ids)")
            #expect(try await server.deliveryStates(third) == ["strict": "delivered", "lenient": "queued"])
        }
    }

    @Test(
        "sync: the source gets reply_from's answer while another destination is slow; a filtered reply_from answers 202 filtered",
        arguments: JournalBackend.allCases)
    func syncReplyFrom(backend: JournalBackend) async throws {
        let slowGate = Gate()
        let slow = try await SettableUpstream.start(gate: slowGate, body: "slow")
        let fast = try await SettableUpstream.start(status: 201, body: "fast")
        let config = """
            routes:
              - name: shop
                path: /shop
                mode: sync
                sync_timeout: 10s
                reply_from: fast
                destinations:
                  - { name: slow, upstream: "\(slow.url)" }
                  - name: fast
                    upstream: "\(fast.url)"
                    filter: { body: { kind: { $neq: skip-fast } } }
            """
        try await withServer(config: config, backend: backend, upstreams: [slow, fast]) { server, _ in
            let started = ContinuousClock.now
            let answer = try await server.intake("POST", "/shop", body: "{\"kind\":\"order\"}", headers: ["Content-Type: application/json"])
            #expect(answer.status == 201 && answer.body == "fast", "\(answer.status) \(answer.body)")
            #expect(ContinuousClock.now - started < .seconds(5), "the slow destination did not hold the answer")
            let id = try #require(answer.header("X-Correlation-ID"))
            #expect(try await server.deliveryStates(id)["fast"] == "delivered")
            #expect(try await server.states()[id] != "delivered", "slow still holds the message")

            let filtered = try await server.intake(
                "POST", "/shop", body: "{\"kind\":\"skip-fast\"}", headers: ["Content-Type: application/json"])
            #expect(filtered.status == 202, "\(filtered.status) \(filtered.body)")
            #expect((try? filtered.jsonObject())?["state"] as? String == "filtered", "\(filtered.body)")

            slowGate.open()
            try await server.waitForStates("slow delivers both") { states in
                states[id] == "delivered" && states.values.allSatisfy { $0 == "delivered" }
            }
            #expect(slow.ids.count == 2, "\(slow.ids)")
        }
    }

    @Test("a version-2 journal is migrated under its waiting backlog: nothing lost, reordered or sent twice")
    func migratesVersion2() async throws {
        let upstream = try await SettableUpstream.start()
        let config = """
            routes:
              - name: orders
                path: /orders
                upstream: "\(upstream.url)in"
                ordering: key
                ordering_key: header:X-Key
            """
        let fixture = fixtures.appendingPathComponent("journal-v2.db").path
        try await withServer(config: config, journal: fixture, upstreams: [upstream]) { server, dir in
            #expect(try sqlite3(dir.file("j.db"), "PRAGMA user_version") == "6")
            // What the fixture holds, as it was: three delivered, one failed, one skipped.
            let states = try await server.states()
            for n in 1...3 { #expect(states["v2-delivered-\(n)"] == "delivered", "\(states)") }
            #expect(states["v2-failed-1"] == "failed" && states["v2-failed-2"] == "skipped", "\(states)")
            let (delivered, attempts) = try await server.message("v2-delivered-1")
            #expect((delivered["response"] as? [String: Any])?["body"] as? String == "{\"ok\":true}", "\(delivered)")
            #expect(attempts.map { $0["status"] as? Int } == [200], "\(attempts)")
            #expect(try await server.deliveryStates("v2-failed-1") == ["orders": "failed"])
            // The paused route's backlog: delivered once resumed, in order per key, once each.
            #expect(upstream.ids.isEmpty, "the route stays paused across the upgrade")
            let resume = try await server.admin("POST", "/routes/orders/resume")
            #expect(resume.status == 200, "\(resume.status) \(resume.body)")
            let queued = (1...5).map { "v2-queued-\($0)" }
            try await server.waitForStates("the backlog delivered") { states in queued.allSatisfy { states[$0] == "delivered" } }
            #expect(upstream.ids.sorted() == queued, "\(upstream.ids)")
            #expect(
                upstream.ids.filter { ["v2-queued-1", "v2-queued-3", "v2-queued-5"].contains($0) } == [
                    "v2-queued-1", "v2-queued-3", "v2-queued-5",
                ])
            #expect(upstream.ids.filter { ["v2-queued-2", "v2-queued-4"].contains($0) } == ["v2-queued-2", "v2-queued-4"])
            // A replay after the upgrade works on the migrated message.
            let replay = try await server.admin("POST", "/messages/v2-failed-1/replay")
            #expect(replay.status == 200, "\(replay.status) \(replay.body)")
            try await server.waitForStates("the replayed message delivered") { $0["v2-failed-1"] == "delivered" }
        }
    }
}
