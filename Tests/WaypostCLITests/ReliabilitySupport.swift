// Helpers of the reliability tests (CrashTests, FaultTests, BadInputTests, docs/reliability.md):
// a recording python3 upstream whose behaviour a JSON file switches while it runs, a
// `waypost serve --config` child that can be killed with SIGKILL and restarted on the same
// journal, a blocking raw-socket HTTP/1.1 client for load generators and malformed input
// (run on threads of its own, never on Swift's cooperative pool), the stock `sqlite3` CLI,
// SHA-256, and the check that every acknowledged message reached the upstream in order.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Every reliability suite is nested in this one, so that they run one after the other: they
/// start servers, kill them, fill disks and measure times, and two of them at once on a small
/// machine would measure each other. `swift test --filter CrashTests` (or `FaultTests`,
/// `BadInputTests`) still selects one of them.
@Suite("Reliability: crashes, faults and bad input", .serialized)
enum Reliability {}

// MARK: - Running work on threads of its own

/// Runs `body` on a new thread and returns its result, so that blocking socket calls never
/// occupy a thread of the cooperative pool (which has as many threads as cores).
func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}

/// Polls `condition` every `interval` until it holds or `timeout` passes; returns whether it held.
func eventually(
    timeout: Duration, interval: Duration = .milliseconds(100), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: interval)
    }
}

/// Seconds since `start`, with millisecond precision, for the summaries.
func seconds(since start: ContinuousClock.Instant) -> String {
    let elapsed = ContinuousClock.now - start
    return String(format: "%.1f", Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}

// MARK: - SHA-256

/// SHA-256 of `bytes` as lowercase hex (FIPS 180-4). The test target has no crypto library;
/// the upstream computes the same digest with python's `hashlib`, so any slip here would fail
/// every comparison at once rather than hide a loss.
func sha256Hex(_ bytes: [UInt8]) -> String {
    let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]
    var h: [UInt32] = [
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
    ]
    var message = bytes
    let bitLength = UInt64(bytes.count) * 8
    message.append(0x80)
    while message.count % 64 != 56 { message.append(0) }
    for shift in stride(from: 56, through: 0, by: -8) { message.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
    func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
    var w = [UInt32](repeating: 0, count: 64)
    for chunk in stride(from: 0, to: message.count, by: 64) {
        for i in 0..<16 {
            let j = chunk + i * 4
            w[i] = UInt32(message[j]) << 24 | UInt32(message[j + 1]) << 16 | UInt32(message[j + 2]) << 8 | UInt32(message[j + 3])
        }
        for i in 16..<64 {
            let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
        for i in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        h[0] = h[0] &+ a
        h[1] = h[1] &+ b
        h[2] = h[2] &+ c
        h[3] = h[3] &+ d
        h[4] = h[4] &+ e
        h[5] = h[5] &+ f
        h[6] = h[6] &+ g
        h[7] = h[7] &+ hh
    }
    return h.map { String(format: "%08x", $0) }.joined()
}

// MARK: - External tools

/// Runs `/usr/bin/env ARGUMENTS` to completion (at most `timeout`, then killed and an error).
func runTool(_ arguments: [String], timeout: Duration = .seconds(30)) async throws -> CommandResult {
    try await runCommand(executable: URL(fileURLWithPath: "/usr/bin/env"), arguments, timeout: timeout)
}

/// `PRAGMA integrity_check` of `journal`: "ok" when the file is sound.
func integrityCheck(_ journal: String) throws -> String {
    try sqlite3(journal, "PRAGMA integrity_check")
}

/// Whether this process may mount a tmpfs (root, and a kernel and container that allow it).
let canMountTmpfs: Bool = {
    guard getuid() == 0 else { return false }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("waypost-mount-probe-\(UUID().uuidString)").path
    guard (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil else { return false }
    defer { try? FileManager.default.removeItem(atPath: dir) }
    guard runSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]) == 0 else { return false }
    _ = runSync(["umount", dir])
    return true
}()

/// The resident set size of process `pid` in KiB, from `/proc/PID/status` (nil elsewhere).
func residentKiB(_ pid: pid_t) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
    return line.split(separator: " ").compactMap { Int($0) }.first
}

// MARK: - The recording upstream

/// A python3 HTTP/1.1 upstream on 127.0.0.1. It appends one line per request it receives (as
/// soon as the body is read, before it answers) to its log:
///
///     CORRELATION-ID ATTEMPT SHA256-OF-BODY X-KEY X-SEQ ACTION BODY-LENGTH
///
/// and then acts as the JSON file `mode.json` says at that moment:
/// `{"mode": "ok"}` answers 200 (`slow_fraction`/`slow_delay`: that fraction of them after
/// that many seconds); `"slow"` answers 200 after `delay` seconds; `"503"` answers 503;
/// `"garbage"` writes bytes that are not HTTP and closes; `"drop"` closes without answering;
/// `"flap"` picks drop (`drop`, default 0.2), 503 (`fail`, default 0.3) or ok at random.
/// A body shorter than its `Content-Length` (the sender died mid-request) is logged with the
/// action `short` and is not a delivery.
let recordingUpstreamScript = #"""
    import hashlib, http.server, json, random, socket, sys, threading, time

    port, log_path, mode_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)

    def settings():
        try:
            with open(mode_path) as f:
                return json.load(f)
        except Exception:
            return {"mode": "ok"}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the client's
        # delayed ACK would add 40 ms to every answer.
        disable_nagle_algorithm = True

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            s = settings()
            action = s.get("mode", "ok")
            if len(body) < length:
                # The sender went away in the middle of the body (a killed Waypost): no delivery.
                action = "short"
            if action == "flap":
                r = random.random()
                drop, fail = s.get("drop", 0.2), s.get("fail", 0.3)
                action = "drop" if r < drop else ("503" if r < drop + fail else "ok")
            delay = 0.0
            if action == "ok" and random.random() < s.get("slow_fraction", 0.0):
                delay = s.get("slow_delay", 0.2)
            if action == "slow":
                delay = s.get("delay", 2.0)
            fields = [self.headers.get("X-Correlation-ID", "-"), self.headers.get("X-Waypost-Attempt", "-"),
                      hashlib.sha256(body).hexdigest(), self.headers.get("X-Key", "-"), self.headers.get("X-Seq", "-"),
                      action, str(len(body)), self.path]
            with lock:
                log.write(" ".join(fields) + "\n")
            if action == "short":
                self.close_connection = True
                return
            if delay:
                time.sleep(delay)
            if action == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if action == "garbage":
                self.close_connection = True
                self.wfile.write(b"THIS IS NOT HTTP\r\n\x00\x01\x02\r\n\r\n")
                self.wfile.flush()
                return
            status = 503 if action == "503" else 200
            answer = b'{"ok":true}' if status == 200 else b"try later"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        def log_message(self, *args):
            pass

        def handle_error(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 128

        def handle_error(self, request, client_address):
            pass

    server = Server(("127.0.0.1", port), Handler)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    """#

/// One request the recording upstream received.
struct UpstreamRecord: Equatable {
    var correlationID: String
    var attempt: Int
    var sha256: String
    var key: String
    var seq: Int
    var action: String
    var length: Int
    /// The request target (the destination, for a route that fans out).
    var path: String
}

/// The python3 upstream of ``recordingUpstreamScript``. ``stop()`` and ``start(port:)`` take
/// it down and bring it back on the same port (an upstream outage).
final class RecordingUpstream {
    let dir: ScratchDirectory
    let logPath: String
    let modePath: String
    private(set) var port: Int = 0
    private var child: PythonChild?

    init(dir: ScratchDirectory) throws {
        self.dir = dir
        logPath = dir.file("upstream.log")
        modePath = dir.file("upstream-mode.json")
        try dir.write("upstream.py", recordingUpstreamScript)
    }

    /// Starts it (on `port`, or an ephemeral one the first time) and waits until it listens.
    static func start(in dir: ScratchDirectory, mode: [String: any Sendable] = ["mode": "ok"]) async throws -> RecordingUpstream {
        let upstream = try RecordingUpstream(dir: dir)
        try upstream.set(mode)
        try await upstream.start(port: 0)
        return upstream
    }

    /// Starts the process on `port` (0: ephemeral) and waits (at most 10 s) until it listens.
    func start(port requested: Int) async throws {
        let child = try await PythonChild.start(
            dir.file("upstream.py"), [String(requested), logPath, modePath], notReady: "did not listen")
        port = child.port
        self.child = child
    }

    var url: String { "http://127.0.0.1:\(port)/recv" }

    /// Switches its behaviour for the requests that arrive from now on.
    func set(_ mode: [String: any Sendable]) throws {
        let data = try JSONSerialization.data(withJSONObject: mode)
        try data.write(to: URL(fileURLWithPath: modePath), options: .atomic)
    }

    /// The requests received so far, in the order they arrived.
    var records: [UpstreamRecord] {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let p = line.split(separator: " ").map(String.init)
            guard p.count == 8 else { return nil }
            return UpstreamRecord(
                correlationID: p[0], attempt: Int(p[1]) ?? 0, sha256: p[2], key: p[3], seq: Int(p[4]) ?? -1, action: p[5],
                length: Int(p[6]) ?? -1, path: p[7])
        }
    }

    /// Stops the process (closing its standard input, then SIGKILL) and reaps it.
    func stop() async {
        guard let child else { return }
        await child.stop()
        self.child = nil
    }
}

// MARK: - The server under test

/// `waypost serve --config FILE` on free loopback ports, restartable on the same journal (each
/// start binds new ports: read ``port`` and ``adminPort`` after it).
final class ServerUnderTest {
    let configPath: String
    let journal: String
    let directory: String
    private(set) var port = 0
    private(set) var adminPort = 0
    private(set) var child: WaypostProcess?
    /// The standard error of every run so far (for failure messages).
    private(set) var pastLogs: [String] = []

    /// Writes `config` (which should not set `listen` or `admin`).
    init(dir: ScratchDirectory, journal: String, config: String) throws {
        self.journal = journal
        self.directory = dir.path
        self.configPath = try dir.write("waypost-\(UUID().uuidString.prefix(8)).yaml", config)
    }

    /// Starts it and waits (at most 15 s) until both listeners are bound.
    func start(environment: [String: String] = [:]) async throws {
        do {
            (child, port, adminPort) = try await startServe(
                environment: environment, directory: directory,
                arguments: ["serve", "--config", configPath, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        } catch {
            pastLogs.append("\(error)")
            throw error
        }
    }

    var pid: pid_t { child?.pid ?? 0 }
    var isRunning: Bool { child?.isRunning ?? false }
    var stderr: String { child?.stderr.text ?? "" }

    /// Everything it wrote to standard error, all runs.
    var allLogs: String { (pastLogs + [stderr]).joined(separator: "\n--- restart ---\n") }

    /// `kill -9`, then reaps it.
    func kill9() async {
        guard let child else { return }
        child.send(SIGKILL)
        _ = await child.waitForExit(timeout: .seconds(10))
        pastLogs.append(child.stderr.text)
        self.child = nil
    }

    /// Sends `signal` and waits up to `timeout` for the exit status (nil: still running; it is
    /// then killed).
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(15)) async -> Int32? {
        guard let child else { return nil }
        child.send(signal)
        let status = await child.waitForExit(timeout: timeout)
        if status == nil { await child.kill() }
        pastLogs.append(child.stderr.text)
        self.child = nil
        return status
    }

    /// Cleanup on every exit path.
    func kill() async {
        if let child { await child.kill() }
        child = nil
    }
}

/// SIGTERM, and an expectation that the server exits 0 within 15 s, with its log on failure.
func expectCleanStop(_ server: ServerUnderTest, sourceLocation: SourceLocation = #_sourceLocation) async {
    let status = await server.stop()
    #expect(
        status == 0,
        "exit status after SIGTERM: \(status.map(String.init) ?? "none within 15 s (killed)"); stderr:\n\(server.allLogs.suffix(3000))",
        sourceLocation: sourceLocation)
}

/// A configuration for the reliability tests (the ports come from the command line).
func reliabilityConfig(journal: String, shutdownGrace: String = "2s", routes: String) -> String {
    """
    journal: \(journal.hasPrefix("postgres://") ? "{ url: '\(journal)' }" : "{ path: \(journal), durability: full }")
    shutdown_grace: \(shutdownGrace)
    routes:
    \(routes)
    """
}

/// The soaks' ordered routes to `upstream`, retrying quickly: `keyed` (`ordering: key` on
/// `X-Key`) and `fifo`; more routes may follow.
func orderedRoutes(to upstream: String) -> String {
    """
      - name: keyed
        path: /hooks/keyed
        upstream: \(upstream)
        ordering: key
        ordering_key: header:X-Key
        retry: { initial: 100ms, factor: 2, max_delay: 1s }
        timeouts: { connect: 1s, total: 5s }
      - name: fifo
        path: /hooks/fifo
        upstream: \(upstream)
        ordering: fifo
        retry: { initial: 100ms, factor: 2, max_delay: 1s }
        timeouts: { connect: 1s, total: 5s }
    """
}

// MARK: - A raw HTTP/1.1 client

#if canImport(Glibc)
    private let tcpStream = Int32(SOCK_STREAM.rawValue)
    private let noSignal = Int32(MSG_NOSIGNAL)
#else
    private let tcpStream = SOCK_STREAM
    private let noSignal: Int32 = 0
#endif

private func socketSend(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int, _ flags: Int32) -> Int {
    #if canImport(Glibc)
        Glibc.send(fd, pointer, count, flags)
    #else
        Darwin.send(fd, pointer, count, flags)
    #endif
}

/// One answer as read off the socket.
struct RawResponse: Sendable, CustomStringConvertible {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    var text: String { String(decoding: body, as: UTF8.self) }
    var closes: Bool { header("Connection")?.lowercased() == "close" }
    var description: String { "\(status) \(headers.map { "\($0.0): \($0.1)" }) \(text.prefix(300))" }
}

/// A blocking TCP connection to 127.0.0.1 with send and receive timeouts. Use it on a thread
/// of its own (``onThread(_:)``).
// @unchecked Sendable: one thread at a time uses a connection (the test hands it from the
// thread that opened it to the one that finishes it, never to two at once).
final class RawConnection: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var sawEOF = false

    /// Connects to 127.0.0.1:`port`; nil when the connection is refused or fails.
    init?(port: Int, timeout: Double = 10) {
        let fd = socket(AF_INET, tcpStream, 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            _ = close(fd)
            return nil
        }
        self.fd = fd
        setTimeout(timeout)
    }

    deinit { _ = close(fd) }

    /// Sets both the send and the receive timeout.
    func setTimeout(_ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: .init((seconds - Double(Int(seconds))) * 1_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes all of `bytes`; false when the peer closed or the send timed out.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { socketSend(fd, $0.baseAddress! + offset, bytes.count - offset, noSignal) }
            if written <= 0 {
                if written < 0 && errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Half-closes: the server reads end of file.
    func shutdownWrite() { _ = shutdown(fd, Int32(SHUT_WR)) }

    /// Reads more bytes into the buffer; false at end of file, on a reset or a timeout.
    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, 65536, 0) }
            if count > 0 {
                buffer.append(contentsOf: chunk[0..<count])
                return true
            }
            if count < 0 && errno == EINTR { continue }
            if count == 0 { sawEOF = true }
            return false
        }
    }

    /// Reads one response (skipping `100 Continue`); nil when the connection ends or times
    /// out first.
    func readResponse() -> RawResponse? {
        while true {
            guard let response = readOneResponse() else { return nil }
            if response.status != 100 { return response }
        }
    }

    /// Reads one response's head and no body: the answer to a `HEAD`, whose `Content-Length`
    /// describes a body that is not sent.
    func readHeadOnly() -> RawResponse? { readOneResponse(bodyFollows: false) }

    private func readOneResponse(bodyFollows: Bool = true) -> RawResponse? {
        let separator: [UInt8] = [13, 10, 13, 10]
        var headEnd: Int?
        while headEnd == nil {
            if buffer.count >= 4 {
                for i in 0...(buffer.count - 4) where buffer[i] == 13 && Array(buffer[i..<(i + 4)]) == separator {
                    headEnd = i
                    break
                }
            }
            if headEnd == nil, !fill() { return nil }
        }
        let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        buffer.removeFirst(headEnd! + 4)
        let lines = head.components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
        let headers = lines.dropFirst().compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var response = RawResponse(status: status, headers: headers, body: [])
        if !bodyFollows || status == 100 || status == 204 || status == 304 { return response }
        if let length = response.header("Content-Length").flatMap(Int.init) {
            while buffer.count < length { if !fill() { return nil } }
            response.body = Array(buffer[0..<length])
            buffer.removeFirst(length)
        } else {
            while fill() {}
            response.body = buffer
            buffer = []
        }
        return response
    }

    /// Reads until the server closes the connection or `timeout` passes; returns the bytes
    /// read and whether the server closed.
    func readToEnd(timeout: Double) -> (bytes: [UInt8], closed: Bool) {
        setTimeout(timeout)
        while fill() {}
        let bytes = buffer
        buffer = []
        return (bytes, sawEOF)
    }
}

/// Builds a request with `Host` and `Content-Length` (unless `headers` sets framing itself).
func rawRequest(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []) -> [UInt8] {
    var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    let framed = headers.contains { ["content-length", "transfer-encoding"].contains($0.0.lowercased()) }
    if !framed { head += "Content-Length: \(body.count)\r\n" }
    head += "\r\n"
    return Array(head.utf8) + body
}

/// Sends one request on a new connection and reads the answer (blocking: use on a thread).
func exchange(port: Int, _ request: [UInt8], timeout: Double = 10) -> RawResponse? {
    guard let connection = RawConnection(port: port, timeout: timeout) else { return nil }
    guard connection.send(request) else { return nil }
    return connection.readResponse()
}

/// Sends one POST on a new connection from a fresh thread and returns the answer.
func post(port: Int, path: String, headers: [(String, String)] = [], body: [UInt8], timeout: Double = 10) async -> RawResponse? {
    let request = rawRequest("POST", path, headers: headers, body: body)
    return await onThread { exchange(port: port, request, timeout: timeout) }
}

/// A GET on a new connection from a fresh thread.
func get(port: Int, path: String, timeout: Double = 10) async -> RawResponse? {
    let request = rawRequest("GET", path)
    return await onThread { exchange(port: port, request, timeout: timeout) }
}

/// Random bytes (the bodies are binary on purpose: they must arrive byte for byte).
func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
}

// MARK: - Checking deliveries against acknowledgements

/// A message the server acknowledged with 2xx and an `X-Correlation-ID`.
struct Acknowledged: Sendable {
    var label: String
    var seq: Int
    var correlationID: String
    var sha256: String
}

/// A message of the journal (its `message_states` row: the first delivery's ordering key).
struct JournalRow {
    var id: Int
    var correlationID: String
    var route: String
    var orderingKey: String
    var state: String
    var attempts: Int
}

/// Every row of `messages`, in order of acceptance.
func journalRows(_ journal: String) async throws -> [JournalRow] {
    journalRows(text: try sqlite3(journal, journalRowsQuery))
}

/// The query ``journalRows(text:)`` parses the answer of, in either journal (the view
/// `message_states` is the same in both).
let journalRowsQuery = "SELECT id, correlation_id, route, coalesce(ordering_key, ''), state, attempts FROM message_states ORDER BY id"

/// The rows of ``journalRowsQuery``'s answer, `|`-separated as `sqlite3` and `psql -At` print them.
func journalRows(text: String) -> [JournalRow] {
    return text.split(separator: "\n").compactMap { line in
        let p = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard p.count == 6, let id = Int(p[0]), let attempts = Int(p[5]) else { return nil }
        return JournalRow(id: id, correlationID: p[1], route: p[2], orderingKey: p[3], state: p[4], attempts: attempts)
    }
}

/// What the check of deliveries found.
struct DeliveryReport: CustomStringConvertible {
    var acknowledged = 0
    var stored = 0
    /// Acknowledged messages the upstream never received.
    var lost: [String] = []
    /// Deliveries whose body differs from the body acknowledged.
    var corrupted: [String] = []
    /// Deliveries beyond the first of each message.
    var duplicates = 0
    /// Messages delivered more than once.
    var redelivered = 0
    /// Stored messages of a queue whose first delivery came before an earlier message's.
    var orderViolations: [String] = []
    /// Acknowledged messages the journal does not hold.
    var missingFromJournal: [String] = []
    /// Stored messages not `delivered` in the journal.
    var notDelivered: [String] = []
    /// Stored messages the upstream never received.
    var neverReceived: [String] = []
    /// The same (label, seq) stored under two correlation ids (a retry of an unanswered request).
    var storedTwice = 0
    /// Requests the upstream received only in part (the sender was killed mid-body).
    var partial = 0

    var description: String {
        "acknowledged=\(acknowledged) stored=\(stored) lost=\(lost.count) corrupted=\(corrupted.count) duplicates=\(duplicates) "
            + "redelivered=\(redelivered) storedTwice=\(storedTwice) partial=\(partial) orderViolations=\(orderViolations.count) "
            + "missingFromJournal=\(missingFromJournal.count) notDelivered=\(notDelivered.count) neverReceived=\(neverReceived.count)"
    }

    /// Two reports' findings together (of disjoint messages, or of one message set's deliveries
    /// to two destinations); `stored` and `acknowledged` add up as counts of checks.
    static func + (a: DeliveryReport, b: DeliveryReport) -> DeliveryReport {
        var sum = a
        sum.acknowledged += b.acknowledged
        sum.stored += b.stored
        sum.lost += b.lost
        sum.corrupted += b.corrupted
        sum.duplicates += b.duplicates
        sum.redelivered += b.redelivered
        sum.orderViolations += b.orderViolations
        sum.missingFromJournal += b.missingFromJournal
        sum.notDelivered += b.notDelivered
        sum.neverReceived += b.neverReceived
        sum.storedTwice += b.storedTwice
        sum.partial += b.partial
        return sum
    }

    var details: String {
        "lost: \(lost.prefix(10)); corrupted: \(corrupted.prefix(10)); order: \(orderViolations.prefix(10)); "
            + "missing from journal: \(missingFromJournal.prefix(10)); not delivered: \(notDelivered.prefix(10)); "
            + "never received: \(neverReceived.prefix(10))"
    }
}

/// Compares the acknowledgements, the journal and the upstream's log:
/// every acknowledged message reached the upstream with its exact body, and within each
/// queue (route + ordering key) first deliveries follow the order of acceptance.
func checkDeliveries(
    acknowledged: [Acknowledged], rows: [JournalRow], records: [UpstreamRecord], requireDelivered: Bool = true
)
    -> DeliveryReport
{
    var report = DeliveryReport()
    report.acknowledged = acknowledged.count
    report.stored = rows.count
    // A request cut short by a killed sender delivered nothing.
    report.partial = records.count { $0.action == "short" }
    let records = records.filter { $0.action != "short" }
    var firstIndex: [String: Int] = [:]
    var shas: [String: Set<String>] = [:]
    var count: [String: Int] = [:]
    for (index, record) in records.enumerated() {
        if firstIndex[record.correlationID] == nil { firstIndex[record.correlationID] = index }
        shas[record.correlationID, default: []].insert(record.sha256)
        count[record.correlationID, default: 0] += 1
    }
    for (_, n) in count where n > 1 {
        report.duplicates += n - 1
        report.redelivered += 1
    }
    let journalIDs = Set(rows.map(\.correlationID))
    for ack in acknowledged {
        guard let received = shas[ack.correlationID] else {
            report.lost.append("\(ack.label)#\(ack.seq) \(ack.correlationID)")
            continue
        }
        if received != [ack.sha256] {
            report.corrupted.append("\(ack.label)#\(ack.seq) \(ack.correlationID): sent \(ack.sha256), received \(received)")
        }
        if !journalIDs.contains(ack.correlationID) { report.missingFromJournal.append(ack.correlationID) }
    }
    var queues: [String: [JournalRow]] = [:]
    for row in rows {
        queues["\(row.route)/\(row.orderingKey)", default: []].append(row)
        if requireDelivered, row.state != "delivered" { report.notDelivered.append("\(row.correlationID) \(row.state)") }
        if firstIndex[row.correlationID] == nil { report.neverReceived.append("\(row.correlationID) \(row.state)") }
    }
    for (queue, members) in queues {
        var previous: (row: JournalRow, index: Int)?
        for row in members {
            guard let index = firstIndex[row.correlationID] else { continue }
            if let previous, index < previous.index {
                report.orderViolations.append(
                    "queue \(queue): row \(row.id) (\(row.correlationID)) first delivered at log line \(index + 1), before row "
                        + "\(previous.row.id) (\(previous.row.correlationID)) at line \(previous.index + 1)")
            }
            if previous == nil || index > previous!.index { previous = (row, index) }
        }
    }
    var seen: [String: Set<String>] = [:]
    for record in records where record.seq >= 0 {
        seen["\(record.key)#\(record.seq)", default: []].insert(record.correlationID)
    }
    report.storedTwice = seen.values.count { $0.count > 1 }
    return report
}

// MARK: - A write lock held by another process

/// A `sqlite3` process that holds the journal's write lock (`BEGIN IMMEDIATE`) until
/// ``release()``, as an operator's open transaction would.
final class SQLiteLockHolder {
    private let process: ChildProcess

    /// Starts `sqlite3 JOURNAL`, takes the write lock, and returns once it holds it (at most 10 s).
    init(journal: String) async throws {
        process = try ChildProcess("/usr/bin/env", ["sqlite3", "-cmd", ".timeout 5000", journal], output: .merged, input: true)
        process.input?.write(Data("BEGIN IMMEDIATE;\nSELECT 'locked';\n".utf8))
        let said = try #require(process.stdout)
        guard await eventually(timeout: .seconds(10), { said.text.contains("locked") }) else {
            kill()
            throw CLITestError("sqlite3 did not take the write lock within 10 s: \(said.text)")
        }
    }

    /// Commits (nothing) and lets sqlite3 exit; waits up to 5 s.
    func release() async {
        process.input?.write(Data("COMMIT;\n.quit\n".utf8))
        try? process.input?.close()
        _ = await process.wait(timeout: .seconds(5))
        kill()
    }

    /// SIGKILL if it still runs (cleanup on every path).
    func kill() {
        process.send(SIGKILL)
    }
}
