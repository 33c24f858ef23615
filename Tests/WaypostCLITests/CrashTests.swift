// SPEC §2 durability and §10 lifecycle, end to end on the real executable: `kill -9` at random
// moments while sources post and the forwarder delivers, restart on the same journal, and in
// the end every acknowledged message reached the upstream byte for byte, in order per queue;
// and a graceful stop (SIGTERM) answers what is in progress and loses nothing.
//
// `WAYPOST_SOAK_ROUNDS=200 swift test --filter CrashTests` runs a long soak instead of the
// three rounds of the normal suite. docs/reliability.md has the figures.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Rounds of the crash test: `$WAYPOST_SOAK_ROUNDS`, else 3.
private let soakRounds: Int? = ProcessInfo.processInfo.environment["WAYPOST_SOAK_ROUNDS"].flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil }

/// What the sources share with the test: where the server listens now, and when to stop.
final class LoadControl: Sendable {
    let port = Atomic<Int>(0)
    let stop = Atomic<Bool>(false)
}

/// One source: posts a numbered sequence of random binary bodies (`X-Key: LABEL`,
/// `X-Seq: N`), one at a time on a keep-alive connection, and posts the same request again
/// until it is acknowledged (a killed server answers nothing; a restarting one refuses the
/// connection). With `supplyIDs`, the request carries its own `X-Correlation-ID`, so that a
/// repeat after a crash is an idempotent repeat; without, a repeat of a request whose answer
/// was lost may be stored twice (at-least-once intake, as for any source that retries). When
/// the port changes (the test moves it to another node), it connects there for its next request.
final class SequenceSource: Sendable {
    struct Tally {
        var acknowledged: [Acknowledged] = []
        var noAnswer = 0
        var refused503 = 0
        var unexpected: [String] = []
    }

    let label: String
    let path: String
    let supplyIDs: Bool
    let runID: String
    let pause: Duration
    let tally = Mutex(Tally())

    init(label: String, path: String, supplyIDs: Bool, runID: String, pause: Duration) {
        self.label = label
        self.path = path
        self.supplyIDs = supplyIDs
        self.runID = runID
        self.pause = pause
    }

    /// Runs on a thread of its own until `control.stop`.
    func run(_ control: LoadControl) {
        var connection: RawConnection?
        var connectedPort = 0
        var seq = 1
        var generator = SystemRandomNumberGenerator()
        while !control.stop.load(ordering: .relaxed) {
            let size = Int.random(in: 0..<20, using: &generator) == 0 ? 70_000 : Int.random(in: 0...3000, using: &generator)
            let body = randomBytes(size)
            let digest = sha256Hex(body)
            var headers = [("X-Key", label), ("X-Seq", String(seq)), ("Content-Type", "application/octet-stream")]
            if supplyIDs { headers.append(("X-Correlation-ID", "\(runID)-\(label)-\(seq)")) }
            let request = rawRequest("POST", path, headers: headers, body: body)
            var acknowledged = false
            while !acknowledged {
                if control.stop.load(ordering: .relaxed) { return }
                let port = control.port.load(ordering: .relaxed)
                if connection == nil || port != connectedPort {
                    connection = RawConnection(port: port, timeout: 15)
                    connectedPort = port
                }
                guard let open = connection else {
                    usleep(20_000)
                    continue
                }
                guard open.send(request), let response = open.readResponse() else {
                    connection = nil
                    tally.withLock { $0.noAnswer += 1 }
                    usleep(10_000)
                    continue
                }
                if response.closes { connection = nil }
                if (200..<300).contains(response.status), let id = response.header("X-Correlation-ID") {
                    let ack = Acknowledged(label: label, seq: seq, correlationID: id, sha256: digest)
                    tally.withLock { $0.acknowledged.append(ack) }
                    acknowledged = true
                } else if response.status == 503 {
                    tally.withLock { $0.refused503 += 1 }
                    usleep(50_000)
                } else {
                    tally.withLock { $0.unexpected.append("\(label)#\(seq): \(response)") }
                    usleep(50_000)
                }
            }
            seq += 1
            if pause > .zero { usleep(UInt32(pause.components.attoseconds / 1_000_000_000_000)) }
        }
    }
}

extension Reliability {
    @Suite(
        "CrashTests: kill -9 and graceful stops lose no acknowledged message", .serialized,
        .timeLimit(.minutes(soakRounds.map { $0 / 4 + 3 } ?? 3)))
    struct CrashTests {
        @Test(
            "kill -9 during intake and delivery, restart on the same journal: every acknowledged message delivered, in order",
            arguments: JournalBackend.allCases)
        func killNineRounds(backend: JournalBackend) async throws {
            let rounds = soakRounds ?? 3
            let started = ContinuousClock.now
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let testJournal = try await TestJournal.make(backend, in: dir)
            defer { testJournal.stop() }
            let journal = testJournal.location
            // The journal's own answer to `sql`, as sqlite3 or psql prints it; SQLite's integrity
            // check (PostgreSQL's crash recovery is its own).
            func query(_ sql: String) throws -> String { try testJournal.query(sql) }
            func checkIntegrity() throws -> String { testJournal.database == nil ? try integrityCheck(journal) : "ok" }
            let upstream = try await RecordingUpstream.start(in: dir, mode: ["mode": "ok", "slow_fraction": 0.05, "slow_delay": 0.25])
            let server = try ServerUnderTest(
                dir: dir, journal: journal,
                config: reliabilityConfig(
                    journal: journal,
                    routes: orderedRoutes(to: upstream.url) + """

                          - name: fanout
                            path: /hooks/fanout
                            retry: { initial: 100ms, factor: 2, max_delay: 1s }
                            timeouts: { connect: 1s, total: 5s }
                            destinations:
                              - { name: a, upstream: "\(upstream.url)/fan-a", ordering: key, ordering_key: "header:X-Key" }
                              - { name: b, upstream: "\(upstream.url)/fan-b", ordering: fifo }
                        """))
            let runID = String(UUID().uuidString.prefix(8))
            let sources =
                (0..<4).map {
                    SequenceSource(label: "k\($0)", path: "/hooks/keyed", supplyIDs: $0 % 2 == 0, runID: runID, pause: .milliseconds(3))
                }
                + (0..<2).map {
                    SequenceSource(label: "f\($0)", path: "/hooks/fifo", supplyIDs: $0 == 0, runID: runID, pause: .milliseconds(15))
                }
                + (0..<2).map {
                    SequenceSource(label: "o\($0)", path: "/hooks/fanout", supplyIDs: $0 == 0, runID: runID, pause: .milliseconds(10))
                }
            let control = LoadControl()
            var integrity: [String] = []
            var killNotes: [String] = []
            var drained = false
            var drainTime = "-"
            do {
                try await server.start()
                control.port.store(server.port, ordering: .relaxed)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for source in sources { group.addTask { await onThread { source.run(control) } } }
                    do {
                        for round in 1...rounds {
                            if round > 1 {
                                // Sometimes the sources find nobody listening for a moment.
                                try await Task.sleep(for: .milliseconds(Int.random(in: 0...300)))
                                try await server.start()
                                control.port.store(server.port, ordering: .relaxed)
                            }
                            // Mostly while sources post and deliveries run; one round in five right
                            // after start-up, while the journal's leftovers are being re-queued.
                            let wait = Int.random(in: 0..<5) == 0 ? Int.random(in: 30...250) : Int.random(in: 300...2500)
                            try await Task.sleep(for: .milliseconds(wait))
                            let acknowledgedSoFar = sources.reduce(0) { $0 + $1.tally.withLock { $0.acknowledged.count } }
                            let receivedSoFar = upstream.records.count
                            await server.kill9()
                            killNotes.append(
                                "round \(round): kill -9 after \(wait) ms (acknowledged \(acknowledgedSoFar), upstream received \(receivedSoFar))"
                            )
                            let check = try checkIntegrity()
                            if check != "ok" { integrity.append("after round \(round): \(check)") }
                        }
                        // The last start: the sources stop, the backlog drains.
                        try await server.start()
                        control.port.store(server.port, ordering: .relaxed)
                        try await Task.sleep(for: .milliseconds(300))
                    } catch {
                        control.stop.store(true, ordering: .relaxed)
                        throw error
                    }
                    control.stop.store(true, ordering: .relaxed)
                    try await group.waitForAll()
                }
                // Drains for as long as it makes progress (a soak's backlog can be large); fails
                // when 30 s pass without one more message delivered.
                let drainStarted = ContinuousClock.now
                var remaining = Int.max
                var lastProgress = ContinuousClock.now
                while remaining > 0, ContinuousClock.now - lastProgress < .seconds(30) {
                    let count = Int(try query("SELECT count(*) FROM message_states WHERE state <> 'delivered'")) ?? -1
                    if count < remaining { lastProgress = ContinuousClock.now }
                    remaining = count
                    if remaining > 0 { try await Task.sleep(for: .milliseconds(250)) }
                }
                drainTime = seconds(since: drainStarted)
                let states = try query("SELECT state, count(*) FROM message_states GROUP BY 1")
                #expect(remaining == 0, "the backlog stopped draining (30 s without progress): \(states)")
                drained = remaining == 0
            } catch {
                control.stop.store(true, ordering: .relaxed)
                await server.kill()
                await upstream.stop()
                throw error
            }
            let status = await server.stop()
            #expect(
                status == 0, "waypost serve after SIGTERM: \(status.map(String.init) ?? "none"); stderr:\n\(server.allLogs.suffix(3000))")
            let finalCheck = try checkIntegrity()
            if finalCheck != "ok" { integrity.append("at the end: \(finalCheck)") }
            let records = upstream.records
            await upstream.stop()

            let tallies = sources.map { $0.tally.withLock { $0 } }
            let acknowledged = tallies.flatMap(\.acknowledged)
            let rows = journalRows(text: try query(journalRowsQuery))
            // The routes with one destination, then each destination of `fanout` (by the path it
            // was sent to): every acknowledged message must reach each, in its queue's order
            // (b is fifo: one queue for the route).
            let fannedOut = acknowledged.filter { $0.label.hasPrefix("o") }
            let fanRows = rows.filter { $0.route == "fanout" }
            let reports = [
                (
                    "single",
                    checkDeliveries(
                        acknowledged: acknowledged.filter { !$0.label.hasPrefix("o") }, rows: rows.filter { $0.route != "fanout" },
                        records: records.filter { !$0.path.hasPrefix("/recv/fan-") })
                ),
                (
                    "fanout/a",
                    checkDeliveries(acknowledged: fannedOut, rows: fanRows, records: records.filter { $0.path.hasPrefix("/recv/fan-a") })
                ),
                (
                    "fanout/b",
                    checkDeliveries(
                        acknowledged: fannedOut,
                        rows: fanRows.map { row in
                            var whole = row
                            whole.orderingKey = ""
                            return whole
                        },
                        records: records.filter { $0.path.hasPrefix("/recv/fan-b") })
                ),
            ]
            let report = reports.map(\.1).reduce(DeliveryReport(), +)
            let noAnswer = tallies.reduce(0) { $0 + $1.noAnswer }
            let refused = tallies.reduce(0) { $0 + $1.refused503 }
            // A crash between sending an attempt and committing its start sends the same
            // X-Waypost-Attempt number again after the restart (harmless; counted for the record).
            let repeatedAttemptNumbers = Dictionary(
                grouping: records.filter { $0.action != "short" }, by: { "\($0.correlationID) \($0.attempt) \($0.path)" }
            ).values.count { $0.count > 1 }
            // Before the backlog drained, "lost" would count messages still waiting in the journal.
            let lost = drained ? String(report.lost.count) : "unknown (not drained; \(report.lost.count) not delivered yet)"
            let summary =
                "CrashTests summary (\(backend)): rounds=\(rounds) acknowledged=\(report.acknowledged) lost=\(lost) "
                + "duplicates=\(report.duplicates) (messages delivered more than once: \(report.redelivered)) stored=\(report.stored) "
                + "storedTwice=\(report.storedTwice) partialRequests=\(report.partial) repeatedAttemptNumbers=\(repeatedAttemptNumbers) upstreamRequests=\(records.count) unanswered=\(noAnswer) refused503=\(refused) "
                + "orderViolations=\(report.orderViolations.count) integrity=\(integrity.isEmpty ? "ok" : "FAILED") drain=\(drainTime)s time=\(seconds(since: started))s"
            print(summary)
            for note in killNotes { print("  " + note) }
            let clean =
                report.lost.isEmpty && report.corrupted.isEmpty && report.orderViolations.isEmpty && integrity.isEmpty
                && report.neverReceived.isEmpty && report.notDelivered.isEmpty && report.missingFromJournal.isEmpty
            if !clean {
                // Keep the journal, the upstream's log and the server's logs for whoever investigates.
                let evidence = FileManager.default.temporaryDirectory.appendingPathComponent("waypost-crash-evidence-\(runID)").path
                try? FileManager.default.copyItem(atPath: dir.path, toPath: evidence)
                try? server.allLogs.write(toFile: evidence + "/server-stderr.log", atomically: true, encoding: .utf8)
                let acks = tallies.flatMap(\.acknowledged).map { "\($0.label) \($0.seq) \($0.correlationID) \($0.sha256)" }
                try? acks.joined(separator: "\n").write(toFile: evidence + "/acknowledged.txt", atomically: true, encoding: .utf8)
                print("  evidence kept in \(evidence)")
            }

            #expect(acknowledged.count > 0, "nothing was acknowledged: \(tallies.map(\.unexpected))")
            for (name, part) in reports { print("  \(name): \(part)") }
            #expect(report.lost.isEmpty, "acknowledged but never delivered: \(report.details)\n\(summary)")
            #expect(report.corrupted.isEmpty, "bodies differ: \(report.corrupted.prefix(5))")
            #expect(report.orderViolations.isEmpty, "order per queue: \(report.orderViolations.prefix(5))")
            #expect(report.missingFromJournal.isEmpty, "acknowledged but not in the journal: \(report.missingFromJournal.prefix(5))")
            #expect(report.neverReceived.isEmpty, "stored but never sent: \(report.neverReceived.prefix(5))")
            #expect(report.notDelivered.isEmpty, "not delivered in the journal: \(report.notDelivered.prefix(5))")
            #expect(integrity.isEmpty, "PRAGMA integrity_check: \(integrity)")
            #expect(tallies.allSatisfy { $0.unexpected.isEmpty }, "unexpected answers: \(tallies.flatMap(\.unexpected).prefix(5))")
            // Per source, the acknowledged sequence numbers are exactly 1...n: every request was
            // repeated until acknowledged, and a repeat with a supplied id stored nothing new.
            for tally in tallies {
                let seqs = tally.acknowledged.map(\.seq)
                #expect(seqs == (0..<seqs.count).map { $0 + 1 }, "sequence of \(tally.acknowledged.first?.label ?? "?")")
            }
            for source in sources where source.supplyIDs {
                let ids = Set(source.tally.withLock { $0.acknowledged.map(\.correlationID) })
                let storedForSource = rows.filter { $0.correlationID.hasPrefix("\(runID)-\(source.label)-") }
                #expect(storedForSource.count == Set(storedForSource.map(\.correlationID)).count)
                #expect(ids.isSubset(of: Set(storedForSource.map(\.correlationID))))
            }
        }

        @Test("the delivery check itself finds a loss, a changed body, an order inversion and an undelivered row")
        func checkerFindsFaults() {
            let acknowledged = [
                Acknowledged(label: "k", seq: 1, correlationID: "A", sha256: "a"),
                Acknowledged(label: "k", seq: 2, correlationID: "B", sha256: "b"),
                Acknowledged(label: "k", seq: 3, correlationID: "C", sha256: "c"),
                Acknowledged(label: "k", seq: 4, correlationID: "D", sha256: "d"),
            ]
            let rows = ["A", "B", "C", "D"].enumerated().map {
                JournalRow(
                    id: $0.offset + 1, correlationID: $0.element, route: "r", orderingKey: "k",
                    state: $0.offset == 3 ? "queued" : "delivered", attempts: 1)
            }
            func record(_ id: String, _ sha: String) -> UpstreamRecord {
                UpstreamRecord(correlationID: id, attempt: 1, sha256: sha, key: "k", seq: 0, action: "ok", length: 1, path: "/")
            }
            let clean = checkDeliveries(
                acknowledged: acknowledged,
                rows: rows.map {
                    var r = $0; r.state = "delivered"; return r
                },
                records: [record("A", "a"), record("B", "b"), record("B", "b"), record("C", "c"), record("D", "d")])
            #expect(clean.lost.isEmpty && clean.orderViolations.isEmpty && clean.corrupted.isEmpty && clean.notDelivered.isEmpty)
            #expect(clean.duplicates == 1 && clean.redelivered == 1)
            let faulty = checkDeliveries(
                acknowledged: acknowledged, rows: rows, records: [record("C", "c"), record("B", "x"), record("A", "a")])
            #expect(faulty.lost.count == 1 && faulty.lost[0].contains("D"))
            #expect(faulty.corrupted.count == 1 && faulty.corrupted[0].contains("B"))
            #expect(faulty.orderViolations.count == 2, "\(faulty.orderViolations)")
            #expect(faulty.notDelivered.count == 1 && faulty.neverReceived.count == 1)
            #expect(sha256Hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            #expect(sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        }

        @Test(
            "SIGTERM during a slow delivery and unfinished requests: answers sent, exit 0 within the grace, nothing lost",
            arguments: [(delay: 1.5, grace: 3), (delay: 30.0, grace: 1)])
        func gracefulStop(delay: Double, grace: Int) async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let upstream = try await RecordingUpstream.start(in: dir, mode: ["mode": "slow", "delay": delay])
            let journal = dir.file("journal.db")
            let server = try ServerUnderTest(
                dir: dir, journal: journal,
                config: reliabilityConfig(
                    journal: journal, shutdownGrace: "\(grace)s",
                    routes: """
                          - name: fifo
                            path: /hooks/fifo
                            upstream: \(upstream.url)
                            timeouts: { connect: 1s, total: 60s }
                            retry: { initial: 100ms, max_delay: 1s }
                        """))
            do {
                try await server.start()
                try await gracefulStopSteps(server: server, upstream: upstream, delay: delay, grace: grace)
            } catch {
                await server.kill()
                await upstream.stop()
                throw error
            }
            await upstream.stop()
        }

        private func gracefulStopSteps(server: ServerUnderTest, upstream: RecordingUpstream, delay: Double, grace: Int) async throws {
            let journal = server.journal
            var acknowledged: [Acknowledged] = []
            let firstBody = randomBytes(500)
            let first = try #require(
                await post(port: server.port, path: "/hooks/fifo", headers: [("X-Key", "g"), ("X-Seq", "1")], body: firstBody))
            try #require(first.status == 202, "\(first)")
            acknowledged.append(
                Acknowledged(label: "g", seq: 1, correlationID: first.header("X-Correlation-ID") ?? "", sha256: sha256Hex(firstBody)))
            let inFlight = await eventually(timeout: .seconds(5)) { upstream.records.count == 1 }
            try #require(inFlight, "the upstream did not receive the first message")

            // Three sources are in the middle of their requests: the head and half the body sent.
            let bodies = (0..<3).map { _ in randomBytes(1000) }
            let connections = bodies.enumerated().map { index, body -> RawConnection? in
                let connection = RawConnection(port: server.port, timeout: 15)
                let request = rawRequest("POST", "/hooks/fifo", headers: [("X-Key", "g"), ("X-Seq", String(index + 2))], body: body)
                connection?.send(Array(request[0..<(request.count - 500)]))
                return connection
            }
            try #require(connections.allSatisfy { $0 != nil })
            try await Task.sleep(for: .milliseconds(300))

            let signalled = ContinuousClock.now
            server.child?.send(SIGTERM)
            try await Task.sleep(for: .milliseconds(500))
            #expect(server.isRunning, "the server exited before answering the requests in progress")
            #expect(!acceptsConnections(port: server.port), "the intake still accepts new connections after SIGTERM")

            // They finish their requests and get their answers.
            for (index, connection) in connections.enumerated() {
                let body = bodies[index]
                let request = rawRequest("POST", "/hooks/fifo", headers: [("X-Key", "g"), ("X-Seq", String(index + 2))], body: body)
                let rest = Array(request[(request.count - 500)...])
                let answer = await onThread { () -> RawResponse? in
                    guard let connection, connection.send(rest) else { return nil }
                    return connection.readResponse()
                }
                #expect(answer?.status == 202, "request in progress at SIGTERM: \(answer.map(String.init(describing:)) ?? "no answer")")
                if let answer, answer.status == 202, let id = answer.header("X-Correlation-ID") {
                    acknowledged.append(Acknowledged(label: "g", seq: index + 2, correlationID: id, sha256: sha256Hex(body)))
                }
            }
            let status = await server.child!.waitForExit(timeout: .seconds(grace + 10))
            let elapsed = ContinuousClock.now - signalled
            let stderr = server.stderr
            _ = await server.stop()
            #expect(
                status == 0, "exit status after SIGTERM: \(status.map(String.init) ?? "still running"); stderr:\n\(stderr.suffix(2000))")
            #expect(elapsed < .seconds(grace + 4), "exit took \(elapsed) with shutdown_grace \(grace)s")
            #expect(try integrityCheck(journal) == "ok")
            let firstState = try sqlite3(
                journal, "SELECT state FROM message_states WHERE correlation_id = '\(acknowledged[0].correlationID)'")
            if delay < Double(grace) {
                #expect(firstState == "delivered", "the delivery in flight had time to finish within shutdown_grace")
            } else {
                #expect(firstState == "in_flight", "a delivery cut short by the end of the grace stays in flight, to be sent again")
            }
            print(
                "CrashTests graceful stop (upstream delay \(delay)s, shutdown_grace \(grace)s): exit \(status.map(String.init) ?? "-") after \(elapsed), first message \(firstState)"
            )

            // Restarted with a fast upstream, everything acknowledged is delivered.
            try upstream.set(["mode": "ok"])
            try await server.start()
            let delivered = try await eventually(timeout: .seconds(15)) {
                try sqlite3(journal, "SELECT count(*) FROM message_states WHERE state <> 'delivered'") == "0"
            }
            let states = try sqlite3(journal, "SELECT correlation_id, state FROM message_states")
            #expect(delivered, "after restart: \(states)")
            await expectCleanStop(server)
            let report = checkDeliveries(acknowledged: acknowledged, rows: try await journalRows(journal), records: upstream.records)
            #expect(report.acknowledged == 4)
            #expect(report.lost.isEmpty && report.orderViolations.isEmpty && report.corrupted.isEmpty, "\(report): \(report.details)")
            #expect(try integrityCheck(journal) == "ok")
        }

        @Test(
            "a client that stalls in the middle of its body does not hold SIGTERM's exit past shutdown_grace + 5 s")
        func stalledClientAtShutdown() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let journal = dir.file("journal.db")
            let server = try ServerUnderTest(
                dir: dir, journal: journal,
                config: reliabilityConfig(
                    journal: journal, shutdownGrace: "2s",
                    routes: """
                          - name: fifo
                            path: /hooks/fifo
                            upstream: http://127.0.0.1:9/
                        """))
            do {
                try await server.start()
                let stalled = try #require(RawConnection(port: server.port, timeout: 5))
                stalled.send("POST /hooks/fifo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhalf")
                try await Task.sleep(for: .milliseconds(300))
                let signalled = ContinuousClock.now
                let status = await server.stop(signal: SIGTERM, timeout: .seconds(12))
                let elapsed = ContinuousClock.now - signalled
                #expect(status == 0, "exit status \(status.map(String.init) ?? "none: still running after 12 s (killed)") after \(elapsed)")
                #expect(elapsed < .seconds(9), "exit took \(elapsed)")
                withExtendedLifetime(stalled) {}
                #expect(try integrityCheck(journal) == "ok")
            } catch {
                await server.kill()
                throw error
            }
        }

        @Test("a second SIGTERM during the grace exits at once, non-zero; the journal stays sound and nothing is lost")
        func secondSignal() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let upstream = try await RecordingUpstream.start(in: dir, mode: ["mode": "slow", "delay": 30.0])
            let journal = dir.file("journal.db")
            let server = try ServerUnderTest(
                dir: dir, journal: journal,
                config: reliabilityConfig(
                    journal: journal, shutdownGrace: "20s",
                    routes: """
                          - name: fifo
                            path: /hooks/fifo
                            upstream: \(upstream.url)
                            timeouts: { connect: 1s, total: 60s }
                        """))
            do {
                try await server.start()
                var acknowledged: [Acknowledged] = []
                for seq in 1...3 {
                    let body = randomBytes(300)
                    let answer = try #require(
                        await post(port: server.port, path: "/hooks/fifo", headers: [("X-Key", "s"), ("X-Seq", String(seq))], body: body))
                    try #require(answer.status == 202, "\(answer)")
                    acknowledged.append(
                        Acknowledged(label: "s", seq: seq, correlationID: answer.header("X-Correlation-ID") ?? "", sha256: sha256Hex(body)))
                }
                try #require(await eventually(timeout: .seconds(5)) { upstream.records.count == 1 }, "no delivery in flight")
                server.child?.send(SIGTERM)
                try await Task.sleep(for: .seconds(1))
                try #require(server.isRunning, "the server did not wait for the delivery in flight")
                let second = ContinuousClock.now
                let status = await server.stop(signal: SIGTERM, timeout: .seconds(5))
                let elapsed = ContinuousClock.now - second
                #expect(
                    status != nil && status != 0,
                    "exit status after a second SIGTERM: \(status.map(String.init) ?? "still running after 5 s")")
                #expect(elapsed < .seconds(2), "the second signal took \(elapsed) to stop the server")
                #expect(server.allLogs.contains("second signal"), "\(server.allLogs.suffix(1000))")
                print("CrashTests second signal: exit \(status.map(String.init) ?? "-") after \(elapsed)")
                #expect(try integrityCheck(journal) == "ok")

                try upstream.set(["mode": "ok"])
                try await server.start()
                let delivered = try await eventually(timeout: .seconds(15)) {
                    try sqlite3(journal, "SELECT count(*) FROM message_states WHERE state <> 'delivered'") == "0"
                }
                #expect(delivered)
                await expectCleanStop(server)
                let report = checkDeliveries(acknowledged: acknowledged, rows: try await journalRows(journal), records: upstream.records)
                #expect(report.lost.isEmpty && report.orderViolations.isEmpty && report.corrupted.isEmpty, "\(report): \(report.details)")
                #expect(report.duplicates >= 1, "the first message was in flight at the second signal: sent again after restart")
                #expect(try integrityCheck(journal) == "ok")
            } catch {
                await server.kill()
                await upstream.stop()
                throw error
            }
            await upstream.stop()
        }
    }
}
