import Foundation
import Logging
import PostgresNIO
import Testing
import WaypostCore
import WaypostJournal
import WaypostTestSupport

@testable import WaypostPostgres

extension PostgresTests {
    /// The forwarder's reads on a real PostgreSQL, after the writer stored and recorded what
    /// they read; each answer is what ``DeliveryReader`` gives on a SQLite journal.
    @Suite("the PostgreSQL journal's forwarder reads: queues in order, content, outcomes, controls")
    struct PostgresDeliveryReaderTests {
        /// The reader, and its calls each made on a thread of its own.
        final class ReaderBox: @unchecked Sendable {
            // @unchecked Sendable: the test makes one call at a time.
            let reader: PostgresDeliveryReader
            init(_ reader: PostgresDeliveryReader) { self.reader = reader }

            var blocking: Calls { Calls(box: self) }

            struct Calls: Sendable {
                let box: ReaderBox

                func run<T: Sendable>(_ body: @escaping @Sendable (PostgresDeliveryReader) throws -> T) async throws -> T {
                    try await withCheckedThrowingContinuation { continuation in
                        Thread { continuation.resume(with: Result { try body(box.reader) }) }.start()
                    }
                }

                func waiting(
                    route: String, destination: String, afterID: Int64, limit: Int, includeFailed: Bool
                ) async throws -> [QueuedMessage] {
                    try await run {
                        try $0.waiting(route: route, destination: destination, afterID: afterID, limit: limit, includeFailed: includeFailed)
                            .messages
                    }
                }
                func complete(route: String, destination: String, afterID: Int64, limit: Int, includeFailed: Bool) async throws -> Bool {
                    try await run {
                        try $0.waiting(route: route, destination: destination, afterID: afterID, limit: limit, includeFailed: includeFailed)
                            .complete
                    }
                }
                func message(id: Int64) async throws -> MessageForDelivery? { try await run { try $0.message(id: id) } }
                func finalOutcome(correlationID: String) async throws -> FinalOutcome? {
                    try await run { try $0.finalOutcome(correlationID: correlationID) }
                }
                func waitingDestinations() async throws -> [String] {
                    try await run { try $0.waitingDestinations().map { "\($0.route)/\($0.destination)" } }
                }
                func attempts(route: String, destination: String, since: String) async throws -> Int {
                    try await run { try $0.attempts(route: route, destination: destination, since: since) }
                }
                func pausedRoutes() async throws -> Set<String> { try await run { try $0.pausedRoutes() } }
                func replayGeneration() async throws -> Int64 { try await run { try $0.replayGeneration() } }
            }
        }

        @Test("pages of a queue (failed ones blocking it), a delivery's content, the final outcome, paused routes, the generation")
        func reads() async throws {
            let (server, writer) = try await PostgresJournalWriterTests.journal()
            defer { server.stop() }
            let running = Task { await writer.run() }
            func submit(_ message: IncomingMessage) async throws {
                try #require(
                    try await PostgresJournalWriterTests.submit(message, to: writer).get() == .stored(correlationID: message.correlationID))
            }
            let at: Int64 = 1_790_000_000_000
            for index in 1...5 {
                var message = PostgresJournalWriterTests.message(
                    "q\(index)", at: at + Int64(index), deliveries: [PlannedDelivery(destination: "erp", orderingKey: "k\(index % 2)")],
                    body: [0, 1, UInt8(index)])
                message.traceParent = index == 1 ? "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" : nil
                try await submit(message)
            }
            try await submit(PostgresJournalWriterTests.message("other", route: "refunds"))
            // Delivery 2 failed (it blocks its queue under on_exhausted: block), delivery 3 waits for a retry.
            try await PostgresJournalWriterTests.record(
                .finished(
                    FinishedAttempt(
                        deliveryID: 2, attempt: 3, cycleAttempt: 3, durationMilliseconds: 9,
                        response: StoredResponse(status: 500, headers: [HeaderField(name: "Retry", value: "no")], body: Array("boom".utf8)),
                        error: nil, state: .failed, nextAttemptAt: nil, lastError: "HTTP 500", atMilliseconds: at + 100)), to: writer)
            try await PostgresJournalWriterTests.record(
                .finished(
                    FinishedAttempt(
                        deliveryID: 3, attempt: 1, cycleAttempt: 1, durationMilliseconds: 9, response: nil, error: "refused",
                        state: .queued,
                        nextAttemptAt: at + 5000, lastError: "refused", atMilliseconds: at + 100)), to: writer)
            writer.shutdown()
            await running.value

            // The reader blocks its thread, as on the forwarder's: never one of the concurrency pool's.
            let box = ReaderBox(
                PostgresDeliveryReader(connect: { try await PostgresSchemaTests.connect(server) }, logger: PostgresSchemaTests.logger))
            let reader = box.blocking
            let first = try await reader.waiting(route: "orders", destination: "erp", afterID: 0, limit: 2, includeFailed: false)
            let k1 = QueuePartition.of(route: "orders", destination: "erp", queueKey: "k1")
            #expect(
                first == [
                    QueuedMessage(id: 1, orderingKey: "k1", partition: k1),
                    QueuedMessage(id: 3, orderingKey: "k1", notBefore: at + 5000, partition: k1),
                ])
            #expect(try await reader.complete(route: "orders", destination: "erp", afterID: 0, limit: 2, includeFailed: false) == false)
            #expect(
                try await reader.waiting(route: "orders", destination: "erp", afterID: 3, limit: 2, includeFailed: false).map(\.id) == [
                    4, 5,
                ])
            #expect(try await reader.waiting(route: "orders", destination: "erp", afterID: 5, limit: 2, includeFailed: false).isEmpty)
            #expect(try await reader.complete(route: "orders", destination: "erp", afterID: 5, limit: 2, includeFailed: false))
            let blocked = try await reader.waiting(route: "orders", destination: "erp", afterID: 0, limit: 10, includeFailed: true)
            #expect(blocked.map(\.id) == [1, 2, 3, 4, 5] && blocked[1].blocking)
            #expect(try await reader.complete(route: "orders", destination: "erp", afterID: 0, limit: 10, includeFailed: true))

            let content = try #require(try await reader.message(id: 1))
            #expect(content.correlationID == "q1" && content.method == "POST" && content.path == "/hooks?x=1")
            #expect(content.headers == [HeaderField(name: "Content-Type", value: "application/json")])
            #expect(content.body == [0, 1, 1] && content.cycleStart == at + 1 && content.attempts == 0)
            #expect(content.clientAddress == "192.0.2.7" && content.traceParent?.hasPrefix("00-0af7651916cd43dd") == true)
            #expect(try await reader.message(id: 2) == nil)  // failed: not waiting
            // Several at once, in one query: those still waiting, as each alone reads.
            let several = try await reader.run { try $0.messages(ids: [1, 2, 4, 99]) }
            #expect(several.keys.sorted() == [1, 4])
            #expect(several[1] == content)
            #expect(several[4] == (try await reader.message(id: 4)))

            #expect(try await reader.finalOutcome(correlationID: "q1") == nil)
            let failed = try #require(try await reader.finalOutcome(correlationID: "q2"))
            #expect(
                failed
                    == FinalOutcome(
                        state: .failed,
                        response: StoredResponse(status: 500, headers: [HeaderField(name: "Retry", value: "no")], body: Array("boom".utf8)),
                        lastError: "HTTP 500", attempts: 3))
            #expect(try await reader.finalOutcome(correlationID: "unknown") == nil)

            #expect(try await reader.waitingDestinations() == ["orders/erp", "refunds/refunds"])
            #expect(try await reader.attempts(route: "orders", destination: "erp", since: "2026-09-21T14:13:20.000Z") == 2)
            #expect(try await reader.attempts(route: "orders", destination: "erp", since: "2026-09-21T14:13:20.200Z") == 0)
            #expect(try await reader.pausedRoutes().isEmpty)
            #expect(try await reader.replayGeneration() == 0)
            try server.psql("INSERT INTO control VALUES ('paused:refunds', 1), ('paused:orders/erp', 1), ('paused:old', 0)")
            try server.psql("UPDATE control SET value = 7 WHERE name = 'replay_generation'")
            #expect(try await reader.pausedRoutes() == ["refunds", "orders/erp"])
            #expect(try await reader.replayGeneration() == 7)
            // Operators' changes are notified on waypost_control: the reader says so at once,
            // and nothing otherwise once it listens.
            func within(_ timeout: Duration, _ condition: () -> Bool) async -> Bool {
                let deadline = ContinuousClock.now + timeout
                while ContinuousClock.now < deadline {
                    if condition() { return true }
                    try? await Task.sleep(for: .milliseconds(20))
                }
                return false
            }
            let listening = await within(.seconds(5)) {
                _ = box.reader.mayHaveChanged()
                return !box.reader.mayHaveChanged()
            }
            #expect(listening, "the reader never said that nothing changed: it does not listen")
            try server.psql("SELECT pg_notify('waypost_control', '')")
            #expect(await within(.seconds(2)) { box.reader.mayHaveChanged() }, "a notification went unnoticed")
            // The cluster's notifications (this reader is the node named ""): stored deliveries,
            // this node's own included; other nodes' final outcomes and breakers' changes.
            _ = box.reader.othersCommitted()
            try server.psql(
                """
                SELECT pg_notify('waypost_stored', 'a 42'), pg_notify('waypost_stored', ' 40'), pg_notify('waypost_outcomes', 'a q1 q2'),
                       pg_notify('waypost_outcomes', ' q3'), pg_notify('waypost_breakers', 'a tripped 1790000000000 orders/erp'),
                       pg_notify('waypost_breakers', 'a closed 0 refunds/refunds'), pg_notify('waypost_breakers', 'a bad')
                """)
            var others = OthersCommitted()
            #expect(
                await within(.seconds(2)) {
                    let news = box.reader.othersCommitted()
                    others.storedFrom = news.storedFrom ?? others.storedFrom
                    others.outcomes += news.outcomes
                    others.breakers += news.breakers
                    return others.breakers.count == 2
                })
            #expect(
                others
                    == OthersCommitted(
                        storedFrom: 40, outcomes: ["q1", "q2"], breakers: [("orders/erp", 1_790_000_000_000), ("refunds/refunds", nil)]),
                "\(others)")
            // The connection ended by the server: the next read connects again.
            try server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'waypost'")
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await reader.replayGeneration() == 7)
            // The listener connects again too; what was notified meanwhile is lost, and it says
            // so: any delivery may be new, any watched message may have its outcome.
            var missed = OthersCommitted()
            #expect(
                await within(.seconds(5)) {
                    missed = box.reader.othersCommitted()
                    return missed.outcomesMissed
                }, "the listener never listened again")
            #expect(missed.storedFrom == 1)
        }
    }
}
