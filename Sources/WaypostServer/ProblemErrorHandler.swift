import NIOCore
import NIOHTTP1
import WaypostCore

/// Answers HTTP parser errors (malformed request line or headers, header section over the
/// decoder's limit, bad chunked encoding) with a problem+json `400` or `431`, when no other
/// answer has started, then lets the decoder close the connection. Modelled on NIO's
/// `HTTPServerProtocolErrorHandler`, which answers a bare `400`.
final class ProblemErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var hasUnterminatedResponse = false
    private let maxHeaderBytes: Int

    init(maxHeaderBytes: Int) {
        self.maxHeaderBytes = maxHeaderBytes
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if !hasUnterminatedResponse {
            let problem: Problem =
                parserError == .headerOverflow
                ? .headersTooLarge(limit: maxHeaderBytes, route: nil) : .malformedRequest(parserError)
            let (head, body) = Responses.problem(problem, close: true, allocator: context.channel.allocator)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200:
            hasUnterminatedResponse = true
        case .end:
            hasUnterminatedResponse = false
        case .head, .body:
            break
        }
        context.write(data, promise: promise)
    }
}
