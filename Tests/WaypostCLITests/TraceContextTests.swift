// W3C trace context through Waypost (SPEC §14): each attempt carries a traceparent of its own, in
// the source's trace, so that a traced upstream joins the trace of the request that caused it.

import Foundation
import Testing
import WaypostTestSupport

@Suite("W3C trace context: every attempt in the source's trace, or in one of the message's own")
struct TraceContextTests {
    @Test(
        "a retried message keeps its trace across attempts, each attempt a span of its own; without a source trace, one of its own",
        arguments: JournalBackend.allCases)
    func attemptsCarryTheTrace(backend: JournalBackend) async throws {
        let upstream = try await SettableUpstream.start(status: 503)
        let config = """
            routes:
              - name: hooks
                path: /hooks
                upstream: "\(upstream.url)"
                ordering: none
                retry: { initial: 200ms, factor: 1, max_delay: 200ms, max_attempts: 100000 }
                breaker: off
            """
        try await withServer(config: config, backend: backend, upstreams: [upstream]) { server, _ in
            let traced = try await server.intake(
                "POST", "/hooks", body: "{}",
                headers: [
                    "Content-Type: application/json", "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "tracestate: vendor=abc",
                ])
            let tracedID = try #require(traced.header("X-Correlation-ID"))
            let plainID = try await server.accept("/hooks")
            let deadline = ContinuousClock.now + .seconds(10)
            while upstream.ids.filter({ $0 == tracedID }).count < 2 || upstream.ids.filter({ $0 == plainID }).count < 2,
                ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(50))
            }
            upstream.answer(200)
            try await server.waitForStates("delivered") { $0[tracedID] == "delivered" && $0[plainID] == "delivered" }

            func parents(_ id: String) -> [[Substring]] {
                upstream.upstream.requests.filter { $0.header("X-Correlation-ID") == id }.compactMap { $0.header("traceparent") }
                    .map { $0.split(separator: "-") }
            }
            let tracedParents = parents(tracedID)
            #expect(tracedParents.count >= 3, "\(tracedParents)")
            #expect(
                tracedParents.allSatisfy { $0.count == 4 && $0[0] == "00" && $0[1] == "4bf92f3577b34da6a3ce929d0e0e4736" && $0[3] == "01" })
            #expect(Set(tracedParents.map { $0[2] }).count == tracedParents.count, "a new span id per attempt: \(tracedParents)")
            #expect(!tracedParents.contains { $0[2] == "00f067aa0ba902b7" }, "never the source's own span")
            let states = upstream.upstream.requests.filter { $0.header("X-Correlation-ID") == tracedID }.map { $0.header("tracestate") }
            #expect(states.allSatisfy { $0 == "vendor=abc" }, "\(states)")

            let plainParents = parents(plainID)
            #expect(plainParents.count >= 3, "\(plainParents)")
            #expect(Set(plainParents.map { $0[1] }).count == 1, "one trace for every attempt of the message: \(plainParents)")
            #expect(plainParents.allSatisfy { $0.count == 4 && $0[1].count == 32 && $0[2].count == 16 })
            #expect(plainParents[0][1] != "4bf92f3577b34da6a3ce929d0e0e4736")
            // The log line of the delivery names the trace.
            #expect(
                server.child.stderr.text.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"), "\(server.child.stderr.text.suffix(1500))")
        }
    }
}
