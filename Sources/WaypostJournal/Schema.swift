import WaypostCore

/// The journal's schema (SPEC §7) and its migrations.
///
/// `PRAGMA user_version` holds the number of migrations applied; opening a journal applies
/// the missing ones in one transaction, so a journal written by an older Waypost is upgraded
/// in place and a newer one is refused rather than misread.
enum Schema {
    /// Migration `i` takes the schema from version `i` to `i + 1`.
    static let migrations: [String] = [
        """
        CREATE TABLE messages (
            id               INTEGER PRIMARY KEY,          -- order of acceptance
            correlation_id   TEXT NOT NULL UNIQUE,
            route            TEXT NOT NULL,
            ordering_key     TEXT,
            idempotency_key  TEXT,
            method           TEXT NOT NULL,
            path             TEXT NOT NULL,                -- path and query as received
            headers          TEXT NOT NULL,                -- JSON array of [name, value], in order
            body             BLOB NOT NULL,
            state            TEXT NOT NULL DEFAULT 'queued'
                             CHECK (state IN ('queued', 'in_flight', 'delivered', 'failed', 'skipped')),
            attempts         INTEGER NOT NULL DEFAULT 0,
            received_at      TEXT NOT NULL,                -- RFC 3339 UTC with milliseconds
            next_attempt_at  TEXT,
            delivered_at     TEXT,
            updated_at       TEXT NOT NULL,
            last_error       TEXT,
            response_status  INTEGER,
            response_headers TEXT,                         -- JSON array of [name, value]
            response_body    BLOB
        );
        CREATE INDEX messages_by_state ON messages (state, route, id);
        CREATE INDEX messages_by_idempotency_key ON messages (route, idempotency_key)
            WHERE idempotency_key IS NOT NULL;
        CREATE TABLE attempts (
            message_id  INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            attempt     INTEGER NOT NULL,
            started_at  TEXT NOT NULL,
            duration_ms INTEGER,
            status      INTEGER,
            error       TEXT,
            PRIMARY KEY (message_id, attempt)
        ) WITHOUT ROWID;
        CREATE VIEW queued AS
            SELECT id, correlation_id, route, attempts, received_at, next_attempt_at, last_error
            FROM messages WHERE state IN ('queued', 'in_flight') ORDER BY id;
        CREATE VIEW failed AS
            SELECT id, correlation_id, route, attempts, received_at, updated_at, response_status, last_error
            FROM messages WHERE state = 'failed' ORDER BY id;
        CREATE VIEW recent AS
            SELECT id, correlation_id, route, state, attempts, method, path, length(body) AS body_bytes,
                   received_at, delivered_at, response_status, last_error
            FROM messages ORDER BY id DESC LIMIT 100;
        """,
        """
        ALTER TABLE messages ADD COLUMN client_address TEXT;            -- the source's IP, for X-Forwarded-For
        ALTER TABLE messages ADD COLUMN replayed_at TEXT;               -- the last operator replay
        ALTER TABLE messages ADD COLUMN cycle_attempts INTEGER NOT NULL DEFAULT 0;  -- attempts since receipt or replay
        CREATE INDEX messages_by_delivered_at ON messages (delivered_at) WHERE state = 'delivered';
        -- Counters other processes bump to tell a running server to look again (replay, skip).
        CREATE TABLE control (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO control (name, value) VALUES ('replay_generation', 0);
        """,
        // Destinations (SPEC §11): the message row keeps the request as received; each of its
        // deliveries (one per destination) has a row of its own, and attempts belong to them.
        // A message of an earlier journal becomes one delivery with the message's own row id,
        // named like its route (which is how a route without `destinations` is configured).
        """
        DROP VIEW queued;
        DROP VIEW failed;
        DROP VIEW recent;
        DROP INDEX messages_by_state;
        DROP INDEX messages_by_delivered_at;
        CREATE TABLE deliveries (
            id               INTEGER PRIMARY KEY,          -- a destination's queue is in this order
            message_id       INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            route            TEXT NOT NULL,
            destination      TEXT NOT NULL,
            ordering_key     TEXT,
            state            TEXT NOT NULL DEFAULT 'queued'
                             CHECK (state IN ('queued', 'in_flight', 'delivered', 'failed', 'skipped', 'filtered')),
            attempts         INTEGER NOT NULL DEFAULT 0,
            cycle_attempts   INTEGER NOT NULL DEFAULT 0,   -- attempts since receipt or replay
            replayed_at      TEXT,                         -- the last operator replay
            next_attempt_at  TEXT,
            delivered_at     TEXT,
            updated_at       TEXT NOT NULL,
            last_error       TEXT,
            response_status  INTEGER,                      -- the upstream's last answer
            response_headers TEXT,                         -- JSON array of [name, value]
            response_body    BLOB,
            UNIQUE (message_id, destination)
        );
        INSERT INTO deliveries (id, message_id, route, destination, ordering_key, state, attempts, cycle_attempts, replayed_at,
                                next_attempt_at, delivered_at, updated_at, last_error, response_status, response_headers,
                                response_body)
            SELECT id, id, route, route, ordering_key, state, attempts, cycle_attempts, replayed_at, next_attempt_at,
                   delivered_at, updated_at, last_error, response_status, response_headers, response_body
            FROM messages;
        CREATE INDEX deliveries_by_state ON deliveries (state, route, destination, id);
        CREATE INDEX deliveries_by_end ON deliveries (updated_at) WHERE state IN ('delivered', 'filtered');
        CREATE TABLE delivery_attempts (
            delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
            attempt     INTEGER NOT NULL,
            started_at  TEXT NOT NULL,
            duration_ms INTEGER,
            status      INTEGER,
            error       TEXT,
            PRIMARY KEY (delivery_id, attempt)
        ) WITHOUT ROWID;
        INSERT INTO delivery_attempts SELECT message_id, attempt, started_at, duration_ms, status, error FROM attempts;
        DROP TABLE attempts;
        ALTER TABLE delivery_attempts RENAME TO attempts;
        ALTER TABLE messages DROP COLUMN ordering_key;
        ALTER TABLE messages DROP COLUMN state;
        ALTER TABLE messages DROP COLUMN attempts;
        ALTER TABLE messages DROP COLUMN next_attempt_at;
        ALTER TABLE messages DROP COLUMN delivered_at;
        ALTER TABLE messages DROP COLUMN updated_at;
        ALTER TABLE messages DROP COLUMN last_error;
        ALTER TABLE messages DROP COLUMN response_status;
        ALTER TABLE messages DROP COLUMN response_headers;
        ALTER TABLE messages DROP COLUMN response_body;
        ALTER TABLE messages DROP COLUMN replayed_at;
        ALTER TABLE messages DROP COLUMN cycle_attempts;
        -- A message's state, derived from its deliveries' (SPEC §11), with its first delivery's
        -- details (attempts included): the one whose answer a waiting source gets.
        CREATE VIEW message_states AS
            SELECT m.id, m.correlation_id, m.route,
                   (\(messageStateSQL)) AS state,
                   p.attempts, p.destination AS reply_from, p.ordering_key, m.received_at, p.next_attempt_at, p.delivered_at,
                   p.last_error, p.response_status
            FROM messages m JOIN deliveries p ON p.id = (SELECT min(id) FROM deliveries WHERE message_id = m.id);
        CREATE VIEW queued AS
            SELECT d.message_id AS id, m.correlation_id, d.route, d.destination, d.state, d.attempts, m.received_at,
                   d.next_attempt_at, d.last_error
            FROM deliveries d JOIN messages m ON m.id = d.message_id
            WHERE d.state IN ('queued', 'in_flight') ORDER BY d.id;
        CREATE VIEW failed AS
            SELECT d.message_id AS id, m.correlation_id, d.route, d.destination, d.attempts, m.received_at, d.updated_at,
                   d.response_status, d.last_error
            FROM deliveries d JOIN messages m ON m.id = d.message_id
            WHERE d.state = 'failed' ORDER BY d.id;
        CREATE VIEW recent AS
            SELECT s.id, s.correlation_id, s.route, s.state, s.attempts, m.method, m.path, length(m.body) AS body_bytes,
                   s.received_at, s.delivered_at, s.response_status, s.last_error
            FROM message_states s JOIN messages m ON m.id = s.id ORDER BY s.id DESC LIMIT 100;
        """,
        // Transforms (SPEC §11): what each attempt sent, so that an operator can tell which
        // program version a replay ran and compare it with what the upstream logged.
        """
        ALTER TABLE attempts ADD COLUMN body_bytes INTEGER;   -- the size of the body sent
        ALTER TABLE attempts ADD COLUMN body_sha256 TEXT;     -- its SHA-256, lower-case hex
        """,
        // Tracing (SPEC §14): the intake span's W3C traceparent when spans are exported, the
        // parent of every attempt's span, replays' included.
        """
        ALTER TABLE messages ADD COLUMN trace_parent TEXT;
        """,
        // The console and the admin API list messages by the time they were received: a narrow
        // time range is walked on this index (``MessageSelection``), not every message of a state.
        """
        CREATE INDEX messages_by_received_at ON messages (received_at);
        """,
    ]

    /// Deletes up to a thousand messages (their deliveries and attempts with them) whose every
    /// delivery was `delivered` or `filtered` before `?1` (RFC 3339).
    static let pruneSQL = """
        DELETE FROM messages WHERE id IN (
            SELECT d.message_id FROM deliveries d
            WHERE d.state IN ('delivered', 'filtered') AND d.updated_at < ?1
              AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.message_id = d.message_id
                              AND (o.state NOT IN ('delivered', 'filtered') OR o.updated_at >= ?1))
            LIMIT 1000)
        """

    /// A message's state from those of its deliveries `d` (SPEC §11), as an SQL expression over
    /// the message `m`: waiting while any delivery waits, else `delivered` when every one is
    /// delivered or filtered and one is delivered, else `filtered` when all are, else `failed`
    /// when one failed, else `skipped`.
    static let messageStateSQL = """
        SELECT CASE
            WHEN sum(d.state = 'in_flight') > 0 THEN 'in_flight'
            WHEN sum(d.state = 'queued') > 0 THEN 'queued'
            WHEN sum(d.state = 'delivered') > 0 AND sum(d.state IN ('delivered', 'filtered')) = count(*) THEN 'delivered'
            WHEN sum(d.state = 'filtered') = count(*) THEN 'filtered'
            WHEN sum(d.state = 'failed') > 0 THEN 'failed'
            ELSE 'skipped' END
        FROM deliveries d WHERE d.message_id = m.id
        """

    static var currentVersion: Int64 { Int64(migrations.count) }

    /// Tells a running server's forwarder to reload its queues (replay, skip, pause, resume).
    static let bumpReplayGeneration = "UPDATE control SET value = value + 1 WHERE name = 'replay_generation'"

    /// Applies the pragmas every writer connection needs, then any missing migrations.
    static func prepareWriter(_ db: SQLiteConnection, durability: Durability, busyTimeoutMilliseconds: Int) throws(JournalError) {
        try db.execute("PRAGMA busy_timeout = \(busyTimeoutMilliseconds)")
        try db.execute("PRAGMA journal_mode = WAL")
        try db.execute("PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
        try db.execute("PRAGMA foreign_keys = ON")
        try migrate(db)
    }

    static func migrate(_ db: SQLiteConnection) throws(JournalError) {
        try db.transaction { () throws(JournalError) in
            let version = try db.scalarInt("PRAGMA user_version") ?? 0
            guard version <= currentVersion else {
                throw JournalError(
                    .incompatible, "the journal has schema version \(version), newer than this Waypost's \(currentVersion): upgrade Waypost"
                )
            }
            for index in Int(version)..<migrations.count {
                try db.execute(migrations[index])
            }
            try db.execute("PRAGMA user_version = \(currentVersion)")
        }
    }
}
