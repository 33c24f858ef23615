import Foundation
import Logging
import PostgresNIO
import Testing
import WaypostTestSupport

@testable import WaypostPostgres

extension PostgresTests {
    /// Several nodes' leases on one real PostgreSQL (``PostgresServer``), each node a
    /// ``PartitionLeases`` on a connection of its own, with a short `lease_ttl`.
    @Suite("the cluster's partition leases: shares, joins, expiry, takeover, epochs (SPEC §12)")
    struct PartitionLeasesTests {
        static let logger = Logger(label: "test")
        static let ttl = Duration.seconds(5)

        static func cluster(_ names: [String]) async throws -> (PostgresServer, [PartitionLeases], [PostgresConnection]) {
            let server = try await PostgresServer.start()
            var connections: [PostgresConnection] = []
            for _ in names { connections.append(try await PostgresSchemaTests.connect(server)) }
            try await PostgresSchema.migrate(connections[0], logger: logger)
            let nodes = zip(names, connections).map { PartitionLeases(node: $0, ttl: ttl, connection: $1, logger: logger) }
            return (server, nodes, connections)
        }

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

        @Test("one node leases every partition; a second splits them evenly within two heartbeats, the moved ones under a new epoch")
        func join() async throws {
            let (server, nodes, connections) = try await Self.cluster(["a", "b"])
            defer { server.stop() }
            let (a, b) = (nodes[0], nodes[1])
            let first = try await a.heartbeat()
            #expect(first.acquired.count == PostgresSchema.partitions && first.acquired.values.allSatisfy { $0 == 1 })
            #expect(first.liveNodes == 1)

            // b joins: nothing is free yet; a gives up half at its next heartbeat; b takes them.
            #expect(try await b.heartbeat().acquired.isEmpty)
            let given = try await a.heartbeat()
            #expect(given.lost.count == PostgresSchema.partitions / 2 && given.liveNodes == 2)
            let taken = try await b.heartbeat()
            #expect(Set(taken.acquired.keys) == given.lost)
            #expect(taken.acquired.values.allSatisfy { $0 == 2 })
            let owners = try Self.owners(server)
            #expect(owners.count == PostgresSchema.partitions)
            #expect(owners.values.filter { $0 == "a" }.count == PostgresSchema.partitions / 2)
            #expect(Set(a.leases().keys).isDisjoint(with: b.leases().keys))
            for connection in connections { try await connection.close() }
        }

        @Test("a node that stops heartbeating loses its partitions to the others after lease_ttl, not before")
        func takeover() async throws {
            let (server, nodes, connections) = try await Self.cluster(["a", "b", "c"])
            defer { server.stop() }
            for _ in 0..<2 {
                for node in nodes { _ = try await node.heartbeat() }
            }
            // Shares of ceil(256 / 3) = 86: the first two nodes take theirs, the last what is left.
            let held = nodes.map { $0.leases().count }
            #expect(held == [86, 86, 84], "\(held)")
            let dead = Set(nodes[2].leases().keys)
            let deadEpochs = nodes[2].leases().mapValues(\.epoch)

            // c stops; before its leases expire, nobody takes them.
            var changes = [try await nodes[0].heartbeat(), try await nodes[1].heartbeat()]
            #expect(changes.allSatisfy { $0.acquired.isEmpty })
            let stopped = ContinuousClock.now
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
            #expect(nodes[2].deadline(of: dead.first!)! < .now)
            for connection in connections { try await connection.close() }
        }

        @Test("a node frozen past its lease gets nothing back by renewing: it must lease again, under a new epoch, what is free")
        func frozen() async throws {
            let (server, nodes, connections) = try await Self.cluster(["a", "b"])
            defer { server.stop() }
            let (a, b) = (nodes[0], nodes[1])
            _ = try await a.heartbeat()
            _ = try await b.heartbeat()
            _ = try await a.heartbeat()
            _ = try await b.heartbeat()
            let mine = a.leases()
            #expect(mine.count == PostgresSchema.partitions / 2)
            // a is frozen for longer than lease_ttl while b goes on and takes everything.
            let frozen = ContinuousClock.now
            while ContinuousClock.now - frozen < Self.ttl + .milliseconds(500) {
                try await Task.sleep(for: .milliseconds(400))
                _ = try await b.heartbeat()
            }
            #expect(try Self.owners(server).values.allSatisfy { $0 == "b" })
            #expect(a.leases().isEmpty)
            // a wakes: everything it held is lost; b gives half up at its next heartbeat, and a
            // takes those under epochs newer than any it had.
            let woken = try await a.heartbeat()
            #expect(woken.lost == Set(mine.keys))
            _ = try await b.heartbeat()
            let back = try await a.heartbeat()
            #expect(back.acquired.count == PostgresSchema.partitions / 2)
            for (partition, epoch) in back.acquired where mine[partition] != nil {
                #expect(epoch > mine[partition]!.epoch)
            }
            for connection in connections { try await connection.close() }
        }

        @Test("a graceful stop gives the partitions up at once")
        func release() async throws {
            let (server, nodes, connections) = try await Self.cluster(["a", "b"])
            defer { server.stop() }
            _ = try await nodes[0].heartbeat()
            _ = try await nodes[1].heartbeat()
            try await nodes[0].release()
            #expect(try await nodes[1].heartbeat().acquired.count == PostgresSchema.partitions)
            #expect(try server.psql("SELECT string_agg(name, ',') FROM nodes") == "b")
            for connection in connections { try await connection.close() }
        }
    }
}
