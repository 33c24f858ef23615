import NIOCore
import NIOHTTP1
import WaypostCore

/// How long a client may take (SPEC §2): between requests, for a request head, for a body.
struct ConnectionLimits: Sendable {
    /// A kept-alive connection with no request in it is closed after this.
    var idleTimeout: TimeAmount = .seconds(60)
    /// From a request's first byte to the end of its head (`header_timeout`).
    var headerTimeout: TimeAmount = .seconds(10)
    /// Bytes per second a body must keep up after its first ``bodyGrace`` (`min_body_rate`).
    var minBodyRate: Int = 1024
    /// The start of a body that the rate does not apply to.
    var bodyGrace: TimeAmount = .seconds(10)
}

/// The one deadline of a connection, as the request on it moves along: idle until a byte
/// arrives, then the head's deadline, then the body's (which moves on as bytes arrive at
/// `min_body_rate`), then none while Waypost works on the answer (a synchronous wait is not
/// the client's time), then idle again once the answer and the request have both ended. A
/// client past its deadline gets `408` and the connection closes; an idle one just closes.
///
/// Requests cost no timer work: the phases only record times. One timer per connection checks
/// them: it fires at the current deadline, or after ``period`` (the shortest of the limits)
/// when that comes first, and arms itself again. Every new deadline lies at least ``period``
/// after the moment it is set, so the timer, never further away than that, is never late. A
/// busy connection costs one timer task per period, not three per request.
///
/// Two handlers of one pipeline share it: ``RawBytesGuard`` (before the decoder: it sees the
/// bytes and the answers going out) and ``RequestProgressTap`` (after the pipelining
/// handler: it sees each request's head and end as the application does). Used on the
/// channel's event loop only.
final class ConnectionDeadline {
    enum Phase {
        /// Between requests, since this time.
        case idle(since: NIODeadline)
        /// A request's first bytes arrived at this time; its head has not been decoded yet.
        case head(since: NIODeadline)
        /// Reading the body that started at `since`; `bytes` of it so far.
        case body(since: NIODeadline, bytes: Int)
        /// The request ended; the answer is Waypost's to give.
        case answering
    }

    let limits: ConnectionLimits
    /// The longest the timer waits between two looks: the shortest of the limits.
    let period: TimeAmount
    private(set) var phase = Phase.answering
    /// Whether the current request's answer was written to its end (possibly before the
    /// request ended: an early rejection).
    private var answered = false
    private var timer: Scheduled<Void>?
    /// Called when the deadline passes: `true` to answer `408` first, `false` to just close.
    var expired: (_ answer408: Bool) -> Void = { _ in }

    init(limits: ConnectionLimits) {
        self.limits = limits
        // Not below 100 ms, so that tiny timeouts cannot make the timer spin; such timeouts
        // are then kept to within 100 ms.
        period = max(.milliseconds(100), min(limits.idleTimeout, limits.headerTimeout, limits.bodyGrace))
    }

    func start(on eventLoop: any EventLoop) {
        cancel()
        phase = .idle(since: eventLoop.now)
        arm(on: eventLoop)
    }

    func bytesArrived(_ count: Int, on eventLoop: any EventLoop) {
        switch phase {
        case .idle:
            phase = .head(since: eventLoop.now)
            answered = false
        case .body(let since, let bytes):
            phase = .body(since: since, bytes: bytes + count)
        case .head, .answering:
            break
        }
    }

    func headArrived(on eventLoop: any EventLoop) {
        answered = false
        phase = .body(since: eventLoop.now, bytes: 0)
    }

    func requestEnded(on eventLoop: any EventLoop) {
        phase = answered ? .idle(since: eventLoop.now) : .answering
    }

    func answerEnded(on eventLoop: any EventLoop) {
        answered = true
        if case .answering = phase { phase = .idle(since: eventLoop.now) }
    }

    func cancel() {
        timer?.cancel()
        timer = nil
    }

    /// When the current phase ends the connection, and whether with a `408`; nil while
    /// Waypost works on the answer.
    private var deadline: (at: NIODeadline, answer408: Bool)? {
        switch phase {
        case .idle(let since): (since + limits.idleTimeout, false)
        case .head(let since): (since + limits.headerTimeout, true)
        case .body(let since, let bytes): (bodyDeadline(since: since, bytes: bytes), !answered)
        case .answering: nil
        }
    }

    /// The body is late once it is below `min_body_rate` after the grace period: at
    /// `since + grace + bytes / rate`.
    private func bodyDeadline(since: NIODeadline, bytes: Int) -> NIODeadline {
        let rate = max(1, limits.minBodyRate)
        let earned = TimeAmount.seconds(Int64(bytes / rate)) + .nanoseconds(Int64(bytes % rate) * 1_000_000_000 / Int64(rate))
        return since + limits.bodyGrace + earned
    }

    private func arm(on eventLoop: any EventLoop) {
        let now = eventLoop.now
        let at = min(deadline?.at ?? now + period, now + period)
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        timer = eventLoop.scheduleTask(deadline: at) { bound.value.look(on: eventLoop) }
    }

    private func look(on eventLoop: any EventLoop) {
        timer = nil
        // Past the deadline the timer is not armed again: the connection ends.
        if let deadline, deadline.at <= eventLoop.now { return expired(deadline.answer408) }
        arm(on: eventLoop)
    }
}

/// The raw request heads of one connection (``RawHeadRecorder``): ``RawBytesGuard`` feeds it
/// the bytes before the decoder sees them, the intake's handler takes one head per request.
/// Used on the channel's event loop only.
final class RawHeads {
    var recorder: RawHeadRecorder

    init(limit: Int) {
        recorder = RawHeadRecorder(limit: limit)
    }
}

/// Sits between the response encoder and the request decoder: counts the bytes that arrive
/// and sees each answer end, for the connection's ``ConnectionDeadline``; answers `408` and
/// closes when it passes. With ``rawHeads``, it also records the raw request heads.
final class RawBytesGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let deadline: ConnectionDeadline
    let rawHeads: RawHeads?

    init(deadline: ConnectionDeadline, rawHeads: RawHeads?) {
        self.deadline = deadline
        self.rawHeads = rawHeads
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline.expired = { answer408 in
            let (handler, context) = loopBound.value
            handler.expire(answer408: answer408, context: context)
        }
        if context.channel.isActive { deadline.start(on: context.eventLoop) }
    }

    func channelActive(context: ChannelHandlerContext) {
        deadline.start(on: context.eventLoop)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline.cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline.cancel()
        deadline.expired = { _ in }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        deadline.bytesArrived(bytes.readableBytes, on: context.eventLoop)
        if let rawHeads { bytes.withUnsafeReadableBytes { rawHeads.recorder.feed($0) } }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { deadline.answerEnded(on: context.eventLoop) }
        context.write(data, promise: promise)
    }

    private func expire(answer408: Bool, context: ChannelHandlerContext) {
        guard answer408 else { return context.close(promise: nil) }
        let problem = Problem(
            status: 408, slug: "request-timeout", title: "Request timeout",
            detail: "The request did not arrive in time: its head must arrive within header_timeout and its body at min_body_rate "
                + "or faster. Nothing was stored.")
        let (head, body) = Responses.problem(problem, close: true, allocator: context.channel.allocator)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// Sits after the pipelining handler: tells the connection's ``ConnectionDeadline`` when a
/// request's head and end reach the application.
final class RequestProgressTap: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let deadline: ConnectionDeadline

    init(deadline: ConnectionDeadline) {
        self.deadline = deadline
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: deadline.headArrived(on: context.eventLoop)
        case .end: deadline.requestEnded(on: context.eventLoop)
        case .body: break
        }
        context.fireChannelRead(data)
    }
}
