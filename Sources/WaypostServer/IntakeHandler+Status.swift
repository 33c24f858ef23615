import Foundation
import NIOCore
import NIOHTTP1
import WaypostCore
import WaypostJournal

/// A status API request (SPEC §4): `GET /_waypost/messages/{id}[?wait=N]` or
/// `GET /_waypost/messages/{id}/response`.
struct StatusQuery {
    /// The longest long-poll.
    static let maximumWait = 60

    var correlationID: String
    var wantsResponse: Bool
    /// Seconds to wait for a final state, when asked.
    var wait: Int?
    var keepAlive: Bool
    /// Why the request cannot be answered, when it cannot.
    var problem: Problem?

    init(correlationID: String, wantsResponse: Bool, wait: Int?, keepAlive: Bool) {
        self.correlationID = correlationID
        self.wantsResponse = wantsResponse
        self.wait = wait
        self.keepAlive = keepAlive
    }

    /// Nil when `path` is not a status API path.
    init?(head: HTTPRequestHead, path: Substring) {
        let prefix = "/_waypost/messages/"
        guard path.hasPrefix(prefix) else { return nil }
        var rest = path.dropFirst(prefix.count)
        wantsResponse = rest.hasSuffix("/response")
        if wantsResponse { rest = rest.dropLast("/response".count) }
        guard !rest.isEmpty, !rest.contains("/") else { return nil }
        correlationID = String(rest)
        keepAlive = head.isKeepAlive
        guard head.method == .GET || head.method == .HEAD else {
            problem = Problem(
                status: 405, slug: "method-not-allowed", title: "Method not allowed",
                detail: "The status API answers GET and HEAD; \(head.method.rawValue) \(path) is not supported.",
                headers: [HeaderField(name: "Allow", value: "GET, HEAD")])
            return
        }
        // `/response` answers at once: its query is not read.
        guard !wantsResponse else { return }
        do {
            for (name, value) in try QueryString.items(QueryString.query(ofTarget: head.uri)) where name == "wait" {
                // One rule: any non-negative whole number, above the maximum taken as the maximum.
                guard let seconds = parseDigits(Substring(value), clampedTo: Int64(Self.maximumWait)) else {
                    problem = Problem(
                        status: 400, slug: "bad-wait", title: "Bad wait",
                        detail:
                            "wait must be a whole number of seconds (above \(Self.maximumWait) taken as \(Self.maximumWait)); got \(value.prefix(20))."
                    )
                    break
                }
                wait = Int(seconds)
            }
        } catch {
            problem = Problem(status: 400, slug: "bad-query", title: "Bad query", detail: "\(error.message).")
        }
    }
}

extension IntakeHandler {
    /// Answers a status query from the journal; with `wait`, first waits (up to that long)
    /// for a final state, woken by the outcome board rather than by polling.
    func answerStatus(_ query: StatusQuery, context: ChannelHandlerContext) {
        if let problem = query.problem {
            state = .idle
            return write(
                Responses.problem(problem, close: false, allocator: context.channel.allocator), keepAlive: query.keepAlive, context: context
            )
        }
        let id = query.correlationID
        var watch: Watch?
        if let wait = query.wait, wait > 0, !query.wantsResponse {
            watch = self.watch(id, budget: .seconds(wait), context: context)
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        shared.readers.read(message: id, after: shared.board, on: context.eventLoop) { reader in
            try reader.message(correlationID: id)
        }.whenComplete { [watch] result in
            let (handler, context) = loopBound.value
            handler.statusRead(result, query: query, watch: watch, context: context)
        }
    }

    private func statusRead(_ result: Result<MessageRecord?, any Error>, query: StatusQuery, watch: Watch?, context: ChannelHandlerContext)
    {
        let allocator = context.channel.allocator
        let id = query.correlationID
        if case .success(let record?) = result, let watch, FinalOutcome(record: record) == nil {
            // Not final yet: wait for the outcome (or the deadline), then read again.
            return wait(for: watch, onTimeout: .status(correlationID: id), keepAlive: query.keepAlive, context: context)
        }
        if let watch { shared.board.cancel(watch.correlationID, watch.token) }
        state = .idle
        let response: (HTTPResponseHead, ByteBuffer)
        switch result {
        case .failure(let error):
            response = Responses.problem(
                Problem(
                    status: 503, slug: "journal-error", title: "Journal unavailable",
                    detail: "The journal could not be read (\(error)); retry later.",
                    headers: [HeaderField(name: "Retry-After", value: "5")]),
                close: false, allocator: allocator)
        case .success(.none):
            response = Responses.problem(
                Problem(status: 404, slug: "unknown-message", title: "Unknown message", detail: "No message has the id \(id.prefix(128))."),
                close: false, allocator: allocator)
        case .success(.some(let record)) where query.wantsResponse:
            if let stored = record.storedResponse {
                response = Responses.stored(stored, correlationID: id, preferenceApplied: nil, allocator: allocator)
            } else {
                response = Responses.problem(
                    Problem(
                        status: 409, slug: "no-response-yet", title: "No response yet",
                        detail:
                            "Message \(id) is \(record.state) and the upstream has not answered it yet; try again later or use ?wait=N on the status."
                    ),
                    close: false, allocator: allocator)
            }
        case .success(.some(let record)):
            let body = allocator.buffer(string: record.statusJSON)
            let headers = HTTPHeaders([
                ("Content-Type", "application/json"), ("Content-Length", String(body.readableBytes)), ("Cache-Control", "no-store"),
            ])
            response = (HTTPResponseHead(version: .http1_1, status: .ok, headers: headers), body)
        }
        write(response, keepAlive: query.keepAlive, context: context)
    }
}
