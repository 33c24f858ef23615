import Testing
import W3CTraceContext

@testable import WaypostCore

@Suite("each attempt's W3C trace context: in the source's trace, or one of the message's own (SPEC §14)")
struct AttemptTraceTests {
    private let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test("a valid source traceparent: its trace and flags, a new span per attempt, tracestate kept")
    func sourceTrace() {
        let stored = [HeaderField(name: "TraceParent", value: parent), HeaderField(name: "tracestate", value: "vendor=abc,other=1")]
        let first = AttemptTrace.context(stored: stored, correlationID: "id-1")
        let second = AttemptTrace.context(stored: stored, correlationID: "id-1")
        #expect(AttemptTrace.traceID(of: first) == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(first.flags == .sampled)
        #expect(first.spanID != second.spanID, "each attempt is a span of its own")
        #expect(!first.traceParentHeaderValue.hasSuffix("00f067aa0ba902b7-01"), "not the source's span")
        let headers = AttemptTrace.headers(first)
        #expect(headers.map(\.name) == ["traceparent", "tracestate"])
        #expect(headers[1].value == "vendor=abc, other=1")
        let unsampled = AttemptTrace.context(
            stored: [HeaderField(name: "traceparent", value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")], correlationID: "x"
        )
        #expect(unsampled.flags.isEmpty)
    }

    @Test(
        "no or an invalid traceparent: a trace derived from the correlation id, the same for every attempt",
        arguments: [
            nil, "", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ])
    func ownTrace(_ value: String?) {
        let stored = value.map { [HeaderField(name: "traceparent", value: $0)] } ?? []
        let first = AttemptTrace.context(stored: stored, correlationID: "01KBA0Z3M6Q7V8W9X0Y1Z2A3B4")
        let again = AttemptTrace.context(stored: stored, correlationID: "01KBA0Z3M6Q7V8W9X0Y1Z2A3B4")
        let other = AttemptTrace.context(stored: stored, correlationID: "01KBA0Z3M6Q7V8W9X0Y1Z2A3B5")
        #expect(AttemptTrace.traceID(of: first) == AttemptTrace.traceID(of: again))
        #expect(AttemptTrace.traceID(of: first) != AttemptTrace.traceID(of: other))
        #expect(AttemptTrace.traceID(of: first) != "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(first.spanID != again.spanID)
        #expect(AttemptTrace.headers(first).map(\.name) == ["traceparent"])
        // What it sends parses back.
        #expect((try? TraceContext(traceParentHeaderValue: first.traceParentHeaderValue)) != nil)
    }

    @Test("the attempt's trace replaces the source's own headers in what is forwarded")
    func forwarded() {
        let stored = [HeaderField(name: "traceparent", value: parent), HeaderField(name: "tracestate", value: "a=1")]
        let trace = AttemptTrace.context(stored: stored, correlationID: "c")
        let fields = OutboundRequest.headers(
            stored: stored, correlationID: "c",
            idempotencyKey: nil, attempt: 1, clientAddress: nil, trace: AttemptTrace.headers(trace), removeHeaders: [], addHeaders: [])
        #expect(fields.filter { $0.name.lowercased() == "traceparent" }.map(\.value) == [trace.traceParentHeaderValue])
        #expect(fields.filter { $0.name.lowercased() == "tracestate" }.map(\.value) == ["a=1"])
    }
}
