import Foundation
import Logging
import PostgresNIO
import Testing
import WaypostTestSupport

@testable import WaypostPostgres

extension PostgresTests {
    /// Against a real PostgreSQL of the test's own (``PostgresServer``).
    @Suite("the PostgreSQL journal's schema: migrations, views, partitions (SPEC §12)")
    struct PostgresSchemaTests {
        static let logger = Logger(label: "test")

        static func connect(_ server: PostgresServer) async throws -> PostgresConnection {
            let location = try PostgresLocation(url: server.url + "?sslmode=disable", environment: ["PGPASSWORD": PostgresServer.password])
            let configuration = PostgresConnection.Configuration(
                host: location.host, port: location.port, username: location.user, password: location.password,
                database: location.database, tls: .disable)
            return try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        }

        @Test("a new database is migrated once; opening it again changes nothing; a newer one is refused")
        func migrations() async throws {
            let server = try await PostgresServer.start()
            defer { server.stop() }
            let connection = try await Self.connect(server)
            defer { Task { try? await connection.close() } }
            #expect(try await PostgresSchema.migrate(connection, logger: Self.logger) == 0)
            #expect(try await PostgresSchema.migrate(connection, logger: Self.logger) == PostgresSchema.currentVersion)
            #expect(try server.psql("SELECT version FROM waypost_schema") == "\(PostgresSchema.currentVersion)")
            #expect(try server.psql("SELECT count(*), min(partition), max(partition), sum(epoch) FROM partitions") == "256|0|255|0")
            let tables = try server.psql(
                "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public'")
            #expect(
                tables
                    == "attempts,control,deliveries,failed,message_states,messages,nodes,partitions,queued,recent,waypost_schema")

            // Milliseconds and timestamps convert exactly, both ways, and inline (version 2).
            #expect(
                try server.psql(
                    "SELECT count(*) FROM unnest(ARRAY[0, 1, -1, 1790000000123, 253402300799999]) AS t(ms) WHERE waypost_ms(waypost_time(ms)) <> ms"
                )
                    == "0")
            #expect(try server.psql("SELECT waypost_time(1790000000123) = timestamptz '2026-09-21 14:13:20.123+00'") == "t")
            // A version-1 journal is brought up to date in place.
            try server.psql("UPDATE waypost_schema SET version = 1")
            #expect(try await PostgresSchema.migrate(connection, logger: Self.logger) == 1)
            #expect(try server.psql("SELECT prosrc LIKE '%AT TIME ZONE%' FROM pg_proc WHERE proname = 'waypost_time'") == "t")

            try server.psql("UPDATE waypost_schema SET version = 99")
            let error = await #expect(throws: PostgresJournalError.self) {
                try await PostgresSchema.migrate(connection, logger: Self.logger)
            }
            #expect(
                error?.description
                    == "the journal has schema version 99, newer than this Waypost's \(PostgresSchema.currentVersion): upgrade Waypost")
        }

        @Test("nodes starting together migrate the database once")
        func concurrent() async throws {
            let server = try await PostgresServer.start()
            defer { server.stop() }
            let found = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let connection = try await Self.connect(server)
                        defer { Task { try? await connection.close() } }
                        return try await PostgresSchema.migrate(connection, logger: Self.logger)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let current = PostgresSchema.currentVersion
            #expect(found.sorted() == [0, current, current, current])
            #expect(try server.psql("SELECT count(*) FROM partitions") == "256")
        }

        @Test("the views derive a message's state from its deliveries as the SQLite journal does")
        func views() async throws {
            let server = try await PostgresServer.start()
            defer { server.stop() }
            let connection = try await Self.connect(server)
            try await PostgresSchema.migrate(connection, logger: Self.logger)
            try await connection.close()
            // A message per case: its deliveries' states, and the state SPEC §11 derives.
            let cases: [([String], String)] = [
                (["queued"], "queued"), (["in_flight", "queued"], "in_flight"), (["delivered", "queued"], "queued"),
                (["delivered", "filtered"], "delivered"), (["filtered", "filtered"], "filtered"), (["failed", "delivered"], "failed"),
                (["skipped", "delivered"], "skipped"), (["skipped", "failed"], "failed"), (["delivered"], "delivered"),
            ]
            var sql = ""
            for (index, (states, _)) in cases.enumerated() {
                sql += """
                    INSERT INTO messages (correlation_id, route, method, path, headers, body, received_at)
                    VALUES ('m\(index)', 'r', 'POST', '/', '[["Host","x"]]', '\\x7b7d', now());

                    """
                for (number, state) in states.enumerated() {
                    sql += """
                        INSERT INTO deliveries (message_id, route, destination, partition, state, updated_at, response_status)
                        SELECT id, 'r', 'd\(number)', \(number), '\(state)', now(), \(200 + number) FROM messages WHERE correlation_id = 'm\(index)';

                        """
                }
            }
            try server.psql(sql)
            let derived = try server.psql(
                "SELECT correlation_id || '=' || state || '/' || reply_from || '/' || response_status FROM message_states ORDER BY id")
            #expect(derived == cases.enumerated().map { "m\($0.offset)=\($0.element.1)/d0/200" }.joined(separator: "\n"))
            #expect(try server.psql("SELECT count(*) FROM queued") == "4")
            #expect(try server.psql("SELECT string_agg(correlation_id, ',') FROM failed") == "m5,m7")
            #expect(try server.psql("SELECT count(*), min(body_bytes) FROM recent") == "\(cases.count)|2")
        }
    }
}
