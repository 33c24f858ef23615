import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization
import WaypostCore
import WaypostJournal

/// One node's share of the cluster's partitions (SPEC §12, `docs/scaling.md`): each delivery
/// queue belongs to a partition (``QueuePartition``), and each partition is leased to one node
/// at a time, in the `partitions` table. As a `Service` it calls ``heartbeat()`` every third of
/// `lease_ttl`, on a connection of its own; each call
///
/// 1. records the node's heartbeat;
/// 2. counts the live nodes (a heartbeat within `lease_ttl`) and the node's fair share,
///    `ceil(partitions / live)`;
/// 3. renews the leases it holds, up to that share (one whose expiry passed is lost, even if
///    nobody took it: it must be acquired again, with a new epoch). Those above the share (the
///    highest-numbered) it stops delivering at once and lets expire, so that a node that joins
///    takes them once nobody can still be sending them;
/// 4. takes free or expired partitions up to its share, each with its epoch increased by one,
///    and queues again their deliveries the previous holder left `in_flight` (at least once).
///
/// A lease is valid for this node until ``leases(at:)``'s deadline: nine tenths of `lease_ttl`
/// after the moment the renewing statement was sent, by the node's monotonic clock. The
/// database's expiry is `lease_ttl` after its own `now()` for that statement, which is later,
/// so a node that stops delivering a partition at its deadline has stopped before another node
/// can lease it (the tenth covers clocks that run at different rates), and a node frozen past
/// its deadline (SIGSTOP, a long pause) knows it on waking, without asking the database. The
/// epoch is the fencing token: state recorded under an older epoch than the partition's
/// current one comes from a node that lost the lease, and `waypost_record` ignores it.
///
/// A node's name is its own: the heartbeat connection holds an advisory lock on it, so a
/// second process with the same name is refused rather than left to renew the first's leases.
public final class PartitionLeases: Service, DeliveryOwnership {
    /// What a heartbeat changed.
    public struct Change: Sendable, Equatable {
        /// Partitions newly held, with their new epochs: their queues are to be loaded.
        public var acquired: [Int: Int64] = [:]
        /// Partitions no longer held (expired before renewal, or above the fair share):
        /// delivery of their queues must stop.
        public var lost: Set<Int> = []
        /// Live nodes, this one included.
        public var liveNodes = 0
    }

    public let node: String
    private let ttl: Duration
    private let connect: @Sendable () async throws -> PostgresConnection
    private let logger: Logger
    private struct State {
        /// The node's intake listener, shown by `waypost status`.
        var address: String?
        var held: [Int: PartitionLease] = [:]
        var connection: PostgresConnection?
        var observers: [@Sendable () -> Void] = []
        var beats = 0
        var generation = 0
    }
    private let state = Mutex(State())

    /// - Parameters:
    ///   - node: the node's name, unique in the cluster (`cluster.node`).
    ///   - ttl: `cluster.lease_ttl`.
    ///   - address: its intake listener, shown by `waypost status`.
    public init(
        node: String, ttl: Duration, address: String? = nil, connect: @escaping @Sendable () async throws -> PostgresConnection,
        logger: Logger
    ) {
        self.node = node
        self.ttl = ttl
        state.withLock { $0.address = address }
        self.connect = connect
        self.logger = logger
    }

    /// The partitions held at `now` (deadlines not yet passed), with their leases.
    public func leases(at now: ContinuousClock.Instant = .now) -> [Int: PartitionLease] {
        state.withLock { $0.held.filter { $0.value.deadline > now } }
    }

    public var generation: Int { state.withLock { $0.generation } }

    /// The intake listener's address once bound (its port may have been chosen then), for the
    /// next heartbeats.
    public func listening(on address: String) {
        state.withLock { $0.address = address }
    }

    public func onChange(_ observer: @escaping @Sendable () -> Void) {
        state.withLock { $0.observers.append(observer) }
    }

    /// Heartbeats every third of `lease_ttl` until graceful shutdown, then gives every lease up.
    /// A heartbeat that fails is logged and tried again at the next: the leases run out at
    /// their deadlines meanwhile, and delivery stops with them.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    // A connection that died may never answer: a heartbeat gets half the ttl (its
                    // leases last 0.9 of it from the moment it is sent).
                    _ = try await withTimeout(self.ttl / 2) { try await self.heartbeat() }
                } catch {
                    self.logger.warning("cluster heartbeat failed", metadata: ["node": "\(self.node)", "error": "\(error)"])
                    await self.dropConnection()
                }
                try? await Task.sleep(for: self.ttl / 3)
            }
        }
        do {
            try await withTimeout(ttl / 3) { try await self.release() }
        } catch {
            logger.warning("cannot give the partitions up; they expire after lease_ttl", metadata: ["error": "\(error)"])
        }
        await dropConnection()
    }

    /// The heartbeat connection, opened (and the node's name locked) on first use.
    private func connection() async throws(PostgresJournalError) -> PostgresConnection {
        if let connection = state.withLock({ $0.connection }) { return connection }
        let connection: PostgresConnection
        do {
            connection = try await withTimeout(ttl / 3, late: { try? await $0.close() }) { try await self.connect() }
        } catch {
            throw PostgresJournalError(error)
        }
        do {
            var locked = false
            for try await row in try await connection.query(
                "SELECT pg_try_advisory_lock(hashtextextended('waypost node ' || \(node), 0))", logger: logger
            ).decode(Bool.self) {
                locked = row
            }
            guard locked else {
                throw PostgresJournalError(
                    description: "another Waypost node named \"\(node)\" runs on this journal; give each node its own cluster.node")
            }
        } catch {
            try? await connection.close()
            throw PostgresJournalError(error)
        }
        state.withLock { $0.connection = connection }
        return connection
    }

    private func dropConnection() async {
        if let connection = state.withLock({ $0.connection.take() }) { try? await connection.close() }
    }

    /// One round of the protocol above; what it changed.
    @discardableResult
    public func heartbeat() async throws(PostgresJournalError) -> Change {
        let connection = try await connection()
        let sent = ContinuousClock.now
        let deadline = sent + ttl * 9 / 10
        let milliseconds = ttl.milliseconds
        let expiry = "now() + \(milliseconds) * interval '1 millisecond'"
        var change = Change()
        let (held, first, address) = state.withLock { state in
            defer { state.beats += 1 }
            return (state.held.filter { $0.value.deadline > sent }, state.beats == 0, state.address)
        }
        do {
            try await connection.query(
                """
                INSERT INTO nodes (name, started_at, heartbeat_at, address) VALUES (\(node), now(), now(), \(address))
                ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), address = excluded.address
                """, logger: logger)
            for try await live in try await connection.query(
                "SELECT count(*)::bigint FROM nodes WHERE heartbeat_at > now() - \(milliseconds) * interval '1 millisecond'",
                logger: logger
            ).decode(Int.self) {
                change.liveNodes = live
            }
            let share = (QueuePartition.count + max(change.liveNodes, 1) - 1) / max(change.liveNodes, 1)
            let keep = Array(held.keys.sorted().prefix(share))
            var renewed: [Int: Int64] = [:]
            for try await (partition, epoch) in try await connection.query(
                PostgresQuery(
                    unsafeSQL: """
                        UPDATE partitions SET expires_at = \(expiry)
                        WHERE node = $1 AND expires_at > now() AND partition = ANY($2) RETURNING partition, epoch
                        """, binds: Self.binds(node, keep)), logger: logger
            ).decode((Int, Int64).self) {
                renewed[partition] = epoch
            }
            if renewed.count < share {
                for try await (partition, epoch) in try await connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            UPDATE partitions SET node = $1, epoch = epoch + 1, expires_at = \(expiry)
                            WHERE partition IN (
                                SELECT partition FROM partitions WHERE node IS NULL OR expires_at IS NULL OR expires_at <= now()
                                ORDER BY partition LIMIT $2 FOR UPDATE SKIP LOCKED)
                            RETURNING partition, epoch
                            """, binds: Self.binds(node, share - renewed.count)), logger: logger
                ).decode((Int, Int64).self) {
                    renewed[partition] = epoch
                    change.acquired[partition] = epoch
                }
            }
            if !change.acquired.isEmpty {
                // The previous holders' attempts in flight: sent again by this node, in order.
                let acquired = Array(change.acquired.keys)
                try await connection.query(
                    """
                    UPDATE attempts a SET error = 'interrupted: the node delivering it stopped or lost its lease'
                    FROM deliveries d
                    WHERE d.partition = ANY(\(acquired)) AND d.state = 'in_flight' AND a.delivery_id = d.id
                      AND a.duration_ms IS NULL AND a.status IS NULL AND a.error IS NULL
                    """, logger: logger)
                try await connection.query(
                    "UPDATE deliveries SET state = 'queued' WHERE partition = ANY(\(acquired)) AND state = 'in_flight'", logger: logger)
            }
            // Nodes silent for an hour (killed, never stopped) leave `waypost status`; one that
            // was only frozen comes back with its next heartbeat.
            try await connection.query(
                "DELETE FROM nodes WHERE heartbeat_at < now() - interval '1 hour' AND name <> \(node)", logger: logger)
            if first && change.liveNodes == 1 {
                // Alone on the journal: breakers tripped by nodes that stopped are forgotten, as
                // a single server forgets its own when it restarts.
                try await connection.query("DELETE FROM control WHERE name LIKE 'tripped:%'", logger: logger)
            }
            let observers = state.withLock { state in
                change.lost = Set(state.held.keys).subtracting(renewed.keys)
                // A partition lost and taken again within one heartbeat counts as both.
                for (partition, epoch) in renewed where state.held[partition].map({ $0.epoch != epoch }) ?? false {
                    change.lost.insert(partition)
                    change.acquired[partition] = epoch
                }
                state.held = renewed.mapValues { PartitionLease(epoch: $0, deadline: deadline) }
                state.generation += 1
                return state.observers
            }
            if !change.acquired.isEmpty || !change.lost.isEmpty {
                logger.info(
                    "partition leases changed",
                    metadata: [
                        "node": "\(node)", "acquired": "\(change.acquired.count)", "lost": "\(change.lost.count)",
                        "held": "\(renewed.count)", "live_nodes": "\(change.liveNodes)",
                    ])
                for observer in observers { observer() }
            }
        } catch {
            throw PostgresJournalError(error)
        }
        return change
    }

    private static func binds(_ node: String, _ value: some PostgresNonThrowingEncodable) -> PostgresBindings {
        var binds = PostgresBindings(capacity: 2)
        binds.append(node)
        binds.append(value)
        return binds
    }

    /// Gives every lease up (a graceful stop, once the forwarder stopped): other nodes take the
    /// partitions at their next heartbeat rather than after `lease_ttl`.
    public func release() async throws(PostgresJournalError) {
        state.withLock { state in
            state.held = [:]
            state.generation += 1
        }
        guard let connection = state.withLock({ $0.connection }) else { return }
        do {
            try await connection.query("UPDATE partitions SET node = NULL, expires_at = NULL WHERE node = \(node)", logger: logger)
            try await connection.query("DELETE FROM nodes WHERE name = \(node)", logger: logger)
        } catch {
            throw PostgresJournalError(error)
        }
    }
}
