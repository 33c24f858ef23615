// `waypost replay` and `waypost purge` (SPEC §6) on the journal of a running `waypost serve`,
// whose upstream (a TestUpstream) answers 422 (not retryable, so a message is `failed` after one
// attempt) until the test flips it to 200.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The upstream's program: 422 to every POST until `FLAG` exists, then 200; one line per request
/// (`CORRELATION-ID ATTEMPT STATUS`) appended to `LOG`. It exits when its standard input closes,
/// so that it cannot outlive the test process.
/// An upstream that answers `422` until ``answerOK()``, then `200`, and notes the status it gave
/// each request.
private final class FlagUpstream: Sendable {
    private final class Answers: Sendable {
        let state = Mutex<(ok: Bool, log: [(id: String, attempt: String, status: String)])>((false, []))
    }

    private let answers: Answers
    private let upstream: TestUpstream

    private init(answers: Answers, upstream: TestUpstream) {
        self.answers = answers
        self.upstream = upstream
    }

    static func start() async throws -> FlagUpstream {
        let answers = Answers()
        let upstream = try await TestUpstream.start { request in
            let status = answers.state.withLock { state in
                let status = state.ok ? 200 : 422
                state.log.append((request.header("X-Correlation-ID") ?? "", request.header("X-Waypost-Attempt") ?? "", String(status)))
                return status
            }
            return .respond(status: status, body: Array((status == 200 ? "ok" : "unprocessable").utf8))
        }
        return FlagUpstream(answers: answers, upstream: upstream)
    }

    var url: String { upstream.url + "/" }

    /// From now on the upstream answers 200.
    func answerOK() {
        answers.state.withLock { $0.ok = true }
    }

    /// The requests received so far: correlation id, X-Waypost-Attempt, status answered.
    var requests: [(id: String, attempt: String, status: String)] { answers.state.withLock { $0.log } }

    func stop() async {
        await upstream.stop()
    }
}

/// A message as `waypost list --json` shows it.
private struct ListedMessage: Equatable, CustomStringConvertible {
    var state: String
    var attempts: Int

    var description: String { "\(state)/\(attempts)" }
}

/// Every message of the journal, by correlation id, from `waypost list --json`.
private func listMessages(_ journal: String, directory: String) async throws -> [String: ListedMessage] {
    let result = try await waypost("list", "--journal", journal, "--json", "--limit", "1000", directory: directory)
    guard result.status == 0 else { throw CLITestError("list failed: \(result)") }
    let messages = try #require(try result.json()["messages"] as? [[String: Any]], "\(result)")
    var byID: [String: ListedMessage] = [:]
    for message in messages {
        let id = try #require(message["id"] as? String, "\(result)")
        let state = try #require(message["state"] as? String, "\(result)")
        let attempts = try #require(message["attempts"] as? Int, "\(result)")
        byID[id] = ListedMessage(state: state, attempts: attempts)
    }
    return byID
}

/// Polls `list --json` until `condition` holds, at most `timeout`; returns the last listing, or
/// throws with it.
@discardableResult
private func waitForMessages(
    _ what: String, journal: String, directory: String, timeout: Duration = .seconds(15),
    _ condition: ([String: ListedMessage]) -> Bool
) async throws -> [String: ListedMessage] {
    let deadline = ContinuousClock.now + timeout
    var last: [String: ListedMessage] = [:]
    while ContinuousClock.now < deadline {
        last = try await listMessages(journal, directory: directory)
        if condition(last) { return last }
        try await Task.sleep(for: .milliseconds(200))
    }
    throw CLITestError("not within \(timeout): \(what); messages: \(last)")
}

@Suite("waypost replay and purge on a running server's journal", .timeLimit(.minutes(2)))
struct ReplayPurgeCLITests {
    @Test("replay by id and by --state, --dry-run, exit codes, and purge of delivered messages", arguments: JournalBackend.allCases)
    func replayAndPurge(backend: JournalBackend) async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let testJournal = try await TestJournal.make(backend, in: dir)
        defer { testJournal.stop() }
        let upstream = try await FlagUpstream.start()
        let journal = testJournal.location
        let server: RunningServer
        do {
            server = try await RunningServer.start(
                journal: journal, directory: dir.path, arguments: ["--upstream", upstream.url, "--journal", journal])
        } catch {
            await upstream.stop()
            throw error
        }
        do {
            try await replayAndPurgeSteps(server: server, upstream: upstream, dir: dir)
        } catch {
            await server.child.kill()
            await upstream.stop()
            throw error
        }
        let status = await server.terminate(timeout: .seconds(10))
        await upstream.stop()
        #expect(status == 0, "waypost serve after SIGTERM: \(status.map(String.init) ?? "none"); stderr:\n\(server.child.stderr.text)")
    }

    private func replayAndPurgeSteps(server: RunningServer, upstream: FlagUpstream, dir: ScratchDirectory) async throws {
        let journal = server.journal
        var ids: [String] = []
        for index in 1...3 {
            let answer = try await curl(
                "POST", server.baseURL + "/hooks/\(index)", body: "{\"n\":\(index)}", headers: ["Content-Type: application/json"])
            try #require(answer.status == 202, "POST: \(answer.status) \(answer.body)")
            ids.append(try #require(answer.header("X-Correlation-ID"), "\(answer.headers)"))
        }

        // 422 is not retryable: every message fails after one attempt.
        try await waitForMessages("3 messages failed after 1 attempt", journal: journal, directory: dir.path) { messages in
            ids.allSatisfy { messages[$0] == ListedMessage(state: "failed", attempts: 1) }
        }

        // --dry-run lists the ids in order and changes nothing.
        let dryRun = try await waypost("replay", "--journal", journal, "--state", "failed", "--dry-run", directory: dir.path)
        #expect(dryRun.status == 0, "\(dryRun)")
        #expect(dryRun.lines == ids + ["would replay 3 message(s)"], "\(dryRun)")
        let filteredOut = try await waypost(
            "replay", "--journal", journal, "--state", "failed", "--route", "no-such-route", "--dry-run", directory: dir.path)
        #expect(filteredOut.status == 0 && filteredOut.lines == ["would replay 0 message(s)"], "\(filteredOut)")
        let dryRunByID = try await waypost("replay", "--journal", journal, "--dry-run", ids[2], directory: dir.path)
        #expect(dryRunByID.status == 0 && dryRunByID.lines == ["would replay 1 message(s)"], "\(dryRunByID)")
        try await Task.sleep(for: .seconds(1))  // a replay would be picked up within a second
        let afterDryRun = try await listMessages(journal, directory: dir.path)
        #expect(ids.allSatisfy { afterDryRun[$0] == ListedMessage(state: "failed", attempts: 1) }, "\(afterDryRun)")

        // Refusals: an unknown id is an operation that failed (1); bad flags are 64.
        let unknown = try await waypost("replay", "--journal", journal, "01UNKNOWNID0000000000000000", directory: dir.path)
        #expect(unknown.status == 1, "\(unknown)")
        #expect(unknown.stderr.contains("01UNKNOWNID0000000000000000"), "\(unknown)")
        let noIDs = try await waypost("replay", "--journal", journal, directory: dir.path)
        #expect(noIDs.status == 64, "\(noIDs)")
        for state in ["queued", "in_flight", "banana"] {
            let notFinal = try await waypost("replay", "--journal", journal, "--state", state, directory: dir.path)
            #expect(notFinal.status == 64, "--state \(state): \(notFinal)")
            #expect(notFinal.stderr.contains("--state"), "--state \(state): \(notFinal)")
        }
        let unchanged = try await listMessages(journal, directory: dir.path)
        #expect(ids.allSatisfy { unchanged[$0] == ListedMessage(state: "failed", attempts: 1) }, "\(unchanged)")

        // A replay starts a new attempt; the upstream still says 422, so it fails again.
        let again = try await waypost("replay", "--journal", journal, ids[1], directory: dir.path)
        #expect(again.status == 0 && again.lines == ["replayed 1 message(s)"], "\(again)")
        try await waitForMessages("the replayed message failed again after attempt 2", journal: journal, directory: dir.path) {
            $0[ids[1]] == ListedMessage(state: "failed", attempts: 2)
        }

        // Now the upstream accepts: the running server delivers a replayed message.
        upstream.answerOK()
        let replay = try await waypost("replay", "--journal", journal, ids[0], directory: dir.path)
        #expect(replay.status == 0, "\(replay)")
        #expect(replay.lines == ["replayed 1 message(s)"], "\(replay)")
        let delivered = try await waitForMessages("the replayed message delivered", journal: journal, directory: dir.path) {
            $0[ids[0]]?.state == "delivered"
        }
        #expect(delivered[ids[0]] == ListedMessage(state: "delivered", attempts: 2), "\(delivered)")
        #expect(delivered[ids[1]] == ListedMessage(state: "failed", attempts: 2), "\(delivered)")
        #expect(delivered[ids[2]] == ListedMessage(state: "failed", attempts: 1), "\(delivered)")
        let received = upstream.requests.filter { $0.id == ids[0] }.map { "\($0.attempt) \($0.status)" }
        #expect(received == ["1 422", "2 200"], "X-Waypost-Attempt and the status of each request of \(ids[0]): \(upstream.requests)")

        // purge: a bad duration is 64; a long one deletes nothing; 0s deletes the delivered message only.
        let banana = try await waypost("purge", "--journal", journal, "--delivered-older-than", "banana", directory: dir.path)
        #expect(banana.status == 64, "\(banana)")
        #expect(banana.stderr.contains("--delivered-older-than"), "\(banana)")
        let none = try await waypost("purge", "--journal", journal, "--delivered-older-than", "1h", directory: dir.path)
        #expect(none.status == 0 && none.lines == ["purged 0 delivered message(s)"], "\(none)")
        #expect(try await listMessages(journal, directory: dir.path).count == 3)
        let purge = try await waypost("purge", "--journal", journal, "--delivered-older-than", "0s", directory: dir.path)
        #expect(purge.status == 0 && purge.lines == ["purged 1 delivered message(s)"], "\(purge)")
        let afterPurge = try await listMessages(journal, directory: dir.path)
        #expect(Set(afterPurge.keys) == [ids[1], ids[2]], "\(afterPurge)")
        let show = try await waypost("show", "--journal", journal, ids[0], directory: dir.path)
        #expect(show.status == 1, "show of a purged message: \(show)")

        // replay --state failed replays the rest; the server delivers both.
        let rest = try await waypost("replay", "--journal", journal, "--state", "failed", directory: dir.path)
        #expect(rest.status == 0 && rest.lines == ["replayed 2 message(s)"], "\(rest)")
        let purged = try await waypost("replay", "--journal", journal, ids[0], directory: dir.path)
        #expect(purged.status == 1, "replay of a purged id: \(purged)")
        try await waitForMessages("the other two delivered", journal: journal, directory: dir.path) {
            $0[ids[1]] == ListedMessage(state: "delivered", attempts: 3) && $0[ids[2]] == ListedMessage(state: "delivered", attempts: 2)
        }
    }

    @Test(
        "bad flags exit 64 before the journal is touched",
        arguments: [
            ["replay"],
            ["replay", "--state", "queued"],
            ["replay", "--state", "in_flight"],
            ["replay", "--state", "failed", "01SOMEID"],
            ["replay", "01SOMEID", "--route", "default"],
            ["replay", "--state", "failed", "--since", "banana"],
            ["replay", "--state", "failed", "--until", "yesterday"],
            ["purge"],
            ["purge", "--delivered-older-than", "banana"],
            ["purge", "--delivered-older-than", "7"],
            ["purge", "--delivered-older-than", "-1d"],
            ["purge", "--delivered-older-than", "1.5h"],
        ])
    func badFlags(arguments: [String]) async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let result = try await waypost(arguments: arguments + ["--journal", dir.file("j.db")], directory: dir.path)
        #expect(result.status == 64, "\(result)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("j.db")), "a refused command created the journal")
    }

    @Test(
        "replay and purge on a journal that does not exist exit 1 and create nothing",
        arguments: [["replay", "01SOMEID"], ["replay", "--state", "failed"], ["purge", "--delivered-older-than", "7d"]])
    func missingJournal(arguments: [String]) async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let result = try await waypost(arguments: arguments + ["--journal", dir.file("none.db")], directory: dir.path)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains(dir.file("none.db")), "the message names the path: \(result)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("none.db")), "created the journal")
    }
}
