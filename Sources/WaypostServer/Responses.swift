import NIOCore
import NIOHTTP1
import WaypostCore
import WaypostJournal

/// Builds the answers the intake sends, and writes the answers of both listeners.
enum Responses {
    /// Writes one answer: its head (with `Connection: close` when the connection ends after
    /// it), its body unless `withoutBody` (the answer to a `HEAD`), and its end; then, unless
    /// `keepAlive`, closes the connection once all of it is written.
    static func send(_ response: (HTTPResponseHead, ByteBuffer), keepAlive: Bool, withoutBody: Bool, context: ChannelHandlerContext) {
        var (head, body) = response
        if !keepAlive { head.headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        if !withoutBody { context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil) }
        let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

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
