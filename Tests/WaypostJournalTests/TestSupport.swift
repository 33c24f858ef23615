import Foundation
import Logging
import WaypostCore
import WaypostJournal
@_exported import WaypostTestSupport

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
