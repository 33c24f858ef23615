import Foundation
import Logging
import WaypostCore
import WaypostJournal

/// A fresh directory under the system's temporary directory, removed by `cleanUp()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("waypost-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        path = base.path
    }

    func file(_ name: String) -> String { path + "/" + name }

    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }
}

func makeMessage(
    route: String = "orders", body: [UInt8] = Array("{\"n\":1}".utf8), correlationID: String? = nil,
    idempotencyKey: String? = nil, headers: [HeaderField] = [HeaderField(name: "Content-Type", value: "application/json")],
    receivedAt: Int64 = 1_790_000_000_000
) -> IncomingMessage {
    IncomingMessage(
        correlationID: correlationID ?? CorrelationID.generate(millisecondsSince1970: UInt64(receivedAt)),
        correlationIDWasSupplied: correlationID != nil, route: route, orderingKey: nil, idempotencyKey: idempotencyKey,
        dedupWindowMilliseconds: 86_400_000, method: "POST", path: "/hooks/orders?x=1", headers: headers, body: body,
        receivedAt: receivedAt)
}

extension JournalWriter {
    /// Submits and waits for the outcome.
    func store(_ message: IncomingMessage) async -> Result<IntakeResult, JournalUnavailable> {
        await withCheckedContinuation { continuation in
            submit(message) { continuation.resume(returning: $0) }
        }
    }

    /// Opens the journal and starts the writer thread.
    static func open(_ path: String, maxBacklog: Int = 1_000_000) throws -> JournalWriter {
        let writer = try JournalWriter(
            path: path, durability: .full, maxBacklog: maxBacklog, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        )
        writer.start()
        return writer
    }
}

/// Runs the stock `sqlite3` CLI on `database` and returns its standard output, trimmed.
func sqlite3CLI(_ database: String, _ sql: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["sqlite3", database, sql]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Runs a command and returns its exit status.
@discardableResult
func run(_ arguments: [String]) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}
