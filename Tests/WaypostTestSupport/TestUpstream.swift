import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import WaypostCore

/// One request as the test upstream received it.
public struct RecordedRequest: Sendable, Equatable {
    public var method: String
    /// The request target as sent: path and query.
    public var uri: String
    /// The header fields in the order received, `Host` and `Content-Length` included.
    public var headers: [HeaderField]
    public var body: [UInt8]
    /// Which accepted TCP connection it came on: 1 for the first, 2 for the second, ...
    public var connection: Int

    /// The value of the first field named `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The header fields without the ones curl must add (`Host`, `Content-Length`).
    public var headersWithoutFraming: [HeaderField] {
        headers.filter { !["host", "content-length"].contains($0.name.lowercased()) }
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 and an ephemeral port, standing in for an upstream.
///
/// It records every request (with the number of the connection it came on) and answers
/// through `handler`, on the connection's event loop, so `handler` must be quick. Connections
/// stay open (keep-alive) until the client closes them or the upstream stops.
///
/// ```swift
/// let upstream = try await TestUpstream.start { request in .respond(status: 201, body: request.body) }
/// defer { Task { await upstream.stop() } }
/// ```
/// Holds the answers given to it until the test opens it.
public final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiting: [@Sendable () -> Void])>((false, []))

    public init() {}

    public func open() {
        let waiting = state.withLock { state in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for body in waiting { body() }
    }

    public func whenOpen(_ body: @escaping @Sendable () -> Void) {
        let now = state.withLock { state in
            if !state.open { state.waiting.append(body) }
            return state.open
        }
        if now { body() }
    }
}

public final class TestUpstream: Sendable {
    /// How the upstream answers one request.
    public enum Reply: Sendable {
        /// A response; `Content-Length` is added unless `headers` has one. After `delay`, if any,
        /// and once `gate` is open, if given.
        case respond(status: Int = 200, headers: [HeaderField] = [], body: [UInt8] = [], delay: Duration = .zero, gate: Gate? = nil)
        /// Closes the connection without answering.
        case closeConnection
        /// Writes bytes that are not HTTP, then closes the connection.
        case garbage
        /// Writes `bytes` as they are (e.g. a hand-made response), closing afterwards if `close`.
        case raw([UInt8], close: Bool)

        /// `200` with no body.
        public static let ok = Reply.respond()
    }

    /// What the event loops record, read by the test.
    public final class Recorder: Sendable {
        let state = Mutex<(requests: [RecordedRequest], connections: Int)>(([], 0))
        /// Every byte received, on all connections, as it came off the wire.
        let raw = Mutex<[UInt8]>([])
    }

    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let recorder: Recorder

    private init(port: Int, group: MultiThreadedEventLoopGroup, channel: any Channel, recorder: Recorder) {
        self.port = port
        self.group = group
        self.channel = channel
        self.recorder = recorder
    }

    /// Starts an upstream that answers every request with `handler`'s reply. A request whose
    /// body grows past `maxBodyBytes` is not recorded: its connection is closed at once,
    /// while the client may still be sending.
    public static func start(
        maxBodyBytes: Int = .max, _ handler: @escaping @Sendable (RecordedRequest) -> Reply = { _ in .ok }
    ) async throws -> TestUpstream {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let recorder = Recorder()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let number = recorder.state.withLock { state in
                    state.connections += 1
                    return state.connections
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawTap(recorder: recorder))
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
                    try channel.pipeline.syncOperations.addHandler(HTTPResponseEncoder())
                    try channel.pipeline.syncOperations.addHandler(
                        UpstreamHandler(connection: number, maxBodyBytes: maxBodyBytes, recorder: recorder, handler: handler))
                }
            }
        do {
            let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
            return TestUpstream(port: channel.localAddress!.port!, group: group, channel: channel, recorder: recorder)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    public var url: String { "http://127.0.0.1:\(port)" }

    /// Every request received so far, in order of arrival.
    public var requests: [RecordedRequest] { recorder.state.withLock { $0.requests } }

    /// Every byte received so far, as it came off the wire (the decoded requests have header
    /// values as UTF-8 text).
    public var rawBytes: [UInt8] { recorder.raw.withLock { $0 } }

    /// TCP connections accepted so far.
    public var connectionCount: Int { recorder.state.withLock { $0.connections } }

    /// Stops listening and closes every connection.
    public func stop() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

/// Records the bytes of a connection before the decoder sees them.
private final class RawTap: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let recorder: TestUpstream.Recorder

    init(recorder: TestUpstream.Recorder) {
        self.recorder = recorder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data).readableBytesView
        recorder.raw.withLock { $0 += bytes }
        context.fireChannelRead(data)
    }
}

/// One connection of the test upstream: gathers each request, records it, and answers.
private final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let connection: Int
    private let maxBodyBytes: Int
    private let recorder: TestUpstream.Recorder
    private let handler: @Sendable (RecordedRequest) -> TestUpstream.Reply
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(
        connection: Int, maxBodyBytes: Int, recorder: TestUpstream.Recorder,
        handler: @escaping @Sendable (RecordedRequest) -> TestUpstream.Reply
    ) {
        self.connection = connection
        self.maxBodyBytes = maxBodyBytes
        self.recorder = recorder
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
        case .body(var buffer):
            guard head != nil else { return }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
            if body.count > maxBodyBytes {
                head = nil
                body = []
                context.close(promise: nil)
            }
        case .end:
            guard let head else { return }
            let request = RecordedRequest(
                method: head.method.rawValue, uri: head.uri,
                headers: head.headers.map { HeaderField(name: $0.name, value: $0.value) },
                body: body, connection: connection)
            self.head = nil
            body = []
            recorder.state.withLock { $0.requests.append(request) }
            answer(handler(request), to: request, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func answer(_ reply: TestUpstream.Reply, to request: RecordedRequest, context: ChannelHandlerContext) {
        switch reply {
        case .respond(let status, let headers, let body, let delay, let gate):
            var fields = HTTPHeaders(headers.map { ($0.name, $0.value) })
            if !fields.contains(name: "content-length") && status >= 200 && status != 204 && status != 304 {
                fields.add(name: "Content-Length", value: String(body.count))
            }
            let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: fields)
            let sendsBody = request.method != "HEAD" && !body.isEmpty
            let write = {
                context.write(self.wrapOutboundOut(.head(head)), promise: nil)
                if sendsBody { context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil) }
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            }
            if let gate {
                let held = NIOLoopBound({ if context.channel.isActive { write() } }, eventLoop: context.eventLoop)
                gate.whenOpen { held.eventLoop.execute { held.value() } }
            } else if delay > .zero {
                let (seconds, attoseconds) = delay.components
                let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
                context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(nanoseconds)) {
                    if context.channel.isActive { write() }
                }
            } else {
                write()
            }
        case .closeConnection:
            context.close(promise: nil)
        case .garbage:
            writeRaw(Array("this is not HTTP at all\r\n\r\n".utf8), close: true, context: context)
        case .raw(let bytes, let close):
            writeRaw(bytes, close: close, context: context)
        }
    }

    /// Writes bytes below the response encoder, straight to the socket.
    private func writeRaw(_ bytes: [UInt8], close: Bool, context: ChannelHandlerContext) {
        guard let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            context.close(promise: nil)
            return
        }
        let written = encoder.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)))
        if close {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
