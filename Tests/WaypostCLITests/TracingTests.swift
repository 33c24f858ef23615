// OpenTelemetry spans exported over OTLP/HTTP (SPEC §14), received by a recording collector: the
// intake's span, the commit inside it, each attempt's span with the upstream's status, the
// transform inside the attempt, and the traceparent the upstream got is the attempt span's own.

import Foundation
import Testing
import WaypostCore
import WaypostTestSupport

/// A span as OTLP/JSON has it (ids turned to hex).
private struct ExportedSpan {
    var traceID: String
    var spanID: String
    var parentSpanID: String
    var name: String
    var kind: Int
    var attributes: [String: String]
    var statusCode: Int
}

/// The spans of OTLP/JSON export requests. swift-protobuf writes ids as base64, the OTLP
/// specification as hex: both are read.
private func exportedSpans(_ requests: [RecordedRequest]) -> [ExportedSpan] {
    func hex(_ id: Any?) -> String {
        guard let text = id as? String, !text.isEmpty else { return "" }
        if text.count == 32 || text.count == 16, text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        return Data(base64Encoded: text).map { $0.map { String(format: "%02x", $0) }.joined() } ?? text
    }
    var spans: [ExportedSpan] = []
    for request in requests {
        guard let document = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any] else { continue }
        for resource in document["resourceSpans"] as? [[String: Any]] ?? [] {
            for scope in resource["scopeSpans"] as? [[String: Any]] ?? [] {
                for span in scope["spans"] as? [[String: Any]] ?? [] {
                    var attributes: [String: String] = [:]
                    for attribute in span["attributes"] as? [[String: Any]] ?? [] {
                        guard let key = attribute["key"] as? String, let value = attribute["value"] as? [String: Any] else { continue }
                        attributes[key] = value.values.first.map { "\($0)" }
                    }
                    spans.append(
                        ExportedSpan(
                            traceID: hex(span["traceId"]), spanID: hex(span["spanId"]), parentSpanID: hex(span["parentSpanId"]),
                            name: span["name"] as? String ?? "", kind: span["kind"] as? Int ?? 0, attributes: attributes,
                            statusCode: (span["status"] as? [String: Any])?["code"] as? Int ?? 0))
                }
            }
        }
    }
    return spans
}

@Suite("OpenTelemetry: spans exported over OTLP/HTTP (SPEC §14)")
struct TracingTests {
    @Test("intake, commit, attempts and transform arrive at the collector, parented; each attempt's traceparent is its span's")
    func spansArriveParented() async throws {
        let collector = try await TestUpstream.start { _ in
            .respond(headers: [HeaderField(name: "Content-Type", value: "application/json")], body: Array("{}".utf8))
        }
        defer { Task { await collector.stop() } }
        let erp = try await SettableUpstream.start(status: 503)
        let config = """
            tracing: { otlp_endpoint: "\(collector.url)/v1/traces", otlp_protocol: http/json, service_name: waypost-test }
            routes:
              - name: shop
                path: /shop
                # Retried until the test lets the upstream answer 200, however long a loaded
                # machine takes to notice the first attempt.
                retry: { initial: 100ms, factor: 1, max_delay: 100ms, max_attempts: 100000 }
                breaker: off
                destinations:
                  - { name: erp, upstream: "\(erp.url)", transform: '.headers["x-t"] = "1"' }
              - { name: ask, path: /ask, mode: sync, upstream: "\(erp.url)", reply: '{status: 200, body: {ok: true}}' }
            """
        try await withServer(config: config, upstreams: [erp], environment: ["OTEL_BSP_SCHEDULE_DELAY": "100"]) { server, _ in
            let sourceTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
            let traced = try await server.intake(
                "POST", "/shop", body: "{}",
                headers: ["Content-Type: application/json", "traceparent: 00-\(sourceTrace)-00f067aa0ba902b7-01"])
            let tracedID = try #require(traced.header("X-Correlation-ID"))
            // The first attempt of each gets 503, the next 200.
            let eventually = ContinuousClock.now + .seconds(10)
            while erp.ids.filter({ $0 == tracedID }).isEmpty, ContinuousClock.now < eventually {
                try await Task.sleep(for: .milliseconds(20))
            }
            erp.answer(200)
            let plainID = try await server.accept("/shop")
            let asked = try await server.intake("POST", "/ask", body: "{}", headers: ["Content-Type: application/json"])
            #expect(asked.status == 200, "\(asked.status) \(asked.body)")
            let askedID = try #require(asked.header("X-Correlation-ID"))
            try await server.waitForStates("delivered") { $0[tracedID] == "delivered" && $0[plainID] == "delivered" }

            var spans: [ExportedSpan] = []
            let deadline = ContinuousClock.now + .seconds(15)
            func complete(_ spans: [ExportedSpan]) -> Bool {
                spans.contains { $0.name == "waypost.reply" }
                    && [tracedID, plainID, askedID].allSatisfy { id in
                        spans.contains { $0.kind == 2 && $0.attributes["waypost.correlation_id"] == id }
                            && spans.contains { $0.kind == 3 && $0.attributes["waypost.correlation_id"] == id && $0.statusCode != 2 }
                    }
            }
            repeat {
                spans = exportedSpans(collector.requests)
                if complete(spans) { break }
                try await Task.sleep(for: .milliseconds(100))
            } while ContinuousClock.now < deadline
            let exported = collector.requests
            #expect(
                exported.allSatisfy { $0.uri == "/v1/traces" && $0.header("Content-Type") == "application/json" }, "\(exported.map(\.uri))")
            try #require(complete(spans), "spans: \(spans.map { "\($0.name) \($0.attributes)" })")

            for (id, trace) in [(tracedID, sourceTrace), (plainID, nil)] as [(String, String?)] {
                let intake = try #require(spans.first { $0.kind == 2 && $0.attributes["waypost.correlation_id"] == id })
                #expect(intake.name == "POST /shop" && intake.attributes["http.route"] == "/shop")
                #expect(intake.attributes["http.response.status_code"] == "202", "\(intake.attributes)")
                if let trace {
                    #expect(
                        intake.traceID == trace && intake.parentSpanID == "00f067aa0ba902b7", "the source's span is the intake's parent")
                } else {
                    #expect(intake.parentSpanID.isEmpty, "without a source trace the intake's span is a root")
                }
                let commit = try #require(spans.first { $0.name == "waypost.commit" && $0.parentSpanID == intake.spanID })
                #expect(commit.traceID == intake.traceID)

                let attempts = spans.filter { $0.kind == 3 && $0.attributes["waypost.correlation_id"] == id }
                #expect(attempts.allSatisfy { $0.traceID == intake.traceID && $0.parentSpanID == intake.spanID && $0.name == "POST" })
                #expect(attempts.allSatisfy { $0.attributes["waypost.destination"] == "erp" && $0.attributes["waypost.route"] == "shop" })
                for attempt in attempts {
                    let transform = spans.first { $0.name == "waypost.transform" && $0.parentSpanID == attempt.spanID }
                    #expect(transform?.traceID == intake.traceID, "each attempt's transform is its child")
                }
                // What the upstream received is each attempt span's own context.
                let sent = erp.upstream.requests.filter { $0.header("X-Correlation-ID") == id }.compactMap { $0.header("traceparent") }
                #expect(Set(sent) == Set(attempts.map { "00-\($0.traceID)-\($0.spanID)-01" }), "sent \(sent)")
                #expect(server.child.stderr.text.contains("trace_id=\(intake.traceID)"), "the log line carries the trace id")
            }
            // A reply program runs inside the synchronous request's span.
            let askedIntake = try #require(spans.first { $0.kind == 2 && $0.attributes["waypost.correlation_id"] == askedID })
            #expect(askedIntake.attributes["http.response.status_code"] == "200")
            #expect(spans.contains { $0.name == "waypost.reply" && $0.parentSpanID == askedIntake.spanID })

            // The traced message's attempts met 503 until the upstream was told to answer 200:
            // error spans, then one whose status is left unset.
            let tracedAttempts = spans.filter { $0.kind == 3 && $0.attributes["waypost.correlation_id"] == tracedID }
                .sorted { Int($0.attributes["waypost.attempt"] ?? "") ?? 0 < Int($1.attributes["waypost.attempt"] ?? "") ?? 0 }
            let statuses = tracedAttempts.map { $0.attributes["http.response.status_code"] ?? "" }
            #expect(
                tracedAttempts.count >= 2 && statuses == Array(repeating: "503", count: tracedAttempts.count - 1) + ["200"], "\(statuses)")
            #expect(tracedAttempts.map(\.statusCode) == Array(repeating: 2, count: tracedAttempts.count - 1) + [0], "503 is an error (2)")
            #expect(tracedAttempts.map { $0.attributes["waypost.attempt"] } == (1...tracedAttempts.count).map { String($0) })
        }
    }

    @Test("by default spans go as OTLP protobuf to the endpoint's /v1/traces; an unreachable collector costs no message")
    func protobufByDefault() async throws {
        let collector = try await TestUpstream.start { _ in
            .respond(headers: [HeaderField(name: "Content-Type", value: "application/x-protobuf")])
        }
        defer { Task { await collector.stop() } }
        let erp = try await SettableUpstream.start()
        let unreachable = try freeLoopbackPort()
        for (endpoint, counted) in [(collector.url, true), ("http://127.0.0.1:\(unreachable)", false)] {
            let config = """
                tracing: { otlp_endpoint: "\(endpoint)" }
                routes:
                  - { name: hooks, path: /hooks, upstream: "\(erp.url)" }
                """
            try await withServer(config: config, upstreams: [], environment: ["OTEL_BSP_SCHEDULE_DELAY": "100"]) { server, _ in
                let id = try await server.accept("/hooks")
                try await server.waitForStates("delivered") { $0[id] == "delivered" }
                guard counted else { return }
                let deadline = ContinuousClock.now + .seconds(15)
                // The ids travel as raw bytes, the names as UTF-8: look for the intake span's name
                // and the trace id the upstream got.
                let traceParent = try #require(erp.upstream.requests.last?.header("traceparent"))
                let traceBytes = stride(from: 3, to: 35, by: 2).map { offset -> UInt8 in
                    let start = traceParent.index(traceParent.startIndex, offsetBy: offset)
                    return UInt8(traceParent[start..<traceParent.index(start, offsetBy: 2)], radix: 16) ?? 0
                }
                func received() -> [UInt8] { collector.requests.flatMap(\.body) }
                while !(received().contains(Array("POST /hooks".utf8)) && received().contains(traceBytes)), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(received().contains(Array("POST /hooks".utf8)) && received().contains(traceBytes))
                #expect(collector.requests.allSatisfy { $0.uri == "/v1/traces" && $0.header("Content-Type") == "application/x-protobuf" })
            }
        }
        await erp.stop()
    }
}

extension Array where Element == UInt8 {
    fileprivate func contains(_ part: [UInt8]) -> Bool {
        guard !part.isEmpty, part.count <= count else { return part.isEmpty }
        return (0...(count - part.count)).contains { self[$0..<($0 + part.count)].elementsEqual(part) }
    }
}
