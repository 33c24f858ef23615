import Logging
import PostgresNIO
import WaypostCore

/// The PostgreSQL journal's schema (SPEC §12) and its migrations: the model of the SQLite
/// journal (SPEC §7, §11: a message as received, one delivery per destination, attempts per
/// delivery) in PostgreSQL's types, and the cluster's tables (nodes, partition leases).
///
/// `waypost_schema.version` holds the number of migrations applied. Opening the journal applies
/// the missing ones in one transaction under an advisory lock, so nodes that start together
/// migrate once, and a journal written by a newer Waypost is refused rather than misread.
public enum PostgresSchema {
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
                partition        integer NOT NULL CHECK (partition >= 0 AND partition < \(QueuePartition.count)),
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
            INSERT INTO partitions (partition) SELECT generate_series(0, \(QueuePartition.count - 1))
            """,
            // Milliseconds since the Unix epoch as a timestamp, exactly (no floating point).
            """
            CREATE FUNCTION waypost_time(milliseconds bigint) RETURNS timestamptz
            LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT timestamptz 'epoch' + milliseconds * interval '1 millisecond' $$
            """,
            // A timestamp as milliseconds since the Unix epoch (exact: extract gives a numeric).
            """
            CREATE FUNCTION waypost_ms(at timestamptz) RETURNS bigint
            LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT (extract(epoch FROM at) * 1000)::bigint $$
            """,
            // The intake's group commit (SPEC §2, §12): a batch of messages stored by one
            // statement, so one round trip and one WAL flush, in the batch's order, each as the
            // SQLite journal stores it (JournalWriter.store): a source-supplied correlation id
            // already stored is a duplicate (same route) or a conflict (another route); an
            // idempotency key seen on the route since `dedup_since` is a duplicate (times in
            // milliseconds since the epoch); a message
            // that would wait is refused when `backlog_room` messages have been stored.
            // Deliveries are flattened: message i has `delivery_counts[i]` of them, in order.
            // One row per message: outcome 'stored' (with its deliveries' ids), 'duplicate'
            // (the existing message's id and state), 'conflict' (the other route in `state`) or
            // 'backlog_full'.
            """
            CREATE FUNCTION waypost_store(
                correlation_ids text[], supplied boolean[], routes text[], idempotency_keys text[], dedup_since bigint[],
                methods text[], paths text[], headers text[], bodies bytea[], received_at bigint[],
                client_addresses text[], trace_parents text[],
                delivery_counts integer[], destinations text[], ordering_keys text[], partitions integer[], filtered boolean[],
                backlog_room bigint)
            RETURNS TABLE (outcome text, correlation_id text, state text, delivery_ids bigint[])
            LANGUAGE plpgsql AS $$
            DECLARE
                first integer := 1;    -- the message's first delivery in the flattened arrays
                found_route text;
                message bigint;
                delivery bigint;
                waits boolean;
            BEGIN
                FOR i IN 1 .. coalesce(array_length(correlation_ids, 1), 0) LOOP
                    outcome := NULL;
                    correlation_id := correlation_ids[i];
                    state := NULL;
                    delivery_ids := NULL;
                    IF supplied[i] THEN
                        SELECT m.route, (\(messageStateSQL)) INTO found_route, state
                        FROM messages m WHERE m.correlation_id = correlation_ids[i];
                        IF FOUND THEN
                            outcome := CASE WHEN found_route = routes[i] THEN 'duplicate' ELSE 'conflict' END;
                            IF outcome = 'conflict' THEN state := found_route; END IF;
                        END IF;
                    END IF;
                    IF outcome IS NULL AND idempotency_keys[i] IS NOT NULL THEN
                        SELECT m.correlation_id, (\(messageStateSQL)) INTO correlation_id, state
                        FROM messages m
                        WHERE m.route = routes[i] AND m.idempotency_key = idempotency_keys[i] AND m.received_at >= waypost_time(dedup_since[i])
                        ORDER BY m.id DESC LIMIT 1;
                        IF FOUND THEN outcome := 'duplicate'; ELSE correlation_id := correlation_ids[i]; END IF;
                    END IF;
                    IF outcome IS NULL THEN
                        waits := false;
                        FOR j IN first .. first + delivery_counts[i] - 1 LOOP
                            waits := waits OR NOT filtered[j];
                        END LOOP;
                        IF waits AND backlog_room <= 0 THEN
                            outcome := 'backlog_full';
                        ELSE
                            INSERT INTO messages (correlation_id, route, idempotency_key, method, path, headers, body, received_at,
                                                  client_address, trace_parent)
                            VALUES (correlation_ids[i], routes[i], idempotency_keys[i], methods[i], paths[i], headers[i]::json,
                                    bodies[i], waypost_time(received_at[i]), client_addresses[i], trace_parents[i])
                            RETURNING id INTO message;
                            delivery_ids := '{}';
                            FOR j IN first .. first + delivery_counts[i] - 1 LOOP
                                INSERT INTO deliveries (message_id, route, destination, ordering_key, partition, state, updated_at)
                                VALUES (message, routes[i], destinations[j], ordering_keys[j], partitions[j],
                                        CASE WHEN filtered[j] THEN 'filtered' ELSE 'queued' END, waypost_time(received_at[i]))
                                RETURNING id INTO delivery;
                                delivery_ids := delivery_ids || delivery;
                            END LOOP;
                            IF waits THEN backlog_room := backlog_room - 1; END IF;
                            outcome := 'stored';
                        END IF;
                    END IF;
                    first := first + delivery_counts[i];
                    RETURN NEXT;
                END LOOP;
            END
            $$
            """,
            // The same for a batch of new messages only (no supplied correlation id, no
            // idempotency key, room in the backlog for all): one INSERT for the messages and one
            // for their deliveries, in the batch's order (identities are drawn in the order
            // of the SELECT), 2.5 times faster than the loop above for 130 messages of 1 KiB.
            // `delivery_messages` gives each delivery its message's place in the batch.
            """
            CREATE FUNCTION waypost_store_new(
                correlation_ids text[], routes text[], methods text[], paths text[], headers text[], bodies bytea[],
                received_at bigint[], client_addresses text[], trace_parents text[],
                delivery_messages integer[], destinations text[], ordering_keys text[], partitions integer[], filtered boolean[])
            RETURNS TABLE (outcome text, correlation_id text, state text, delivery_ids bigint[])
            LANGUAGE sql AS $$
                WITH input AS (
                    SELECT * FROM unnest(correlation_ids, routes, methods, paths, headers, bodies, received_at, client_addresses,
                                         trace_parents)
                        WITH ORDINALITY AS i(correlation_id, route, method, path, headers, body, received_at, client_address,
                                             trace_parent, n)),
                stored AS (
                    INSERT INTO messages (correlation_id, route, method, path, headers, body, received_at, client_address, trace_parent)
                    SELECT correlation_id, route, method, path, headers::json, body, waypost_time(received_at), client_address,
                           trace_parent
                    FROM input ORDER BY n
                    RETURNING id, correlation_id),
                planned AS (
                    INSERT INTO deliveries (message_id, route, destination, ordering_key, partition, state, updated_at)
                    SELECT s.id, i.route, x.destination, x.ordering_key, x.partition,
                           CASE WHEN x.filtered THEN 'filtered' ELSE 'queued' END, waypost_time(i.received_at)
                    FROM unnest(delivery_messages, destinations, ordering_keys, partitions, filtered)
                        WITH ORDINALITY AS x(message, destination, ordering_key, partition, filtered, k)
                    JOIN input i ON i.n = x.message
                    JOIN stored s ON s.correlation_id = i.correlation_id
                    ORDER BY x.k
                    RETURNING id, message_id)
                SELECT 'stored', s.correlation_id, NULL::text, array_agg(p.id ORDER BY p.id)
                FROM input i JOIN stored s ON s.correlation_id = i.correlation_id JOIN planned p ON p.message_id = s.id
                GROUP BY i.n, s.correlation_id ORDER BY i.n
            $$
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
        ],
        // Version 2: the time conversions in immutable SQL only, so that PostgreSQL inlines
        // them (timestamptz + interval is only stable): 0.35 µs a pair of calls instead of 1.8.
        [
            """
            CREATE OR REPLACE FUNCTION waypost_time(milliseconds bigint) RETURNS timestamptz
            LANGUAGE sql IMMUTABLE STRICT AS $$
                SELECT (timestamp '1970-01-01' + milliseconds * interval '1 millisecond') AT TIME ZONE 'UTC'
            $$
            """,
            """
            CREATE OR REPLACE FUNCTION waypost_ms(at timestamptz) RETURNS bigint
            LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT (extract(epoch FROM at AT TIME ZONE 'UTC') * 1000)::bigint $$
            """,
        ],
        // Version 3: the deliveries of a state in message order, for the lists of a state (the
        // console's failed list: 126 ms on a million messages without it, under 1 ms with it).
        [
            """
            CREATE INDEX IF NOT EXISTS deliveries_by_state_message ON deliveries (state, message_id)
            """
        ],
        // Version 4: the cluster (SPEC §12). `waypost_record` with fencing and announcements
        // (older journals have it without them), and the stored deliveries notified on
        // `waypost_stored` at commit, `NODE FIRST_ID` once a statement, for the nodes that hold
        // their queues.
        [
            """
            DROP FUNCTION IF EXISTS waypost_record(
                text[], bigint[], integer[], integer[], bigint[], text[], bigint[], text[], bigint[], integer[], text[], text[],
                bytea[], bigint[], text[], text[])
            """,
            // The forwarder's state changes, a batch in one statement, each as the SQLite journal
            // records it (JournalWriter.apply): 'started' (the delivery in flight, its attempt
            // opened), 'finished' (the attempt closed, the delivery's new state and the upstream's
            // answer when there was one: `p_status` not NULL), 'tripped' and 'closed' (a
            // breaker, `p_key`, since `p_at`). A delivery an operator skipped during the attempt
            // stays skipped unless it was delivered. Nobody is answered on the strength of these
            // rows, so they commit without waiting for the disk (synchronous_commit off, for this
            // statement's transaction only). One row per change: whether its message no longer
            // waits (`max_backlog` counts waiting messages).
            //
            // In a cluster (SPEC §12), a change with an epoch (`p_epoch`) is recorded only while
            // its delivery's partition still has that lease: a node that lost it records nothing
            // more of its queues (fencing), and its row says `ended` false. An attempt names the
            // node that made it (the session's `waypost.node`). The correlation ids in
            // `p_announce` of the changes recorded are notified on `waypost_outcomes` at commit,
            // `NODE ID ID …` in notifications under 8000 bytes, for the sources waiting on other
            // nodes. A breaker's change is notified on `waypost_breakers`, `NODE tripped SINCE KEY`
            // or `NODE closed 0 KEY`: the other nodes' breakers of the destination follow it.
            """
            CREATE OR REPLACE FUNCTION waypost_record(
                p_kind text[], p_delivery bigint[], p_attempt integer[], p_cycle_attempt integer[], p_at bigint[],
                p_state text[], p_next_attempt bigint[], p_last_error text[], p_duration bigint[], p_status integer[],
                p_error text[], p_response_headers text[], p_response_body bytea[], p_body_bytes bigint[], p_body_sha256 text[],
                p_key text[], p_epoch bigint[], p_announce text[])
            RETURNS TABLE (ended boolean)
            LANGUAGE plpgsql AS $$
            DECLARE
                at timestamptz;
                final_state text;
                changed integer;
                node_name text := coalesce(current_setting('waypost.node', true), '');
                announced text := '';
            BEGIN
                PERFORM set_config('synchronous_commit', 'off', true);
                FOR i IN 1 .. coalesce(array_length(p_kind, 1), 0) LOOP
                    ended := false;
                    at := waypost_time(p_at[i]);
                    IF p_epoch[i] IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM deliveries d JOIN partitions p ON p.partition = d.partition
                        WHERE d.id = p_delivery[i] AND p.epoch = p_epoch[i]) THEN
                        RETURN NEXT;
                        CONTINUE;
                    END IF;
                    CASE p_kind[i]
                    WHEN 'started' THEN
                        UPDATE deliveries SET state = 'in_flight', attempts = p_attempt[i], cycle_attempts = p_cycle_attempt[i],
                                              updated_at = at
                        WHERE id = p_delivery[i] AND state = 'queued';
                        INSERT INTO attempts (delivery_id, attempt, started_at, node) VALUES (p_delivery[i], p_attempt[i], at, node_name)
                        ON CONFLICT (delivery_id, attempt) DO UPDATE SET started_at = excluded.started_at, duration_ms = NULL,
                            status = NULL, error = NULL, body_bytes = NULL, body_sha256 = NULL, node = excluded.node;
                    WHEN 'finished' THEN
                        INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status, error, body_bytes, body_sha256, node)
                        VALUES (p_delivery[i], p_attempt[i], waypost_time(p_at[i] - p_duration[i]), p_duration[i], p_status[i],
                                p_error[i], p_body_bytes[i], p_body_sha256[i], node_name)
                        ON CONFLICT (delivery_id, attempt) DO UPDATE SET duration_ms = excluded.duration_ms, status = excluded.status,
                            error = excluded.error, body_bytes = excluded.body_bytes, body_sha256 = excluded.body_sha256,
                            node = excluded.node;
                        final_state := p_state[i];
                        LOOP
                            UPDATE deliveries SET state = final_state, last_error = p_last_error[i], updated_at = at,
                                next_attempt_at = CASE WHEN final_state = 'skipped' THEN NULL ELSE waypost_time(p_next_attempt[i]) END,
                                delivered_at = CASE WHEN final_state = 'delivered' THEN at ELSE delivered_at END,
                                response_status = coalesce(p_status[i], response_status),
                                response_headers = CASE WHEN p_status[i] IS NULL THEN response_headers ELSE p_response_headers[i]::json END,
                                response_body = CASE WHEN p_status[i] IS NULL THEN response_body ELSE p_response_body[i] END,
                                attempts = greatest(attempts, p_attempt[i]), cycle_attempts = coalesce(p_cycle_attempt[i], cycle_attempts)
                            WHERE id = p_delivery[i] AND (state <> 'skipped' OR final_state IN ('delivered', 'skipped'));
                            GET DIAGNOSTICS changed = ROW_COUNT;
                            EXIT WHEN changed = 1 OR final_state = 'skipped';
                            -- Skipped during the attempt: the skip stands, and the forwarder, which
                            -- may have queued a retry, is told to reload its queues.
                            final_state := 'skipped';
                        END LOOP;
                        IF changed = 0 THEN
                            final_state := p_state[i];
                        ELSIF final_state = 'skipped' AND p_state[i] <> 'skipped' THEN
                            UPDATE control SET value = value + 1 WHERE name = 'replay_generation';
                        END IF;
                        ended := final_state <> 'queued' AND NOT EXISTS (
                            SELECT 1 FROM deliveries o
                            WHERE o.message_id = (SELECT message_id FROM deliveries WHERE id = p_delivery[i])
                              AND o.id <> p_delivery[i] AND o.state IN ('queued', 'in_flight'));
                        IF p_announce[i] IS NOT NULL THEN
                            IF octet_length(announced) + octet_length(p_announce[i]) > 7000 THEN
                                PERFORM pg_notify('waypost_outcomes', node_name || announced);
                                announced := '';
                            END IF;
                            announced := announced || ' ' || p_announce[i];
                        END IF;
                    WHEN 'tripped' THEN
                        INSERT INTO control (name, value) VALUES ('tripped:' || p_key[i], p_at[i])
                        ON CONFLICT (name) DO UPDATE SET value = excluded.value;
                        PERFORM pg_notify('waypost_breakers', node_name || ' tripped ' || p_at[i] || ' ' || p_key[i]);
                    WHEN 'closed' THEN
                        DELETE FROM control WHERE name = 'tripped:' || p_key[i];
                        PERFORM pg_notify('waypost_breakers', node_name || ' closed 0 ' || p_key[i]);
                    END CASE;
                    RETURN NEXT;
                END LOOP;
                IF announced <> '' THEN PERFORM pg_notify('waypost_outcomes', node_name || announced); END IF;
            END
            $$
            """,
            """
            CREATE OR REPLACE FUNCTION waypost_notify_stored() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('waypost_stored', coalesce(current_setting('waypost.node', true), '') || ' ' || min(id))
                FROM stored HAVING count(*) > 0;
                RETURN NULL;
            END
            $$
            """,
            // A delivery of an `ordering: none` destination is a queue of its own: the writer
            // stores it with partition -1, and it gets its row id's (QueuePartition.of(row:)).
            """
            CREATE OR REPLACE FUNCTION waypost_partition_by_row() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                NEW.partition := NEW.id % \(QueuePartition.count) * 177 % \(QueuePartition.count);
                RETURN NEW;
            END
            $$
            """,
            """
            DROP TRIGGER IF EXISTS deliveries_partition_by_row ON deliveries
            """,
            """
            CREATE TRIGGER deliveries_partition_by_row BEFORE INSERT ON deliveries
            FOR EACH ROW WHEN (NEW.partition < 0) EXECUTE FUNCTION waypost_partition_by_row()
            """,
            """
            DROP TRIGGER IF EXISTS deliveries_stored ON deliveries
            """,
            """
            CREATE TRIGGER deliveries_stored AFTER INSERT ON deliveries REFERENCING NEW TABLE AS stored
            FOR EACH STATEMENT EXECUTE FUNCTION waypost_notify_stored()
            """,
        ],
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

    /// Deletes up to a thousand messages (with their deliveries and attempts) whose every
    /// delivery ended `delivered` or `filtered` before `before` (milliseconds since the epoch).
    static func prune(before: Int64) -> PostgresQuery {
        """
        DELETE FROM messages WHERE id IN (
            SELECT d.message_id FROM deliveries d
            WHERE d.state IN ('delivered', 'filtered') AND d.updated_at < waypost_time(\(before))
              AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.message_id = d.message_id
                              AND (o.state NOT IN ('delivered', 'filtered') OR o.updated_at >= waypost_time(\(before))))
            LIMIT 1000)
        RETURNING id
        """
    }

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
                // The code says what happened (connectionError, serverClosedConnection, ...).
                let underlying = error.underlying.flatMap { $0 is PSQLError ? nil : ": \($0)" } ?? ""
                description = "PostgreSQL: \(error.code)\(underlying)"
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
