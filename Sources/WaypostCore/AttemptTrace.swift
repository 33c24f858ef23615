import Crypto
import Tracing
import W3CTraceContext

/// The W3C trace context each delivery attempt carries to the upstream (SPEC §14): a
/// `traceparent` of its own, in the source's trace when the source sent one, so that a traced
/// upstream's spans join the trace of the request that caused them.
///
/// The trace is the source's `traceparent`'s (its flags and `tracestate` kept) when the
/// stored request has a valid one; otherwise one derived from the correlation id, the same on
/// every attempt and replay of the message, for every destination. Each attempt is a span of
/// its own: a new span id.
public enum AttemptTrace {
    /// The attempt's trace context: `spanID` (by default a new one) under the message's trace.
    public static func context(stored: [HeaderField], correlationID: String, spanID: SpanID = .random()) -> TraceContext {
        if let source = source(stored) {
            return TraceContext(traceID: source.traceID, spanID: spanID, flags: source.flags, state: source.state)
        }
        return TraceContext(traceID: traceID(of: correlationID), spanID: spanID, flags: .sampled, state: TraceState())
    }

    /// The source's trace context, when the stored request has a valid `traceparent`.
    static func source(_ stored: [HeaderField]) -> TraceContext? {
        guard let parent = stored.first(where: { $0.name.caseInsensitiveEquals("traceparent") }) else { return nil }
        return try? TraceContext(
            traceParentHeaderValue: parent.value,
            traceStateHeaderValue: stored.first(where: { $0.name.caseInsensitiveEquals("tracestate") })?.value)
    }

    /// The header fields of `context`: `traceparent`, and `tracestate` when it has entries.
    public static func headers(_ context: TraceContext) -> [HeaderField] {
        var fields = [HeaderField(name: "traceparent", value: context.traceParentHeaderValue)]
        if let state = context.traceStateHeaderValue, !state.isEmpty { fields.append(HeaderField(name: "tracestate", value: state)) }
        return fields
    }

    /// The trace id of `context`, as 32 lower-case hex digits (for log lines' `trace_id`).
    public static func traceID(of context: TraceContext) -> String {
        traceID(ofTraceParent: context.traceParentHeaderValue)
    }

    /// The trace id of a `traceparent` value (`00-TRACE-SPAN-FLAGS`).
    public static func traceID(ofTraceParent value: String) -> String {
        String(value.dropFirst(3).prefix(32))
    }

    /// The trace context an exported attempt span is the child of (SPEC §14): the intake span's
    /// when the message was stored with one, else the source's as stored, else, in the trace
    /// derived from the correlation id, a parent span derived from it too.
    public static func parentFields(traceParent: String?, stored: [HeaderField], correlationID: String) -> [HeaderField] {
        if let traceParent { return [HeaderField(name: "traceparent", value: traceParent)] }
        if let source = source(stored) { return headers(source) }
        let derived = derivedBytes("span " + correlationID, count: 8)
        let spanID = SpanID(bytes: (derived[0], derived[1], derived[2], derived[3], derived[4], derived[5], derived[6], derived[7]))
        return headers(TraceContext(traceID: traceID(of: correlationID), spanID: spanID, flags: .sampled, state: TraceState()))
    }

    /// The trace of a message whose source sent no trace context: the first 16 bytes of the
    /// SHA-256 of its correlation id.
    static func traceID(of correlationID: String) -> TraceID {
        let bytes = derivedBytes(correlationID, count: 16)
        return TraceID(
            bytes: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11],
                bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }
}

extension AttemptTrace {
    /// The first `count` bytes of the SHA-256 of `text`, never all zero (which W3C forbids for
    /// trace and span ids).
    static func derivedBytes(_ text: String, count: Int) -> [UInt8] {
        var bytes = Array(SHA256.hash(data: Array(text.utf8)).prefix(count))
        if bytes.allSatisfy({ $0 == 0 }) { bytes[count - 1] = 1 }
        return bytes
    }
}

extension Instrument {
    /// The trace context header fields (`traceparent`, and `tracestate` when there is one)
    /// that carry `context`.
    public func traceFields(of context: InstrumentationContext) -> [HeaderField] {
        var fields: [HeaderField] = []
        inject(context, into: &fields, using: HeaderFieldsInjector())
        return fields
    }
}

extension Span {
    /// Ends the span, its status an error saying `error` when there is one.
    public func end(error: String?) {
        if let error { setStatus(SpanStatus(code: .error, message: error)) }
        end()
    }
}

/// Trace context header fields read by a tracer (`traceparent`, `tracestate`; names compared
/// without case).
public struct HeaderFieldsExtractor: Extractor {
    public init() {}

    public func extract(key: String, from carrier: [HeaderField]) -> String? {
        carrier.first { $0.name.caseInsensitiveEquals(key) }?.value
    }
}

/// Trace context header fields written by a tracer.
private struct HeaderFieldsInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [HeaderField]) {
        carrier.append(HeaderField(name: key, value: value))
    }
}
