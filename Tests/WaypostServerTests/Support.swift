import Foundation
import Logging
import NIOCore
import NIOPosix
import WaypostCore
import WaypostJournal
import WaypostServer
import WaypostTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `body` against a fresh intake, and stops it afterwards whatever happens.
func withIntake(routes: [RouteConfig], maxBacklog: Int = 1_000_000, _ body: (TestIntake) async throws -> Void) async throws {
    let intake = try await TestIntake(routes: routes, maxBacklog: maxBacklog)
    do {
        try await body(intake)
    } catch {
        await intake.stop()
        throw error
    }
    await intake.stop()
}

/// A Waypost intake on an ephemeral loopback port with a journal in a temporary directory.
final class TestIntake: Sendable {
    let directory: String
    let journalPath: String
    let writer: JournalWriter
    let server: IntakeServer
    let group: MultiThreadedEventLoopGroup
    let port: Int

    static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    init(routes: [RouteConfig], maxBacklog: Int = 1_000_000) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("waypost-e2e-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        journalPath = directory + "/journal.db"
        var configuration = WaypostConfig(listen: HostPort(host: "127.0.0.1", port: 0), routes: routes)
        configuration.journal.path = journalPath
        writer = try JournalWriter(path: journalPath, durability: .full, maxBacklog: maxBacklog, logger: Self.quiet)
        writer.start()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        server = IntakeServer(
            configuration: configuration, journal: SQLiteJournal(path: journalPath), writer: writer, board: OutcomeBoard(), group: group,
            logger: Self.quiet)
        port = try await server.start().port!
    }

    func stop() async {
        await server.shutdown()
        await writer.shutdown()
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Sends raw bytes on a new connection and reads one response.
    func send(_ raw: String) throws -> RawResponse {
        let connection = try RawConnection(port: port)
        try connection.write(Array(raw.utf8))
        return try connection.readResponse()
    }

    /// Sends a request with a body and reads the response.
    func request(
        _ method: String = "POST", _ target: String, headers: [(String, String)] = [], body: [UInt8] = []
    ) throws -> RawResponse {
        let connection = try RawConnection(port: port)
        try connection.write(RawConnection.encode(method, target, headers: headers, body: body))
        return try connection.readResponse()
    }

    /// Rows of a query, through the stock `sqlite3` CLI, as the operator sees them.
    func sqlite(_ sql: String) throws -> String {
        try sqlite3(journalPath, sql)
    }

    var rowCount: Int { Int((try? sqlite("SELECT count(*) FROM messages")) ?? "") ?? -1 }
}

struct RawResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    var text: String { String(decoding: body, as: UTF8.self) }

    var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] }
}

struct SocketError: Error, CustomStringConvertible {
    var description: String
}

/// A blocking loopback TCP connection with a 10 s receive timeout, for sending exactly the
/// bytes a test wants (malformed ones included).
final class RawConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError(description: "socket() failed") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw SocketError(description: "connect() failed: \(errno)")
        }
    }

    deinit { close(fd) }

    static func encode(_ method: String, _ target: String, headers: [(String, String)], body: [UInt8]) -> [UInt8] {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !headers.contains(where: { $0.0.lowercased() == "transfer-encoding" || $0.0.lowercased() == "content-length" }) {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketError(description: "send() failed: \(errno)") }
            offset += n
        }
    }

    /// Reads more bytes; false at end of stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw SocketError(description: "recv() failed or timed out: \(errno)") }
        if n == 0 { return false }
        buffer += chunk[0..<n]
        return true
    }

    /// Whether the peer closed the connection (reads until EOF or timeout).
    func isClosedByPeer() -> Bool {
        (try? fill()) == false
    }

    /// Reads one response (Content-Length bodies; interim 1xx responses are returned too).
    func readResponse() throws -> RawResponse {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            headEnd = buffer.firstRange(of: separator)?.lowerBound
            if headEnd == nil, try !fill() { throw SocketError(description: "connection closed before a response") }
        }
        let headText = String(decoding: buffer[..<headEnd!], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        let status = Int(statusLine[1]) ?? 0
        let headers = lines.map { line -> (String, String) in
            let parts = line.split(separator: ":", maxSplits: 1)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]).trimmingCharacters(in: .whitespaces) : "")
        }
        let length = Int(headers.first { $0.0.lowercased() == "content-length" }?.1 ?? "0") ?? 0
        let bodyStart = headEnd! + 4
        while buffer.count < bodyStart + length {
            if try !fill() { throw SocketError(description: "connection closed inside a body") }
        }
        let body = Array(buffer[bodyStart..<(bodyStart + length)])
        buffer.removeFirst(bodyStart + length)
        return RawResponse(status: status, headers: headers, body: body)
    }
}
