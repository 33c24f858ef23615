import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import WaypostCore

/// One HTTP/1.1 listening socket, shared by the intake and the admin API: binds, builds each
/// connection's pipeline (deadlines for idle, slow and stalled clients, decoder with header
/// limits, pipelining, problem+json answers to malformed requests, then the application's
/// handler), and drains on shutdown. Out of file descriptors, accepting backs off instead of
/// spinning (``AcceptBackoff``).
final class HTTPListener: Sendable {
    private let name: String
    private let address: HostPort
    private let group: any EventLoopGroup
    private let maxHeaderBytes: Int
    private let limits: ConnectionLimits
    /// Whether connections keep the raw bytes of request heads (the intake stores header
    /// values byte for byte).
    private let recordsRawHeads: Bool
    /// TLS in front of HTTP, when the listener has it.
    private let tls: IntakeTLS?
    private let logger: Logger
    /// Dropped at shutdown, while the event loops still run: its deinit completes a promise
    /// on one of them.
    private let quiesce: Mutex<ServerQuiescingHelper?>
    private let channel = Mutex<(any Channel)?>(nil)
    /// Open connections, so a shutdown past its deadline can close the stragglers.
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])

    /// - Parameter name: `intake` or `admin`, for the log line that reports the bound address.
    init(
        name: String, address: HostPort, group: any EventLoopGroup, maxHeaderBytes: Int, limits: ConnectionLimits,
        recordsRawHeads: Bool = false, tls: IntakeTLS? = nil, logger: Logger
    ) {
        self.recordsRawHeads = recordsRawHeads
        self.tls = tls
        self.name = name
        self.address = address
        self.group = group
        self.maxHeaderBytes = maxHeaderBytes
        self.limits = limits
        self.logger = logger
        self.quiesce = Mutex(ServerQuiescingHelper(group: group))
    }

    /// Binds and starts accepting; `makeHandler` makes each connection's application handler.
    ///
    /// - Returns: The bound address (useful with port 0).
    /// - Throws: `IOError` when the address cannot be bound (for instance, in use).
    func start(makeHandler: @escaping @Sendable () -> any ChannelHandler) async throws -> SocketAddress {
        if let bound = channel.withLock({ $0 }), let address = bound.localAddress { return address }
        let maxHeaderBytes = self.maxHeaderBytes
        let limits = self.limits
        let recordsRawHeads = self.recordsRawHeads
        let tls = self.tls
        let logger = self.logger
        guard let quiesce = self.quiesce.withLock({ $0 }) else { throw ChannelError.ioOnClosedChannel }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptBackoff(logger: logger))
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [self] channel in
                let key = ObjectIdentifier(channel)
                connections.withLock { $0[key] = channel }
                channel.closeFuture.whenComplete { [self] _ in connections.withLock { $0[key] = nil } }
                return channel.eventLoop.makeCompletedFuture {
                    // The context current now: a SIGHUP reload changes new connections only.
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context)) }
                    try Self.addHandlers(
                        to: channel.pipeline.syncOperations, maxHeaderBytes: maxHeaderBytes, limits: limits,
                        recordsRawHeads: recordsRawHeads, handler: makeHandler())
                }
            }
        let bound = try await bootstrap.bind(host: address.host, port: address.port).get()
        channel.withLock { $0 = bound }
        guard let local = bound.localAddress else { throw ChannelError.unknownLocalAddress }
        logger.info("\(name) listening", metadata: ["address": "\(local)"])
        return local
    }

    /// Builds one connection's pipeline: deadlines, the response encoder, the request decoder
    /// (with the header limits), pipelining, problem+json answers to malformed requests, then
    /// `handler`; with `recordsRawHeads`, the raw bytes of request heads for the handler (see
    /// ``RawHeads``). The fuzz targets build the same pipeline around an `EmbeddedChannel`.
    static func addHandlers(
        to pipeline: ChannelPipeline.SynchronousOperations, maxHeaderBytes: Int, limits: ConnectionLimits, recordsRawHeads: Bool,
        handler: any ChannelHandler
    ) throws {
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderListSize = maxHeaderBytes
        decoderLimits.maxHeaderFieldSize = maxHeaderBytes
        let deadline = ConnectionDeadline(limits: limits)
        let rawHeads = recordsRawHeads ? RawHeads(limit: maxHeaderBytes + 16 * 1024) : nil
        try pipeline.addHandlers([
            HTTPResponseEncoder(),
            RawBytesGuard(deadline: deadline, rawHeads: rawHeads),
            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, limitConfiguration: decoderLimits)),
            HTTPServerPipelineHandler(),
            RequestProgressTap(deadline: deadline),
            ProblemErrorHandler(maxHeaderBytes: maxHeaderBytes),
            handler,
        ])
    }

    /// Stops accepting, lets every open connection finish its request in progress, and
    /// returns when all of them are closed; connections still open after `deadline` (a client
    /// that stalled mid-request) are closed.
    func shutdown(deadline: Duration) async {
        let quiesce = self.quiesce.withLock { helper in
            defer { helper = nil }
            return helper
        }
        guard let serverChannel = channel.withLock({ $0 }), let quiesce else { return }
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: promise)
        let timeout = eventLoop.scheduleTask(in: .milliseconds(deadline.milliseconds)) { [self] in
            for connection in connections.withLock({ Array($0.values) }) { connection.close(promise: nil) }
        }
        try? await promise.futureResult.get()
        timeout.cancel()
        try? await serverChannel.closeFuture.get()
    }
}
