import Foundation
import Logging
import Synchronization
import Testing
import WaypostCore

@testable import WaypostJournal

@Suite("Journal writer")
struct JournalWriterTests {
    @Test("a new journal has the schema of SPEC §7, in WAL mode, at the current version")
    func schema() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let writer = try JournalWriter.open(dir.file("j.db"))
        await writer.shutdown()
        #expect(try sqlite3(dir.file("j.db"), "PRAGMA user_version") == "6")
        #expect(try sqlite3(dir.file("j.db"), "PRAGMA journal_mode") == "wal")
        let objects = try sqlite3(
            dir.file("j.db"), "SELECT type || ':' || name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
        for expected in [
            "table:attempts", "table:deliveries", "table:messages", "view:failed", "view:message_states", "view:queued", "view:recent",
        ] {
            #expect(objects.contains(expected), "missing \(expected) in \(objects)")
        }
    }

    @Test("stores every field, the body byte for byte, and the headers in order")
    func storesMessage() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let writer = try JournalWriter.open(dir.file("j.db"))
        let body: [UInt8] = [0, 1, 2, 0xFF, 0xFE, 0x0A, 0x0D, 0] + Array(repeating: 0x7F, count: 3000)
        let headers = [
            HeaderField(name: "X-B", value: "2"), HeaderField(name: "X-A", value: "1 \"quoted\" \\ é"),
            HeaderField(name: "X-B", value: "3"),
        ]
        let message = makeMessage(body: body, idempotencyKey: "key-1", headers: headers)
        let result = await writer.store(message)
        #expect(try result.get() == .stored(correlationID: message.correlationID))
        await writer.shutdown()

        let reader = try JournalReader(path: dir.file("j.db"))
        let record = try #require(try reader.message(correlationID: message.correlationID))
        #expect(record.body == body)
        #expect(record.route == "orders")
        #expect(record.state == .queued)
        #expect(record.method == "POST")
        #expect(record.path == "/hooks/orders?x=1")
        #expect(record.idempotencyKey == "key-1")
        #expect(record.receivedAt == Timestamp.format(millisecondsSince1970: message.receivedAt))
        let pairs = try JSONSerialization.jsonObject(with: Data(record.headersJSON.utf8)) as? [[String]]
        #expect(pairs == [["X-B", "2"], ["X-A", "1 \"quoted\" \\ é"], ["X-B", "3"]])
        // The stock CLI sees the same bytes.
        let hex = try sqlite3(dir.file("j.db"), "SELECT hex(body) FROM messages WHERE correlation_id = '\(message.correlationID)'")
        #expect(hex == body.map { String(format: "%02X", $0) }.joined())
    }

    @Test("the messages handed to the forwarder after a commit are what it would read back from the journal")
    func storedMessagesMatchTheJournal() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let writer = try JournalWriter.open(dir.file("j.db"))
        let handed = Mutex<[StoredMessage]>([])
        writer.onStored { messages in handed.withLock { $0 += messages } }
        var first = makeMessage(
            body: [0, 0xFF, 0x0A] + Array("x".utf8), idempotencyKey: "key-1", headers: [HeaderField(name: "X-A", value: "1 é")])
        first.deliveries[0].orderingKey = "customer-7"
        first.clientAddress = "192.0.2.1"
        #expect(try await writer.store(first).get() == .stored(correlationID: first.correlationID))
        let second = makeMessage(route: "billing", headers: [])
        #expect(try await writer.store(second).get() == .stored(correlationID: second.correlationID))
        // A repeat stores nothing, so nothing is handed over.
        #expect(
            try await writer.store(makeMessage(idempotencyKey: "key-1")).get()
                == .duplicate(correlationID: first.correlationID, state: .queued))
        await writer.shutdown()

        let messages = handed.withLock { $0 }
        try #require(messages.count == 2)
        #expect(messages.map(\.route) == ["orders", "billing"])
        #expect(messages.map { $0.deliveries.first?.orderingKey } == ["customer-7", nil])
        #expect(messages[0].content.id < messages[1].content.id)
        let reader = try DeliveryReader(path: dir.file("j.db"))
        for message in messages {
            #expect(try reader.message(id: message.content.id) == message.content)
        }
        #expect(messages[0].content.clientAddress == "192.0.2.1")
        #expect(messages[0].content.headers == [HeaderField(name: "X-A", value: "1 é")])
    }

    @Test("concurrent requests share commits (group commit) and each is answered once")
    func groupCommit() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let writer = try JournalWriter.open(dir.file("j.db"))
        let count = 400
        let results = await withTaskGroup(of: Result<IntakeResult, JournalUnavailable>.self) { group in
            for index in 0..<count {
                group.addTask { await writer.store(makeMessage(body: Array("{\"n\":\(index)}".utf8))) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let statistics = writer.statistics
        await writer.shutdown()
        #expect(results.count == count)
        #expect(results.allSatisfy { if case .success(.stored) = $0 { true } else { false } })
        #expect(statistics.messages == count)
        #expect(statistics.commits < count, "every message had its own commit: \(statistics)")
        #expect(try sqlite3(dir.file("j.db"), "SELECT count(*) FROM messages") == "\(count)")
    }

    @Test("a repeated idempotency key or supplied correlation id stores nothing new")
    func duplicates() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let writer = try JournalWriter.open(dir.file("j.db"))
        let first = makeMessage(idempotencyKey: "delivery-7")
        #expect(try await writer.store(first).get() == .stored(correlationID: first.correlationID))
        // Same key, same route: the existing id comes back.
        #expect(
            try await writer.store(makeMessage(idempotencyKey: "delivery-7")).get()
                == .duplicate(correlationID: first.correlationID, state: .queued))
        // Same key on another route is a new message.
        let other = makeMessage(route: "billing", idempotencyKey: "delivery-7")
        #expect(try await writer.store(other).get() == .stored(correlationID: other.correlationID))
        // A key older than the dedup window is a new message.
        let later = makeMessage(idempotencyKey: "delivery-7", receivedAt: first.receivedAt + 86_400_001)
        #expect(try await writer.store(later).get() == .stored(correlationID: later.correlationID))
        // Supplied correlation ids: same route repeats, another route conflicts.
        #expect(try await writer.store(makeMessage(correlationID: "order-1")).get() == .stored(correlationID: "order-1"))
        #expect(try await writer.store(makeMessage(correlationID: "order-1")).get() == .duplicate(correlationID: "order-1", state: .queued))
        #expect(
            try await writer.store(makeMessage(route: "billing", correlationID: "order-1")).get()
                == .conflict(correlationID: "order-1", otherRoute: "orders"))
        // Two repeats inside one batch are stored once.
        async let a = writer.store(makeMessage(idempotencyKey: "burst"))
        async let b = writer.store(makeMessage(idempotencyKey: "burst"))
        let pair = await [a, b]
        await writer.shutdown()
        let stored = pair.filter { if case .success(.stored) = $0 { true } else { false } }
        #expect(stored.count == 1)
        #expect(try sqlite3(dir.file("j.db"), "SELECT count(*) FROM messages") == "5")
    }

    @Test("max_backlog refuses the message beyond the limit")
    func backlog() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        var writer = try JournalWriter.open(dir.file("j.db"), maxBacklog: 2)
        #expect(await writer.store(makeMessage()).isStored)
        #expect(await writer.store(makeMessage()).isStored)
        guard case .failure(.backlogFull(limit: 2)) = await writer.store(makeMessage()) else {
            Issue.record("the third message was not refused")
            return
        }
        await writer.shutdown()
        // The count survives a restart.
        writer = try JournalWriter.open(dir.file("j.db"), maxBacklog: 2)
        #expect(!(await writer.store(makeMessage()).isStored))
        await writer.shutdown()
        #expect(try sqlite3(dir.file("j.db"), "SELECT count(*) FROM messages") == "2")
    }

    @Test("a journal with a newer schema is refused, not misread")
    func newerSchema() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let writer = try JournalWriter.open(dir.file("j.db"))
        await writer.shutdown()
        _ = try sqlite3(dir.file("j.db"), "PRAGMA user_version = 99")
        let writerError = #expect(throws: JournalError.self) { try JournalWriter.open(dir.file("j.db")) }
        #expect(writerError?.code == .incompatible)
        let readerError = #expect(throws: JournalError.self) { try JournalReader(path: dir.file("j.db")) }
        #expect(readerError?.code == .incompatible)
    }

    @Test("messages submitted after shutdown are refused")
    func afterShutdown() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let writer = try JournalWriter.open(dir.file("j.db"))
        await writer.shutdown()
        guard case .failure(.shuttingDown) = await writer.store(makeMessage()) else {
            Issue.record("accepted after shutdown")
            return
        }
    }
}

extension JournalWriterTests {
    @Test("while messages keep coming, the WAL starts over after each checkpoint rather than growing with every commit")
    func walStartsOverUnderLoad() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let writer = try JournalWriter.open(dir.file("j.db"))
        let body = [UInt8](repeating: 0x61, count: 1024)
        // Eight sources that never pause, so the writer always has the next batch waiting,
        // until the writer has caught up after two checkpoint passes (every 0.5 s), or 30 s (on
        // a machine loaded by the whole suite, a catch-up can take several seconds).
        let giveUp = ContinuousClock.now + .seconds(30)
        let stored = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var count = 0
                    while writer.statistics.fullCheckpoints < 2 && ContinuousClock.now < giveUp {
                        if await writer.store(makeMessage(body: body)).isStored { count += 1 }
                    }
                    return count
                }
            }
            return await group.reduce(0, +)
        }
        // The WAL header's checkpoint sequence number (big-endian, bytes 12-15) counts the
        // times the WAL started over.
        let header = try #require(FileHandle(forReadingAtPath: dir.file("j.db-wal"))?.readData(ofLength: 16))
        let startsOver = header.suffix(4).reduce(0) { $0 << 8 | Int($1) }
        let statistics = writer.statistics
        await writer.shutdown()
        #expect(statistics.fullCheckpoints >= 2, "\(statistics)")
        // The first catch-up was followed by more commits, the first of which started over.
        #expect(startsOver >= 1, "the WAL started over \(startsOver) times while \(stored) messages were stored")
    }
}

extension Result where Success == IntakeResult {
    var isStored: Bool { if case .success(.stored) = self { true } else { false } }
}

@Suite("Journal delivery records")
struct DeliveryRecordTests {
    @Test("under durability full, a commit that holds a message fsyncs; one that holds only outcomes does not")
    func outcomeOnlyCommitsSkipTheFsync() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        for durability in [Durability.full, .relaxed] {
            let writer = try JournalWriter(path: dir.file("\(durability).db"), durability: durability, maxBacklog: 100, logger: quiet)
            writer.start()
            func recorded(_ update: DeliveryUpdate) async {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    writer.record(update) { _ in continuation.resume() }
                }
            }
            #expect(await writer.store(makeMessage()).isStored)
            await recorded(.started(deliveryID: 1, attempt: 1, cycleAttempt: 1, atMilliseconds: 1_000))
            #expect(await writer.store(makeMessage()).isStored)
            await recorded(.started(deliveryID: 2, attempt: 1, cycleAttempt: 1, atMilliseconds: 1_000))
            let statistics = writer.statistics
            await writer.shutdown()
            #expect(statistics.commits == 4)
            #expect(statistics.intakeCommits == 2)
            #expect(statistics.commitsWithoutFsync == (durability == .full ? 2 : 4), "\(durability): \(statistics)")
            #expect(try sqlite3(dir.file("\(durability).db"), "SELECT group_concat(state) FROM message_states") == "in_flight,in_flight")
        }
    }

    @Test("attempts and outcomes are recorded; retain_delivered prunes old deliveries, not the rest")
    func outcomesAndRetention() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let writer = try JournalWriter(
            path: dir.file("j.db"), durability: .full, maxBacklog: 100, retainDelivered: .seconds(30),
            maintenanceInterval: .milliseconds(100), logger: quiet)
        writer.start()
        let delivered = makeMessage()
        let failed = makeMessage()
        let oldDelivery = makeMessage()
        #expect(await writer.store(delivered).isStored)
        #expect(await writer.store(failed).isStored)
        #expect(await writer.store(oldDelivery).isStored)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // Outcomes an hour old are past retain_delivered at once; recent ones stay well inside
        // it, however slowly a loaded machine runs this test.
        let hourAgo = now - 3_600_000
        func finish(_ row: Int64, _ state: MessageState, _ status: Int, at: Int64) async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                writer.record(.started(deliveryID: row, attempt: 1, cycleAttempt: 1, atMilliseconds: at))
                writer.record(
                    .finished(
                        FinishedAttempt(
                            deliveryID: row, attempt: 1, durationMilliseconds: 12,
                            response: StoredResponse(status: status, headers: [HeaderField(name: "X-A", value: "1")], body: [0, 1]),
                            error: nil, state: state, nextAttemptAt: nil, lastError: state == .failed ? "HTTP \(status)" : nil,
                            atMilliseconds: at))
                ) { _ in continuation.resume() }
            }
        }
        await finish(1, .delivered, 204, at: now)
        await finish(2, .failed, 400, at: hourAgo)
        await finish(3, .delivered, 200, at: hourAgo)
        let reader = try JournalReader(path: dir.file("j.db"))
        let record = try #require(try reader.message(correlationID: delivered.correlationID))
        #expect(record.state == .delivered)
        #expect(record.attempts == 1)
        #expect(record.responseStatus == 204)
        #expect(record.responseBody == [0, 1])
        #expect(record.responseHeadersJSON == "[[\"X-A\",\"1\"]]")
        #expect(record.deliveredAt == Timestamp.format(millisecondsSince1970: now))
        let attempts = try reader.attempts(deliveryID: 1)
        #expect(
            attempts == [
                AttemptRecord(
                    attempt: 1, startedAt: Timestamp.format(millisecondsSince1970: now), durationMilliseconds: 12, status: 204, error: nil)
            ])

        // Maintenance deletes the old delivery (and its attempts); it keeps the recent delivery
        // and the failure, however old.
        let deadline = ContinuousClock.now + .seconds(15)
        while try sqlite3(dir.file("j.db"), "SELECT count(*) FROM messages") != "2", ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        await writer.shutdown()
        #expect(
            try sqlite3(dir.file("j.db"), "SELECT group_concat(state) FROM (SELECT state FROM message_states ORDER BY id)")
                == "delivered,failed")
        #expect(try sqlite3(dir.file("j.db"), "SELECT id FROM message_states WHERE state = 'delivered'") == "1")
        #expect(try sqlite3(dir.file("j.db"), "SELECT count(*) FROM attempts WHERE delivery_id = 3") == "0")
        #expect(try sqlite3(dir.file("j.db"), "SELECT count(*) FROM attempts WHERE delivery_id IN (1, 2)") == "2")
    }

    @Test("a skip during an attempt whose start was not yet recorded stands, unless the attempt delivered the message")
    func skipDuringQuickAttempt() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let writer = try JournalWriter.open(dir.file("j.db"))
        let retried = makeMessage()
        let failed = makeMessage()
        let delivered = makeMessage()
        for message in [retried, failed, delivered] { #expect(await writer.store(message).isStored) }
        // Each attempt is quick, so its start is never recorded: the row stays `queued` and
        // an operator's skip (another connection) takes it while the attempt runs.
        let operations = try JournalOperations(path: dir.file("j.db"))
        for message in [retried, failed, delivered] { #expect(try operations.skip(id: message.correlationID)) }
        let generationSQL = "SELECT value FROM control WHERE name = 'replay_generation'"
        let generation = try #require(Int(try sqlite3(dir.file("j.db"), generationSQL)))
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        func finish(_ row: Int64, _ state: MessageState, status: Int, nextAttemptAt: Int64?) async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                writer.record(
                    .finished(
                        FinishedAttempt(
                            deliveryID: row, attempt: 1, cycleAttempt: 1, durationMilliseconds: 3,
                            response: StoredResponse(status: status, headers: [], body: []), error: nil, state: state,
                            nextAttemptAt: nextAttemptAt, lastError: state == .delivered ? nil : "HTTP \(status)", atMilliseconds: now))
                ) { result in
                    #expect(throws: Never.self) { try result.get() }
                    continuation.resume()
                }
            }
        }
        await finish(1, .queued, status: 503, nextAttemptAt: now + 1_000)
        await finish(2, .failed, status: 400, nextAttemptAt: nil)
        await finish(3, .delivered, status: 200, nextAttemptAt: nil)
        let states = try sqlite3(
            dir.file("j.db"),
            "SELECT group_concat(state || ':' || ifnull(next_attempt_at, '-') || ':' || response_status) "
                + "FROM (SELECT * FROM message_states ORDER BY id)")
        let attempts = try sqlite3(
            dir.file("j.db"), "SELECT group_concat(delivery_id || ':' || status) FROM (SELECT * FROM attempts ORDER BY delivery_id)")
        let after = try #require(Int(try sqlite3(dir.file("j.db"), generationSQL)))
        await writer.shutdown()
        #expect(states == "skipped:-:503,skipped:-:400,delivered:-:200")
        #expect(attempts == "1:503,2:400,3:200", "every attempt is recorded")
        // The forwarder may hold a retry of the first in memory: it is told to reload.
        #expect(after > generation)
    }

    @Test("messages left in flight by a crash are queued again on start-up, their open attempt marked interrupted")
    func restartRequeues() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        var writer = try JournalWriter.open(dir.file("j.db"))
        let message = makeMessage()
        #expect(await writer.store(message).isStored)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            writer.record(.started(deliveryID: 1, attempt: 1, cycleAttempt: 1, atMilliseconds: 1_790_000_000_000)) { _ in
                continuation.resume()
            }
        }
        #expect(try sqlite3(dir.file("j.db"), "SELECT state FROM message_states") == "in_flight")
        await writer.shutdown()
        writer = try JournalWriter.open(dir.file("j.db"))
        await writer.shutdown()
        #expect(try sqlite3(dir.file("j.db"), "SELECT state FROM message_states") == "queued")
        #expect(try sqlite3(dir.file("j.db"), "SELECT error FROM attempts") == "interrupted: Waypost stopped during the attempt")
    }

    @Test("a second writer on the same journal is refused while the first runs")
    func oneWriterPerJournal() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let first = try JournalWriter.open(dir.file("j.db"))
        let error = #expect(throws: JournalError.self) { try JournalWriter.open(dir.file("j.db")) }
        #expect(error?.code == .inUse)
        await first.shutdown()
        let second = try JournalWriter.open(dir.file("j.db"))
        await second.shutdown()
    }

    @Test("a version 1 journal is migrated in place, its messages kept")
    func migrationFromVersion1() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = dir.file("j.db")
        // The schema as the first version wrote it, with one message.
        let v1 =
            Schema.migrations[0] + """
                INSERT INTO messages (correlation_id, route, method, path, headers, body, received_at, updated_at)
                VALUES ('old-1', 'r', 'POST', '/', '[]', x'00FF', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
                PRAGMA user_version = 1;
                """
        _ = try sqlite3(path, v1)
        let writer = try JournalWriter.open(path)
        await writer.shutdown()
        #expect(try sqlite3(path, "PRAGMA user_version") == "6")
        let record = try #require(try JournalReader(path: path).message(correlationID: "old-1"))
        #expect(record.body == [0x00, 0xFF])
        #expect(record.state == .queued)
        #expect(try sqlite3(path, "SELECT value FROM control WHERE name = 'replay_generation'") == "0")
    }
}
