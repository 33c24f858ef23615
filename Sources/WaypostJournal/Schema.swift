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
    ]

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
