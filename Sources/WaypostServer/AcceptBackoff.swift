import Logging
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Stops accepting for a while when `accept` fails for want of resources, so that running out
/// of file descriptors slows accepting down instead of spinning (SPEC §2).
///
/// Out of descriptors, `accept` fails at once and the listening socket stays readable. NIO's
/// server channel keeps its read interest after a failed `accept` and never asks the pipeline
/// for the next `read()`, so NIO's own `AcceptBackoffHandler`, which holds back that `read()`,
/// never gets the chance: the event loop calls `accept4` tens of thousands of times a second.
/// This handler turns the channel's `autoRead` off, which removes the read interest, and back
/// on after a pause: 50 ms at first, doubling up to 1 s while accepting keeps failing.
final class AcceptBackoff: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private static let firstPause = TimeAmount.milliseconds(50)
    private static let longestPause = TimeAmount.seconds(1)
    /// `accept`'s errors that mean "not now" rather than "never" (as NIO has them).
    private static let transient: Set<Int32> = [EMFILE, ENFILE, ENOBUFS, ENOMEM]

    private var pause = AcceptBackoff.firstPause
    private var resuming: Scheduled<Void>?
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pause = Self.firstPause
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, Self.transient.contains(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        guard resuming == nil else { return }
        if pause == Self.firstPause {
            logger.warning("cannot accept connections; pausing", metadata: ["error": "\(error)"])
        }
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
        resuming = context.eventLoop.assumeIsolated().scheduleTask(in: pause) { [self] in
            resuming = nil
            try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        }
        pause = min(pause * 2, Self.longestPause)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handlerRemoved(context: context)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        resuming?.cancel()
        resuming = nil
    }
}
