import Foundation
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization
import WaypostCore
import WaypostJournal

/// The intake listener (SPEC §1, §2): HTTP/1.1 on SwiftNIO, answering each request once its
/// message is committed to the journal.
///
/// ``start()`` binds (so an address in use is reported before anything else runs);
/// ``run()`` serves until graceful shutdown, then stops accepting, answers the requests in
/// progress and waits for their connections to close.
public final class IntakeServer: Service, Sendable {
    /// How long a connection may send nothing before it is closed.
    public static let idleTimeout = TimeAmount.seconds(60)

    private let listen: HostPort
    private let group: any EventLoopGroup
    private let shared: IntakeContext
    private let maxHeaderBytes: Int
    private let quiesce: ServerQuiescingHelper
    private let channel = Mutex<(any Channel)?>(nil)

    public init(configuration: WaypostConfig, writer: JournalWriter, board: OutcomeBoard, group: any EventLoopGroup, logger: Logger) {
        self.listen = configuration.listen
        self.group = group
        self.shared = IntakeContext(
            routes: RouteTable(routes: configuration.routes), writer: writer,
            readers: JournalReaders(path: configuration.journal.path), board: board, logger: logger,
            now: { Int64(Date().timeIntervalSince1970 * 1000) })
        // The decoder's own limit is the largest any route allows; each route's is checked
        // on the decoded head.
        self.maxHeaderBytes = configuration.routes.map(\.maxHeaderBytes).max() ?? configuration.defaults.maxHeaderBytes
        self.quiesce = ServerQuiescingHelper(group: group)
    }

    /// Binds the listener and starts accepting connections.
    ///
    /// - Returns: The bound address (useful with port 0).
    /// - Throws: `IOError` when the address cannot be bound (for instance, in use).
    @discardableResult
    public func start() async throws -> SocketAddress {
        if let bound = channel.withLock({ $0 }), let address = bound.localAddress { return address }
        let shared = self.shared
        let maxHeaderBytes = self.maxHeaderBytes
        let quiesce = self.quiesce
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    var limits = NIOHTTPDecoderLimitConfiguration()
                    limits.maxHeaderListSize = maxHeaderBytes
                    limits.maxHeaderFieldSize = maxHeaderBytes
                    let encoder = HTTPResponseEncoder()
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: Self.idleTimeout),
                        encoder,
                        ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, limitConfiguration: limits)),
                        HTTPServerPipelineHandler(),
                        ProblemErrorHandler(maxHeaderBytes: maxHeaderBytes),
                        IntakeHandler(context: shared),
                    ])
                }
            }
        let bound = try await bootstrap.bind(host: listen.host, port: listen.port).get()
        channel.withLock { $0 = bound }
        shared.logger.info("intake listening", metadata: ["address": "\(bound.localAddress.map { "\($0)" } ?? "\(listen)")"])
        return bound.localAddress!
    }

    /// Serves until graceful shutdown, then drains (see the type's documentation).
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops accepting, lets every open connection finish its request in progress, and
    /// returns when all of them are closed.
    public func shutdown() async {
        guard let serverChannel = channel.withLock({ $0 }) else {
            await shared.readers.shutdown()
            return
        }
        let promise = group.next().makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: promise)
        try? await promise.futureResult.get()
        try? await serverChannel.closeFuture.get()
        await shared.readers.shutdown()
        shared.logger.info("intake stopped")
    }
}
