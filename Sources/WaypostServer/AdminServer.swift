import Logging
import NIOCore
import ServiceLifecycle
import WaypostCore
import WaypostJournal

/// What the admin API needs to know about the running server.
public struct AdminContext: Sendable {
    /// The bearer token; nil means no token is set (the listener is then loopback-only and
    /// the protected endpoints are open to local callers).
    public var token: String?
    public var journal: any Journal
    public var routeNames: [String]
    /// Each route's destinations, by route name (SPEC §11).
    public var destinationNames: [String: [String]]
    public var writer: any JournalWriting
    /// Whether the forwarder's delivery thread runs (for `/readyz`).
    public var forwarderRunning: @Sendable () -> Bool
    /// Tells the forwarder that an operator changed the journal (replay, skip, pause, resume).
    public var journalChanged: @Sendable () -> Void
    /// The Prometheus text exposition of every metric (for `/metrics`).
    public var metrics: @Sendable () -> [UInt8]
    public var logger: Logger
    /// Accepted, delivered and failed per minute, for the console (SPEC §13).
    public var throughput: Throughput?
    /// The destinations (ROUTE/DESTINATION) with `on_exhausted: block`: a failed delivery
    /// holds up the deliveries behind it.
    public var blocking: Set<String> = []
    /// Where the forwarder publishes final outcomes before their commit: a message's read waits
    /// for that commit, so that it never shows an older state than a waiting source was told.
    public var board: OutcomeBoard?

    public init(
        token: String?, journal: any Journal, routeNames: [String], writer: any JournalWriting,
        forwarderRunning: @escaping @Sendable () -> Bool,
        journalChanged: @escaping @Sendable () -> Void, metrics: @escaping @Sendable () -> [UInt8], logger: Logger,
        destinationNames: [String: [String]] = [:], throughput: Throughput? = nil
    ) {
        self.throughput = throughput
        self.destinationNames = destinationNames
        self.journalChanged = journalChanged
        self.token = token
        self.journal = journal
        self.routeNames = routeNames
        self.writer = writer
        self.forwarderRunning = forwarderRunning
        self.metrics = metrics
        self.logger = logger
    }
}

extension AdminContext {
    /// Whether `route` (and, when given, its `destination`) exists, to pause or resume it.
    ///
    /// - Throws: a `404` ``Problem`` naming what exists.
    func check(route: String, destination: String?) throws(Problem) {
        guard routeNames.contains(route) else {
            throw Problem(
                status: 404, slug: "unknown-route", title: "Unknown route",
                detail: "No route is named \(route.prefix(64)); the routes are \(routeNames.joined(separator: ", ")).")
        }
        if let destination, destinationNames[route]?.contains(destination) != true {
            let names = destinationNames[route]?.joined(separator: ", ") ?? ""
            throw Problem(
                status: 404, slug: "unknown-destination", title: "Unknown destination",
                detail: "Route \(route) has no destination \(destination.prefix(64)); its destinations are \(names).")
        }
    }
}

/// The admin listener (SPEC §5): probes and metrics open, operations behind the token.
public final class AdminServer: Service, Sendable {
    private let listener: HTTPListener
    private let context: AdminContext
    private let readers: JournalReaders
    private let console: Console

    public init(listen: HostPort, context: AdminContext, group: any EventLoopGroup) {
        self.listener = HTTPListener(
            name: "admin", address: listen, group: group, maxHeaderBytes: 16 * 1024, limits: ConnectionLimits(), logger: context.logger)
        self.context = context
        self.readers = JournalReaders(journal: context.journal, threads: 1)
        self.console = Console(context: context, readers: readers)
    }

    /// Whether `host` is a loopback address, the only kind the admin listener may bind to
    /// without a token.
    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        // A literal IPv4 address in 127.0.0.0/8; a name like 127.example.com is not one.
        let octets = host.split(separator: ".", omittingEmptySubsequences: false).map { UInt8($0) }
        return octets.count == 4 && octets.allSatisfy { $0 != nil } && octets[0] == 127
    }

    @discardableResult
    public func start() async throws -> SocketAddress {
        let context = self.context
        let readers = self.readers
        let console = self.console
        return try await listener.start { AdminHandler(context: context, readers: readers, console: console) }
    }

    public func run() async throws {
        try await start()
        await untilGracefulShutdown(then: shutdown)
    }

    public func shutdown() async {
        await listener.shutdown(deadline: .seconds(1))
        await readers.shutdown()
    }
}
