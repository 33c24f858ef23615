import Tracing
import WaypostCore
import WaypostJournal

/// The spans of delivery attempts, made when spans are exported (SPEC §14), named and
/// attributed as OpenTelemetry's HTTP client conventions say, plus `waypost.*`.
///
/// An attempt's span is the child of the message's intake span (or, for a message stored
/// without one, of the source's span or the trace derived from its correlation id), and the
/// `traceparent` the attempt sends is the span's own: a traced upstream's spans are its
/// children. A transform is a span inside the attempt's.
struct AttemptSpans {
    let tracer: any Tracer

    /// Starts attempt `attempt` of `message` to the destination `key` of route `route`.
    func start(_ message: MessageForDelivery, attempt: Int, route: String, destination: String) -> any Span {
        var parent = InstrumentationContext.topLevel
        let fields = AttemptTrace.parentFields(
            traceParent: message.traceParent, stored: message.headers, correlationID: message.correlationID)
        tracer.extract(fields, into: &parent, using: HeaderFieldsExtractor())
        let span = tracer.startSpan(message.method, context: parent, ofKind: .client)
        span.attributes["waypost.route"] = route
        span.attributes["waypost.destination"] = destination
        span.attributes["waypost.attempt"] = attempt
        span.attributes["waypost.correlation_id"] = message.correlationID
        return span
    }

    /// Starts the span of the transform that runs for `attempt`.
    func transform(in attempt: any Span) -> any Span {
        tracer.startSpan("waypost.transform", context: attempt.context, ofKind: .internal)
    }

    /// The request's method and URL, once known (a transform may change them); the trace
    /// context header fields the attempt sends: the span's own.
    func sending(_ span: any Span, method: String, url: String) -> [HeaderField] {
        span.operationName = method
        span.attributes["http.request.method"] = method
        span.attributes["url.full"] = url
        return tracer.traceFields(of: span.context)
    }

    /// Ends a transform's span; `error` says why the transform failed, if it did.
    static func endTransform(_ span: any Span, error: String?) {
        if error != nil { span.attributes["error.type"] = "transform" }
        span.end(error: error)
    }

    /// Ends an attempt's span: the upstream's status, or what ended the attempt without one,
    /// and the delivery's state after it.
    static func end(_ span: any Span, status: Int?, error: String?, state: MessageState?) {
        if let status {
            span.attributes["http.response.status_code"] = status
            if status >= 400 {
                span.attributes["error.type"] = String(status)
                span.setStatus(SpanStatus(code: .error))
            }
        } else if let error, state != .filtered {
            span.attributes["error.type"] = error.hasPrefix("transform") ? "transform" : "transport"
            span.setStatus(SpanStatus(code: .error, message: error))
        }
        if let state { span.attributes["waypost.state"] = state.rawValue }
        span.end()
    }
}
