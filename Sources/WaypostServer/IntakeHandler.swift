import Foundation
import Logging
import NIOCore
import NIOHTTP1
import WaypostCore
import WaypostJournal

/// What every connection's ``IntakeHandler`` shares: the routes, the journal writer, the clock.
struct IntakeContext: Sendable {
    let routes: RouteTable
    let writer: JournalWriter
    let logger: Logger
    /// Milliseconds since the Unix epoch.
    let now: @Sendable () -> Int64
}

/// The intake's per-connection handler (SPEC §1, §2): decodes, routes and validates one
/// request at a time, hands the message to the journal writer, and answers once the writer
/// reports the commit. Runs on the channel's event loop only; the writer's completion hops
/// back onto it. `HTTPServerPipelineHandler` in front keeps pipelined requests in order.
final class IntakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Between requests.
        case idle
        /// Reading the body of an acceptable request.
        case receiving(Request)
        /// An answer was sent before the request ended; the rest of it is ignored.
        case discarding
        /// The request is with the journal writer.
        case storing
    }

    private struct Request {
        var head: HTTPRequestHead
        var route: RouteConfig
        var body: ByteBuffer
        var correlationID: String
        var correlationIDWasSupplied: Bool
    }

    private let shared: IntakeContext
    private var state = State.idle

    init(context: IntakeContext) {
        self.shared = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            receiveHead(head, context: context)
        case .body(var chunk):
            guard case .receiving(var request) = state else { return }
            if request.body.readableBytes + chunk.readableBytes > request.route.maxBodyBytes {
                reject(.bodyTooLarge(limit: request.route.maxBodyBytes, route: request.route.name), head: request.head, context: context)
                return
            }
            state = .storing  // no copy-on-write of the buffer while it grows
            request.body.writeBuffer(&chunk)
            state = .receiving(request)
        case .end:
            switch state {
            case .receiving(let request):
                store(request, context: context)
            case .discarding:
                state = .idle
            case .idle, .storing:
                break
            }
        }
    }

    private func receiveHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let target = head.uri
        guard target.hasPrefix("/") else {
            return reject(.badTarget(target), head: head, context: context)
        }
        let path = target[..<(target.firstIndex(of: "?") ?? target.endIndex)]
        if Self.hasDotSegment(path) {
            return reject(.dotSegments(path: String(path)), head: head, context: context)
        }
        if path == "/_waypost" || path.hasPrefix("/_waypost/") {
            return reject(.reserved(path: String(path)), head: head, context: context)
        }
        guard let route = shared.routes.match(path: path)?.route else {
            return reject(.notFound(path: String(path)), head: head, context: context)
        }
        let headerBytes = head.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        if headerBytes > route.maxHeaderBytes {
            return reject(.headersTooLarge(limit: route.maxHeaderBytes, route: route.name), head: head, context: context)
        }
        if let allowed = route.contentTypes {
            let contentType = head.headers.first(name: "content-type")
            let mediaType = contentType.map { $0.split(separator: ";", maxSplits: 1).first.map { $0.trimmingHTTPWhitespace().lowercased() } ?? "" }
            if !allowed.contains(mediaType ?? "") {
                return reject(.unsupportedMediaType(contentType, allowed: allowed, route: route.name), head: head, context: context)
            }
        }
        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > route.maxBodyBytes {
            return reject(.bodyTooLarge(limit: route.maxBodyBytes, route: route.name), head: head, context: context)
        }
        let supplied = head.headers["x-correlation-id"]
        guard supplied.count <= 1, supplied.allSatisfy(CorrelationID.isValidSupplied) else {
            return reject(.badCorrelationID(), head: head, context: context)
        }
        let receivedAt = shared.now()
        if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
        state = .receiving(
            Request(
                head: head, route: route, body: context.channel.allocator.buffer(capacity: 0),
                correlationID: supplied.first ?? CorrelationID.generate(millisecondsSince1970: UInt64(receivedAt)),
                correlationIDWasSupplied: !supplied.isEmpty))
    }

    /// Whether `path` has a `.` or `..` segment, literally or percent-encoded. Such a path
    /// could climb out of the upstream's base path once an upstream normalises it.
    static func hasDotSegment(_ path: Substring) -> Bool {
        guard path.contains(".") || path.contains("%") else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).contains { segment in
            let decoded = segment.lowercased().replacingOccurrences(of: "%2e", with: ".")
            return decoded == "." || decoded == ".."
        }
    }

    private func store(_ request: Request, context: ChannelHandlerContext) {
        state = .storing
        let route = request.route
        let body = Array(request.body.readableBytesView)
        if route.validate == .json, !JSONValidator.isValid(body) {
            return reject(.malformedJSON(route: route.name), head: nil, context: context)
        }
        var fields: [HeaderField] = []
        fields.reserveCapacity(request.head.headers.count)
        for (name, value) in request.head.headers where !name.caseInsensitiveEquals("expect") {
            fields.append(HeaderField(name: name, value: value))
        }
        fields = HTTPHeaderRules.removingHopByHop(fields)
        let message = IncomingMessage(
            correlationID: request.correlationID,
            correlationIDWasSupplied: request.correlationIDWasSupplied,
            route: route.name,
            orderingKey: route.ordering == .key ? route.orderingKey?.value(headers: fields, body: body) : nil,
            idempotencyKey: request.head.headers.first(name: route.idempotencyHeader),
            dedupWindowMilliseconds: route.dedupWindow.milliseconds,
            method: request.head.method.rawValue,
            path: request.head.uri,
            headers: fields,
            body: body,
            receivedAt: shared.now(),
            clientAddress: context.channel.remoteAddress?.ipAddress)
        let keepAlive = request.head.isKeepAlive
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        shared.writer.submit(message) { result in
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.answer(result, keepAlive: keepAlive, context: context)
            }
        }
    }

    private func answer(_ result: Result<IntakeResult, JournalUnavailable>, keepAlive: Bool, context: ChannelHandlerContext) {
        state = .idle
        switch result {
        case .success(.stored(let id)):
            write(Responses.accepted(correlationID: id, state: "queued", allocator: context.channel.allocator), keepAlive: keepAlive, context: context)
        case .success(.duplicate(let id, let existingState)):
            write(Responses.accepted(correlationID: id, state: existingState, allocator: context.channel.allocator), keepAlive: keepAlive, context: context)
        case .success(.conflict(let id, _)):
            write(Responses.problem(.correlationIDConflict(id), close: false, allocator: context.channel.allocator), keepAlive: keepAlive, context: context)
        case .failure(let error):
            shared.logger.warning("request refused: journal unavailable", metadata: ["error": "\(error)"])
            write(Responses.problem(.unavailable(error), close: false, allocator: context.channel.allocator), keepAlive: keepAlive, context: context)
        }
    }

    /// Answers with a problem. Before the request's end, the rest of it is discarded, and the
    /// connection is closed after the answer when a body may follow (rather than reading a
    /// body nobody wants).
    private func reject(_ problem: Problem, head: HTTPRequestHead?, context: ChannelHandlerContext) {
        shared.logger.info("request rejected", metadata: ["status": "\(problem.status)", "problem": "\(problem.slug)"])
        let close: Bool
        if let head {
            state = .discarding
            close = head.headers.contains(name: "transfer-encoding")
                || (head.headers.first(name: "content-length").map { $0 != "0" } ?? false)
        } else {
            state = .idle
            close = false
        }
        write(Responses.problem(problem, close: close, allocator: context.channel.allocator), keepAlive: !close && (head?.isKeepAlive ?? true), context: context)
    }

    private func write(_ response: (HTTPResponseHead, ByteBuffer), keepAlive: Bool, context: ChannelHandlerContext) {
        var (head, body) = response
        if !keepAlive && !head.headers.contains(name: "connection") {
            head.headers.add(name: "Connection", value: "close")
        }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Parser errors were answered by ProblemErrorHandler; anything else (a reset
        // connection) ends the connection. A request already with the journal is stored
        // anyway and delivered; only its answer is lost.
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // A client that sends nothing for the idle timeout loses its connection; a request
            // that is with the journal is answered first.
            if case .storing = state { return }
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
