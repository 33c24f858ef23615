import Crypto
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import WaypostCore
import WaypostJournal

/// Drives the intake's and the admin API's connection pipelines (exactly as ``HTTPListener``
/// builds them) through an `EmbeddedChannel` with arbitrary bytes: the fuzz targets of
/// `scripts/fuzz.sh` and their smoke run in the test suite.
///
/// The journal behind them refuses everything at once (its writer and readers are stopped), so
/// every answer is given on the channel's own loop and the parsing, routing, limits, signature
/// checks, status queries, admin routing and deadlines all run as in production. Each input
/// goes in as two writes (split in the middle), then the clock is moved past every deadline.
/// A violated invariant (an answer that is not an HTTP/1.1 response) traps, so the fuzzer
/// reports it.
public final class PipelineFuzzer: Sendable {
    private let intake: IntakeContext
    private let admin: AdminContext
    /// The console behind the admin pipeline, signing sessions with a fixed key so that the
    /// seed corpus can hold a valid cookie and CSRF token (scripts/fuzz/corpus/admin/console).
    private let console: Console
    private let readers: JournalReaders

    /// - Parameter directory: where the (empty, stopped) journal is created.
    public static func make(directory: String) async throws -> PipelineFuzzer {
        let logger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })
        let path = directory + "/fuzz-journal.db"
        let writer = try JournalWriter(path: path, durability: .relaxed, maxBacklog: 1000, logger: logger)
        await writer.shutdown()
        let readers = JournalReaders(journal: SQLiteJournal(path: path), threads: 1)
        await readers.shutdown()
        let secret = SecretSource(.env("FUZZ_SECRET"))
        let routes = [
            RouteConfig(
                name: "hooks", path: "/hooks", upstream: "http://127.0.0.1:9/", mode: .sync, ordering: .key,
                orderingKey: .jsonPointer("/order/id"), maxBodyBytes: 4096, maxHeaderBytes: 2048, contentTypes: ["application/json"],
                validate: .json),
            RouteConfig(
                name: "signed", path: "/signed", upstream: "http://127.0.0.1:9/",
                verify: VerifyConfig(scheme: .hmacSHA256, secret: secret, header: "X-Sig", encoding: .hex, prefix: "sha256=")),
            // Destinations with filters on every part of the request, evaluated at intake.
            RouteConfig(
                name: "shop", path: "/shop", upstream: "http://127.0.0.1:9/", mode: .sync,
                destinations: [
                    DestinationConfig(
                        name: "erp", upstream: "http://127.0.0.1:9/erp", ordering: .key, orderingKey: .jsonPointer("/order/id"),
                        filter: try DeliveryFilter(
                            json:
                                #"{"body":{"type":{"$in":["order.paid","order.created"]},"total":{"$gte":10}},"headers":{"x-shop":{"$exist":true}}}"#
                        )),
                    DestinationConfig(
                        name: "audit", upstream: "http://127.0.0.1:9/audit", ordering: .key, orderingKey: .header("X-Key"),
                        filter: try DeliveryFilter(
                            json:
                                #"{"$or":[{"query":{"page":{"$startsWith":"1"}}},{"path":{"$endsWith":"/x"}},{"$not":{"body":{"items":{"sku":"A"}}}}]}"#
                        )),
                ], replyFrom: 1),
        ]
        let verifier = try InboundVerifier(config: routes[1].verify!, secrets: ["s3cret"])
        let intake = IntakeContext(
            routes: RouteTable(routes: routes), writer: writer, readers: readers, board: OutcomeBoard(), logger: logger,
            now: { 1_764_000_000_000 }, accepted: [:], secrets: RouteSecrets(RouteSecrets.Keys(verifiers: ["signed": verifier])))
        let admin = AdminContext(
            token: "fuzz-token", journal: SQLiteJournal(path: path), routeNames: ["hooks", "signed", "shop"], writer: writer,
            forwarderRunning: { true },
            journalChanged: {}, metrics: { [] }, logger: logger,
            destinationNames: ["hooks": ["hooks"], "signed": ["signed"], "shop": ["erp", "audit"]])
        return PipelineFuzzer(intake: intake, admin: admin, readers: readers)
    }

    private init(intake: IntakeContext, admin: AdminContext, readers: JournalReaders) {
        self.intake = intake
        self.admin = admin
        self.readers = readers
        self.console = Console(
            context: admin, readers: readers, sessions: ConsoleSessions(key: SymmetricKey(data: [UInt8](repeating: 42, count: 32))))
    }

    /// One input through the intake's pipeline.
    public func intake(_ bytes: [UInt8]) {
        run(bytes, maxHeaderBytes: 2048, limits: ConnectionLimits(headerTimeout: .seconds(2), minBodyRate: 64), recordsRawHeads: true) {
            IntakeHandler(context: intake)
        }
    }

    /// One input through the admin API's pipeline.
    public func admin(_ bytes: [UInt8]) {
        run(bytes, maxHeaderBytes: 16 * 1024, limits: ConnectionLimits(), recordsRawHeads: false) {
            AdminHandler(context: admin, readers: readers, console: console)
        }
    }

    private func run(
        _ bytes: [UInt8], maxHeaderBytes: Int, limits: ConnectionLimits, recordsRawHeads: Bool, handler: () -> any ChannelHandler
    ) {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        do {
            try HTTPListener.addHandlers(
                to: channel.pipeline.syncOperations, maxHeaderBytes: maxHeaderBytes, limits: limits, recordsRawHeads: recordsRawHeads,
                handler: handler())
            try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 40_000)).wait()
        } catch {
            fatalError("the fuzz pipeline cannot be built: \(error)")
        }
        let middle = bytes.count / 2
        for piece in [bytes[..<middle], bytes[middle...]] where channel.isActive {
            // Errors that reach the end of the pipeline (a parser error after its answer) end
            // the connection, as they do on a socket.
            _ = try? channel.writeInbound(channel.allocator.buffer(bytes: piece))
            channel.embeddedEventLoop.run()
        }
        for step in [TimeAmount.seconds(3), .seconds(11), .seconds(61), .seconds(3600)] where channel.isActive {
            channel.embeddedEventLoop.advanceTime(by: step)
        }
        var answered = channel.allocator.buffer(capacity: 0)
        while case .some(var buffer) = try? channel.readOutbound(as: ByteBuffer.self) { answered.writeBuffer(&buffer) }
        let start = answered.readableBytesView.prefix(7)
        if !start.isEmpty && !Array("HTTP/1.".utf8).starts(with: start) {
            fatalError("an answer that is not HTTP/1.1: \(String(decoding: answered.readableBytesView.prefix(200), as: UTF8.self))")
        }
    }
}
