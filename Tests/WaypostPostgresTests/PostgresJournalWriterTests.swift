import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
import WaypostCore
import WaypostJournal
import WaypostTestSupport

@testable import WaypostPostgres

extension PostgresTests {
    /// The PostgreSQL intake against a real PostgreSQL (``PostgresServer``): what it stores, what it
    /// recognises as a repeat, what it refuses, and that a batch is stored whole or not at all.
    @Suite("the PostgreSQL journal's intake: group commit, repeats, backlog, failures (SPEC §2, §12)")
    struct PostgresJournalWriterTests {
        static let logger = Logger(label: "test")

        /// What the writer handed to its observer.
        final class Observed: Sendable {
            let messages = Mutex<[StoredMessage]>([])
        }

        /// A server with a migrated journal, and a writer on it (not yet running).
        static func journal(
            maxBacklog: Int = 1000, commitTimeout: Duration = .seconds(5), recountInterval: Duration = .seconds(60)
        ) async throws -> (PostgresServer, PostgresJournalWriter) {
            let server = try await PostgresServer.start()
            let connection = try await PostgresSchemaTests.connect(server)
            try await PostgresSchema.migrate(connection, logger: logger)
            try await connection.close()
            let writer = PostgresJournalWriter(
                connect: { try await PostgresSchemaTests.connect(server) }, maxBacklog: maxBacklog, commitTimeout: commitTimeout,
                recountInterval: recountInterval, logger: logger
            )
            return (server, writer)
        }

        /// Submits `message` to a running writer and waits for its answer.
        static func submit(_ message: IncomingMessage, to writer: PostgresJournalWriter) async -> Result<IntakeResult, JournalUnavailable> {
            await withCheckedContinuation { continuation in writer.submit(message) { continuation.resume(returning: $0) } }
        }

        /// Hands each of `updates` to a running writer on its own (they may share a batch) and
        /// waits until all are committed.
        static func record(_ updates: DeliveryUpdate..., to writer: PostgresJournalWriter) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for update in updates {
                    group.addTask {
                        try await withCheckedThrowingContinuation { continuation in
                            writer.record([(update, { @Sendable in continuation.resume(with: $0) })])
                        }
                    }
                }
                try await group.waitForAll()
            }
        }

        static func message(
            _ id: String, route: String = "orders", supplied: Bool = false, key: String? = nil, at: Int64 = 1_790_000_000_123,
            deliveries: [PlannedDelivery]? = nil, body: [UInt8] = Array("{}".utf8)
        ) -> IncomingMessage {
            IncomingMessage(
                correlationID: id, correlationIDWasSupplied: supplied, route: route, deliveries: deliveries, idempotencyKey: key,
                dedupWindowMilliseconds: 60_000, method: "POST", path: "/hooks?x=1",
                headers: [HeaderField(name: "Content-Type", value: "application/json")],
                body: body, receivedAt: at, clientAddress: "192.0.2.7")
        }

        /// Submits every message before the writer runs, so they share its first commit; returns
        /// their results in order once the writer stopped.
        static func store(
            _ messages: [IncomingMessage], with writer: PostgresJournalWriter
        ) async throws -> [Result<IntakeResult, JournalUnavailable>] {
            let results = Mutex<[Int: Result<IntakeResult, JournalUnavailable>]>([:])
            for (index, message) in messages.enumerated() {
                writer.submit(message) { result in results.withLock { $0[index] = result } }
            }
            writer.shutdown()
            await writer.run()
            return results.withLock { collected in messages.indices.map { collected[$0]! } }
        }

        /// `supplied`: m1's correlation id is the source's, which sends the batch through
        /// `waypost_store`'s loop rather than `waypost_store_new`: both must store the same.
        @Test(
            "a message and its deliveries are stored as received, in one commit with the others of its batch",
            arguments: [false, true])
        func stores(supplied: Bool) async throws {
            let (server, writer) = try await Self.journal()
            defer { server.stop() }
            let observed = Observed()
            writer.onStored { stored in observed.messages.withLock { $0 += stored } }
            let binary: [UInt8] = [0, 0xff, 0xfe, 0x7b, 0x0a]
            let results = try await Self.store(
                [
                    Self.message(
                        "m1", supplied: supplied,
                        deliveries: [
                            PlannedDelivery(destination: "erp", orderingKey: "customer-7"),
                            PlannedDelivery(destination: "audit", filtered: true),
                            PlannedDelivery(destination: "log", unordered: true),
                        ]),
                    Self.message("m2", body: binary),
                ], with: writer)
            #expect(results.map { try? $0.get() } == [.stored(correlationID: "m1"), .stored(correlationID: "m2")])
            #expect(writer.statistics == .init(commits: 1, messages: 2, failedCommits: 0))
            // Handed to the forwarder: the waiting deliveries (not the filtered one), with their row ids.
            let handed = observed.messages.withLock { $0 }
            #expect(handed.map(\.content.correlationID) == ["m1", "m2"])
            #expect(
                handed.map { $0.deliveries.map { "\($0.id) \($0.destination) \($0.orderingKey ?? "-")" } } == [
                    ["1 erp customer-7", "3 log -"], ["4 orders -"],
                ])
            #expect(handed.map(\.content.id) == [1, 4] && handed[1].content.body == binary)
            #expect(
                try server.psql(
                    """
                    SELECT correlation_id, route, method, path, headers::text, encode(body, 'hex'), to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'), client_address
                    FROM messages ORDER BY id
                    """)
                        == """
                        m1|orders|POST|/hooks?x=1|[["Content-Type","application/json"]]|7b7d|2026-09-21T14:13:20.123|192.0.2.7
                        m2|orders|POST|/hooks?x=1|[["Content-Type","application/json"]]|00fffe7b0a|2026-09-21T14:13:20.123|192.0.2.7
                        """)
            let erp = QueuePartition.of(route: "orders", destination: "erp", queueKey: "customer-7")
            let orders = QueuePartition.of(route: "orders", destination: "orders", queueKey: nil)
            // An `ordering: none` delivery is a queue of its own: its partition is its row id's.
            #expect(handed[0].deliveries.map(\.partition) == [erp, 3 * 177 % 256])
            #expect(Set((1...256).map { QueuePartition.of(row: Int64($0)) }).count == 256)
            #expect(
                try server.psql(
                    "SELECT m.correlation_id, destination, coalesce(ordering_key, '-'), partition, state FROM deliveries d JOIN messages m ON m.id = d.message_id ORDER BY d.id"
                )
                    == "m1|erp|customer-7|\(erp)|queued\nm1|audit|-|\(QueuePartition.of(route: "orders", destination: "audit", queueKey: nil))|filtered\nm1|log|-|\(3 * 177 % 256)|queued\nm2|orders|-|\(orders)|queued"
            )
        }

        @Test("a repeated correlation id or idempotency key stores nothing new, in the same batch too; another route's id is a conflict")
        func repeats() async throws {
            let (server, writer) = try await Self.journal()
            defer { server.stop() }
            let at: Int64 = 1_790_000_000_000
            let results = try await Self.store(
                [
                    Self.message("s1", supplied: true), Self.message("s1", supplied: true),
                    Self.message("s1", route: "refunds", supplied: true),
                    Self.message("k1", key: "order-9", at: at), Self.message("k2", key: "order-9", at: at + 59_000),
                    Self.message("k3", route: "refunds", key: "order-9", at: at + 59_000),
                    Self.message("k4", key: "order-9", at: at + 61_000),
                ], with: writer)
            #expect(
                results.map { try? $0.get() } == [
                    .stored(correlationID: "s1"), .duplicate(correlationID: "s1", state: .queued),
                    .conflict(correlationID: "s1", otherRoute: "orders"),
                    .stored(correlationID: "k1"), .duplicate(correlationID: "k1", state: .queued), .stored(correlationID: "k3"),
                    .stored(correlationID: "k4"),
                ])
            #expect(try server.psql("SELECT string_agg(correlation_id, ',' ORDER BY id) FROM messages") == "s1,k1,k3,k4")
        }

        @Test("max_backlog refuses a message that would wait beyond it, not one that every filter stopped")
        func backlog() async throws {
            let (server, writer) = try await Self.journal(maxBacklog: 2)
            defer { server.stop() }
            let filtered = [PlannedDelivery(destination: "a", filtered: true)]
            let results = try await Self.store(
                [Self.message("b1"), Self.message("b2"), Self.message("b3"), Self.message("b4", deliveries: filtered)], with: writer)
            #expect(results.map { (try? $0.get()).map { "\($0)" } ?? "\($0)" }.count == 4)
            #expect((try? results[2].get()) == nil)
            if case .failure(.backlogFull(let limit)) = results[2] { #expect(limit == 2) } else { Issue.record("\(results[2])") }
            #expect(try server.psql("SELECT string_agg(correlation_id, ',' ORDER BY id) FROM messages") == "b1,b2,b4")
        }

        @Test("the backlog is counted again every recount interval: what another process changed counts")
        func recount() async throws {
            let (server, writer) = try await Self.journal(maxBacklog: 2, recountInterval: .seconds(1))
            defer { server.stop() }
            let running = Task { await writer.run() }
            #expect(try await Self.submit(Self.message("r1"), to: writer).get() == .stored(correlationID: "r1"))
            #expect(try await Self.submit(Self.message("r2"), to: writer).get() == .stored(correlationID: "r2"))
            // Another process delivers both (as another node would); this writer does not know yet.
            try server.psql("UPDATE deliveries SET state = 'delivered'")
            guard case .failure(.backlogFull) = await Self.submit(Self.message("r3"), to: writer) else {
                Issue.record("the writer counted the backlog again before its interval")
                return
            }
            try await Task.sleep(for: .milliseconds(1200))
            #expect(try await Self.submit(Self.message("r3"), to: writer).get() == .stored(correlationID: "r3"))
            writer.shutdown()
            await running.value
        }

        @Test("concurrent requests share commits; every one is answered after its commit")
        func groupCommit() async throws {
            let (server, writer) = try await Self.journal()
            defer { server.stop() }
            let running = Task { await writer.run() }
            let count = 400
            try await withThrowingTaskGroup(of: IntakeResult.self) { group in
                for index in 0..<count {
                    group.addTask { try await Self.submit(Self.message("g\(index)"), to: writer).get() }
                }
                var answered = 0
                for try await result in group {
                    guard case .stored(let id) = result else {
                        Issue.record("\(result)")
                        continue
                    }
                    // Answered after COMMIT: the row is there for anyone to read (checked for some).
                    answered += 1
                    if answered % 50 == 0 {
                        #expect(try server.psql("SELECT count(*) FROM messages WHERE correlation_id = '\(id)'") == "1")
                    }
                }
            }
            writer.shutdown()
            await running.value
            let statistics = writer.statistics
            #expect(statistics.messages == count)
            #expect(statistics.commits < count, "\(statistics)")
            #expect(try server.psql("SELECT count(*) FROM messages") == "\(count)")
        }

        @Test("a statement that fails fails its whole batch, and nothing of it is stored")
        func wholeOrNothing() async throws {
            let (server, writer) = try await Self.journal()
            defer { server.stop() }
            // Two generated ids that collide: the second insert violates the unique constraint.
            let results = try await Self.store([Self.message("x1"), Self.message("same"), Self.message("same")], with: writer)
            for result in results {
                guard case .failure(.storage(let error)) = result else {
                    Issue.record("\(result)")
                    continue
                }
                #expect(error.message.contains("duplicate key value violates unique constraint"), "\(error)")
            }
            #expect(try server.psql("SELECT count(*) FROM messages") == "0")
            #expect(writer.statistics.failedCommits == 1)
        }

        @Test("while the database is down, requests are answered with an error at once; when it is back, the writer reconnects")
        func databaseDown() async throws {
            let (server, writer) = try await Self.journal()
            defer { server.stop() }
            let running = Task { await writer.run() }
            #expect(try await Self.submit(Self.message("before"), to: writer).get() == .stored(correlationID: "before"))
            // A connection the server ended: the next batch opens another.
            try server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'waypost'")
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await Self.submit(Self.message("terminated"), to: writer).get() == .stored(correlationID: "terminated"))
            // No server: an error, well within the commit timeout.
            server.halt()
            let started = ContinuousClock.now
            guard case .failure(.storage(let error)) = await Self.submit(Self.message("down"), to: writer) else {
                Issue.record("stored while the server was down")
                return
            }
            #expect(ContinuousClock.now - started < .seconds(5), "\(error)")
            try server.resume()
            #expect(try await Self.submit(Self.message("back"), to: writer).get() == .stored(correlationID: "back"))
            writer.shutdown()
            await running.value
            guard case .failure(.shuttingDown) = await Self.submit(Self.message("late"), to: writer) else {
                Issue.record("accepted after shutdown")
                return
            }
            #expect(try server.psql("SELECT string_agg(correlation_id, ',' ORDER BY id) FROM messages") == "before,terminated,back")
            #expect(writer.statistics.failedCommits == 1)
        }

        /// Another session running `sql` with psql, in the background (to hold a lock meanwhile).
        static func session(_ server: PostgresServer, _ sql: String) throws -> ChildProcess {
            try ChildProcess(
                "/usr/bin/env",
                ["psql", "-h", "127.0.0.1", "-p", "\(server.port)", "-U", "waypost", "-d", "waypost", "-c", sql],
                environment: ["PGPASSWORD": PostgresServer.password, "PATH": "/usr/bin:/bin"])
        }

        @Test("a commit slower than commit_timeout is answered with an error, and rolled back, not committed unseen")
        func slowDatabase() async throws {
            let (server, writer) = try await Self.journal(commitTimeout: .seconds(2))
            defer { server.stop() }
            let running = Task { await writer.run() }
            #expect(try await Self.submit(Self.message("first"), to: writer).get() == .stored(correlationID: "first"))
            // Another session holds the table for 5 s.
            let holder = try Self.session(server, "BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(5); COMMIT;")
            try await Task.sleep(for: .milliseconds(500))
            let started = ContinuousClock.now
            guard case .failure(.storage(let error)) = await Self.submit(Self.message("slow"), to: writer) else {
                Issue.record("stored while the table was locked")
                return
            }
            let waited = ContinuousClock.now - started
            #expect(waited >= .seconds(2) && waited < .seconds(6), "\(waited)")
            #expect(error.message.contains("did not answer within"), "\(error)")
            #expect(await holder.wait(timeout: .seconds(10)) == 0)
            #expect(try await Self.submit(Self.message("after"), to: writer).get() == .stored(correlationID: "after"))
            writer.shutdown()
            await running.value
            #expect(try server.psql("SELECT string_agg(correlation_id, ',' ORDER BY id) FROM messages") == "first,after")
        }

        @Test("an outcome held up by a lock does not hold up the intake: the two are committed on connections of their own")
        func outcomeApartFromIntake() async throws {
            let (server, writer) = try await Self.journal()
            defer { server.stop() }
            let running = Task { await writer.run() }
            #expect(try await Self.submit(Self.message("first"), to: writer).get() == .stored(correlationID: "first"))
            let id = try #require(Int64(try server.psql("SELECT id FROM deliveries")))
            // Another session holds the delivery's row for 3 s: its outcome waits for it.
            let holder = try Self.session(server, "BEGIN; SELECT 1 FROM deliveries FOR UPDATE; SELECT pg_sleep(3); COMMIT;")
            try await Task.sleep(for: .milliseconds(500))
            let recorded = Task {
                try await Self.record(
                    .finished(
                        FinishedAttempt(
                            deliveryID: id, attempt: 1, durationMilliseconds: 5,
                            response: StoredResponse(status: 200, headers: [], body: []),
                            error: nil, sentBody: nil, state: .delivered, nextAttemptAt: nil, lastError: nil,
                            atMilliseconds: 1_790_000_100_000)), to: writer)
                return ContinuousClock.now
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await Self.submit(Self.message("second"), to: writer).get() == .stored(correlationID: "second"))
            let stored = ContinuousClock.now
            #expect(try server.psql("SELECT count(*) FROM messages") == "2", "the second message committed while the outcome waits")
            #expect(await holder.wait(timeout: .seconds(10)) == 0)
            #expect(try await recorded.value > stored, "the outcome was recorded only once the row was free")
            #expect(try server.psql("SELECT state FROM deliveries WHERE id = \(id)") == "delivered")
            writer.shutdown()
            await running.value
        }

        /// A running writer with `max_backlog` 2, full: m1 (to destinations a and b) and m2.
        static func backlogOfTwo() async throws -> (PostgresServer, PostgresJournalWriter, Task<Void, Never>) {
            let (server, writer) = try await journal(maxBacklog: 2)
            let running = Task { await writer.run() }
            let two = [PlannedDelivery(destination: "a"), PlannedDelivery(destination: "b")]
            #expect(try await submit(message("m1", deliveries: two), to: writer).get() == .stored(correlationID: "m1"))
            #expect(try await submit(message("m2"), to: writer).get() == .stored(correlationID: "m2"))
            return (server, writer, running)
        }

        @Test("attempts, outcomes, an operator's skip during an attempt, breakers; a message that stops waiting frees backlog room")
        func outcomes() async throws {
            let (server, writer, running) = try await Self.backlogOfTwo()
            defer { server.stop() }
            guard case .failure(.backlogFull) = await Self.submit(Self.message("m3"), to: writer) else {
                Issue.record("m3 stored beyond max_backlog")
                return
            }
            let ids = try server.psql("SELECT id FROM deliveries ORDER BY id").split(separator: "\n").compactMap { Int64($0) }
            #expect(ids.count == 3)
            let (a, b, m2) = (ids[0], ids[1], ids[2])
            let t: Int64 = 1_790_000_100_000
            let sent = SentBody(bytes: 2, sha256: String(repeating: "ab", count: 32))
            try await Self.record(.started(deliveryID: a, attempt: 1, cycleAttempt: 1, atMilliseconds: t), to: writer)
            try await Self.record(
                .finished(
                    FinishedAttempt(
                        deliveryID: a, attempt: 1, durationMilliseconds: 40, response: StoredResponse(status: 503, headers: [], body: []),
                        error: nil,
                        sentBody: sent, state: .queued, nextAttemptAt: t + 1000, lastError: "HTTP 503", atMilliseconds: t + 40)),
                .breaker(key: "orders/b", trippedSince: t), .breaker(key: "orders/x", trippedSince: nil), to: writer)
            #expect(
                try server.psql(
                    "SELECT state, attempts, to_char(next_attempt_at AT TIME ZONE 'UTC', 'SS.MS'), last_error, response_status FROM deliveries WHERE id = \(a)"
                ) == "queued|1|01.000|HTTP 503|503")
            try await Self.record(.started(deliveryID: a, attempt: 2, cycleAttempt: 2, atMilliseconds: t + 1000), to: writer)
            #expect(try server.psql("SELECT state FROM deliveries WHERE id = \(a)") == "in_flight")
            try await Self.record(
                .finished(
                    FinishedAttempt(
                        deliveryID: a, attempt: 2, durationMilliseconds: 12,
                        response: StoredResponse(status: 200, headers: [HeaderField(name: "X-Id", value: "7")], body: Array("ok".utf8)),
                        error: nil,
                        sentBody: sent, state: .delivered, nextAttemptAt: nil, lastError: nil, atMilliseconds: t + 1012)), to: writer)
            #expect(
                try server.psql(
                    "SELECT state, attempts, cycle_attempts, to_char(delivered_at AT TIME ZONE 'UTC', 'SS.MS'), response_status, response_headers::text, convert_from(response_body, 'UTF8') FROM deliveries WHERE id = \(a)"
                )
                    == "delivered|2|2|01.012|200|[[\"X-Id\",\"7\"]]|ok")
            #expect(
                try server.psql(
                    "SELECT attempt, duration_ms, status, body_bytes, to_char(started_at AT TIME ZONE 'UTC', 'SS.MS') FROM attempts WHERE delivery_id = \(a) ORDER BY attempt"
                )
                    == "1|40|503|2|00.000\n2|12|200|2|01.000")
            #expect(try server.psql("SELECT name, value FROM control WHERE name LIKE 'tripped:%'") == "tripped:orders/b|\(t)")

            // An operator skips b while an attempt runs: its failure keeps it skipped and tells the forwarder.
            try server.psql("UPDATE deliveries SET state = 'skipped' WHERE id = \(b)")
            try await Self.record(
                .finished(
                    FinishedAttempt(
                        deliveryID: b, attempt: 1, cycleAttempt: 1, durationMilliseconds: 5, response: nil, error: "connection refused",
                        state: .queued,
                        nextAttemptAt: t + 2000, lastError: "connection refused", atMilliseconds: t + 5)), to: writer)
            #expect(
                try server.psql("SELECT state, next_attempt_at IS NULL, last_error FROM deliveries WHERE id = \(b)")
                    == "skipped|t|connection refused")
            #expect(try server.psql("SELECT value FROM control WHERE name = 'replay_generation'") == "1")
            // m1 stopped waiting (a delivered, b skipped): room for one more.
            #expect(try await Self.submit(Self.message("m3"), to: writer).get() == .stored(correlationID: "m3"))
            guard case .failure(.backlogFull) = await Self.submit(Self.message("m4"), to: writer) else {
                Issue.record("m4 stored beyond max_backlog")
                return
            }
            try await Self.record(
                .finished(
                    FinishedAttempt(
                        deliveryID: m2, attempt: 1, cycleAttempt: 1, durationMilliseconds: 5,
                        response: StoredResponse(status: 200, headers: [], body: []),
                        error: nil, state: .delivered, nextAttemptAt: nil, lastError: nil, atMilliseconds: t + 5)), to: writer)
            #expect(try await Self.submit(Self.message("m4"), to: writer).get() == .stored(correlationID: "m4"))
            writer.shutdown()
            await running.value
            #expect(
                try server.psql("SELECT correlation_id || '=' || state FROM message_states ORDER BY id")
                    == "m1=skipped\nm2=delivered\nm3=queued\nm4=queued")
        }

        @Test("several attempt ends in one batch: each recorded as alone, and a message that stops waiting frees room once")
        func outcomesTogether() async throws {
            let (server, writer, running) = try await Self.backlogOfTwo()
            defer { server.stop() }
            let ids = try server.psql("SELECT id FROM deliveries ORDER BY id").split(separator: "\n").compactMap { Int64($0) }
            let (a, b, m2) = (ids[0], ids[1], ids[2])
            let t: Int64 = 1_790_000_200_000
            try server.psql("UPDATE deliveries SET state = 'skipped' WHERE id = \(m2)")  // an operator's skip during the attempt
            func end(_ id: Int64, _ state: MessageState, status: Int?) -> DeliveryUpdate {
                .finished(
                    FinishedAttempt(
                        deliveryID: id, attempt: 1, cycleAttempt: 1, durationMilliseconds: 7,
                        response: status.map { StoredResponse(status: $0, headers: [HeaderField(name: "X", value: "\($0)")], body: [1]) },
                        error: status == nil ? "refused" : nil, state: state, nextAttemptAt: state == .queued ? t + 500 : nil,
                        lastError: status == nil ? "refused" : nil, atMilliseconds: t))
            }
            // Handed over together, so they share a batch.
            let updates = [end(a, .delivered, status: 200), end(b, .delivered, status: 201), end(m2, .queued, status: nil)]
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                writer.record(updates.dropLast().map { ($0, nil) } + [(updates[2], { @Sendable in continuation.resume(with: $0) })])
            }
            #expect(
                try server.psql(
                    "SELECT state, attempts, cycle_attempts, response_status, next_attempt_at IS NULL, last_error FROM deliveries ORDER BY id"
                )
                    == "delivered|1|1|200|t|\ndelivered|1|1|201|t|\nskipped|1|1||t|refused")
            #expect(
                try server.psql("SELECT delivery_id, attempt, duration_ms, status FROM attempts ORDER BY 1")
                    == "\(a)|1|7|200\n\(b)|1|7|201\n\(m2)|1|7|")
            #expect(try server.psql("SELECT value FROM control WHERE name = 'replay_generation'") == "1")
            // m1 and m2 stopped waiting: room for two more, not three.
            #expect(try await Self.submit(Self.message("m3"), to: writer).get() == .stored(correlationID: "m3"))
            #expect(try await Self.submit(Self.message("m4"), to: writer).get() == .stored(correlationID: "m4"))
            guard case .failure(.backlogFull) = await Self.submit(Self.message("m5"), to: writer) else {
                Issue.record("m5 stored beyond max_backlog: a message that stopped waiting was counted twice")
                return
            }
            writer.shutdown()
            await running.value
        }

        @Test("partitions: the same for the same queue, spread over all of them")
        func partitions() {
            #expect(
                QueuePartition.of(route: "r", destination: "d", queueKey: nil)
                    == QueuePartition.of(route: "r", destination: "d", queueKey: nil))
            #expect(
                QueuePartition.of(route: "r", destination: "d", queueKey: nil)
                    != QueuePartition.of(route: "r", destination: "d", queueKey: ""))
            let spread = Set((0..<10_000).map { QueuePartition.of(route: "orders", destination: "erp", queueKey: "customer-\($0)") })
            #expect(spread.count == QueuePartition.count)
            // FNV-1a of "orders\0erp\1customer-7" (computed apart, in Python): a change of the function
            // would move queues between nodes of mixed versions.
            #expect(QueuePartition.of(route: "orders", destination: "erp", queueKey: "customer-7") == 96)
        }
    }
}
