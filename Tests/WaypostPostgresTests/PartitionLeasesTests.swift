import Foundation
import Logging
import PostgresNIO
import Testing
import WaypostCore
import WaypostJournal
import WaypostTestSupport

@testable import WaypostPostgres

extension PostgresTests {
    /// Several nodes' leases on one real PostgreSQL (``PostgresServer``), each node a
    /// ``PartitionLeases`` on a connection of its own, with a short `lease_ttl`. Nodes heartbeat
    /// when a test says so, not on a timer.
    @Suite("the cluster's partition leases: shares, joins, expiry, takeover, epochs (SPEC §12)")
    struct PartitionLeasesTests {
        static let logger = Logger(label: "test")
        static let ttl = Duration.seconds(3)

        static func cluster(_ names: [String]) async throws -> (PostgresServer, [PartitionLeases]) {
            let server = try await PostgresServer.start()
            let connection = try await PostgresSchemaTests.connect(server)
            try await PostgresSchema.migrate(connection, logger: logger)
            try await connection.close()
            let nodes = names.map {
                PartitionLeases(node: $0, ttl: ttl, connect: { try await PostgresSchemaTests.connect(server) }, logger: logger)
            }
            return (server, nodes)
        }

        /// Heartbeats every node every 300 ms until their shares are even (each holds
        /// `count / live` or one fewer, and every partition is held), within `limit`.
        static func settle(_ nodes: [PartitionLeases], within limit: Duration) async throws -> Duration {
            let start = ContinuousClock.now
            while true {
                for node in nodes { try await node.heartbeat() }
                let held = nodes.map { $0.leases().count }
                let share = (QueuePartition.count + nodes.count - 1) / nodes.count
                if held.reduce(0, +) == QueuePartition.count && held.allSatisfy({ $0 >= share - nodes.count }) {
                    return .now - start
                }
                guard ContinuousClock.now - start < limit else { throw SettleError(held: held) }
                try await Task.sleep(for: .milliseconds(300))
            }
        }

        struct SettleError: Error { var held: [Int] }

        /// Partition → node, as the table says, for leases unexpired by the database's clock.
        static func owners(_ server: PostgresServer) throws -> [Int: String] {
            var owners: [Int: String] = [:]
            for line in try server.psql("SELECT partition, node FROM partitions WHERE node IS NOT NULL AND expires_at > now()").split(
                separator: "\n")
            {
                let fields = line.split(separator: "|")
                if fields.count == 2, let partition = Int(fields[0]) { owners[partition] = String(fields[1]) }
            }
            return owners
        }

        @Test("one node leases every partition; a second gets half once the first let them expire, under a new epoch")
        func join() async throws {
            let (server, nodes) = try await Self.cluster(["a", "b"])
            defer { server.stop() }
            let (a, b) = (nodes[0], nodes[1])
            let first = try await a.heartbeat()
            #expect(first.acquired.count == QueuePartition.count && first.acquired.values.allSatisfy { $0 == 1 })
            #expect(first.liveNodes == 1)

            // b joins: nothing is free. a stops delivering half at once, and lets their leases
            // expire rather than giving them up while it may still be sending: b gets none yet.
            #expect(try await b.heartbeat().acquired.isEmpty)
            let given = try await a.heartbeat()
            #expect(given.lost.count == QueuePartition.count / 2 && given.liveNodes == 2)
            #expect(a.leases().count == QueuePartition.count / 2)
            #expect(try await b.heartbeat().acquired.isEmpty)
            let joined = ContinuousClock.now
            var taken: [Int: Int64] = [:]
            while taken.count < given.lost.count, ContinuousClock.now - joined < Self.ttl * 3 {
                try await Task.sleep(for: .milliseconds(300))
                try await a.heartbeat()
                taken.merge(try await b.heartbeat().acquired) { $1 }
            }
            #expect(Set(taken.keys) == given.lost)
            #expect(taken.values.allSatisfy { $0 == 2 })
            // Within SPEC's 3 × lease_ttl of the join, and not before a's leases ran out.
            #expect(ContinuousClock.now - joined < Self.ttl * 3)
            let owners = try Self.owners(server)
            #expect(owners.count == QueuePartition.count)
            #expect(owners.values.filter { $0 == "a" }.count == QueuePartition.count / 2)
            #expect(Set(a.leases().keys).isDisjoint(with: b.leases().keys))
        }

        @Test("a node that stops heartbeating loses its partitions to the others after lease_ttl, not before")
        func takeover() async throws {
            let (server, nodes) = try await Self.cluster(["a", "b", "c"])
            defer { server.stop() }
            _ = try await Self.settle(nodes, within: Self.ttl * 4)
            // Shares of ceil(256 / 3) = 86.
            let held = nodes.map { $0.leases().count }
            #expect(held.reduce(0, +) == 256 && held.allSatisfy { $0 <= 86 }, "\(held)")
            let dead = Set(nodes[2].leases().keys)
            let deadEpochs = nodes[2].leases().mapValues(\.epoch)

            // c stops; before its leases expire, nobody takes them.
            let stopped = ContinuousClock.now
            var changes = [try await nodes[0].heartbeat(), try await nodes[1].heartbeat()]
            #expect(changes.allSatisfy { $0.acquired.isEmpty })
            var taken: Set<Int> = []
            while taken.count < dead.count, ContinuousClock.now - stopped < Self.ttl * 4 {
                try await Task.sleep(for: .milliseconds(300))
                changes = [try await nodes[0].heartbeat(), try await nodes[1].heartbeat()]
                for change in changes {
                    #expect(change.acquired.keys.allSatisfy { dead.contains($0) })
                    for (partition, epoch) in change.acquired {
                        #expect(epoch == deadEpochs[partition]! + 1)
                        taken.insert(partition)
                    }
                }
            }
            #expect(taken == dead)
            #expect(ContinuousClock.now - stopped >= Self.ttl - .milliseconds(400))
            // c's own view: past its deadline it holds nothing, without asking the database.
            #expect(nodes[2].leases().isEmpty)
            #expect(nodes[2].leases(at: stopped).count == dead.count)
        }

        @Test("a node frozen past its lease gets nothing back by renewing: it must lease again, under a new epoch, what is free")
        func frozen() async throws {
            let (server, nodes) = try await Self.cluster(["a", "b"])
            defer { server.stop() }
            let (a, b) = (nodes[0], nodes[1])
            _ = try await Self.settle(nodes, within: Self.ttl * 4)
            let mine = a.leases()
            #expect(mine.count == QueuePartition.count / 2)
            // a is frozen for longer than lease_ttl while b goes on and takes everything.
            let frozen = ContinuousClock.now
            while ContinuousClock.now - frozen < Self.ttl * 2 {
                try await Task.sleep(for: .milliseconds(300))
                try await b.heartbeat()
            }
            #expect(try Self.owners(server).values.allSatisfy { $0 == "b" })
            #expect(a.leases().isEmpty)
            // a wakes: everything it held is lost; it gets half back once b let them expire,
            // under epochs newer than any it had.
            let woken = try await a.heartbeat()
            #expect(woken.lost == Set(mine.keys))
            #expect(woken.acquired.isEmpty)
            _ = try await Self.settle(nodes, within: Self.ttl * 4)
            for (partition, lease) in a.leases() where mine[partition] != nil {
                #expect(lease.epoch > mine[partition]!.epoch)
            }
        }

        @Test("a graceful stop gives the partitions up at once; every heartbeat and the release change the generation")
        func release() async throws {
            let (server, nodes) = try await Self.cluster(["a", "b"])
            defer { server.stop() }
            // The forwarder looks at its leases again only when the generation changed (or a deadline passed).
            var generations = [nodes[0].generation]
            _ = try await nodes[0].heartbeat()
            generations.append(nodes[0].generation)
            _ = try await nodes[1].heartbeat()
            _ = try await nodes[0].heartbeat()
            generations.append(nodes[0].generation)
            try await nodes[0].release()
            generations.append(nodes[0].generation)
            #expect(generations == [0, 1, 2, 3])
            #expect(nodes[0].leases().isEmpty)
            #expect(try await nodes[1].heartbeat().acquired.count == QueuePartition.count)
            #expect(try server.psql("SELECT string_agg(name, ',') FROM nodes") == "b")
        }

        @Test("a second node of the same name is refused while the first runs")
        func sameName() async throws {
            let (server, nodes) = try await Self.cluster(["a", "a"])
            defer { server.stop() }
            try await nodes[0].heartbeat()
            await #expect(throws: PostgresJournalError.self) { try await nodes[1].heartbeat() }
            try await nodes[0].release()
        }

        @Test("taking a partition over queues again what its previous holder left in flight, and fences that holder's records")
        func fencing() async throws {
            let (server, nodes) = try await Self.cluster(["a", "b"])
            defer { server.stop() }
            let partition = QueuePartition.of(route: "r", destination: "d", queueKey: nil)
            try server.psql(
                """
                INSERT INTO messages (correlation_id, route, method, path, headers, body, received_at)
                VALUES ('m1', 'r', 'POST', '/r', '[]', '', now());
                INSERT INTO deliveries (message_id, route, destination, partition, state, updated_at)
                SELECT id, 'r', 'd', \(partition), 'queued', now() FROM messages;
                """)
            let a = nodes[0]
            let epoch = try #require(try await a.heartbeat().acquired[partition])
            // a starts an attempt (its start recorded under its epoch), then freezes.
            let connection = try await PostgresSchemaTests.connect(server)
            defer { Task { try? await connection.close() } }
            func record(_ update: DeliveryUpdate) async throws {
                try await connection.query(PostgresJournalWriter.statement([update]), logger: Self.logger)
            }
            let id = try #require(Int64(try server.psql("SELECT id FROM deliveries")))
            try await record(.started(deliveryID: id, attempt: 1, cycleAttempt: 1, atMilliseconds: 1_000, epoch: epoch))
            #expect(try server.psql("SELECT state FROM deliveries") == "in_flight")
            try server.psql("UPDATE partitions SET expires_at = now() - interval '1 second'")  // a's lease runs out
            let b = nodes[1]
            let taken = try await b.heartbeat().acquired
            #expect(taken[partition] == epoch + 1)
            #expect(try server.psql("SELECT state FROM deliveries") == "queued")
            #expect(try server.psql("SELECT error FROM attempts") == "interrupted: the node delivering it stopped or lost its lease")
            // a wakes and records its attempt's end: under the old epoch, nothing is recorded.
            let late = FinishedAttempt(
                deliveryID: id, attempt: 1, durationMilliseconds: 5, response: nil, error: "late", state: .failed, nextAttemptAt: nil,
                lastError: "late", atMilliseconds: 2_000, epoch: epoch)
            try await record(.finished(late))
            #expect(try server.psql("SELECT state, coalesce(last_error, '-') FROM deliveries") == "queued|-")
            // b's, under the new one, is.
            var current = late
            current.epoch = epoch + 1
            current.attempt = 2
            current.state = .delivered
            current.lastError = nil
            try await record(.finished(current))
            #expect(try server.psql("SELECT state FROM deliveries") == "delivered")
            // A breaker's change reaches the other nodes, whose breakers follow it.
            let other = PostgresDeliveryReader(connect: { try await PostgresSchemaTests.connect(server) }, node: "b", logger: Self.logger)
            let listening = ContinuousClock.now
            while other.mayHaveChanged() || other.mayHaveChanged(), ContinuousClock.now - listening < .seconds(5) {
                try await Task.sleep(for: .milliseconds(20))
            }
            _ = other.othersCommitted()
            try await record(.breaker(key: "r/d", trippedSince: 5))
            try await record(.breaker(key: "r/d", trippedSince: nil))
            var breakers: [(key: String, trippedSince: Int64?)] = []
            while breakers.count < 2, ContinuousClock.now - listening < .seconds(10) {
                breakers += other.othersCommitted().breakers
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(breakers.map(\.key) == ["r/d", "r/d"] && breakers.map(\.trippedSince) == [5, nil], "\(breakers)")
        }
    }
}
