import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Tracing
import WaypostCore
import WaypostJournal
import WaypostTransform

/// The intake listener (SPEC §1, §2): HTTP/1.1 on SwiftNIO, answering each request once its
/// message is committed to the journal.
///
/// ``start()`` binds (so an address in use is reported before anything else runs);
/// ``run()`` serves until graceful shutdown, then stops accepting, answers the requests in
/// progress and waits for their connections to close.
public final class IntakeServer: Service, Sendable {
    private let listener: HTTPListener
    private let shared: IntakeContext
    private let shutdownGrace: Duration

    /// - Parameter secrets: the inbound signature checks of the routes with `verify` (their
    ///   secrets were loaded at start-up).
    public init(
        configuration: WaypostConfig, journal: any Journal, writer: any JournalWriting, board: OutcomeBoard,
        secrets: RouteSecrets = RouteSecrets(),
        transforms: TransformPool? = nil, programs: ProgramTable? = nil, tls: IntakeTLS? = nil, tracer: (any Tracer)? = nil,
        throughput: Throughput? = nil, group: any EventLoopGroup, logger: Logger
    ) {
        self.shared = IntakeContext(
            routes: RouteTable(routes: configuration.routes), writer: writer,
            readers: JournalReaders(journal: journal), board: board, logger: logger,
            now: { Int64(Date().timeIntervalSince1970 * 1000) },
            accepted: Dictionary(
                uniqueKeysWithValues: configuration.routes.map {
                    ($0.name, Counter(label: "waypost_accepted_total", dimensions: [("route", $0.name)]))
                }),
            secrets: secrets, transforms: transforms, replies: programs?.replies ?? [:], tracer: tracer,
            throughput: throughput)
        self.shutdownGrace = configuration.shutdownGrace
        // The decoder's own limit is the largest any route allows; each route's is checked
        // on the decoded head.
        self.listener = HTTPListener(
            name: "intake", address: configuration.listen, group: group,
            maxHeaderBytes: configuration.routes.map(\.maxHeaderBytes).max() ?? configuration.defaults.maxHeaderBytes,
            limits: ConnectionLimits(
                headerTimeout: .milliseconds(configuration.headerTimeout.milliseconds), minBodyRate: configuration.minBodyRate),
            recordsRawHeads: true, tls: tls, logger: logger)
    }

    /// Binds the listener and starts accepting connections.
    ///
    /// - Returns: The bound address (useful with port 0).
    /// - Throws: `IOError` when the address cannot be bound (for instance, in use).
    @discardableResult
    public func start() async throws -> SocketAddress {
        let shared = self.shared
        return try await listener.start { IntakeHandler(context: shared) }
    }

    /// Serves until graceful shutdown, then drains (see the type's documentation).
    public func run() async throws {
        try await start()
        await untilGracefulShutdown(then: shutdown)
    }

    /// Stops accepting, lets every open connection finish its request in progress (within
    /// `shutdown_grace`), and returns when all of them are closed.
    public func shutdown() async {
        await listener.shutdown(deadline: shutdownGrace)
        await shared.readers.shutdown()
        shared.logger.info("intake stopped")
    }
}
