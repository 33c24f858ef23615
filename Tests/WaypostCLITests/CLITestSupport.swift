// Running the real `waypost` executable (and the tools the tests use) as a child process: locating
// the binary, collecting its output, bounding every wait, picking free loopback ports, and a tiny
// HTTP client (curl).
//
// Every wait here is asynchronous (`Task.sleep` polling), so a test that waits for a child does
// not block a thread of Swift's cooperative pool; pipes are drained on threads of their own.

import Foundation
import Synchronization
import Testing
@_exported import WaypostTestSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// MARK: - Locations

/// The package root, found from this file's path (`Tests/WaypostCLITests/…`).
let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The built `waypost` executable: next to the test bundle, else `.build/debug/waypost`.
let waypostExecutable: URL? = {
    var directories = [
        Bundle.main.bundleURL,
        Bundle.main.bundleURL.deletingLastPathComponent(),
        Bundle.main.executableURL?.deletingLastPathComponent(),
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
        packageRoot.appendingPathComponent(".build/debug"),
    ].compactMap { $0 }
    #if os(macOS)
        // Inside `waypostPackageTests.xctest/Contents/MacOS`: the products directory is three levels up.
        directories += directories.map {
            $0.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        }
    #endif
    for directory in directories {
        let candidate = directory.appendingPathComponent("waypost")
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
            FileManager.default.isExecutableFile(atPath: candidate.path)
        {
            return candidate
        }
    }
    return nil
}()

/// The example configurations shipped in `deploy/examples`.
/// The variables the shipped examples name (secrets, `add_headers`): `check-config`, like
/// `serve`, refuses a configuration whose secrets are missing.
let exampleEnvironment = [
    "GITHUB_WEBHOOK_SECRET": "github-secret", "STRIPE_WEBHOOK_SECRET": "stripe-secret",
    "UPSTREAM_SIGNING_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "INTEGRATION_API_KEY": "api-key",
]

func exampleConfig(_ name: String) -> String {
    packageRoot.appendingPathComponent("deploy/examples/\(name)").path
}

/// The environment of every child: this process's, without any `WAYPOST_*` variable (so a
/// developer's shell settings cannot change what a test sees), plus `extra`.
func childEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("WAYPOST_") }
    environment.merge(extra) { $1 }
    return environment
}

struct CLITestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Child processes

/// A child process, `waypost` unless told otherwise, with its standard output and error collected.
final class WaypostProcess {
    let child: ChildProcess

    /// Starts `waypost ARGUMENTS` in `directory` (default: a scratch directory of the caller's).
    convenience init(_ arguments: [String], environment: [String: String] = [:], directory: String? = nil) throws {
        guard let executable = waypostExecutable else {
            throw CLITestError(
                "cannot find the waypost executable next to the test bundle (\(Bundle.main.bundleURL.path)) "
                    + "or in \(packageRoot.path)/.build/debug; run `swift build --build-tests` first")
        }
        try self.init(executable: executable, arguments, environment: environment, directory: directory)
    }

    /// Starts `EXECUTABLE ARGUMENTS` in `directory`, with ``childEnvironment(_:)`` plus
    /// `environment` and standard input from /dev/null.
    init(executable: URL, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil) throws {
        child = try ChildProcess(executable.path, arguments, environment: childEnvironment(environment), directory: directory)
    }

    var stdout: PipeCollector { child.stdout! }
    var stderr: PipeCollector { child.stderr! }
    var isRunning: Bool { child.isRunning }
    var pid: pid_t { child.pid }

    /// Waits for the child to exit, at most `timeout`; returns its exit status, or nil when it is
    /// still running.
    func waitForExit(timeout: Duration) async -> Int32? {
        guard let status = await child.wait(timeout: timeout) else { return nil }
        await stdout.waitForEnd(timeout: .seconds(2))
        await stderr.waitForEnd(timeout: .seconds(2))
        return status
    }

    /// Sends `signal` to the child (if it still runs).
    func send(_ signal: Int32) { child.send(signal) }

    /// Cleanup for every exit path: SIGKILL when the child still runs, then reap it.
    func kill() async {
        guard child.isRunning else { return }
        send(SIGKILL)
        _ = await waitForExit(timeout: .seconds(5))
    }
}

/// How a finished command (`waypost`, or a tool such as curl or sqlite3) ended.
struct CommandResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String

    var description: String { "exit \(status)\n--- stdout:\n\(stdout)\n--- stderr:\n\(stderr)" }

    /// The standard output's non-empty lines.
    var lines: [String] { stdout.split(separator: "\n").map(String.init) }

    /// The standard output parsed as a JSON object.
    func json() throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any] else {
            throw CLITestError("stdout is not a JSON object: \(stdout)")
        }
        return object
    }
}

/// Runs `waypost ARGUMENTS` to completion, at most `timeout` (then kills it and fails).
func waypost(
    _ arguments: String..., environment: [String: String] = [:], directory: String? = nil,
    timeout: Duration = .seconds(10)
) async throws -> CommandResult {
    try await waypost(arguments: arguments, environment: environment, directory: directory, timeout: timeout)
}

/// Runs `waypost ARGUMENTS` to completion, at most `timeout` (then kills it and fails).
func waypost(
    arguments: [String], environment: [String: String] = [:], directory: String? = nil,
    timeout: Duration = .seconds(10)
) async throws -> CommandResult {
    try await runCommand(
        WaypostProcess(arguments, environment: environment, directory: directory), ["waypost"] + arguments, timeout: timeout)
}

/// Runs `EXECUTABLE ARGUMENTS` (``WaypostProcess/init(executable:_:environment:directory:)``) to
/// completion, at most `timeout` (then kills it and fails), and collects its exit status and output.
func runCommand(
    executable: URL, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil,
    timeout: Duration
) async throws -> CommandResult {
    try await runCommand(
        WaypostProcess(executable: executable, arguments, environment: environment, directory: directory),
        [executable.path] + arguments, timeout: timeout)
}

/// Waits for `child` (started as `commandLine`) to exit, at most `timeout` (then kills it and fails).
private func runCommand(_ child: WaypostProcess, _ commandLine: [String], timeout: Duration) async throws -> CommandResult {
    guard let status = await child.waitForExit(timeout: timeout) else {
        await child.kill()
        throw CLITestError("`\(commandLine.joined(separator: " "))` did not exit within \(timeout); stderr:\n\(child.stderr.text)")
    }
    return CommandResult(status: status, stdout: child.stdout.text, stderr: child.stderr.text)
}

/// `kill(2)`, named apart from ``WaypostProcess/kill()``.
func signalProcess(_ pid: pid_t, _ signal: Int32) {
    _ = kill(pid, signal)
}

// MARK: - Sockets

#if canImport(Glibc)
    private let streamSocket = Int32(SOCK_STREAM.rawValue)
#else
    private let streamSocket = SOCK_STREAM
#endif

private func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

/// A TCP socket listening on 127.0.0.1 at an ephemeral port, until `close()`.
struct LoopbackListener {
    let fd: Int32
    let port: Int

    /// Binds 127.0.0.1:0 and, when `listen` is true, listens on it.
    init(listen shouldListen: Bool = true) throws {
        let fd = socket(AF_INET, streamSocket, 0)
        guard fd >= 0 else { throw CLITestError("socket() failed: errno \(errno)") }
        var address = loopbackAddress(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            closeSocket(fd)
            throw CLITestError("bind(127.0.0.1:0) failed: errno \(errno)")
        }
        if shouldListen, listen(fd, 8) != 0 {
            closeSocket(fd)
            throw CLITestError("listen() failed: errno \(errno)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: actual.sin_port))
    }

    func close() { closeSocket(fd) }
}

private func closeSocket(_ fd: Int32) {
    #if canImport(Glibc)
        _ = Glibc.close(fd)
    #else
        _ = Darwin.close(fd)
    #endif
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
func freeLoopbackPort() throws -> Int {
    let probe = try LoopbackListener(listen: false)
    defer { probe.close() }
    return probe.port
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func acceptsConnections(port: Int) -> Bool {
    let fd = socket(AF_INET, streamSocket, 0)
    guard fd >= 0 else { return false }
    defer { closeSocket(fd) }
    var address = loopbackAddress(port: port)
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return result == 0
}

// MARK: - A python3 child that prints its port

/// A `python3` script run as a child that prints the port it listens on as its first line and
/// exits when its standard input closes.
struct PythonChild {
    let process: ChildProcess
    let port: Int

    var stderr: PipeCollector { process.stderr! }

    /// Runs `python3 SCRIPT ARGUMENTS…` and waits (at most 10 s) until it prints its port.
    static func start(_ script: String, _ arguments: [String], notReady: String = "did not print its port") async throws -> PythonChild {
        let process = try ChildProcess("/usr/bin/env", ["python3", script] + arguments, environment: childEnvironment(), input: true)
        let stdout = process.stdout!
        let deadline = ContinuousClock.now + .seconds(10)
        var port: Int?
        while port == nil, process.isRunning, ContinuousClock.now < deadline {
            port = stdout.text.split(separator: "\n").first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            if port == nil { try? await Task.sleep(for: .milliseconds(20)) }
        }
        guard let port else {
            process.send(SIGKILL)
            _ = await process.wait(timeout: .seconds(5))
            throw CLITestError("the python3 upstream \(notReady) within 10 s; stderr:\n\(process.stderr!.text)")
        }
        return PythonChild(process: process, port: port)
    }

    /// Closes its standard input (it exits on that), then kills it if it still runs, and reaps it.
    func stop() async {
        try? process.input?.close()
        if await process.wait(timeout: .seconds(2)) == nil {
            process.send(SIGKILL)
            _ = await process.wait(timeout: .seconds(5))
        }
    }
}

// MARK: - A real server

/// Starts `waypost serve` with `arguments`, which should hold `--listen 127.0.0.1:0` and
/// `--admin-listen 127.0.0.1:0`, and waits (at most 15 s) for the line it prints once both
/// are bound: `listening intake=HOST:PORT admin=HOST:PORT`.
func startServe(
    environment: [String: String], directory: String, arguments: [String]
) async throws -> (child: WaypostProcess, intakePort: Int, adminPort: Int) {
    let child = try WaypostProcess(arguments, environment: environment, directory: directory)
    let deadline = ContinuousClock.now + .seconds(15)
    while ContinuousClock.now < deadline, child.isRunning {
        if let ports = listeningPorts(child.stdout.text) { return (child, ports.intake, ports.admin) }
        try? await Task.sleep(for: .milliseconds(10))
    }
    if child.isRunning {
        await child.kill()
        throw CLITestError("waypost serve did not report its ports within 15 s; stderr:\n\(child.stderr.text)")
    }
    let status = await child.waitForExit(timeout: .seconds(2))
    throw CLITestError("waypost serve exited \(status.map(String.init) ?? "?") at start; stderr:\n\(child.stderr.text)")
}

/// The ports of serve's `listening intake=HOST:PORT admin=HOST:PORT` line, once it is complete.
func listeningPorts(_ stdout: String) -> (intake: Int, admin: Int)? {
    guard let line = stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().first(where: { $0.hasPrefix("listening ") })
    else { return nil }
    var ports: [String: Int] = [:]
    for field in line.split(separator: " ").dropFirst() {
        let parts = field.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let colon = parts[1].lastIndex(of: ":"), let port = Int(parts[1][parts[1].index(after: colon)...]) else {
            return nil
        }
        ports[String(parts[0])] = port
    }
    guard let intake = ports["intake"], let admin = ports["admin"] else { return nil }
    return (intake, admin)
}

/// `waypost serve` running on a free loopback port (the system's pick) with its journal in `journal`.
final class RunningServer {
    let child: WaypostProcess
    let port: Int
    let journal: String

    private init(child: WaypostProcess, port: Int, journal: String) {
        self.child = child
        self.port = port
        self.journal = journal
    }

    /// Starts `waypost serve --upstream http://127.0.0.1:9/ --listen 127.0.0.1:0 --journal JOURNAL`
    /// (the admin listener on a free port too) and waits until both are bound.
    static func start(
        journal: String, directory: String, arguments: [String]? = nil, environment: [String: String] = [:]
    ) async throws -> RunningServer {
        let (child, port, _) = try await startServe(
            environment: environment, directory: directory,
            arguments: ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
                + (arguments ?? ["--upstream", "http://127.0.0.1:9/", "--journal", journal]))
        return RunningServer(child: child, port: port, journal: journal)
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// SIGTERM, then the exit status within `timeout` (nil: still running, then killed).
    func terminate(timeout: Duration = .seconds(10)) async -> Int32? {
        child.send(SIGTERM)
        let status = await child.waitForExit(timeout: timeout)
        if status == nil { await child.kill() }
        return status
    }
}

// MARK: - HTTP through curl

/// One HTTP answer as curl received it.
struct HTTPAnswer {
    var status: Int
    var headers: [(String, String)]
    var body: String

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// Sends one request with the stock `curl` (at most 10 s) and parses the answer.
func curl(_ method: String, _ url: String, body: String, headers: [String] = []) async throws -> HTTPAnswer {
    try await curlExchange(method, url, options: ["--data-binary", body] + headers.flatMap { ["-H", $0] })
}

/// Runs `curl -sS -i --max-time 8 -X METHOD OPTIONS… URL` (at most 10 s) and parses the answer;
/// a curl failure throws.
func curlExchange(_ method: String, _ url: String, options: [String]) async throws -> HTTPAnswer {
    let result = try await runCommand(
        executable: URL(fileURLWithPath: "/usr/bin/env"),
        ["curl", "-sS", "-i", "--max-time", "8", "-X", method] + options + [url], timeout: .seconds(10))
    guard result.status == 0 else {
        throw CLITestError("curl \(method) \(url) failed (exit \(result.status)): \(result.stderr)")
    }
    let text = result.stdout
    guard let split = text.range(of: "\r\n\r\n") else { throw CLITestError("curl: no header block in \(text)") }
    let head = text[..<split.lowerBound].split(separator: "\r\n").map(String.init)
    guard let statusLine = head.first, statusLine.split(separator: " ").count >= 2,
        let status = Int(statusLine.split(separator: " ")[1])
    else { throw CLITestError("curl: bad status line in \(text)") }
    let headers = head.dropFirst().compactMap { line -> (String, String)? in
        guard let colon = line.firstIndex(of: ":") else { return nil }
        return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
    }
    return HTTPAnswer(status: status, headers: headers, body: String(text[split.upperBound...]))
}

// MARK: - Journal backends

/// The journals the end-to-end tests that do not depend on one run on (SPEC §12): a SQLite
/// file, and a PostgreSQL database.
enum JournalBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    var testDescription: String { rawValue }
}

/// A journal for one test: a file in the test's scratch directory, or a database of the test's
/// own on the PostgreSQL server the test run shares (``PostgresServer/database()``), which
/// ``stop()`` drops.
struct TestJournal: Sendable {
    /// What `--journal` takes: the file's path, or the database's URL with its password.
    var location: String
    var database: PostgresDatabase?

    /// A new journal of `backend`; for PostgreSQL, the test is cancelled (or, with
    /// `POSTGRES_REQUIRED`, fails) where no server can start. At most ``postgresSlots`` tests
    /// hold a PostgreSQL journal at once (until ``stop()``): each is a second server process
    /// beside its SQLite twin, and all of them at once made other tests' timings fail.
    static func make(_ backend: JournalBackend, in directory: ScratchDirectory) async throws -> TestJournal {
        switch backend {
        case .sqlite:
            return TestJournal(location: directory.file("j.db"), database: nil)
        case .postgres:
            await postgresSlots.acquire()
            do {
                let database = try await PostgresServer.database()
                return TestJournal(location: database.url, database: database)
            } catch {
                postgresSlots.release()
                throw error
            }
        }
    }

    static let postgresSlots = Slots(4)

    /// The journal's answer to `sql`, as `sqlite3` or `psql -At` prints it.
    func query(_ sql: String) throws -> String {
        try database?.psql(sql) ?? sqlite3(location, sql)
    }

    func stop() {
        guard let database else { return }
        database.drop()
        Self.postgresSlots.release()
    }
}

/// A counting semaphore for tests: ``acquire()`` waits (without holding a thread) until one of
/// its slots is free.
final class Slots: Sendable {
    private let state: Mutex<(free: Int, waiting: [CheckedContinuation<Void, Never>])>

    init(_ count: Int) {
        state = Mutex((count, []))
    }

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state in
                guard state.free > 0 else {
                    state.waiting.append(continuation)
                    return false
                }
                state.free -= 1
                return true
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiting.isEmpty else {
                state.free += 1
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}
