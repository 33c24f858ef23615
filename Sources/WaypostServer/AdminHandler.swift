import Foundation
import Metrics
import NIOCore
import NIOHTTP1
import WaypostCore
import WaypostJournal

/// One admin connection (SPEC §5). Each request is read whole (bodies are small filters),
/// routed, and answered; journal work runs on the readers' thread pool.
final class AdminHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The largest request body the admin API reads.
    static let maxBodyBytes = 64 * 1024

    private let shared: AdminContext
    private let readers: JournalReaders
    private let console: Console?
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false

    init(context: AdminContext, readers: JournalReaders, console: Console? = nil) {
        self.shared = context
        self.readers = readers
        self.console = console
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if let problem = RequestHeadRules.problem(head) {
                // The framing is not to be trusted: answer, then close.
                var closing = head
                closing.headers.replaceOrAdd(name: "Connection", value: "close")
                send(.problem(problem), head: closing, context: context)
                self.head = nil
                body = nil
                return
            }
            self.head = head
            body = context.channel.allocator.buffer(capacity: 0)
            tooLarge = false
        case .body(var chunk):
            guard var buffer = body, !tooLarge else { return }
            body = nil
            if buffer.readableBytes + chunk.readableBytes > Self.maxBodyBytes {
                tooLarge = true
            } else {
                buffer.writeBuffer(&chunk)
                body = buffer
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let bytes = body.map { Array($0.readableBytesView) } ?? []
            body = nil
            if tooLarge {
                return send(
                    .problem(
                        Problem(
                            status: 413, slug: "body-too-large", title: "Body too large",
                            detail: "Admin requests carry at most \(Self.maxBodyBytes) bytes.")), head: head, context: context)
            }
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            route(head, body: bytes, eventLoop: context.eventLoop).whenComplete { result in
                let (handler, context) = loopBound.value
                let answer: AdminAnswer
                switch result {
                case .success(let success): answer = success
                case .failure(let error as Problem): answer = .problem(error)
                case .failure(let error):
                    answer = .problem(Problem(status: 500, slug: "admin-error", title: "Admin operation failed", detail: "\(error)"))
                }
                handler.send(answer, head: head, context: context)
            }
        }
    }

    private func send(_ answer: AdminAnswer, head: HTTPRequestHead, context: ChannelHandlerContext) {
        Responses.send(
            answer.response(allocator: context.channel.allocator), keepAlive: head.isKeepAlive, withoutBody: head.method == .HEAD,
            context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: - Routing

    /// The admin endpoints (SPEC §5), each with the methods it answers.
    enum Endpoint: Equatable {
        case healthz, readyz, metrics, openAPI
        case messages, message(String), replayMessage(String), skipMessage(String), replay
        case pauseRoute(String), resumeRoute(String), destinations

        /// Nil when `path` is not an admin endpoint.
        init?(path: Substring) {
            let s = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
            switch s.count {
            case 1 where s[0] == "healthz": self = .healthz
            case 1 where s[0] == "readyz": self = .readyz
            case 1 where s[0] == "metrics": self = .metrics
            case 1 where s[0] == "openapi.json": self = .openAPI
            case 1 where s[0] == "messages": self = .messages
            case 1 where s[0] == "replay": self = .replay
            case 1 where s[0] == "destinations": self = .destinations
            case 2 where s[0] == "messages" && !s[1].isEmpty: self = .message(s[1])
            case 3 where s[0] == "messages" && !s[1].isEmpty && s[2] == "replay": self = .replayMessage(s[1])
            case 3 where s[0] == "messages" && !s[1].isEmpty && s[2] == "skip": self = .skipMessage(s[1])
            case 3 where s[0] == "routes" && !s[1].isEmpty && s[2] == "pause": self = .pauseRoute(s[1])
            case 3 where s[0] == "routes" && !s[1].isEmpty && s[2] == "resume": self = .resumeRoute(s[1])
            default: return nil
            }
        }

        /// Reads answer `GET` and `HEAD`; actions `POST`.
        var methods: [HTTPMethod] {
            switch self {
            case .healthz, .readyz, .metrics, .openAPI, .messages, .message, .destinations: return [.GET, .HEAD]
            case .replayMessage, .skipMessage, .replay, .pauseRoute, .resumeRoute: return [.POST]
            }
        }

        /// Replay, skip, pause and resume take `?destination=`.
        var takesDestination: Bool {
            switch self {
            case .replayMessage, .skipMessage, .pauseRoute, .resumeRoute: true
            default: false
            }
        }

        /// Probes, the scrape and the API's own document need no token.
        var isOpen: Bool { self == .healthz || self == .readyz || self == .metrics || self == .openAPI }
    }

    private func route(_ head: HTTPRequestHead, body: [UInt8], eventLoop: any EventLoop) -> EventLoopFuture<AdminAnswer> {
        let target = head.uri
        let path = target[..<(target.firstIndex(of: "?") ?? target.endIndex)]
        let method = head.method
        if let console, Console.serves(path) {
            return console.respond(head, body: body, eventLoop: eventLoop).map { .page($0) }
        }
        guard let endpoint = Endpoint(path: path) else {
            return eventLoop.makeFailedFuture(
                Problem(
                    status: 404, slug: "not-found", title: "Not found",
                    detail: "\(method.rawValue) \(path.prefix(200)) is not an admin endpoint (SPEC §5)."))
        }
        guard endpoint.methods.contains(method) else {
            let allowed = endpoint.methods.map(\.rawValue).joined(separator: ", ")
            return eventLoop.makeFailedFuture(
                Problem(
                    status: 405, slug: "method-not-allowed", title: "Method not allowed",
                    detail: "\(path.prefix(200)) answers \(allowed); \(method.rawValue.prefix(20)) is not one of them.",
                    headers: [HeaderField(name: "Allow", value: allowed)]))
        }
        if !endpoint.isOpen, let problem = authorize(head) { return eventLoop.makeFailedFuture(problem) }
        let journal = shared.journal
        let changed = shared.journalChanged
        // `?destination=` narrows replay, skip, pause and resume to one destination (SPEC §11).
        let destination: String?
        if endpoint.takesDestination {
            do {
                destination = try QueryString.dictionary(QueryString.query(ofTarget: target), allowed: ["destination"])["destination"]
            } catch {
                return eventLoop.makeFailedFuture(
                    Problem(
                        status: 400, slug: "bad-query", title: "Bad query",
                        detail: "\(error.message); this endpoint takes only ?destination=NAME."))
            }
            if let destination, !shared.destinationNames.values.contains(where: { $0.contains(destination) }) {
                return eventLoop.makeFailedFuture(
                    Problem(
                        status: 404, slug: "unknown-destination", title: "Unknown destination",
                        detail: "No route has a destination named \(destination.prefix(64))."))
            }
        } else {
            destination = nil
        }
        switch endpoint {
        case .healthz:
            return eventLoop.makeSucceededFuture(.json(200, "{\"status\":\"ok\"}"))
        case .readyz:
            return eventLoop.makeSucceededFuture(readiness())
        case .metrics:
            return metrics(eventLoop: eventLoop)
        case .openAPI:
            return eventLoop.makeSucceededFuture(.json(200, OpenAPIDocument.json))
        case .messages:
            let filter: MessageFilter
            do { filter = try Self.filter(QueryString.query(ofTarget: target)) } catch { return eventLoop.makeFailedFuture(error) }
            return readers.read(on: eventLoop) { reader in
                let messages = try reader.list(filter)
                let next = messages.count == filter.limit ? messages.last.map { JSON.quote(String($0.id)) } ?? "null" : "null"
                return .json(200, "{\"messages\":[\(messages.map(\.summaryJSON).joined(separator: ","))],\"next_cursor\":\(next)}")
            }
        case .destinations:
            let names = shared.routeNames.flatMap { route in (shared.destinationNames[route] ?? [route]).map { (route, $0) } }
            return readers.read(on: eventLoop) { reader in
                let now = Timestamp.now()
                let items = try reader.destinationStates(names).map { $0.json(now: now) }
                return .json(200, "{\"destinations\":[\(items.joined(separator: ","))]}")
            }
        case .message(let id):
            return readers.read(message: id, after: shared.board, on: eventLoop) { reader in
                guard let record = try reader.message(correlationID: id) else { throw Problem.unknownMessage(id) }
                var logs: [Int64: [AttemptRecord]] = [:]
                for delivery in record.deliveries { logs[delivery.id] = try reader.attempts(deliveryID: delivery.id) }
                return .json(200, record.summaryJSON(attemptLogs: logs))
            }
        case .replayMessage(let id):
            return readers.perform(on: eventLoop) {
                let replayed = try journal.operations().replay(ids: [id], destination: destination)
                guard !replayed.isEmpty else { throw try Self.notChanged(id, journal: journal, action: "replayed") }
                changed()
                Counter(label: "waypost_replayed_total").increment()
                return .json(200, "{\"replayed\":1}")
            }
        case .skipMessage(let id):
            return readers.perform(on: eventLoop) {
                guard try journal.operations().skip(id: id, destination: destination) else {
                    throw try Self.notChanged(id, journal: journal, action: "skipped")
                }
                changed()
                return .json(200, "{\"skipped\":1}")
            }
        case .replay:
            let filter: MessageFilter
            do { filter = try Self.replayFilter(body) } catch { return eventLoop.makeFailedFuture(error) }
            return readers.perform(on: eventLoop) {
                let replayed = try journal.operations().replay(filter)
                changed()
                Counter(label: "waypost_replayed_total").increment(by: replayed.count)
                return .json(200, "{\"replayed\":\(replayed.count)}")
            }
        case .pauseRoute(let name), .resumeRoute(let name):
            let pause = endpoint == .pauseRoute(name)
            do { try shared.check(route: name, destination: destination) } catch { return eventLoop.makeFailedFuture(error) }
            return readers.perform(on: eventLoop) {
                try journal.operations().setPaused(route: name, destination: destination, pause)
                changed()
                let named = destination.map { ",\"destination\":\(JSON.quote($0))" } ?? ""
                return .json(200, "{\"route\":\(JSON.quote(name))\(named),\"paused\":\(pause)}")
            }
        }
    }

    /// Nil when the request may proceed; a `401` problem otherwise. The token is compared in
    /// constant time.
    private func authorize(_ head: HTTPRequestHead) -> Problem? {
        guard let token = shared.token else { return nil }
        let given = head.headers.first(name: "authorization").flatMap { value -> Substring? in
            value.lowercased().hasPrefix("bearer ") ? Substring(value).dropFirst(7).trimmingHTTPWhitespace() : nil
        }
        if let given, Self.constantTimeEquals(Array(given.utf8), Array(token.utf8)) { return nil }
        return Problem(
            status: 401, slug: "unauthorized", title: "Unauthorized",
            detail: given == nil ? "Send Authorization: Bearer TOKEN with the admin token." : "The bearer token is not the admin token.",
            headers: [HeaderField(name: "WWW-Authenticate", value: "Bearer")])
    }

    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }

    /// Why the server is not ready, if it is not (`/readyz`, `waypost_ready`).
    private func unreadiness() -> [String] {
        var problems: [String] = []
        if let trouble = shared.writer.trouble { problems.append(trouble) }
        if !shared.forwarderRunning() { problems.append("the forwarder is not running") }
        return problems
    }

    private func readiness() -> AdminAnswer {
        let problems = unreadiness()
        guard problems.isEmpty else {
            return .problem(Problem(status: 503, slug: "not-ready", title: "Not ready", detail: problems.joined(separator: "; ") + "."))
        }
        return .json(200, "{\"status\":\"ready\"}")
    }

    /// Refreshes the per-route gauges from the journal, then renders every metric.
    private func metrics(eventLoop: any EventLoop) -> EventLoopFuture<AdminAnswer> {
        let routes = shared.routeNames
        let render = shared.metrics
        // `waypost_ready`: what /readyz says, for alerting (deploy/prometheus).
        Gauge(label: "waypost_ready").record(unreadiness().isEmpty ? 1 : 0)
        return readers.read(on: eventLoop) { reader in
            let counts = try reader.waitingCounts()
            let oldest = try reader.oldestQueued()
            let now = Timestamp.now()
            for route in routes {
                func count(_ state: MessageState) -> Int { counts.first { $0.route == route && $0.state == state }?.count ?? 0 }
                let dimensions = [("route", route)]
                Gauge(label: "waypost_queue_depth", dimensions: dimensions).record(count(.queued))
                Gauge(label: "waypost_in_flight", dimensions: dimensions).record(count(.inFlight))
                let age = oldest[route].flatMap(Timestamp.parse).map { Double(now - $0) / 1000 } ?? 0
                Gauge(label: "waypost_oldest_queued_age_seconds", dimensions: dimensions).record(age)
            }
            return .metrics(render())
        }
    }

    // MARK: - Parsing

    /// The filter of `GET /messages` from its query (SPEC §5).
    /// The filter of `GET /messages` (and, with `base` and `ignoring` the items that are not the
    /// filter's, of the console's lists), from the request's query.
    static func filter(
        _ query: Substring, base: MessageFilter = MessageFilter(limit: 100),
        allowed: [String] = ["state", "route", "destination", "since", "until", "limit", "cursor"], ignoring: Set<String> = []
    ) throws(Problem) -> MessageFilter {
        var filter = base
        do {
            for (key, value) in try QueryString.dictionary(query, allowed: allowed) where !ignoring.contains(key) {
                try filter.set(key, value)
            }
        } catch let error as QueryString.Malformed {
            throw badFilter(error.message)
        } catch let error as FilterError {
            throw badFilter(error.description)
        } catch {
            throw badFilter("\(error)")
        }
        return filter
    }

    /// The filter of `POST /replay` from its JSON body: `state` (a final one, default
    /// `failed`), `route`, `since`, `until`.
    static func replayFilter(_ body: [UInt8]) throws(Problem) -> MessageFilter {
        guard !body.isEmpty else { return MessageFilter(state: .failed) }
        guard JSONValidator.isValid(body), let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw badFilter("the body must be a JSON object such as {\"state\":\"failed\",\"route\":\"github\",\"since\":\"2h\"}")
        }
        let known = ["state", "route", "destination", "since", "until"]
        if let unknown = object.keys.first(where: { !known.contains($0) }) {
            throw badFilter("unknown filter key \(unknown.prefix(40)); the keys are state, route, destination, since, until")
        }
        var filter = MessageFilter(state: .failed)
        for (key, value) in object {
            guard let text = value as? String else { throw badFilter("\(key) must be a string") }
            do {
                try filter.set(key, text, states: MessageState.replayable)
            } catch {
                throw badFilter(error.description)
            }
        }
        return filter
    }

    static func badFilter(_ detail: String) -> Problem {
        Problem(status: 400, slug: "bad-filter", title: "Bad filter", detail: detail + ".")
    }

    /// Why an action changed nothing: the message is unknown (404), or in a state the action
    /// does not apply to (409).
    static func notChanged(_ id: String, journal: any Journal, action: String) throws -> Problem {
        guard let record = try journal.reader().message(correlationID: id) else { return .unknownMessage(id) }
        return Problem(
            status: 409, slug: "wrong-state", title: "Not \(action)",
            detail: "Message \(id) is \(record.state); it cannot be \(action) in that state.")
    }
}

/// An admin answer before it is encoded.
enum AdminAnswer {
    case json(Int, String)
    case metrics([UInt8])
    case problem(Problem)
    case page(Console.Answer)

    func response(allocator: ByteBufferAllocator) -> (HTTPResponseHead, ByteBuffer) {
        switch self {
        case .json(let status, let text):
            let body = allocator.buffer(string: text)
            let headers = HTTPHeaders([
                ("Content-Type", "application/json"), ("Content-Length", String(body.readableBytes)), ("Cache-Control", "no-store"),
            ])
            return (HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers), body)
        case .metrics(let bytes):
            let headers = HTTPHeaders([
                ("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Content-Length", String(bytes.count)),
            ])
            return (HTTPResponseHead(version: .http1_1, status: .ok, headers: headers), allocator.buffer(bytes: bytes))
        case .problem(let problem):
            return Responses.problem(problem, close: false, allocator: allocator)
        case .page(let page):
            let headers = HTTPHeaders(page.headers + Console.Answer.securityHeaders + [("Content-Length", String(page.body.count))])
            return (
                HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: page.status), headers: headers),
                allocator.buffer(bytes: page.body)
            )
        }
    }
}

extension Problem {
    static func unknownMessage(_ id: String) -> Problem {
        Problem(status: 404, slug: "unknown-message", title: "Unknown message", detail: "No message has the id \(id.prefix(128)).")
    }
}
