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
    let logger: Logger

    public init(location: PostgresLocation, timeout: Duration = .seconds(10), logger: Logger) {
        self.location = location
        self.timeout = timeout
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

    /// Takes the journal for this server: a session advisory lock on a connection of its own,
    /// held until the connection is closed, as the SQLite journal's lock file is; then, as the
    /// SQLite writer does when it opens, the deliveries a stopped server left `in_flight` are
    /// `queued` again (delivery is at least once), their open attempts marked interrupted, and
    /// its tripped breakers forgotten. Several nodes on one database need the partition leases
    /// the forwarder does not use yet (`docs/scaling.md`): until then a second server is
    /// refused, not left to deliver every queue a second time and out of order.
    ///
    /// - Throws: ``PostgresJournalError`` when another server holds the journal, or the
    ///   database cannot be reached.
    public func takeOver() async throws(PostgresJournalError) -> ServerLock {
        let connection = try await connectWithinTimeout()
        do {
            var locked = false
            for try await row in try await connection.query("SELECT pg_try_advisory_lock(\(PostgresSchema.serverLock))", logger: logger)
                .decode(Bool.self)
            {
                locked = row
            }
            guard locked else {
                throw PostgresJournalError(
                    description: "another Waypost server uses this journal; one database serves one node until clustering "
                        + "is built (docs/scaling.md)")
            }
            try await connection.withTransaction(logger: logger) { connection in
                try await connection.query(
                    """
                    UPDATE attempts SET error = 'interrupted: Waypost stopped during the attempt'
                    WHERE duration_ms IS NULL AND status IS NULL AND error IS NULL
                    """, logger: logger)
                try await connection.query("UPDATE deliveries SET state = 'queued' WHERE state = 'in_flight'", logger: logger)
                try await connection.query("DELETE FROM control WHERE name LIKE 'tripped:%'", logger: logger)
            }
            return ServerLock(connection: connection)
        } catch let error as PostgresTransactionError {
            try? await connection.close()
            throw PostgresJournalError(error.closureError ?? error.commitError ?? error.beginError ?? error)
        } catch {
            try? await connection.close()
            throw PostgresJournalError(error)
        }
    }

    /// A server's hold on its journal; ``release()`` lets another server take it.
    public struct ServerLock: Sendable {
        let connection: PostgresConnection

        public func release() async {
            try? await connection.close()
        }
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
        PostgresDeliveryReader(connect: { try await connect() }, timeout: timeout, logger: logger)
    }
}
