import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Tracing
import WaypostCore
import WaypostJournal
import WaypostTransform

/// What every connection's ``IntakeHandler`` shares: the routes, the journal writer and
/// readers, the outcome board, the clock.
struct IntakeContext: Sendable {
    let routes: RouteTable
    let writer: any JournalWriting
    let readers: JournalReaders
    let board: OutcomeBoard
    let logger: Logger
    /// Milliseconds since the Unix epoch.
    let now: @Sendable () -> Int64
    /// `waypost_accepted_total` per route name.
    let accepted: [String: Counter]
    /// Inbound signature checks of the routes with `verify` (replaced on SIGHUP).
    let secrets: RouteSecrets
    /// From the request's head to the `202` (asynchronous answers).
    let ackLatency = Timer(label: "waypost_ack_duration_seconds")
    /// The workers that run the routes' `reply` programs, and the index of each route's.
    var transforms: TransformPool?
    var replies: [String: Int] = [:]
    /// Makes the intake's spans, when spans are exported (SPEC §14).
    var tracer: (any Tracer)?
    /// Messages accepted per minute, for the console.
    var throughput: Throughput?
}

/// The intake's per-connection handler (SPEC §1, §2, §4): decodes, routes and validates one
/// request at a time, hands the message to the journal writer, and answers once the writer
/// reports the commit: at once for the asynchronous pattern, or, for the synchronous one,
/// when the outcome board reports the message's final outcome or the wait budget runs out.
/// `/_waypost/messages/...` requests are answered from the journal (see
/// `IntakeHandler+Status.swift`). Runs on the channel's event loop only; completions from
/// other threads hop back onto it. `HTTPServerPipelineHandler` in front keeps pipelined
/// requests in order.
final class IntakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    enum State {
        /// Between requests.
        case idle
        /// Reading the body of an acceptable request.
        case receiving(Request)
        /// An answer was sent before the request ended; the rest of it is ignored.
        case discarding
        /// The request is with the journal writer, or its answer with the journal readers.
        case storing
        /// A synchronous or long-polling request waits for a message's final outcome.
        case waiting(Waiting)
        /// A status API request, answered at its end.
        case status(StatusQuery)
    }

    struct Request {
        var head: HTTPRequestHead
        var route: RouteConfig
        var body: ByteBuffer
        var correlationID: String
        var correlationIDWasSupplied: Bool
        /// The head's raw bytes, when it has bytes above 0x7F (``RawHeadRecorder``).
        var rawHead: RawHeadRecorder.Head
        var pattern: ResponsePattern
        /// When the head arrived, in milliseconds since the Unix epoch.
        var receivedAt: Int64
    }

    /// A wait: whichever comes first of the outcome and the deadline answers, and cancels
    /// the other.
    struct Waiting {
        var correlationID: String
        var token: OutcomeBoard.Token
        var deadline: Scheduled<Void>
        var onTimeout: Answer
        var keepAlive: Bool
        /// The route's `reply` program, which makes the answer from the outcome.
        var reply: Int?
    }

    /// What a wait answers with: the asynchronous `202`, or the status document.
    enum Answer {
        case accepted(correlationID: String, state: MessageState, preferenceApplied: String?)
        case status(correlationID: String)
    }

    /// A registration on the outcome board and the time it may wait.
    struct Watch {
        var correlationID: String
        var token: OutcomeBoard.Token
        var budget: Duration
    }

    let shared: IntakeContext
    var state = State.idle
    /// The connection's raw request heads, recorded before the decoder (``RawBytesGuard``).
    var rawHeads: RawHeads?
    /// Whether the request being answered is a `HEAD`: its answer has no body.
    var answeringHead = false
    /// The span of the message request being handled, from its head to its answer, when spans
    /// are exported.
    var span: (any Span)?

    init(context: IntakeContext) {
        self.shared = context
    }

    func handlerAdded(context: ChannelHandlerContext) {
        rawHeads = try? context.pipeline.syncOperations.handler(type: RawBytesGuard.self).rawHeads
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
            case .status(let query):
                state = .storing
                answerStatus(query, context: context)
            case .idle, .storing, .waiting:
                break
            }
        }
    }

    private func receiveHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        answeringHead = head.method == .HEAD
        let rawHead = rawHeads?.recorder.nextHead() ?? .unknown
        if let problem = RequestHeadRules.problem(head) {
            return reject(problem, head: head, context: context)
        }
        let route: RouteConfig
        let supplied: String?
        let pattern: ResponsePattern
        switch IntakeAdmission.head(target: head.uri, headers: head.headers, routes: shared.routes) {
        case .reject(let problem):
            return reject(problem, head: head, context: context)
        case .status(let path):
            guard let query = StatusQuery(head: head, path: Substring(path)) else {
                return reject(.reserved(path: path), head: head, context: context)
            }
            state = .status(query)
            return
        case .route(let matched, let suppliedID, let chosen):
            (route, supplied, pattern) = (matched, suppliedID, chosen)
        }
        let receivedAt = shared.now()
        if let tracer = shared.tracer { span = Self.startSpan(tracer, head: head, route: route, context: context) }
        if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
        state = .receiving(
            Request(
                head: head, route: route, body: context.channel.allocator.buffer(capacity: 0),
                correlationID: supplied ?? CorrelationID.generate(millisecondsSince1970: UInt64(receivedAt)),
                correlationIDWasSupplied: supplied != nil, rawHead: rawHead, pattern: pattern, receivedAt: receivedAt))
    }

    /// The request's header fields as received: the decoder's, with the raw bytes of values that
    /// are not UTF-8 put back (obs-text, SPEC §2). A raw head that does not match the decoder's
    /// ends the recording for the connection.
    private func receivedFields(_ request: Request) -> [HeaderField] {
        if case .raw(let raw) = request.rawHead {
            if let restored = RawHeadRecorder.restoredFields(decoded: request.head.headers.map { ($0.name, $0.value) }, raw: raw) {
                return restored
            }
            rawHeads?.recorder.giveUp()
            shared.logger.debug("a raw request head did not match the decoded one; header values are kept as decoded")
        }
        return request.head.headers.map { HeaderField(name: $0.name, value: $0.value) }
    }

    private func store(_ request: Request, context: ChannelHandlerContext) {
        state = .storing
        let route = request.route
        let body = Array(request.body.readableBytesView)
        let admitted = IntakeAdmission.message(
            route: route, method: request.head.method.rawValue, target: request.head.uri, fields: receivedFields(request), body: body,
            correlationID: request.correlationID, correlationIDWasSupplied: request.correlationIDWasSupplied,
            verifier: shared.secrets.verifier(route.name), now: shared.now(), clientAddress: context.channel.remoteAddress?.ipAddress)
        var message: IncomingMessage
        switch admitted {
        case .success(let admittedMessage): message = admittedMessage
        case .failure(let problem): return reject(problem, head: nil, context: context)
        }
        // The commit's span, and the intake span's context with the message: its attempts' parent.
        let commit: (any Span)?
        if let span, let tracer = shared.tracer {
            span.attributes["waypost.correlation_id"] = message.correlationID
            commit = tracer.startSpan("waypost.commit", context: span.context, ofKind: .internal)
            message.traceParent = tracer.traceFields(of: span.context).first { $0.name == "traceparent" }?.value
        } else {
            commit = nil
        }
        let keepAlive = request.head.isKeepAlive
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        // The 202's state: the message's as stored (SPEC §11), or, for a synchronous source
        // whose `reply_from` destination filtered the message out, `filtered` (nothing will answer).
        let replyFiltered = message.deliveries.first?.filtered == true
        var initialState: MessageState = message.deliveries.allSatisfy(\.filtered) ? .filtered : .queued
        // A synchronous request watches for the outcome before the message can be sent.
        var watch: Watch?
        if case .sync(let budget, _) = request.pattern {
            if replyFiltered {
                initialState = .filtered
            } else {
                watch = self.watch(request.correlationID, budget: budget, context: context)
            }
        }
        shared.writer.submit(message) { [watch, initialState] result in
            if case .failure(let error) = result { commit?.end(error: "\(error)") } else { commit?.end() }
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.stored(
                    result, request: request, initialState: initialState, watch: watch, keepAlive: keepAlive, context: context)
            }
        }
    }

    /// Registers on the outcome board; the outcome hops to this channel's event loop.
    func watch(_ correlationID: String, budget: Duration, context: ChannelHandlerContext) -> Watch {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let token = shared.board.watch(correlationID) { outcome in
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.outcomeArrived(outcome, correlationID: correlationID, context: context)
            }
        }
        return Watch(correlationID: correlationID, token: token, budget: budget)
    }

    private func stored(
        _ result: Result<IntakeResult, JournalUnavailable>, request: Request, initialState: MessageState, watch: Watch?,
        keepAlive: Bool, context: ChannelHandlerContext
    ) {
        let allocator = context.channel.allocator
        let outcome: IntakeResult
        switch result {
        case .success(let stored):
            outcome = stored
        case .failure(let error):
            if let watch { shared.board.cancel(watch.correlationID, watch.token) }
            state = .idle
            shared.logger.warning("request refused: journal unavailable", metadata: ["error": "\(error)"])
            let problem = Problem.unavailable(error)
            Counter(label: "waypost_rejected_total", dimensions: [("reason", problem.slug)]).increment()
            return write(Responses.problem(problem, close: false, allocator: allocator), keepAlive: keepAlive, context: context)
        }
        let preferenceApplied: String?
        switch request.pattern {
        case .async(let applied): preferenceApplied = applied
        case .sync(_, let applied): preferenceApplied = applied
        }
        switch outcome {
        case .stored(let id):
            shared.accepted[request.route.name]?.increment()
            shared.throughput?.record(.accepted, key: request.route.name, atMilliseconds: request.receivedAt)
            guard let watch else {
                shared.ackLatency.recordMilliseconds(shared.now() - request.receivedAt)
                state = .idle
                let response = Responses.accepted(
                    correlationID: id, state: initialState, preferenceApplied: preferenceApplied, allocator: allocator)
                return write(response, keepAlive: keepAlive, context: context)
            }
            wait(
                for: watch, onTimeout: .accepted(correlationID: id, state: initialState, preferenceApplied: preferenceApplied),
                keepAlive: keepAlive, reply: shared.replies[request.route.name], context: context)
        case .duplicate(let id, let existingState):
            guard let watch else {
                state = .idle
                let response = Responses.accepted(
                    correlationID: id, state: existingState, preferenceApplied: preferenceApplied, allocator: allocator)
                return write(response, keepAlive: keepAlive, context: context)
            }
            // A synchronous repeat waits for the existing message's outcome: watch it, then
            // look at the journal, which may already hold the outcome.
            shared.board.cancel(watch.correlationID, watch.token)
            let repeatWatch = self.watch(id, budget: watch.budget, context: context)
            wait(
                for: repeatWatch, onTimeout: .accepted(correlationID: id, state: existingState, preferenceApplied: preferenceApplied),
                keepAlive: keepAlive, reply: shared.replies[request.route.name], context: context)
            checkFinished(id, context: context)
        case .conflict(let id, _):
            if let watch { shared.board.cancel(watch.correlationID, watch.token) }
            state = .idle
            write(Responses.problem(.correlationIDConflict(id), close: false, allocator: allocator), keepAlive: keepAlive, context: context)
        }
    }

    /// Starts waiting: the outcome or the deadline, whichever comes first, answers.
    func wait(for watch: Watch, onTimeout: Answer, keepAlive: Bool, reply: Int? = nil, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let deadline = context.eventLoop.scheduleTask(in: .milliseconds(watch.budget.milliseconds)) {
            let (handler, context) = loopBound.value
            handler.waitEnded(with: nil, correlationID: watch.correlationID, context: context)
        }
        state = .waiting(
            Waiting(
                correlationID: watch.correlationID, token: watch.token, deadline: deadline, onTimeout: onTimeout, keepAlive: keepAlive,
                reply: reply))
    }

    private func outcomeArrived(_ outcome: FinalOutcome, correlationID: String, context: ChannelHandlerContext) {
        waitEnded(with: outcome, correlationID: correlationID, context: context)
    }

    /// Ends the current wait on `correlationID`, with the outcome or (nil) at the deadline.
    private func waitEnded(with outcome: FinalOutcome?, correlationID: String, context: ChannelHandlerContext) {
        guard case .waiting(let waiting) = state, waiting.correlationID == correlationID else { return }
        waiting.deadline.cancel()
        shared.board.cancel(waiting.correlationID, waiting.token)
        let allocator = context.channel.allocator
        switch waiting.onTimeout {
        case .accepted(let id, let messageState, let preferenceApplied):
            guard let outcome, outcome.state != .filtered else {
                // The honest fallback: the message is accepted and delivery goes on (or, when a
                // transform filtered the reply_from delivery, ended without an answer to give).
                state = .idle
                let response = Responses.accepted(
                    correlationID: id, state: outcome?.state ?? messageState, preferenceApplied: preferenceApplied, allocator: allocator)
                return write(response, keepAlive: waiting.keepAlive, context: context)
            }
            guard let program = waiting.reply, let transforms = shared.transforms else {
                state = .idle
                let response = Responses.relay(outcome, correlationID: id, preferenceApplied: preferenceApplied, allocator: allocator)
                return write(response, keepAlive: waiting.keepAlive, context: context)
            }
            state = .storing
            reply(
                outcome, program: program, transforms: transforms, correlationID: id, preferenceApplied: preferenceApplied,
                keepAlive: waiting.keepAlive, context: context)
        case .status(let id):
            state = .storing
            answerStatus(StatusQuery(correlationID: id, wantsResponse: false, wait: nil, keepAlive: waiting.keepAlive), context: context)
        }
    }

    /// Answers a waiting source with what the route's `reply` program makes of the outcome
    /// (SPEC §11), run by a transform worker; a `502` problem saying why when it fails.
    private func reply(
        _ outcome: FinalOutcome, program: Int, transforms: TransformPool, correlationID id: String, preferenceApplied: String?,
        keepAlive: Bool, context: ChannelHandlerContext
    ) {
        let input = ReplyDocument.input(
            status: outcome.response?.status, headers: outcome.response?.headers ?? [], body: outcome.response?.body ?? [], id: id,
            attempts: outcome.attempts)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let replySpan = span.flatMap { span in shared.tracer?.startSpan("waypost.reply", context: span.context, ofKind: .internal) }
        transforms.submit(TransformRequest(program: program, mode: .document, input: input)) { result in
            let answer: Result<(status: Int, headers: [HeaderField], body: [UInt8]), TransformOutputError>
            switch result {
            case .success(.document(let output)): answer = Result { () throws(TransformOutputError) in try ReplyDocument.answer(output) }
            case .success(.none): answer = .failure(TransformOutputError(message: "it produced no output, or null"))
            case .success(.error(let message)): answer = .failure(TransformOutputError(message: message))
            case .success(.shaped): answer = .failure(TransformOutputError(message: "the worker answered a transform"))
            case .failure(let failure): answer = .failure(TransformOutputError(message: failure.description))
            }
            if case .failure(let error) = answer { replySpan?.end(error: error.message) } else { replySpan?.end() }
            eventLoop.execute {
                let (handler, context) = loopBound.value
                guard case .storing = handler.state else { return }  // the connection closed meanwhile
                handler.state = .idle
                let allocator = context.channel.allocator
                let response: (HTTPResponseHead, ByteBuffer)
                switch answer {
                case .success(let reply):
                    response = Responses.stored(
                        StoredResponse(status: reply.status, headers: reply.headers, body: reply.body), correlationID: id,
                        preferenceApplied: preferenceApplied, allocator: allocator)
                case .failure(let error):
                    handler.shared.logger.warning(
                        "the reply program failed", metadata: ["message.id": "\(id)", "error": "\(error.message)"])
                    let problem = Problem(
                        status: 502, slug: "reply-failed", title: "The reply program failed",
                        detail: "Message \(id) is \(outcome.state); the route's reply program failed: \(error.message)",
                        headers: [HeaderField(name: "X-Correlation-ID", value: id)])
                    response = Responses.problem(problem, close: false, allocator: allocator)
                }
                handler.write(response, keepAlive: keepAlive, context: context)
            }
        }
    }

    /// Ends the current wait at once if the message is already final in the journal.
    func checkFinished(_ id: String, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        shared.readers.read(message: id, after: shared.board, on: context.eventLoop) { reader in
            try reader.message(correlationID: id).flatMap(FinalOutcome.init(record:))
        }.whenSuccess { outcome in
            guard let outcome else { return }
            let (handler, context) = loopBound.value
            handler.outcomeArrived(outcome, correlationID: id, context: context)
        }
    }

    /// Answers with a problem. Before the request's end, the rest of it is discarded, and the
    /// connection is closed after the answer when a body may follow (rather than reading a
    /// body nobody wants).
    private func reject(_ problem: Problem, head: HTTPRequestHead?, context: ChannelHandlerContext) {
        var metadata: Logger.Metadata = ["status": "\(problem.status)", "problem": "\(problem.slug)"]
        if let head { metadata["request"] = "\(head.method.rawValue) \(head.uri.prefix(200))" }
        if let remote = context.channel.remoteAddress?.ipAddress { metadata["client"] = "\(remote)" }
        shared.logger.info("request rejected", metadata: metadata)
        Counter(label: "waypost_rejected_total", dimensions: [("reason", problem.slug)]).increment()
        let close: Bool
        if let head {
            state = .discarding
            close =
                head.headers.contains(name: "transfer-encoding")
                || (head.headers.first(name: "content-length").map { $0 != "0" } ?? false)
        } else {
            state = .idle
            close = false
        }
        write(
            Responses.problem(problem, close: close, allocator: context.channel.allocator),
            keepAlive: !close && (head?.isKeepAlive ?? true), context: context)
    }

    func write(_ response: (HTTPResponseHead, ByteBuffer), keepAlive: Bool, context: ChannelHandlerContext) {
        Responses.send(response, keepAlive: keepAlive, withoutBody: answeringHead, context: context)
        if let span {
            self.span = nil
            let status = Int(response.0.status.code)
            span.attributes["http.response.status_code"] = status
            if status >= 500 { span.setStatus(SpanStatus(code: .error)) }
            span.end()
        }
    }

    /// The span of a request to `route`, from its head to its answer (OpenTelemetry's HTTP
    /// server conventions), the child of the source's span when it sent a trace context.
    static func startSpan(_ tracer: any Tracer, head: HTTPRequestHead, route: RouteConfig, context: ChannelHandlerContext) -> any Span {
        var parent = InstrumentationContext.topLevel
        tracer.extract(head.headers, into: &parent, using: HTTPHeadersExtractor())
        let span = tracer.startSpan("\(head.method.rawValue) \(route.path)", context: parent, ofKind: .server)
        span.attributes["http.request.method"] = head.method.rawValue
        span.attributes["http.route"] = route.path
        span.attributes["url.path"] = String(head.uri.prefix { $0 != "?" }.prefix(2048))
        span.attributes["waypost.route"] = route.name
        if let address = context.channel.remoteAddress?.ipAddress { span.attributes["client.address"] = address }
        return span
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A source that stops waiting loses nothing: the message is journaled and delivery
        // goes on; only the watch is dropped.
        if case .waiting(let waiting) = state {
            waiting.deadline.cancel()
            shared.board.cancel(waiting.correlationID, waiting.token)
            state = .idle
        }
        if let span {
            self.span = nil
            span.addEvent("the source closed the connection before its answer")
            span.end()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Parser errors were answered by ProblemErrorHandler; anything else (a reset
        // connection) ends the connection. A request already with the journal is stored
        // anyway and delivered; only its answer is lost.
        context.close(promise: nil)
    }
}

/// Trace context header fields of a request head, for a tracer.
struct HTTPHeadersExtractor: Extractor {
    func extract(key: String, from carrier: HTTPHeaders) -> String? {
        carrier.first(name: key)
    }
}
