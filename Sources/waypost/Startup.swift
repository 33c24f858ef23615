import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import WaypostCore
import WaypostForwarder
import WaypostPostgres
import WaypostServer
import WaypostTransform

/// What `serve` reads and checks before it opens or binds anything: the secrets, the
/// `add_headers` values, the admin token rule, the jq programs (compiled in the transform
/// workers it starts). `check-config` runs the same checks, so a configuration it accepts
/// starts (SPEC §6).
struct Startup {
    var secrets: RouteSecrets.Keys
    var addHeaders: [String: [HeaderField]]
    var adminToken: String?
    var programs: ProgramTable
    /// How to run `programs`, every one compiled; nil when there are none.
    var transforms: TransformSetup?
    /// The intake's certificate and key, read; nil without `tls`.
    var tls: IntakeTLS?
    /// The PostgreSQL journal, with its password; nil for a SQLite journal.
    var postgres: PostgresLocation?

    /// - Throws: `ExitCode.invalidConfiguration` (78) after printing what is wrong, naming the
    ///   key, the variable or the file.
    static func check(_ settings: WaypostConfig, environment: [String: String]) throws -> Startup {
        let startup: Startup
        do {
            startup = Startup(
                secrets: try RouteSecrets.load(settings, environment: environment),
                addHeaders: try Forwarder.addHeaders(of: settings, environment: environment),
                adminToken: environment[settings.admin.tokenEnv].flatMap { $0.isEmpty ? nil : $0 },
                programs: ProgramTable(settings))
        } catch {
            printError("waypost: invalid configuration: \(error)")
            throw ExitCode.invalidConfiguration
        }
        if startup.adminToken == nil && !AdminServer.isLoopback(settings.admin.listen.host) {
            printError(
                "waypost: invalid configuration: admin.listen \(settings.admin.listen) is not a loopback address and "
                    + "$\(settings.admin.tokenEnv) is not set; set the token or listen on 127.0.0.1")
            throw ExitCode.invalidConfiguration
        }
        for (index, route) in settings.routes.enumerated() {
            for (number, destination) in route.destinations.enumerated() {
                guard let file = destination.caFile else { continue }
                let text = FileManager.default.contents(atPath: file).map { String(decoding: $0.prefix(1 << 20), as: UTF8.self) }
                guard let text, text.contains("-----BEGIN CERTIFICATE-----") else {
                    printError(
                        "waypost: invalid configuration: \(route.keyPath(index: index, destination: number)).ca_file: "
                            + "\(file) is not a readable PEM file of certificates")
                    throw ExitCode.invalidConfiguration
                }
            }
        }
        var loaded = try startup.compilingPrograms(settings)
        loaded.postgres = try postgresLocation(settings.journal, environment: environment)
        if let files = settings.tls {
            do {
                loaded.tls = try IntakeTLS(files: files)
            } catch {
                printError("waypost: invalid configuration: \(error)")
                throw ExitCode.invalidConfiguration
            }
        }
        return loaded
    }

    /// This start-up with its programs compiled (in a transform worker, then stopped).
    ///
    /// - Throws: `ExitCode.invalidConfiguration` naming the key of a program that does not
    ///   compile, with jq's message; exit 1 when no worker starts.
    private func compilingPrograms(_ settings: WaypostConfig) throws -> Startup {
        guard !programs.isEmpty else { return self }
        var startup = self
        let setup = TransformSetup(
            programs: programs.programs.map(\.text), memoryLimit: settings.transformMemory, timeout: settings.transformTimeout)
        do {
            try TransformPool.compile(setup)
            startup.transforms = setup
        } catch .compile(let failures) {
            for (index, message) in failures {
                printError("waypost: invalid configuration: \(programs.programs[index].path): the jq program does not compile: \(message)")
            }
            throw ExitCode.invalidConfiguration
        } catch .start(let message) {
            printError("waypost: cannot start the transform workers: \(message)")
            throw ExitCode.failure
        }
        return startup
    }
}

/// `SIGHUP` re-reads the `secret_file` secrets (SPEC §10): every request and attempt after it
/// uses the new ones. A reload that fails keeps the old secrets and logs why; the server never
/// stops on it.
final class SecretReloader: Service, Sendable {
    private let settings: WaypostConfig
    private let secrets: RouteSecrets
    private let tls: IntakeTLS?
    private let logger: Logger

    init(settings: WaypostConfig, secrets: RouteSecrets, tls: IntakeTLS?, logger: Logger) {
        self.settings = settings
        self.secrets = secrets
        self.tls = tls
        self.logger = logger
        // Until run() listens for it, SIGHUP must not end the process (its default action).
        signal(SIGHUP, SIG_IGN)
    }

    func run() async throws {
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { [self] in reload() }
        source.resume()
        try? await gracefulShutdown()
        source.cancel()
    }

    func reload() {
        let files = RouteSecrets.files(of: settings)
        do {
            secrets.replace(with: try RouteSecrets.load(settings, environment: ProcessInfo.processInfo.environment))
            logger.notice("SIGHUP: secrets reloaded", metadata: ["files": "\(files.joined(separator: ", "))"])
        } catch {
            logger.error("SIGHUP: reload failed, the old secrets stay in use", metadata: ["error": "\(error)"])
        }
        guard let tls else { return }
        do {
            try tls.reload()
            logger.notice(
                "SIGHUP: TLS certificate and key reloaded; new connections use them",
                metadata: ["cert_file": "\(tls.files.certFile)", "key_file": "\(tls.files.keyFile)"])
        } catch {
            logger.error("SIGHUP: TLS reload failed, the old certificate stays in use", metadata: ["error": "\(error)"])
        }
    }
}
