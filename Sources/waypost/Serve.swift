import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals
import WaypostCore
import WaypostForwarder
import WaypostJournal
import WaypostServer

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
            settings.journal.path = environment["WAYPOST_JOURNAL"] ?? settings.journal.path
        }
        do {
            if let listen { settings.listen = try HostPort(parsing: listen) }
            if let adminListen { settings.admin.listen = try HostPort(parsing: adminListen) }
        } catch {
            throw ValidationError("--listen/--admin-listen: \(error.message)")
        }
        if let journal { settings.journal.path = journal }

        let unsupported = settings.unsupportedSettings
        if !unsupported.isEmpty {
            for key in unsupported { printError("waypost: not supported yet: \(key)") }
            throw ExitCode.invalidConfiguration
        }

        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let logger = Logger(label: "waypost")

        let writer: JournalWriter
        do {
            writer = try JournalWriter(
                path: settings.journal.path, durability: settings.journal.durability,
                maxBacklog: settings.journal.maxBacklog, retainDelivered: settings.journal.retainDelivered, logger: logger)
        } catch {
            printError("waypost: cannot open the journal \(settings.journal.path): \(error.message)")
            throw ExitCode.failure
        }
        let board = OutcomeBoard()
        let forwarder: Forwarder
        do {
            let client = try CurlClient(logger: logger)
            do {
                forwarder = try Forwarder(
                    configuration: settings, writer: writer, client: client, board: board, environment: environment, logger: logger)
            } catch {
                client.shutdown()
                await writer.shutdown()
                printError("waypost: invalid configuration: \(error)")
                throw ExitCode.invalidConfiguration
            }
        } catch let error as CurlError {
            await writer.shutdown()
            printError("waypost: cannot start libcurl: \(error)")
            throw ExitCode.failure
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        do {
            try await Self.serve(settings, writer: writer, forwarder: forwarder, board: board, group: group, logger: logger)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    /// Binds the intake and runs the services until a signal stops them. Everything that holds
    /// the event loop group is released on return, before the group shuts down.
    private static func serve(
        _ settings: WaypostConfig, writer: JournalWriter, forwarder: Forwarder, board: OutcomeBoard, group: any EventLoopGroup,
        logger: Logger
    ) async throws {
        let server = IntakeServer(configuration: settings, writer: writer, board: board, group: group, logger: logger)
        do {
            try await server.start()
        } catch {
            let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)).lowercased() } ?? "\(error)"
            printError("waypost: cannot listen on \(settings.listen): \(reason)")
            await forwarder.shutdown(grace: .zero)
            await writer.shutdown()
            throw ExitCode.failure
        }
        var groupConfiguration = ServiceGroupConfiguration(
            services: [writer, forwarder, server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = settings.shutdownGrace
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}

extension WaypostConfig {
    /// Settings this Waypost parses but does not implement yet: `serve` refuses to start with
    /// them rather than ignore them.
    var unsupportedSettings: [String] {
        var keys: [String] = []
        for (index, route) in routes.enumerated() {
            if route.verify != nil { keys.append("routes[\(index)].verify (route \(route.name))") }
            if route.sign != nil { keys.append("routes[\(index)].sign (route \(route.name))") }
        }
        return keys
    }
}
