// SPEC §2 (503 when the journal cannot take a message) and §3 (retries), end to end on the
// real executable: an upstream that is down, flaps, is slower than `timeouts.total` or
// answers garbage; a full disk under the journal; the journal file removed; the journal
// locked by another server or by a long `sqlite3` write transaction.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A route to the recording upstream with quick retries, and no breaker: these tests are
/// about retries, which a tripped breaker would hold back (FlowTests test the breaker).
private func keyedRoute(_ upstream: String, ordering: String = "key", total: String = "5s", extra: String = "") -> String {
    """
      - name: hooks
        path: /hooks
        upstream: \(upstream)
        ordering: \(ordering)
    \(ordering == "key" ? "    ordering_key: header:X-Key\n" : "")    retry: { initial: 100ms, factor: 2, max_delay: 500ms }
        breaker: off
        timeouts: { connect: 1s, total: \(total) }
    \(extra)
    """
}

/// Posts `count` messages over `keys` (round robin, `X-Key: kN`, `X-Seq: n` per key), each
/// expected to be acknowledged.
private func postSequence(port: Int, count: Int, keys: Int, bodySize: Int = 600) async throws -> [Acknowledged] {
    var acknowledged: [Acknowledged] = []
    var seqs = [Int](repeating: 0, count: keys)
    for index in 0..<count {
        let key = index % keys
        seqs[key] += 1
        let body = randomBytes(bodySize)
        let answer = try #require(
            await post(port: port, path: "/hooks/p", headers: [("X-Key", "k\(key)"), ("X-Seq", String(seqs[key]))], body: body),
            "no answer to POST \(index)")
        try #require(answer.status == 202, "POST \(index): \(answer)")
        let id = try #require(answer.header("X-Correlation-ID"))
        acknowledged.append(Acknowledged(label: "k\(key)", seq: seqs[key], correlationID: id, sha256: sha256Hex(body)))
    }
    return acknowledged
}

/// Waits until no message of the journal is waiting or in flight (at most `timeout`).
private func waitUntilAllFinal(_ journal: String, timeout: Duration = .seconds(20)) async throws -> Bool {
    try await eventually(timeout: timeout, interval: .milliseconds(200)) {
        try sqlite3(journal, "SELECT count(*) FROM message_states WHERE state IN ('queued', 'in_flight')") == "0"
    }
}

/// Queued messages whose retry time is more than 2 s in the past: a retry the forwarder forgot.
private func overdueRetries(_ journal: String) async throws -> Int {
    Int(
        try sqlite3(
            journal,
            "SELECT count(*) FROM message_states WHERE state = 'queued' AND next_attempt_at IS NOT NULL "
                + "AND next_attempt_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 seconds')")) ?? -1
}

/// Starts `server` and runs `body`. On an error runs `onError`, kills the server, stops `upstream`
/// and rethrows; stops `upstream` at the end.
private func whileServing(
    _ server: ServerUnderTest, upstream: RecordingUpstream? = nil, onError: () -> Void = {}, _ body: () async throws -> Void
) async throws {
    do {
        try await server.start()
        try await body()
    } catch {
        onError()
        await server.kill()
        await upstream?.stop()
        throw error
    }
    await upstream?.stop()
}

/// Runs `body(dir, journal, upstream, server)` with a recording upstream in `mode` and a started
/// server whose one route is ``keyedRoute(_:ordering:total:extra:)`` to it (its config passed
/// through `config`), in a new scratch directory with the journal at DIR/journal.db, or with
/// `onTmpfs` at DIR/fs/journal.db on a 4 MiB tmpfs mounted at DIR/fs (unmounted at the end).
/// `beforeStart` sees the upstream before the server starts. Cleans up as
/// ``whileServing(_:upstream:onError:_:)`` does.
private func withUpstreamAndServer(
    onTmpfs: Bool = false, mode: [String: any Sendable] = ["mode": "ok"],
    ordering: String = "key", total: String = "5s", config adjust: (String) -> String = { $0 },
    beforeStart: (RecordingUpstream) async -> Void = { _ in }, onError: () -> Void = {},
    _ body: (ScratchDirectory, String, RecordingUpstream, ServerUnderTest) async throws -> Void
) async throws {
    let dir = try ScratchDirectory()
    defer { dir.remove() }
    let mountPoint = dir.file("fs")
    if onTmpfs {
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mounted = try await runTool(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint])
        try #require(mounted.status == 0, "mount: \(mounted)")
    }
    defer { if onTmpfs { runSync(["umount", "-l", mountPoint]) } }
    let upstream = try await RecordingUpstream.start(in: dir, mode: mode)
    await beforeStart(upstream)
    let journal = onTmpfs ? mountPoint + "/journal.db" : dir.file("journal.db")
    let config = adjust(reliabilityConfig(journal: journal, routes: keyedRoute(upstream.url, ordering: ordering, total: total)))
    let server = try ServerUnderTest(dir: dir, journal: journal, config: config)
    try await whileServing(server, upstream: upstream, onError: onError) { try await body(dir, journal, upstream, server) }
}

extension Reliability {
    @Suite("FaultTests: an unreliable upstream, a full disk, a removed or locked journal", .serialized, .timeLimit(.minutes(3)))
    struct FaultTests {
        // MARK: Upstream faults

        @Test("upstream down, then up: every message delivered, attempts counted, no retry left overdue")
        func upstreamDownThenUp() async throws {
            // The upstream is down: connections to its port are refused.
            try await withUpstreamAndServer(beforeStart: { await $0.stop() }) { _, journal, upstream, server in
                let upstreamPort = upstream.port
                let acknowledged = try await postSequence(port: server.port, count: 20, keys: 4)
                // While it is down, the heads of the four queues are retried; none is forgotten.
                var overdue: [Int] = []
                for _ in 0..<12 {
                    try await Task.sleep(for: .milliseconds(250))
                    overdue.append(try await overdueRetries(journal))
                }
                #expect(overdue.allSatisfy { $0 == 0 }, "queued messages with next_attempt_at more than 2 s ago, every 250 ms: \(overdue)")
                let attemptsWhileDown = Int(try sqlite3(journal, "SELECT sum(attempts) FROM message_states")) ?? 0
                #expect(attemptsWhileDown >= 8, "the heads of 4 queues were retried for 3 s: \(attemptsWhileDown) attempts")
                #expect(try sqlite3(journal, "SELECT count(*) FROM message_states WHERE state = 'failed'") == "0")

                try await upstream.start(port: upstreamPort)
                #expect(try await waitUntilAllFinal(journal), "not delivered within 20 s after the upstream came back")
                let rows = try await journalRows(journal)
                let report = checkDeliveries(acknowledged: acknowledged, rows: rows, records: upstream.records)
                #expect(
                    report.lost.isEmpty && report.notDelivered.isEmpty && report.orderViolations.isEmpty && report.corrupted.isEmpty,
                    "\(report): \(report.details)")
                // attempts: the column, the attempts table and the upstream's X-Waypost-Attempt agree.
                let mismatched = try sqlite3(
                    journal,
                    "SELECT count(*) FROM message_states m WHERE attempts <> (SELECT count(*) FROM attempts a WHERE a.delivery_id = m.id)")
                #expect(mismatched == "0", "messages whose attempts column differs from their attempts rows")
                let byID = Dictionary(rows.map { ($0.correlationID, $0.attempts) }, uniquingKeysWith: { a, _ in a })
                for record in upstream.records {
                    #expect(byID[record.correlationID] == record.attempt, "X-Waypost-Attempt of \(record.correlationID)")
                }
                let total = rows.reduce(0) { $0 + $1.attempts }
                #expect(total > rows.count, "attempts \(total) for \(rows.count) messages")
                print(
                    "FaultTests upstream down then up: \(rows.count) messages, \(attemptsWhileDown) attempts while down, \(total) in all, overdue samples \(overdue)"
                )
                await expectCleanStop(server)
                #expect(try integrityCheck(journal) == "ok")
            }
        }

        @Test("a flapping upstream (503s and dropped connections): all delivered in order, more attempts than messages")
        func flappingUpstream() async throws {
            try await withUpstreamAndServer(mode: ["mode": "flap", "drop": 0.25, "fail": 0.3]) { _, journal, upstream, server in
                let acknowledged = try await postSequence(port: server.port, count: 30, keys: 3)
                #expect(try await waitUntilAllFinal(journal, timeout: .seconds(40)), "not all final within 40 s")
                let rows = try await journalRows(journal)
                let records = upstream.records
                let report = checkDeliveries(acknowledged: acknowledged, rows: rows, records: records)
                #expect(
                    report.lost.isEmpty && report.notDelivered.isEmpty && report.orderViolations.isEmpty && report.corrupted.isEmpty,
                    "\(report): \(report.details)")
                let attempts = rows.reduce(0) { $0 + $1.attempts }
                let actions = Dictionary(grouping: records, by: \.action).mapValues(\.count)
                #expect(attempts > rows.count, "attempts \(attempts) for \(rows.count) messages; upstream actions \(actions)")
                #expect((actions["drop"] ?? 0) > 0 && (actions["503"] ?? 0) > 0, "the upstream neither dropped nor refused: \(actions)")
                // Each message's last request is the one that got a 200.
                let lastAction = Dictionary(records.map { ($0.correlationID, $0.action) }, uniquingKeysWith: { _, last in last })
                #expect(rows.allSatisfy { lastAction[$0.correlationID] == "ok" })
                print("FaultTests flapping upstream: \(rows.count) messages, \(attempts) attempts, upstream actions \(actions)")
                await expectCleanStop(server)
            }
        }

        @Test("an upstream slower than timeouts.total: the attempt times out, is retried, and is delivered once it speeds up")
        func slowerThanTotalTimeout() async throws {
            try await withUpstreamAndServer(mode: ["mode": "slow", "delay": 2.5], ordering: "fifo", total: "1s") {
                _, journal, upstream, server in
                let acknowledged = try await postSequence(port: server.port, count: 3, keys: 1)
                let retried = try await eventually(timeout: .seconds(8)) {
                    (Int(try sqlite3(journal, "SELECT count(*) FROM attempts WHERE error IS NOT NULL")) ?? 0) >= 2
                }
                #expect(retried, "no two timed-out attempts within 8 s")
                let errors = try sqlite3(journal, "SELECT DISTINCT error FROM attempts WHERE error IS NOT NULL")
                #expect(errors.lowercased().contains("time"), "attempt errors: \(errors)")
                let durations = try sqlite3(journal, "SELECT max(duration_ms) FROM attempts WHERE error IS NOT NULL")
                #expect((Int(durations) ?? 0) < 2000, "an attempt lasted \(durations) ms with timeouts.total 1s")
                try upstream.set(["mode": "ok"])
                #expect(try await waitUntilAllFinal(journal), "not delivered within 20 s after the upstream sped up")
                let rows = try await journalRows(journal)
                let report = checkDeliveries(acknowledged: acknowledged, rows: rows, records: upstream.records)
                #expect(
                    report.lost.isEmpty && report.notDelivered.isEmpty && report.orderViolations.isEmpty, "\(report): \(report.details)")
                #expect(rows[0].attempts >= 3, "the first message: \(rows[0].attempts) attempts")
                print(
                    "FaultTests slow upstream: attempts per message \(rows.map(\.attempts)); errors: \(errors.split(separator: "\n").first ?? "")"
                )
                await expectCleanStop(server)
            }
        }

        @Test("an upstream answering garbage: retried, never failed, delivered once it answers HTTP")
        func garbageAnswers() async throws {
            try await withUpstreamAndServer(mode: ["mode": "garbage"], ordering: "fifo") { _, journal, upstream, server in
                let acknowledged = try await postSequence(port: server.port, count: 2, keys: 1)
                let retried = try await eventually(timeout: .seconds(8)) {
                    (Int(try sqlite3(journal, "SELECT attempts FROM message_states ORDER BY id LIMIT 1")) ?? 0) >= 3
                }
                #expect(retried, "the first message was not retried 3 times within 8 s")
                let errors = try sqlite3(journal, "SELECT DISTINCT coalesce(error, 'status ' || status) FROM attempts")
                #expect(
                    try sqlite3(journal, "SELECT count(*) FROM message_states WHERE state = 'failed'") == "0",
                    "a garbage answer failed a message: \(errors)")
                try upstream.set(["mode": "ok"])
                #expect(try await waitUntilAllFinal(journal), "not delivered within 20 s")
                let report = checkDeliveries(acknowledged: acknowledged, rows: try await journalRows(journal), records: upstream.records)
                #expect(
                    report.lost.isEmpty && report.notDelivered.isEmpty && report.orderViolations.isEmpty, "\(report): \(report.details)")
                print("FaultTests garbage answers: errors recorded: \(errors.split(separator: "\n"))")
                await expectCleanStop(server)
            }
        }

        // MARK: A full disk

        @Test(
            "disk full under the journal: 503 with Retry-After and problem+json, /readyz 503, nothing acknowledged lost, recovery without restart",
            .enabled(if: canMountTmpfs, "needs root and a tmpfs mount to fill a file system for real (run as root, as CI does)"))
        func diskFull() async throws {
            try await withUpstreamAndServer(onTmpfs: true) { dir, journal, upstream, server in
                let filler = dir.file("fs") + "/filler"
                var acknowledged = try await postSequence(port: server.port, count: 6, keys: 2, bodySize: 32_768)
                let ready = await get(port: server.adminPort, path: "/readyz")
                #expect(ready?.status == 200, "/readyz before: \(ready.map(String.init(describing:)) ?? "no answer")")

                // Fill the file system to the last block while the server runs.
                _ = try await runTool(["dd", "if=/dev/zero", "of=\(filler)", "bs=65536"])
                var refused: RawResponse?
                var readyWhileFull: RawResponse?
                var seq = 100
                for _ in 0..<80 where refused == nil {
                    seq += 1
                    let body = randomBytes(65_536)
                    guard
                        let answer = await post(
                            port: server.port, path: "/hooks/p", headers: [("X-Key", "k0"), ("X-Seq", String(seq))], body: body)
                    else {
                        Issue.record("no answer while the disk is full")
                        break
                    }
                    if answer.status == 202, let id = answer.header("X-Correlation-ID") {
                        acknowledged.append(Acknowledged(label: "k0", seq: seq, correlationID: id, sha256: sha256Hex(body)))
                    } else if answer.status == 503 {
                        refused = answer
                        readyWhileFull = await get(port: server.adminPort, path: "/readyz")
                    } else {
                        Issue.record("unexpected answer on a full disk: \(answer)")
                    }
                }
                let refusal = try #require(refused, "80 POSTs of 64 KiB on a full 4 MiB file system were all acknowledged")
                #expect(refusal.header("Retry-After").flatMap(Int.init) != nil, "\(refusal)")
                #expect(refusal.header("Content-Type") == "application/problem+json", "\(refusal)")
                #expect(refusal.text.contains("\"status\":503"), "\(refusal)")
                #expect(
                    readyWhileFull?.status == 503,
                    "/readyz while commits fail: \(readyWhileFull.map(String.init(describing:)) ?? "no answer")")
                #expect(server.isRunning)

                // Space returns: the next POSTs are accepted without a restart.
                try FileManager.default.removeItem(atPath: filler)
                var recovered = false
                for attempt in 0..<20 where !recovered {
                    let body = randomBytes(1000)
                    let answer = await post(
                        port: server.port, path: "/hooks/p", headers: [("X-Key", "k1"), ("X-Seq", String(200 + attempt))], body: body)
                    if answer?.status == 202, let id = answer?.header("X-Correlation-ID") {
                        acknowledged.append(Acknowledged(label: "k1", seq: 200 + attempt, correlationID: id, sha256: sha256Hex(body)))
                        recovered = true
                    } else {
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
                #expect(recovered, "POSTs still refused after the filler was removed")
                let readyAgain = await eventually(timeout: .seconds(5)) {
                    await get(port: server.adminPort, path: "/readyz")?.status == 200
                }
                #expect(readyAgain, "/readyz did not return to 200")

                // Everything acknowledged reached the upstream while the server kept running.
                let received = await eventually(timeout: .seconds(20)) {
                    checkDeliveries(acknowledged: acknowledged, rows: [], records: upstream.records, requireDelivered: false).lost.isEmpty
                }
                #expect(
                    received,
                    "acknowledged messages not delivered: \(checkDeliveries(acknowledged: acknowledged, rows: [], records: upstream.records).lost)"
                )
                let beforeRestart = try sqlite3(journal, "SELECT state, count(*) FROM message_states GROUP BY 1")
                // A restart finds every acknowledged message in the journal, and leaves none undelivered.
                await expectCleanStop(server)
                #expect(try integrityCheck(journal) == "ok")
                try await server.start()
                #expect(try await waitUntilAllFinal(journal), "not all final after the restart")
                await expectCleanStop(server)
                let report = checkDeliveries(acknowledged: acknowledged, rows: try await journalRows(journal), records: upstream.records)
                #expect(
                    report.lost.isEmpty && report.missingFromJournal.isEmpty && report.notDelivered.isEmpty && report.corrupted.isEmpty,
                    "\(report): \(report.details)")
                print(
                    "FaultTests disk full: \(acknowledged.count) acknowledged, first refusal \(refusal.status) Retry-After \(refusal.header("Retry-After") ?? "-"), "
                        + "/readyz while full \(readyWhileFull?.status ?? 0), journal before restart: \(beforeRestart.replacingOccurrences(of: "\n", with: ", ")); \(report)"
                )
                #expect(try integrityCheck(journal) == "ok")
            }
        }

        @Test(
            "a delivery that ends while the disk is full is recorded once space returns, without a restart",
            .enabled(if: canMountTmpfs, "needs root and a tmpfs mount to fill a file system for real (run as root, as CI does)"))
        func outcomeCommittedAfterDiskFull() async throws {
            try await withUpstreamAndServer(onTmpfs: true, mode: ["mode": "slow", "delay": 1.5], ordering: "fifo") {
                dir, journal, upstream, server in
                let filler = dir.file("fs") + "/filler"
                let first = try await postSequence(port: server.port, count: 1, keys: 1)
                try #require(await eventually(timeout: .seconds(5)) { upstream.records.count == 1 }, "no delivery in flight")
                // The disk fills while the upstream takes its time to answer 200.
                _ = try await runTool(["dd", "if=/dev/zero", "of=\(filler)", "bs=65536"])
                try await Task.sleep(for: .seconds(2.5))
                try FileManager.default.removeItem(atPath: filler)
                try upstream.set(["mode": "ok"])
                let second = try await postSequence(port: server.port, count: 1, keys: 1)
                let final = try await waitUntilAllFinal(journal, timeout: .seconds(10))
                let states = try sqlite3(journal, "SELECT correlation_id, state, attempts FROM message_states ORDER BY id")
                #expect(
                    final,
                    "journal 10 s after space returned: \(states); upstream: \(upstream.records.map { "\($0.correlationID) \($0.attempt) \($0.action)" })"
                )
                #expect(
                    try sqlite3(journal, "SELECT state FROM message_states WHERE correlation_id = '\(first[0].correlationID)'")
                        == "delivered")
                #expect(
                    try sqlite3(journal, "SELECT state FROM message_states WHERE correlation_id = '\(second[0].correlationID)'")
                        == "delivered")
                await expectCleanStop(server)
            }
        }

        @Test(
            "a delivery that ends while another process holds the journal's write lock is recorded once the lock ends")
        func outcomeCommittedAfterBusyJournal() async throws {
            var holder: SQLiteLockHolder?
            try await withUpstreamAndServer(mode: ["mode": "slow", "delay": 1.0], ordering: "fifo", onError: { holder?.kill() }) {
                _, journal, upstream, server in
                let first = try await postSequence(port: server.port, count: 1, keys: 1)
                try #require(await eventually(timeout: .seconds(5)) { upstream.records.count == 1 }, "no delivery in flight")
                // The upstream answers 200 after 1 s; the outcome's commit waits 5 s for the lock, then fails.
                holder = try await SQLiteLockHolder(journal: journal)
                try await Task.sleep(for: .seconds(7))
                await holder?.release()
                try upstream.set(["mode": "ok"])
                let final = try await waitUntilAllFinal(journal, timeout: .seconds(10))
                let states = try sqlite3(journal, "SELECT correlation_id, state, attempts FROM message_states ORDER BY id")
                let failures = server.stderr.split(separator: "\n").filter { $0.contains("commit failed") }
                #expect(
                    final,
                    "journal 10 s after the lock ended: \(states); upstream: \(upstream.records.map { "\($0.correlationID) \($0.attempt) \($0.action)" }); log: \(failures)"
                )
                #expect(
                    try sqlite3(journal, "SELECT state FROM message_states WHERE correlation_id = '\(first[0].correlationID)'")
                        == "delivered")
                await expectCleanStop(server)
            }
        }

        @Test("max_backlog reached: 503 with Retry-After and nothing stored; accepted again once the backlog drains")
        func backlogFull() async throws {
            try await withUpstreamAndServer(
                mode: ["mode": "503"],
                config: { $0.replacingOccurrences(of: "durability: full }", with: "durability: full, max_backlog: 5 }") }
            ) { _, journal, upstream, server in
                let acknowledged = try await postSequence(port: server.port, count: 5, keys: 5)
                let refused = await post(port: server.port, path: "/hooks/p", headers: [("X-Key", "k9")], body: Array("sixth".utf8))
                #expect(refused?.status == 503, "\(refused.map(String.init(describing:)) ?? "no answer")")
                #expect(refused?.header("Retry-After") != nil)
                #expect(refused?.header("Content-Type") == "application/problem+json")
                #expect(try sqlite3(journal, "SELECT count(*) FROM messages") == "5")
                try upstream.set(["mode": "ok"])
                #expect(try await waitUntilAllFinal(journal), "the backlog did not drain")
                let accepted = await post(port: server.port, path: "/hooks/p", headers: [("X-Key", "k9")], body: Array("sixth".utf8))
                #expect(accepted?.status == 202, "\(accepted.map(String.init(describing:)) ?? "no answer")")
                let report = checkDeliveries(acknowledged: acknowledged, rows: [], records: upstream.records, requireDelivered: false)
                #expect(report.lost.isEmpty)
                await expectCleanStop(server)
            }
        }

        @Test(
            "after purge deletes the newest rows, a new message is still delivered by the running server")
        func deliveredAfterPurge() async throws {
            try await withUpstreamAndServer(ordering: "fifo") { dir, journal, upstream, server in
                _ = try await postSequence(port: server.port, count: 3, keys: 1)
                try #require(try await waitUntilAllFinal(journal), "the first three messages were not delivered")
                let purged = try await waypost("purge", "--journal", journal, "--delivered-older-than", "0s", directory: dir.path)
                try #require(purged.status == 0 && purged.stdout.contains("purged 3"), "\(purged)")
                let after = try await postSequence(port: server.port, count: 1, keys: 1)
                let delivered = try await waitUntilAllFinal(journal, timeout: .seconds(10))
                let rows = try sqlite3(journal, "SELECT id, correlation_id, state, attempts FROM message_states")
                #expect(delivered, "10 s after it was acknowledged: \(rows) (row ids before the purge: 1, 2, 3)")
                let report = checkDeliveries(acknowledged: after, rows: [], records: upstream.records, requireDelivered: false)
                #expect(report.lost.isEmpty, "the upstream never received \(after[0].correlationID)")
                await expectCleanStop(server)
            }
        }

        // MARK: The journal file

        @Test("the journal file removed while the server runs: no crash, answers stay well-formed (what happens is in docs/reliability.md)")
        func journalRemoved() async throws {
            try await withUpstreamAndServer() { dir, journal, upstream, server in
                let before = try await postSequence(port: server.port, count: 3, keys: 1)
                try FileManager.default.removeItem(atPath: journal)
                var statuses: [Int] = []
                var acknowledgedAfter: [Acknowledged] = []
                for seq in 10..<15 {
                    let body = randomBytes(200)
                    let answer = await post(
                        port: server.port, path: "/hooks/p", headers: [("X-Key", "k0"), ("X-Seq", String(seq))], body: body)
                    statuses.append(answer?.status ?? 0)
                    if answer?.status == 202, let id = answer?.header("X-Correlation-ID") {
                        acknowledgedAfter.append(Acknowledged(label: "k0", seq: seq, correlationID: id, sha256: sha256Hex(body)))
                    }
                    if let answer, answer.status != 202 {
                        #expect(answer.status == 503 && answer.header("Retry-After") != nil, "\(answer)")
                    }
                }
                let ready = await get(port: server.adminPort, path: "/readyz")
                let status = await get(port: server.port, path: "/_waypost/messages/\(before[0].correlationID)")
                #expect(server.isRunning, "the server died after its journal was removed: \(server.stderr.suffix(2000))")
                #expect(statuses.allSatisfy { $0 == 202 || $0 == 503 }, "answers after the removal: \(statuses)")
                // Whatever the server acknowledged, it still delivers while it runs.
                let delivered = await eventually(timeout: .seconds(10)) {
                    checkDeliveries(acknowledged: before + acknowledgedAfter, rows: [], records: upstream.records, requireDelivered: false)
                        .lost.isEmpty
                }
                #expect(delivered, "acknowledged messages not delivered after the journal was removed")
                let exit = await server.stop()
                #expect(exit == 0, "exit after SIGTERM: \(exit.map(String.init) ?? "-")")
                let files =
                    (try? FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("journal") }.sorted()) ?? []
                print(
                    "FaultTests journal removed: POST answers \(statuses), /readyz \(ready?.status ?? 0), status API of an earlier message "
                        + "\(status?.status ?? 0), delivered \(delivered), exit \(exit.map(String.init) ?? "-"), files left \(files)")
            }
        }

        @Test(
            "the journal file removed while the server runs: the server stops acknowledging and reports not ready")
        func journalRemovedIsNoticed() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let journal = dir.file("journal.db")
            let server = try ServerUnderTest(
                dir: dir, journal: journal, config: reliabilityConfig(journal: journal, routes: keyedRoute("http://127.0.0.1:9/")))
            try await whileServing(server) {
                _ = try await postSequence(port: server.port, count: 1, keys: 1)
                try FileManager.default.removeItem(atPath: journal)
                try await Task.sleep(for: .seconds(1))
                let answer = await post(port: server.port, path: "/hooks/p", headers: [("X-Key", "k0")], body: Array("after".utf8))
                #expect(answer?.status == 503, "POST after the journal was removed: \(answer.map(String.init(describing:)) ?? "no answer")")
                let ready = await get(port: server.adminPort, path: "/readyz")
                #expect(
                    ready?.status == 503, "/readyz after the journal was removed: \(ready.map(String.init(describing:)) ?? "no answer")")
                _ = await server.stop()
            }
        }

        @Test("a second server on the same journal exits non-zero saying the journal is in use; the first keeps serving")
        func journalInUse() async throws {
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let journal = dir.file("journal.db")
            let config = reliabilityConfig(journal: journal, routes: keyedRoute("http://127.0.0.1:9/"))
            let first = try ServerUnderTest(dir: dir, journal: journal, config: config)
            try await whileServing(first) {
                let second = try await waypost(
                    "serve", "--config", first.configPath, "--listen", "127.0.0.1:0", "--admin-listen",
                    "127.0.0.1:0", directory: dir.path)
                #expect(second.status != 0 && second.status < 128, "\(second)")
                #expect(second.stderr.contains("in use"), "\(second)")
                #expect(second.stderr.contains(journal), "the message names the journal: \(second)")
                let answer = await post(port: first.port, path: "/hooks/p", headers: [("X-Key", "k0")], body: Array("still here".utf8))
                #expect(answer?.status == 202, "\(answer.map(String.init(describing:)) ?? "no answer")")
                await expectCleanStop(first)
                #expect(try integrityCheck(journal) == "ok")
            }
        }

        @Test("a write transaction held by sqlite3: POST answers 503 after the busy timeout, not never; accepted again once it ends")
        func journalBusy() async throws {
            // An upstream that takes everything: once the first two messages are delivered, the
            // forwarder writes nothing, and the POST is the only write that waits for the lock.
            var holder: SQLiteLockHolder?
            try await withUpstreamAndServer(onError: { holder?.kill() }) { _, journal, upstream, server in
                let before = try await postSequence(port: server.port, count: 2, keys: 1)
                try #require(try await waitUntilAllFinal(journal), "the first two messages were not delivered")
                // sqlite3 takes the write lock and keeps it while its standard input stays open.
                holder = try await SQLiteLockHolder(journal: journal)

                let started = ContinuousClock.now
                let answer = await post(
                    port: server.port, path: "/hooks/p", headers: [("X-Key", "k0")], body: Array("while locked".utf8), timeout: 30)
                let waited = ContinuousClock.now - started
                let ready = await get(port: server.adminPort, path: "/readyz")
                #expect(
                    answer?.status == 503,
                    "POST while the journal is locked: \(answer.map(String.init(describing:)) ?? "no answer within 30 s")")
                #expect(answer?.header("Retry-After") != nil)
                #expect(answer?.header("Content-Type") == "application/problem+json")
                #expect(waited < .seconds(10), "the answer took \(waited)")
                #expect(waited > .seconds(4), "503 after \(waited), before the 5 s busy timeout")
                #expect(ready?.status == 503, "/readyz while the journal is locked: \(ready.map(String.init(describing:)) ?? "no answer")")

                await holder?.release()
                let after = await post(port: server.port, path: "/hooks/p", headers: [("X-Key", "k0")], body: Array("after".utf8))
                #expect(after?.status == 202, "POST after the lock ended: \(after.map(String.init(describing:)) ?? "no answer")")
                #expect(try sqlite3(journal, "SELECT count(*) FROM messages") == "3", "the refused message was stored anyway")
                let ids = try sqlite3(journal, "SELECT correlation_id FROM messages ORDER BY id").split(separator: "\n").map(
                    String.init)
                #expect(Array(ids.prefix(2)) == before.map(\.correlationID))
                print("FaultTests journal busy: 503 after \(waited), /readyz \(ready?.status ?? 0) meanwhile, 202 after the lock ended")
                await expectCleanStop(server)
                #expect(try integrityCheck(journal) == "ok")
            }
        }
    }
}
