import Foundation
import Logging
import NIOSSL
import PostgresNIO
import WaypostJournal

/// A journal in PostgreSQL (SPEC §12), at `location`: how every part of Waypost connects to
/// it, and the parts it opens.
public struct PostgresJournal: Journal {
    public var location: PostgresLocation
    /// How long a statement of a reader or an operator action may take.
    public var timeout: Duration
    /// The cluster node this process is (`cluster.node`), for a server; nil for the CLI. Its
    /// connections carry it as `waypost.node` (attempts name their node) and in
    /// `application_name` (`pg_stat_activity`).
    public var node: String?
    let logger: Logger

    public init(location: PostgresLocation, timeout: Duration = .seconds(10), node: String? = nil, logger: Logger) {
        self.location = location
        self.timeout = timeout
        self.node = node
        self.logger = logger
    }

    public var description: String { location.description }

    /// A new connection, with TLS as `sslmode` asks: `disable` never, `allow` and `prefer`
    /// when the server offers it (unverified, as libpq's), `require` always (unverified),
    /// `verify-ca` with the server's certificate checked against the system's roots (or
    /// `$PGSSLROOTCERT`), `verify-full` its host name too.
    public func connect() async throws -> PostgresConnection {
        let location = location
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: try Self.tls(location.sslMode))
        configuration.options.connectTimeout = .seconds(Int64(max(1, timeout.components.seconds)))
        configuration.options.additionalStartupParameters = [("application_name", node.map { "waypost \($0)" } ?? "waypost")]
        if let node { configuration.options.additionalStartupParameters.append(("waypost.node", node)) }
        return try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
    }

    static func tls(_ mode: PostgresLocation.SSLMode) throws -> PostgresConnection.Configuration.TLS {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let roots = ProcessInfo.processInfo.environment["PGSSLROOTCERT"] { tls.trustRoots = .file(roots) }
        switch mode {
        case .disable:
            return .disable
        case .allow, .prefer:
            tls.certificateVerification = .none
            return .prefer(try NIOSSLContext(configuration: tls))
        case .require:
            tls.certificateVerification = .none
            return .require(try NIOSSLContext(configuration: tls))
        case .verifyCA:
            tls.certificateVerification = .noHostnameVerification
            return .require(try NIOSSLContext(configuration: tls))
        case .verifyFull:
            tls.certificateVerification = .fullVerification
            return .require(try NIOSSLContext(configuration: tls))
        }
    }

    /// A new connection within `timeout`; one that opens later is closed then.
    private func connectWithinTimeout() async throws(PostgresJournalError) -> PostgresConnection {
        do {
            return try await withTimeout(timeout, late: { try? await $0.close() }) { try await connect() }
        } catch {
            throw PostgresJournalError(error)
        }
    }

    /// Creates the schema, or applies the migrations it lacks (``PostgresSchema/migrate(_:logger:)``).
    public func migrate() async throws(PostgresJournalError) {
        let connection = try await connectWithinTimeout()
        do {
            try await PostgresSchema.migrate(connection, logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    /// This node's partition leases (SPEC §12), a `Service` to run before the forwarder
    /// starts; `address` is its intake listener, shown by `waypost status`.
    public func leases(ttl: Duration, address: String? = nil) -> PartitionLeases {
        PartitionLeases(node: node ?? "waypost", ttl: ttl, address: address, connect: { try await connect() }, logger: logger)
    }

    /// The writer: intake batches committed with `commit_timeout` (SPEC §12).
    public func writer(maxBacklog: Int, retainDelivered: Duration, commitTimeout: Duration = .seconds(10)) -> PostgresJournalWriter {
        PostgresJournalWriter(
            connect: { try await connect() }, maxBacklog: maxBacklog, retainDelivered: retainDelivered, commitTimeout: commitTimeout,
            logger: logger)
    }

    public func reader() throws(JournalError) -> any JournalReading {
        try PostgresJournalReader(connection: BlockingConnection(connect: { try await connect() }, timeout: timeout, logger: logger))
    }

    public func operations() throws(JournalError) -> any JournalOperating {
        let connection = BlockingConnection(connect: { try await connect() }, timeout: timeout, logger: logger)
        let logger = logger
        _ = try connection.run { try await PostgresSchema.migrate($0, logger: logger) }
        return PostgresJournalOperations(connection: connection)
    }

    public func deliveryReader() throws(JournalError) -> any DeliveryReading {
        PostgresDeliveryReader(connect: { try await connect() }, node: node ?? "", timeout: timeout, logger: logger)
    }
}
