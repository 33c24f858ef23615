import Logging
import PostgresNIO

/// The PostgreSQL journal's schema (SPEC §12) and its migrations: the model of the SQLite
/// journal (SPEC §7, §11: a message as received, one delivery per destination, attempts per
/// delivery) in PostgreSQL's types, and the cluster's tables (nodes, partition leases).
///
/// `waypost_schema.version` holds the number of migrations applied. Opening the journal applies
/// the missing ones in one transaction under an advisory lock, so nodes that start together
/// migrate once, and a journal written by a newer Waypost is refused rather than misread.
public enum PostgresSchema {
    /// The delivery queues (destination and ordering key) are spread over this many partitions,
    /// each leased to one node at a time.
    public static let partitions = 256

    /// Migration `i` takes the schema from version `i` to `i + 1`: its statements, in order.
    static let migrations: [[String]] = [
        [
            """
            CREATE TABLE messages (
                id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- order of acceptance
                correlation_id  text NOT NULL UNIQUE,
                route           text NOT NULL,
                idempotency_key text,
                method          text NOT NULL,
                path            text NOT NULL,                  -- path and query as received
                headers         json NOT NULL,                  -- array of [name, value], in order
                body            bytea NOT NULL,
                received_at     timestamptz NOT NULL,
                client_address  text,                           -- the source's IP, for X-Forwarded-For
                trace_parent    text                            -- the intake span's traceparent (tracing)
            )
            """,
            """
            CREATE INDEX messages_by_idempotency_key ON messages (route, idempotency_key) WHERE idempotency_key IS NOT NULL
            """,
            """
            CREATE INDEX messages_by_received_at ON messages (received_at)
            """,
            """
            CREATE TABLE deliveries (
                id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- a queue is in this order
                message_id       bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
                route            text NOT NULL,
                destination      text NOT NULL,
                ordering_key     text,
                partition        integer NOT NULL CHECK (partition >= 0 AND partition < \(partitions)),
                state            text NOT NULL DEFAULT 'queued'
                                 CHECK (state IN ('queued', 'in_flight', 'delivered', 'failed', 'skipped', 'filtered')),
                attempts         integer NOT NULL DEFAULT 0,
                cycle_attempts   integer NOT NULL DEFAULT 0,  -- attempts since receipt or replay
                replayed_at      timestamptz,                 -- the last operator replay
                next_attempt_at  timestamptz,
                delivered_at     timestamptz,
                updated_at       timestamptz NOT NULL,
                last_error       text,
                response_status  integer,                     -- the upstream's last answer
                response_headers json,
                response_body    bytea,
                UNIQUE (message_id, destination)
            )
            """,
            """
            CREATE INDEX deliveries_by_state ON deliveries (state, route, destination, id)
            """,
            """
            CREATE INDEX deliveries_by_end ON deliveries (updated_at) WHERE state IN ('delivered', 'filtered')
            """,
            // What a node loads when it takes a partition over: its waiting deliveries, in order.
            """
            CREATE INDEX deliveries_waiting ON deliveries (partition, id) WHERE state IN ('queued', 'in_flight')
            """,
            """
            CREATE TABLE attempts (
                delivery_id bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
                attempt     integer NOT NULL,
                started_at  timestamptz NOT NULL,
                duration_ms integer,
                status      integer,
                error       text,
                body_bytes  bigint,                          -- the size of the body sent
                body_sha256 text,                            -- its SHA-256, lower-case hex
                node        text,                            -- the node that made it
                PRIMARY KEY (delivery_id, attempt)
            )
            """,
            // Paused destinations ('paused:ROUTE[/DESTINATION]'), tripped breakers ('tripped:…',
            // since when, in milliseconds), and the replay generation.
            """
            CREATE TABLE control (name text PRIMARY KEY, value bigint NOT NULL)
            """,
            """
            INSERT INTO control (name, value) VALUES ('replay_generation', 0)
            """,
            // The cluster (SPEC §12): each node's heartbeat, and each partition's lease. `epoch`
            // grows with every new lease of a partition: a node records an attempt only while it
            // holds the lease of that epoch, unexpired by the database's clock (fencing).
            """
            CREATE TABLE nodes (
                name         text PRIMARY KEY,
                started_at   timestamptz NOT NULL,
                heartbeat_at timestamptz NOT NULL,
                address      text                            -- its intake listener, for `waypost status`
            )
            """,
            """
            CREATE TABLE partitions (
                partition  integer PRIMARY KEY,
                node       text REFERENCES nodes (name) ON DELETE SET NULL,
                epoch      bigint NOT NULL DEFAULT 0,
                expires_at timestamptz
            )
            """,
            """
            INSERT INTO partitions (partition) SELECT generate_series(0, \(partitions - 1))
            """,
            // A message's state, derived from its deliveries' (SPEC §11), with its first delivery's
            // details: the one whose answer a waiting source gets.
            """
            CREATE VIEW message_states AS
                SELECT m.id, m.correlation_id, m.route, s.state,
                       p.attempts, p.destination AS reply_from, p.ordering_key, m.received_at, p.next_attempt_at, p.delivered_at,
                       p.last_error, p.response_status
                FROM messages m
                CROSS JOIN LATERAL (\(messageStateSQL)) s
                JOIN LATERAL (SELECT * FROM deliveries f WHERE f.message_id = m.id ORDER BY f.id LIMIT 1) p ON true
            """,
            """
            CREATE VIEW queued AS
                SELECT d.message_id AS id, m.correlation_id, d.route, d.destination, d.state, d.attempts, m.received_at,
                       d.next_attempt_at, d.last_error
                FROM deliveries d JOIN messages m ON m.id = d.message_id
                WHERE d.state IN ('queued', 'in_flight') ORDER BY d.id
            """,
            """
            CREATE VIEW failed AS
                SELECT d.message_id AS id, m.correlation_id, d.route, d.destination, d.attempts, m.received_at, d.updated_at,
                       d.response_status, d.last_error
                FROM deliveries d JOIN messages m ON m.id = d.message_id
                WHERE d.state = 'failed' ORDER BY d.id
            """,
            """
            CREATE VIEW recent AS
                SELECT s.id, s.correlation_id, s.route, s.state, s.attempts, m.method, m.path, octet_length(m.body) AS body_bytes,
                       s.received_at, s.delivered_at, s.response_status, s.last_error
                FROM message_states s JOIN messages m ON m.id = s.id ORDER BY s.id DESC LIMIT 100
            """,
        ]
    ]

    /// A message's state from those of its deliveries `d` (SPEC §11), as a one-row query over
    /// the message `m` with the column `state`, as the SQLite journal derives it.
    static let messageStateSQL = """
        SELECT CASE
            WHEN count(*) FILTER (WHERE d.state = 'in_flight') > 0 THEN 'in_flight'
            WHEN count(*) FILTER (WHERE d.state = 'queued') > 0 THEN 'queued'
            WHEN count(*) FILTER (WHERE d.state = 'delivered') > 0
                 AND count(*) FILTER (WHERE d.state IN ('delivered', 'filtered')) = count(*) THEN 'delivered'
            WHEN count(*) FILTER (WHERE d.state = 'filtered') = count(*) THEN 'filtered'
            WHEN count(*) FILTER (WHERE d.state = 'failed') > 0 THEN 'failed'
            ELSE 'skipped' END AS state
        FROM deliveries d WHERE d.message_id = m.id
        """

    public static var currentVersion: Int { migrations.count }

    /// The advisory lock the migrations run under (any number; this one spells "wayp").
    static let migrationLock: Int64 = 0x7761_7970

    /// Applies the missing migrations in one transaction; returns the version found before.
    ///
    /// - Throws: ``PostgresJournalError`` when the journal is newer than this Waypost, or the
    ///   database refuses a statement.
    @discardableResult
    public static func migrate(_ connection: PostgresConnection, logger: Logger) async throws(PostgresJournalError) -> Int {
        do {
            return try await connection.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
                try await connection.query("CREATE TABLE IF NOT EXISTS waypost_schema (version integer NOT NULL)", logger: logger)
                var found: Int?
                for try await version in try await connection.query("SELECT version FROM waypost_schema", logger: logger)
                    .decode(Int.self)
                {
                    found = version
                }
                let version = found ?? 0
                guard version <= currentVersion else { throw PostgresJournalError.newer(version, than: currentVersion) }
                for statement in migrations[version...].joined() {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                if found == nil {
                    try await connection.query("INSERT INTO waypost_schema (version) VALUES (\(currentVersion))", logger: logger)
                } else if version < currentVersion {
                    try await connection.query("UPDATE waypost_schema SET version = \(currentVersion)", logger: logger)
                }
                return version
            }
        } catch let error as PostgresTransactionError {
            throw PostgresJournalError(error.closureError ?? error.commitError ?? error.beginError ?? error)
        } catch {
            throw PostgresJournalError(error)
        }
    }
}

/// A PostgreSQL journal that cannot be used: the database's own words where it gave some.
public struct PostgresJournalError: Error, Sendable, CustomStringConvertible {
    public var description: String

    init(description: String) {
        self.description = description
    }

    /// The error's message as PostgreSQL sent it (with its SQLSTATE), or the connection's
    /// failure; `PSQLError`'s own description hides both.
    init(_ error: any Error) {
        if let error = error as? PostgresJournalError {
            self = error
        } else if let error = error as? PSQLError {
            if let server = error.serverInfo, let message = server[.message] {
                description = "PostgreSQL: \(message) (SQLSTATE \(server[.sqlState] ?? "?"))"
            } else {
                description = "PostgreSQL: \(error.code)\(error.underlying.map { ": \($0)" } ?? "")"
            }
        } else {
            description = "PostgreSQL: \(error)"
        }
    }

    static func newer(_ version: Int, than current: Int) -> PostgresJournalError {
        PostgresJournalError(
            description: "the journal has schema version \(version), newer than this Waypost's \(current): upgrade Waypost")
    }
}
