import NIOCore
import NIOHTTP1
import WaypostCore
import WaypostJournal

/// Builds the answers the intake sends.
enum Responses {
    /// The asynchronous answer of SPEC §1 for a message in `state`.
    static func accepted(
        correlationID: String, state: MessageState, preferenceApplied: String? = nil, allocator: ByteBufferAllocator
    ) -> (HTTPResponseHead, ByteBuffer) {
        let statusURL = "/_waypost/messages/" + correlationID
        var body = allocator.buffer(capacity: 128)
        body.writeString("{\"id\":\"")
        body.writeString(correlationID)
        body.writeString("\",\"state\":\"")
        body.writeString(state.rawValue)
        body.writeString("\",\"status_url\":\"")
        body.writeString(statusURL)
        body.writeString("\"}")
        var headers = HTTPHeaders([
            ("X-Correlation-ID", correlationID),
            ("Location", statusURL),
            ("Content-Type", "application/json"),
            ("Content-Length", String(body.readableBytes)),
        ])
        if let preferenceApplied { headers.add(name: "Preference-Applied", value: preferenceApplied) }
        return (HTTPResponseHead(version: .http1_1, status: .accepted, headers: headers), body)
    }

    /// The synchronous answer: the upstream's own status, headers (without hop-by-hop and
    /// framing fields) and body, plus `X-Correlation-ID`. A message that failed without any
    /// answer from the upstream gets a `502` problem saying why.
    static func relay(
        _ outcome: FinalOutcome, correlationID: String, preferenceApplied: String?, allocator: ByteBufferAllocator
    ) -> (HTTPResponseHead, ByteBuffer) {
        guard let response = outcome.response else {
            var problem = Problem(
                status: 502, slug: "upstream-unreachable", title: "No answer from the upstream",
                detail: "Message \(correlationID) is \(outcome.state): \(outcome.lastError ?? "the upstream never answered").",
                headers: [HeaderField(name: "X-Correlation-ID", value: correlationID)])
            if let preferenceApplied { problem.headers.append(HeaderField(name: "Preference-Applied", value: preferenceApplied)) }
            return Responses.problem(problem, close: false, allocator: allocator)
        }
        return stored(response, correlationID: correlationID, preferenceApplied: preferenceApplied, allocator: allocator)
    }

    /// A stored upstream answer, replayed: its status, its headers (framing re-done here),
    /// its body.
    static func stored(
        _ response: StoredResponse, correlationID: String, preferenceApplied: String?, allocator: ByteBufferAllocator
    ) -> (HTTPResponseHead, ByteBuffer) {
        var headers = HTTPHeaders()
        for field in HTTPHeaderRules.removingHopByHop(response.headers) where !field.name.caseInsensitiveEquals("content-length") {
            headers.add(name: field.name, value: field.value)
        }
        headers.replaceOrAdd(name: "X-Correlation-ID", value: correlationID)
        if let preferenceApplied { headers.add(name: "Preference-Applied", value: preferenceApplied) }
        headers.add(name: "Content-Length", value: String(response.body.count))
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        return (head, allocator.buffer(bytes: response.body))
    }

    /// An RFC 9457 problem answer. `close` adds `Connection: close`.
    static func problem(_ problem: Problem, close: Bool, allocator: ByteBufferAllocator) -> (HTTPResponseHead, ByteBuffer) {
        let body = allocator.buffer(string: problem.json)
        var headers = HTTPHeaders([
            ("Content-Type", "application/problem+json"),
            ("Content-Length", String(body.readableBytes)),
        ])
        for field in problem.headers { headers.add(name: field.name, value: field.value) }
        if close { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: problem.status), headers: headers)
        return (head, body)
    }
}

extension Problem {
    static func notFound(path: String) -> Problem {
        Problem(status: 404, slug: "no-route", title: "No route", detail: "No route is configured for the path \(path).")
    }

    static func reserved(path: String) -> Problem {
        Problem(
            status: 404, slug: "not-found", title: "Not found",
            detail: "\(path) is not a Waypost endpoint; the prefix /_waypost/ is reserved and never forwarded.")
    }

    static func dotSegments(path: String) -> Problem {
        Problem(
            status: 400, slug: "dot-segments", title: "Dot segments in the path",
            detail: "The path \(path.prefix(200)) has a '.' or '..' segment; send the path without them. Nothing was stored.")
    }

    static func badTarget(_ target: String) -> Problem {
        Problem(
            status: 400, slug: "bad-request-target", title: "Bad request target",
            detail: "The request target must be a path starting with '/' (origin form); got \(target.prefix(200)).")
    }

    static func bodyTooLarge(limit: Int, route: String) -> Problem {
        Problem(
            status: 413, slug: "body-too-large", title: "Body too large",
            detail: "The body exceeds the limit of \(limit) bytes for route \(route) (max_body_bytes); nothing was stored.")
    }

    static func headersTooLarge(limit: Int, route: String?) -> Problem {
        Problem(
            status: 431, slug: "headers-too-large", title: "Request header fields too large",
            detail: route.map {
                "The header fields exceed the limit of \(limit) bytes for route \($0) (max_header_bytes); nothing was stored."
            }
                ?? "The header fields exceed the limit of \(limit) bytes; nothing was stored.")
    }

    static func unsupportedMediaType(_ contentType: String?, allowed: [String], route: String) -> Problem {
        Problem(
            status: 415, slug: "unsupported-media-type", title: "Unsupported media type",
            detail: "Route \(route) accepts Content-Type \(allowed.joined(separator: ", ")); the request had "
                + (contentType.map { "'\($0.prefix(100))'" } ?? "none") + ". Nothing was stored.")
    }

    static func signature(_ failure: VerificationFailure, route: String) -> Problem {
        let slug: String =
            switch failure {
            case .missing: "signature-missing"
            case .malformed: "signature-malformed"
            case .staleTimestamp, .futureTimestamp: "signature-timestamp"
            case .mismatch: "signature-mismatch"
            }
        return Problem(status: 401, slug: slug, title: failure.title, detail: failure.detail + " Nothing was stored.")
    }

    static func malformedJSON(route: String) -> Problem {
        Problem(
            status: 400, slug: "malformed-json", title: "Malformed JSON",
            detail: "Route \(route) requires a JSON body (validate: json) and this body does not parse as JSON; nothing was stored.")
    }

    static func badCorrelationID() -> Problem {
        Problem(
            status: 400, slug: "bad-correlation-id", title: "Bad X-Correlation-ID",
            detail: "X-Correlation-ID must be one value of 1 to 128 characters from A-Z a-z 0-9 . _ : -; nothing was stored.")
    }

    static func correlationIDConflict(_ id: String) -> Problem {
        Problem(
            status: 409, slug: "correlation-id-conflict", title: "Correlation id in use",
            detail: "The X-Correlation-ID \(id) already names a message of another route; choose another id. Nothing was stored.")
    }

    static func malformedRequest(_ error: HTTPParserError) -> Problem {
        Problem(
            status: 400, slug: "malformed-request", title: "Malformed HTTP request",
            detail: "The request is not valid HTTP/1.1 (\(error)); nothing was stored.")
    }

    static func unavailable(_ error: JournalUnavailable) -> Problem {
        let (slug, retryAfter): (String, Int) =
            switch error {
            case .backlogFull: ("backlog-full", 30)
            case .storage: ("journal-error", 5)
            case .shuttingDown: ("shutting-down", 5)
            }
        return Problem(
            status: 503, slug: slug, title: "Journal unavailable",
            detail: "\(error). Nothing was stored; retry later.",
            headers: [HeaderField(name: "Retry-After", value: String(retryAfter))])
    }
}
