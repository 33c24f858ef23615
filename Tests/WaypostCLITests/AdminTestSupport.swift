// What the admin API tests (SPEC §5) share: a `waypost serve` child with both listeners on free
// loopback ports and the admin token set, an upstream whose answer depends on the path,
// a curl wrapper that sends paths as they are, and a parser for the Prometheus text format.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The admin token every ``AdminTestServer`` runs with (unless a test says otherwise).
let adminTestToken = "secret-token"

// MARK: - The upstream

/// One request the ``ScriptedUpstream`` answered.
struct UpstreamRequest: Sendable, CustomStringConvertible {
    var correlationID: String
    var attempt: String
    var status: Int
    var path: String

    var description: String { "\(correlationID) #\(attempt) \(status) \(path)" }
}

/// An upstream whose answer depends on the request path (a ``TestUpstream``):
///
/// - containing `fail`: 422 (not retryable: the message fails at once) until ``answerFailuresOK()``, then 200;
/// - containing `flaky`: 503 (retryable) to the first request of each correlation id, then 200;
/// - containing `hold`: 200, but only once ``releaseHeld()`` (the message stays in flight until then);
/// - anything else: 200.
///
/// Each answered request is noted in ``requests``.
final class ScriptedUpstream: Sendable {
    private final class Script: Sendable {
        let state = Mutex<(failuresOK: Bool, seen: Set<String>, log: [UpstreamRequest])>((false, [], []))
        /// Replaced by a closed one when the test holds requests again.
        let held = Mutex(Gate())
    }

    private let script: Script
    private let upstream: TestUpstream

    private init(script: Script, upstream: TestUpstream) {
        self.script = script
        self.upstream = upstream
    }

    var port: Int { upstream.port }

    static func start() async throws -> ScriptedUpstream {
        let script = Script()
        let upstream = try await TestUpstream.start { request in
            let id = request.header("X-Correlation-ID") ?? ""
            let path = request.uri
            let status = script.state.withLock { state in
                if path.contains("fail") { return state.failuresOK ? 200 : 422 }
                if path.contains("flaky") { return state.seen.insert(id).inserted ? 503 : 200 }
                return 200
            }
            let answered = UpstreamRequest(
                correlationID: id, attempt: request.header("X-Waypost-Attempt") ?? "", status: status, path: path)
            let body = Array((status == 200 ? "ok" : "no").utf8)
            guard path.contains("hold"), !path.contains("fail"), !path.contains("flaky") else {
                script.state.withLock { $0.log.append(answered) }
                return .respond(status: status, body: body)
            }
            let gate = script.held.withLock { $0 }
            gate.whenOpen { script.state.withLock { $0.log.append(answered) } }
            return .respond(status: status, body: body, gate: gate)
        }
        return ScriptedUpstream(script: script, upstream: upstream)
    }

    var url: String { upstream.url + "/" }

    /// From now on paths containing `fail` are answered 200.
    func answerFailuresOK() {
        script.state.withLock { $0.failuresOK = true }
    }

    /// Lets every held request (and every later one) be answered.
    func releaseHeld() {
        script.held.withLock { $0 }.open()
    }

    /// Holds requests to `hold` paths again, until the next ``releaseHeld()``.
    func holdAgain() {
        script.held.withLock { $0 = Gate() }
    }

    /// Forgets the requests answered so far.
    func forgetRequests() {
        script.state.withLock { $0.log = [] }
    }

    /// The requests answered so far, in order.
    var requests: [UpstreamRequest] { script.state.withLock { $0.log } }

    func stop() async {
        releaseHeld()
        await upstream.stop()
    }
}

// MARK: - The server

/// `waypost serve --config CONFIG --listen 127.0.0.1:P1 --admin-listen 127.0.0.1:P2 --journal DIR/j.db`
/// with `$WAYPOST_ADMIN_TOKEN` set, once both listeners accept connections.
final class AdminTestServer {
    let child: WaypostProcess
    let intakePort: Int
    let adminPort: Int
    /// What `--journal` was given; empty when the configuration names the journal.
    let journal: String

    private init(child: WaypostProcess, intakePort: Int, adminPort: Int, journal: String) {
        self.child = child
        self.intakePort = intakePort
        self.adminPort = adminPort
        self.journal = journal
    }

    /// Starts the server on free ports and waits until both listeners are bound.
    static func start(
        config: String, journal: String?, directory: String, environment: [String: String] = ["WAYPOST_ADMIN_TOKEN": adminTestToken]
    ) async throws -> AdminTestServer {
        let (child, intakePort, adminPort) = try await startServe(
            environment: environment, directory: directory,
            arguments: ["serve", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
                + (journal.map { ["--journal", $0] } ?? []))
        return AdminTestServer(child: child, intakePort: intakePort, adminPort: adminPort, journal: journal ?? "")
    }

    /// One request to the intake listener.
    func intake(_ method: String, _ path: String, body: String? = nil, headers: [String] = []) async throws -> HTTPAnswer {
        try await httpRequest(method, "http://127.0.0.1:\(intakePort)\(path)", body: body, headers: headers)
    }

    /// POSTs `body` to the intake at `path`, requires `202`, and returns the correlation id.
    func accept(_ path: String, body: String = "{}") async throws -> String {
        let answer = try await intake("POST", path, body: body, headers: ["Content-Type: application/json"])
        try #require(answer.status == 202, "POST \(path): \(answer.status) \(answer.body)")
        return try #require(answer.header("X-Correlation-ID"), "POST \(path): no X-Correlation-ID in \(answer.headers)")
    }

    /// One request to the admin listener, with `Authorization: Bearer TOKEN` unless `token` is nil.
    func admin(
        _ method: String, _ path: String, body: String? = nil, token: String? = adminTestToken, headers: [String] = []
    ) async throws
        -> HTTPAnswer
    {
        let authorization = token.map { ["Authorization: Bearer \($0)"] } ?? []
        return try await httpRequest(method, "http://127.0.0.1:\(adminPort)\(path)", body: body, headers: authorization + headers)
    }

    /// `GET /messages/{id}` with the token: the message object (a list's item, with the
    /// `reply_from` destination's `response`) and its `attempt_log`.
    func message(_ id: String) async throws -> (message: [String: Any], attempts: [[String: Any]]) {
        let answer = try await admin("GET", "/messages/\(id)")
        try #require(answer.status == 200, "GET /messages/\(id): \(answer.status) \(answer.body)")
        let message = try answer.jsonObject()
        let attempts = try #require(message["attempt_log"] as? [[String: Any]], "GET /messages/\(id): \(answer.body)")
        return (message, attempts)
    }

    /// `GET /messages/{id}`'s `deliveries`, by destination.
    func deliveries(_ id: String) async throws -> [String: [String: Any]] {
        let (message, _) = try await message(id)
        let list = try #require(message["deliveries"] as? [[String: Any]], "\(message)")
        var byName: [String: [String: Any]] = [:]
        for delivery in list { byName[try #require(delivery["destination"] as? String)] = delivery }
        return byName
    }

    /// Every message's state, by correlation id, from `GET /messages?limit=1000`.
    func states() async throws -> [String: String] {
        let answer = try await admin("GET", "/messages?limit=1000")
        try #require(answer.status == 200, "GET /messages: \(answer.status) \(answer.body)")
        let messages = try #require(try answer.jsonObject()["messages"] as? [[String: Any]], "\(answer.body)")
        var states: [String: String] = [:]
        for message in messages {
            states[try #require(message["id"] as? String)] = try #require(message["state"] as? String)
        }
        return states
    }

    /// Polls ``states()`` until `condition` holds, at most `timeout`; returns the last states, or
    /// throws with them.
    @discardableResult
    func waitForStates(
        _ what: String, timeout: Duration = .seconds(15), _ condition: ([String: String]) -> Bool
    ) async throws -> [String: String] {
        let deadline = ContinuousClock.now + timeout
        var last: [String: String] = [:]
        while ContinuousClock.now < deadline {
            last = try await states()
            if condition(last) { return last }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CLITestError("not within \(timeout): \(what); states: \(last); the server's log:\n\(child.stderr.text.suffix(4000))")
    }

    /// `GET /metrics` (without a token), parsed.
    func metrics() async throws -> PrometheusText {
        let answer = try await admin("GET", "/metrics", token: nil)
        try #require(answer.status == 200, "GET /metrics: \(answer.status) \(answer.body)")
        return PrometheusText(answer.body)
    }

    /// SIGTERM, then the exit status within `timeout` (nil: still running, then killed).
    func terminate(timeout: Duration = .seconds(10)) async -> Int32? {
        child.send(SIGTERM)
        let status = await child.waitForExit(timeout: timeout)
        if status == nil { await child.kill() }
        return status
    }
}

/// A one-route configuration: route `orders` at `/hooks` to `upstream`, fifo, with short retries
/// (`initial: 200ms`) so that a retried message is delivered within a second.
func adminTestConfig(upstream: String, extra: String = "") -> String {
    """
    \(extra)routes:
      - name: orders
        path: /hooks
        upstream: \(upstream)
        retry: { initial: 200ms, factor: 2, max_delay: 1s }

    """
}

/// Runs `body` with a scratch directory, a ``ScriptedUpstream`` and an ``AdminTestServer`` on the
/// configuration from ``adminTestConfig(upstream:extra:)`` and a journal of `backend`; stops them
/// on every path, and expects the server to exit 0 on SIGTERM when `body` returned normally.
func withAdminServer(
    _ backend: JournalBackend = .sqlite, _ body: (AdminTestServer, ScriptedUpstream) async throws -> Void
) async throws {
    let dir = try ScratchDirectory()
    defer { dir.remove() }
    let journal = try await TestJournal.make(backend, in: dir)
    defer { journal.stop() }
    let upstream = try await ScriptedUpstream.start()
    let server: AdminTestServer
    do {
        let config = try dir.write("waypost.yaml", adminTestConfig(upstream: upstream.url))
        server = try await AdminTestServer.start(config: config, journal: journal.location, directory: dir.path)
    } catch {
        await upstream.stop()
        throw error
    }
    do {
        try await body(server, upstream)
    } catch {
        await server.child.kill()
        await upstream.stop()
        throw error
    }
    let status = await server.terminate()
    await upstream.stop()
    #expect(status == 0, "waypost serve after SIGTERM: \(status.map(String.init) ?? "none"); stderr:\n\(server.child.stderr.text)")
}

// MARK: - HTTP

extension HTTPAnswer {
    /// The body parsed as a JSON object.
    func jsonObject() throws -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            throw CLITestError("the body is not a JSON object (status \(status)): \(body)")
        }
        return object
    }
}

/// Sends one request with the stock `curl` (at most 10 s), the path as given (`--path-as-is`,
/// so `/a/../b` reaches the server), a body only when `body` is given, and parses the answer.
func httpRequest(_ method: String, _ url: String, body: String? = nil, headers: [String] = []) async throws -> HTTPAnswer {
    try await curlExchange(
        method, url, options: ["--path-as-is"] + (body.map { ["--data-binary", $0] } ?? []) + headers.flatMap { ["-H", $0] })
}

// MARK: - Prometheus text

/// The samples of a Prometheus text exposition (format 0.0.4).
struct PrometheusText: CustomStringConvertible {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    let text: String
    let samples: [Sample]
    /// Metric families declared by `# TYPE NAME KIND` lines: name → kind.
    let types: [String: String]
    /// Lines that are neither comments nor well-formed samples.
    let malformed: [String]

    init(_ text: String) {
        self.text = text
        var samples: [Sample] = []
        var types: [String: String] = [:]
        var malformed: [String] = []
        for line in text.split(separator: "\n").map(String.init) where !line.isEmpty {
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ").map(String.init)
                if parts.count == 4, parts[1] == "TYPE" { types[parts[2]] = parts[3] }
                continue
            }
            guard let sample = Self.parse(line) else {
                malformed.append(line)
                continue
            }
            samples.append(sample)
        }
        self.samples = samples
        self.types = types
        self.malformed = malformed
    }

    /// `name{a="1",b="2"} value` (label values here never hold `"`, `,` or `}`).
    private static func parse(_ line: String) -> Sample? {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { return nil }
        let series = line[..<space]
        guard let brace = series.firstIndex(of: "{") else {
            return series.isEmpty || series.contains(" ") ? nil : Sample(name: String(series), labels: [:], value: value)
        }
        guard series.hasSuffix("}") else { return nil }
        var labels: [String: String] = [:]
        for pair in series[series.index(after: brace)..<series.index(before: series.endIndex)].split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[1].hasPrefix("\""), parts[1].hasSuffix("\""), parts[1].count >= 2 else { return nil }
            labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
        }
        return Sample(name: String(series[..<brace]), labels: labels, value: value)
    }

    /// The value of the series with exactly these labels, or nil.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    var description: String { text }
}

// MARK: - Upstreams the test steers, and a server over them

/// An upstream (a ``TestUpstream``) that answers with the status the test sets (and `body`, once
/// `gate` is open when given), noting each request's correlation id and arrival time.
final class SettableUpstream: Sendable {
    let upstream: TestUpstream
    private let state: State

    final class State: Sendable {
        let status: Mutex<Int>
        let arrivals = Mutex<[(id: String, at: ContinuousClock.Instant)]>([])
        init(_ status: Int) { self.status = Mutex(status) }
    }

    private init(upstream: TestUpstream, state: State) {
        self.upstream = upstream
        self.state = state
    }

    static func start(status: Int = 200, gate: Gate? = nil, body: String = "ok") async throws -> SettableUpstream {
        let state = State(status)
        let upstream = try await TestUpstream.start { request in
            state.arrivals.withLock { $0.append((request.header("X-Correlation-ID") ?? "", ContinuousClock.now)) }
            return .respond(status: state.status.withLock { $0 }, body: Array(body.utf8), gate: gate)
        }
        return SettableUpstream(upstream: upstream, state: state)
    }

    func answer(_ status: Int) { state.status.withLock { $0 = status } }

    var url: String { upstream.url + "/" }

    /// Correlation ids of the requests received, in order (retries included).
    var ids: [String] { state.arrivals.withLock { $0.map(\.id) } }

    /// When each request arrived, in order.
    var times: [ContinuousClock.Instant] { state.arrivals.withLock { $0.map(\.at) } }

    /// Each correlation id once, in the order of its last request (the one that was answered
    /// `2xx` when retries came before it).
    var lastOrder: [String] {
        var seen: [String] = []
        for id in ids.reversed() where !seen.contains(id) { seen.append(id) }
        return seen.reversed()
    }

    func stop() async { await upstream.stop() }
}

/// Where ``withServer(config:journal:at:upstreams:environment:_:)`` puts the journal.
enum ServerJournal {
    /// `DIR/j.db`, a copy of the `journal` file when one is given.
    case file
    /// `--journal LOCATION`: a file or a `postgres://` URL.
    case location(String)
    /// The configuration's `journal`: no `--journal`.
    case configured
}

/// Runs `body` with a server on `config` (written in a scratch directory) and the journal
/// `DIR/j.db` (a copy of `journal`, when given) or the one `location` names, stopping
/// everything afterwards.
///
/// With `backend` `.postgres`, the journal is a PostgreSQL database of the test's own instead.
func withServer(
    config: String, journal: String? = nil, at location: ServerJournal = .file, backend: JournalBackend = .sqlite,
    upstreams: [SettableUpstream], environment: [String: String] = [:],
    _ body: (AdminTestServer, ScratchDirectory) async throws -> Void
) async throws {
    let dir = try ScratchDirectory()
    defer { dir.remove() }
    var location = location
    var database: TestJournal?
    defer { database?.stop() }
    let server: AdminTestServer
    do {
        if backend == .postgres {
            let made = try await TestJournal.make(.postgres, in: dir)
            database = made
            location = .location(made.location)
        }
        let path = try dir.write("waypost.yaml", config)
        let journalPath = dir.file("j.db")
        if let journal {
            try FileManager.default.copyItem(atPath: journal, toPath: journalPath)
            // A journal saved from a running server has its newest pages in its write-ahead log.
            if FileManager.default.fileExists(atPath: journal + "-wal") {
                try FileManager.default.copyItem(atPath: journal + "-wal", toPath: journalPath + "-wal")
            }
        }
        let flag: String? =
            switch location {
            case .file: journalPath
            case .location(let location): location
            case .configured: nil
            }
        server = try await AdminTestServer.start(
            config: path, journal: flag, directory: dir.path,
            environment: environment.merging(["WAYPOST_ADMIN_TOKEN": adminTestToken]) { mine, _ in mine })
    } catch {
        for upstream in upstreams { await upstream.stop() }
        throw error
    }
    do {
        try await body(server, dir)
    } catch {
        await server.child.kill()
        for upstream in upstreams { await upstream.stop() }
        throw error
    }
    let status = await server.terminate()
    for upstream in upstreams { await upstream.stop() }
    #expect(status == 0, "waypost serve after SIGTERM: \(status.map(String.init) ?? "none"); stderr:\n\(server.child.stderr.text)")
}
