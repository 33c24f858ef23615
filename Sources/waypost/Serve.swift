import ArgumentParser
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import OTel
import Prometheus
import ServiceLifecycle
import Tracing
import UnixSignals
import WaypostCore
import WaypostForwarder
import WaypostJournal
import WaypostPostgres
import WaypostServer
import WaypostTransform

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the intake: journal every accepted webhook, then answer.",
        discussion: """
            Without --config, runs one catch-all route `/` in async mode to --upstream (or
            $WAYPOST_UPSTREAM), listening on 127.0.0.1:8080, with the journal at --journal,
            $WAYPOST_JOURNAL or ./waypost.db.
            """)

    @Option(help: "The YAML configuration file.")
    var config: String?

    @Option(help: "Intake address HOST:PORT (overrides the configuration).")
    var listen: String?

    @Option(name: .customLong("admin-listen"), help: "Admin address HOST:PORT (overrides the configuration).")
    var adminListen: String?

    @Option(help: "The journal file (overrides the configuration).")
    var journal: String?

    @Option(help: "Upstream URL of the catch-all route when there is no --config.")
    var upstream: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (overrides log_level).")
    var logLevel: Logger.Level?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var settings: WaypostConfig
        if let config {
            if upstream != nil {
                throw ValidationError("--upstream applies only without --config; set the routes' upstream in \(config)")
            }
            settings = try loadConfig(config)
        } else {
            guard let upstream = upstream ?? environment["WAYPOST_UPSTREAM"], !upstream.isEmpty else {
                throw ValidationError("waypost serve needs --upstream URL (or $WAYPOST_UPSTREAM), or --config FILE")
            }
            do {
                settings = try WaypostConfig.defaultConfig(upstream: upstream)
            } catch {
                throw ValidationError("--upstream: \(error.message)")
            }
            if let journal = environment["WAYPOST_JOURNAL"] { settings.journal.take(journal) }
        }
        do {
            if let listen { settings.listen = try HostPort(parsing: listen) }
            if let adminListen { settings.admin.listen = try HostPort(parsing: adminListen) }
        } catch {
            throw ValidationError("--listen/--admin-listen: \(error.message)")
        }
        if let journal { settings.journal.take(journal) }

        // Secrets and `add_headers` variables are read once, now, before anything is opened; a
        // missing one stops start-up, naming where it was looked for.
        let startup = try Startup.check(settings, environment: environment)
        let secrets = RouteSecrets(startup.secrets)

        let level = logLevel ?? Logger.Level(rawValue: settings.logLevel.rawValue) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "waypost")
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["waypost_commit_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        MetricsSystem.bootstrap(factory)
        let tracing = try settings.tracing.map { try Self.tracingBackend($0, logger: logger) }

        let (journal, writer, leases) = try await Self.openJournal(settings, postgres: startup.postgres, logger: logger)
        let board = OutcomeBoard()
        let throughput = Throughput()
        let forwarder: Forwarder
        do {
            // Off Swift's concurrency pool: the forwarder reads the journal as it starts, and a
            // PostgreSQL journal's reads wait for tasks of that pool.
            forwarder = try await Self.onThread { [settings] in
                try Forwarder(
                    configuration: settings, journal: journal, writer: writer, board: board, addHeaders: startup.addHeaders,
                    secrets: secrets, transforms: startup.transforms, programs: startup.programs, tracer: tracing?.tracer,
                    throughput: throughput, ownership: leases, logger: logger)
            }
        } catch {
            // Nothing has started yet: the writer runs with the service group, the leases expire.
            printError("waypost: \(error)")
            throw ExitCode.failure
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        do {
            var admin = AdminContext(
                token: startup.adminToken, journal: journal, routeNames: settings.routes.map(\.name), writer: writer,
                forwarderRunning: { forwarder.isRunning }, journalChanged: { forwarder.reloadNow() }, metrics: { registry.emitToBuffer() },
                logger: logger,
                destinationNames: Dictionary(uniqueKeysWithValues: settings.routes.map { ($0.name, $0.destinations.map(\.name)) }),
                throughput: throughput)
            admin.board = board
            admin.blocking = Set(
                settings.routes.flatMap { route in route.destinations.filter { $0.onExhausted == .block }.map { route.key(of: $0) } })
            try await Self.serve(
                settings, journal: journal, writer: writer, leases: leases, forwarder: forwarder, board: board, secrets: secrets,
                startup: startup, admin: admin,
                tracing: tracing, group: group, logger: logger)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    /// Binds the listeners and runs the services until a signal stops them. Everything that
    /// holds the event loop group is released on return, before the group shuts down.
    private static func serve(
        _ settings: WaypostConfig, journal: any Journal, writer: any JournalWriting, leases: PartitionLeases?, forwarder: Forwarder,
        board: OutcomeBoard,
        secrets: RouteSecrets, startup: Startup, admin: AdminContext, tracing: (tracer: any Tracer, service: any Service)?,
        group: any EventLoopGroup, logger: Logger
    ) async throws {
        // The routes' reply programs run on a pool of their own (the forwarder has its workers).
        var replies: TransformPool?
        if let setup = startup.transforms, !startup.programs.replies.isEmpty {
            do {
                replies = try TransformPool(setup)
            } catch {
                printError("waypost: cannot start the transform workers: \(error)")
                throw ExitCode.failure
            }
        }
        defer { replies?.shutdown() }
        let server = IntakeServer(
            configuration: settings, journal: journal, writer: writer, board: board, secrets: secrets, transforms: replies,
            programs: startup.programs,
            tls: startup.tls, tracer: tracing?.tracer, throughput: admin.throughput, group: group, logger: logger)
        let adminServer = AdminServer(listen: settings.admin.listen, context: admin, group: group)
        var bound: [String] = []
        for (address, start) in [
            (settings.listen, { try await server.start() }), (settings.admin.listen, { try await adminServer.start() }),
        ] as [(HostPort, () async throws -> SocketAddress)] {
            do {
                let local = try await start()
                bound.append(
                    local.ipAddress.map { HostPort(host: $0, port: local.port ?? address.port).description } ?? address.description)
            } catch {
                let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)).lowercased() } ?? "\(error)"
                printError("waypost: cannot listen on \(address): \(reason)")
                // The writer and the forwarder start with the service group, which never ran;
                // a listener that did bind is closed before the event loops stop.
                await server.shutdown()
                await adminServer.shutdown()
                throw ExitCode.failure
            }
        }
        leases?.listening(on: bound[0])
        // One line on standard output that scripts and tests can read the bound ports from
        // (`--listen 127.0.0.1:0` binds a free one).
        FileHandle.standardOutput.write(Data("listening intake=\(bound[0]) admin=\(bound[1])\n".utf8))
        // The services stop in reverse order: admin, intake (answering what is in progress),
        // forwarder (within shutdown_grace), the journal writer, the cluster leases (given up
        // once nothing more is sent or recorded), then the span exporter (which sends what they
        // ended last).
        // SecondSignal is last, so it is told first and arms itself as the shutdown begins.
        let secondSignal = SecondSignal()
        let services: [any Service] =
            (leases.map { [$0] } ?? []) + [
                writer, forwarder, server, adminServer,
                SecretReloader(settings: settings, secrets: secrets, tls: startup.tls, logger: logger), secondSignal,
            ]
        var groupConfiguration = ServiceGroupConfiguration(
            services: (tracing.map { [$0.service] } ?? []) + services, gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = settings.shutdownGrace + .seconds(5)
        try await ServiceGroup(configuration: groupConfiguration).run()
        secondSignal.disarm()
    }
}

extension Serve {
    /// The journal and its writer: a SQLite file (locked for this process), or a PostgreSQL
    /// database, migrated first, with this node's partition leases, taken by a first heartbeat
    /// (which refuses a second node of the same name). One that cannot be opened stops start-up
    /// with exit 1.
    static func openJournal(
        _ settings: WaypostConfig, postgres: PostgresLocation?, logger: Logger
    ) async throws -> (journal: any Journal, writer: any JournalWriting, leases: PartitionLeases?) {
        let journalSettings = settings.journal
        do {
            if let postgres {
                let node = settings.cluster.node ?? ProcessInfo.processInfo.hostName
                let journal = PostgresJournal(location: postgres, node: node, logger: logger)
                try await journal.migrate()
                let leases = journal.leases(ttl: settings.cluster.leaseTTL, address: settings.listen.description)
                try await leases.heartbeat()
                let writer = journal.writer(maxBacklog: journalSettings.maxBacklog, retainDelivered: journalSettings.retainDelivered)
                return (journal, writer, leases)
            }
            let writer = try JournalWriter(
                path: journalSettings.path, durability: journalSettings.durability, maxBacklog: journalSettings.maxBacklog,
                retainDelivered: journalSettings.retainDelivered, logger: logger)
            return (SQLiteJournal(path: journalSettings.path), writer, nil)
        } catch let error as JournalError {
            printError("waypost: cannot open the journal \(journalSettings.path): \(error.message)")
            throw ExitCode.failure
        } catch {
            printError("waypost: cannot open the journal \(postgres?.description ?? journalSettings.path): \(error)")
            throw ExitCode.failure
        }
    }

    /// `body`'s result, computed on a thread of its own (not one of Swift's concurrency pool,
    /// which `body` may wait for).
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// swift-otel's tracer and the service that exports its spans with OTLP/HTTP (SPEC §14).
    /// Only tracing: logs and metrics have their own systems. `OTEL_*` variables override
    /// these settings, as in every OpenTelemetry SDK.
    static func tracingBackend(_ tracing: TracingConfig, logger: Logger) throws -> (tracer: any Tracer, service: any Service) {
        var configuration = OTel.Configuration.default
        configuration.serviceName = tracing.serviceName
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        configuration.propagators = [.traceContext]
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.endpoint = tracing.tracesURL
        configuration.traces.otlpExporter.protocol = tracing.otlpProtocol == .json ? .httpJSON : .httpProtobuf
        // Room for a second of spans at full intake speed (2 per message, 1 per attempt)
        // before any is dropped, sent in large batches.
        configuration.traces.batchSpanProcessor.maxQueueSize = 65_536
        configuration.traces.batchSpanProcessor.maxExportBatchSize = 4_096
        // A collector that is down or slow must not hold up a shutdown: spans are given up on.
        configuration.traces.otlpExporter.timeout = .seconds(2)
        configuration.traces.batchSpanProcessor.exportTimeout = .seconds(2)
        do {
            let backend = try OTel.makeTracingBackend(configuration: configuration)
            return (backend.factory, backend.service)
        } catch {
            printError("waypost: invalid configuration: tracing: \(error)")
            throw ExitCode.invalidConfiguration
        }
    }
}

/// A second SIGTERM or SIGINT during a graceful shutdown exits at once, non-zero. The journal
/// stays consistent (SQLite's transactions); acknowledged messages are all in it.
///
/// It arms itself only once graceful shutdown has begun (the first signal went to the
/// ServiceGroup), so it never swallows that first signal.
final class SecondSignal: Service, @unchecked Sendable {
    // @unchecked Sendable: `sources` is guarded by `lock`.
    private let lock = NSLock()
    private var sources: [any DispatchSourceSignal] = []

    func run() async throws {
        try? await gracefulShutdown()
        lock.withLock {
            sources = [SIGTERM, SIGINT].map { number in
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler {
                    FileHandle.standardError.write(Data("waypost: second signal, exiting now\n".utf8))
                    _exit(130)
                }
                source.resume()
                return source
            }
        }
    }

    func disarm() {
        lock.withLock {
            for source in sources { source.cancel() }
            sources = []
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
