import Logging
import PostgresNIO
import Synchronization
import WaypostCore

/// One node's share of the cluster's partitions (SPEC §12, `docs/scaling.md`): each delivery
/// queue belongs to a partition, and each partition is leased to one node at a time, in the
/// `partitions` table. ``heartbeat()`` is called every third of `lease_ttl` or so; each call
///
/// 1. records the node's heartbeat;
/// 2. renews the leases it still holds (one whose expiry passed is lost, even if nobody took it:
///    it must be acquired again, with a new epoch);
/// 3. counts the live nodes (a heartbeat within `lease_ttl`) and the node's fair share,
///    `ceil(partitions / live)`;
/// 4. gives up what it holds above that share (the highest-numbered partitions), so that a node
///    that joins finds free partitions at its next heartbeat;
/// 5. takes free or expired partitions up to its share, each with its epoch increased by one.
///
/// A lease is valid for this node until ``deadline(of:)``: `lease_ttl` after the moment the
/// renewing statement was sent, by the node's monotonic clock. The database's expiry is
/// `lease_ttl` after its own `now()` for that statement, which is later, so a node that stops
/// delivering a partition at its deadline has stopped before another node can lease it, and a
/// node frozen past its deadline (SIGSTOP, a long pause) knows it on waking, without asking
/// the database. The epoch is the fencing token: state recorded under an older epoch than the
/// partition's current one comes from a node that lost the lease.
public final class PartitionLeases: Sendable {
    /// A partition this node holds: its epoch, and until when (monotonic) it may deliver it.
    public struct Lease: Sendable, Equatable {
        public var epoch: Int64
        public var deadline: ContinuousClock.Instant
    }

    /// What a heartbeat changed.
    public struct Change: Sendable, Equatable {
        /// Partitions newly held, with their new epochs: their queues are to be loaded.
        public var acquired: [Int: Int64] = [:]
        /// Partitions no longer held (expired before renewal, or given up for a fair share):
        /// delivery of their queues must stop.
        public var lost: Set<Int> = []
        /// Live nodes, this one included.
        public var liveNodes = 0
    }

    public let node: String
    private let ttl: Duration
    private let connection: PostgresConnection
    private let held = Mutex<[Int: Lease]>([:])
    private let logger: Logger

    public init(node: String, ttl: Duration, connection: PostgresConnection, logger: Logger) {
        self.node = node
        self.ttl = ttl
        self.connection = connection
        self.logger = logger
    }

    /// The partitions held now (deadlines not yet passed), with their leases.
    public func leases(at now: ContinuousClock.Instant = .now) -> [Int: Lease] {
        held.withLock { $0.filter { $0.value.deadline > now } }
    }

    /// Until when this node may deliver `partition`'s queues; nil when it does not hold it.
    public func deadline(of partition: Int) -> ContinuousClock.Instant? {
        held.withLock { $0[partition]?.deadline }
    }

    /// One round of the protocol above; what it changed.
    public func heartbeat(address: String? = nil) async throws(PostgresJournalError) -> Change {
        let sent = ContinuousClock.now
        let deadline = sent + ttl
        let milliseconds = ttl.milliseconds
        var change = Change()
        do {
            try await connection.query(
                """
                INSERT INTO nodes (name, started_at, heartbeat_at, address) VALUES (\(node), now(), now(), \(address))
                ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), address = excluded.address
                """, logger: logger)
            var renewed: [Int: Int64] = [:]
            for try await (partition, epoch) in try await connection.query(
                """
                UPDATE partitions SET expires_at = now() + \(milliseconds) * interval '1 millisecond'
                WHERE node = \(node) AND expires_at > now() RETURNING partition, epoch
                """, logger: logger
            ).decode((Int, Int64).self) {
                renewed[partition] = epoch
            }
            for try await live in try await connection.query(
                "SELECT count(*)::bigint FROM nodes WHERE heartbeat_at > now() - \(milliseconds) * interval '1 millisecond'",
                logger: logger
            ).decode(Int.self) {
                change.liveNodes = live
            }
            let share = (PostgresSchema.partitions + max(change.liveNodes, 1) - 1) / max(change.liveNodes, 1)
            if renewed.count > share {
                let extra = Array(renewed.keys.sorted().suffix(renewed.count - share))
                try await connection.query(
                    "UPDATE partitions SET node = NULL, expires_at = NULL WHERE node = \(node) AND partition = ANY(\(extra))",
                    logger: logger)
                for partition in extra { renewed[partition] = nil }
            }
            if renewed.count < share {
                for try await (partition, epoch) in try await connection.query(
                    """
                    UPDATE partitions SET node = \(node), epoch = epoch + 1, expires_at = now() + \(milliseconds) * interval '1 millisecond'
                    WHERE partition IN (
                        SELECT partition FROM partitions WHERE node IS NULL OR expires_at IS NULL OR expires_at <= now()
                        ORDER BY partition LIMIT \(share - renewed.count) FOR UPDATE SKIP LOCKED)
                    RETURNING partition, epoch
                    """, logger: logger
                ).decode((Int, Int64).self) {
                    renewed[partition] = epoch
                    change.acquired[partition] = epoch
                }
            }
            held.withLock { held in
                change.lost = Set(held.keys).subtracting(renewed.keys)
                // A partition lost and taken again within one heartbeat counts as both.
                for (partition, epoch) in renewed where held[partition].map({ $0.epoch != epoch }) ?? false {
                    change.lost.insert(partition)
                    change.acquired[partition] = epoch
                }
                held = renewed.mapValues { Lease(epoch: $0, deadline: deadline) }
            }
        } catch {
            throw PostgresJournalError(error)
        }
        if !change.acquired.isEmpty || !change.lost.isEmpty {
            logger.info(
                "partition leases changed",
                metadata: ["acquired": "\(change.acquired.count)", "lost": "\(change.lost.count)", "live_nodes": "\(change.liveNodes)"])
        }
        return change
    }

    /// Gives every lease up (a graceful stop): other nodes take the partitions at their next
    /// heartbeat rather than after `lease_ttl`.
    public func release() async throws(PostgresJournalError) {
        held.withLock { $0 = [:] }
        do {
            try await connection.query("UPDATE partitions SET node = NULL, expires_at = NULL WHERE node = \(node)", logger: logger)
            try await connection.query("DELETE FROM nodes WHERE name = \(node)", logger: logger)
        } catch {
            throw PostgresJournalError(error)
        }
    }
}
