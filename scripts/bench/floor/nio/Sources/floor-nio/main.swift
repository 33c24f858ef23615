// floor-nio: the least CPU an intake on SwiftNIO spends per request, for scripts/bench/floor.sh
// (see scripts/bench/README.md, "Floor benchmark").
//
// The same bootstrap and pipeline as Waypost's listener (Sources/WaypostServer/HTTPListener.swift:
// backlog 1024, SO_REUSEADDR, TCP_NODELAY, 16 messages per read, HTTPResponseEncoder,
// HTTPRequestDecoder, HTTPServerPipelineHandler, as many event loops as cores), minus the idle
// timer, the quiescing helper and the problem handler. Its handler gathers each request's body
// and answers 202 with the headers and JSON body of Waypost's asynchronous answer
// (Sources/WaypostServer/Responses.swift, SPEC §1). No journal, no forwarding, no validation.
//
// Usage: floor-nio [PORT]   (else $NIO_FLOOR_PORT, else 18090; binds 127.0.0.1)
// Runs until it is killed (floor.sh stops it with SIGTERM).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOHTTP1
import NIOPosix

final class AcceptEverything: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked Sendable: one instance per connection, used only on its event loop.
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var body: ByteBuffer?
    private var count = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            body = context.channel.allocator.buffer(capacity: 1024)
        case .body(var part):
            body?.writeBuffer(&part)
        case .end:
            // A 26-character id, like Waypost's ULIDs; unique per connection is enough here.
            count &+= 1
            let id = "01JDX\(count)ABCDEFGHJKMNPQRSTVW"
            let statusURL = "/_waypost/messages/" + id
            var json = context.channel.allocator.buffer(capacity: 128)
            json.writeString("{\"id\":\"")
            json.writeString(id)
            json.writeString("\",\"state\":\"queued\",\"status_url\":\"")
            json.writeString(statusURL)
            json.writeString("\"}")
            let headers = HTTPHeaders([
                ("X-Correlation-ID", id),
                ("Location", statusURL),
                ("Content-Type", "application/json"),
                ("Content-Length", String(json.readableBytes)),
            ])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .accepted, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(json))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            body = nil
        }
    }
}

/// Writes a line to standard error (unbuffered, so it reaches the log before a SIGTERM).
func say(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

let arguments = CommandLine.arguments
let portText = arguments.count > 1 ? arguments[1] : getenv("NIO_FLOOR_PORT").map { String(cString: $0) } ?? "18090"
guard arguments.count <= 2, let port = Int(portText), (1...65535).contains(port) else {
    say("usage: floor-nio [PORT]")
    exit(64)
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
let channel = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(.maxMessagesPerRead, value: 16)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandlers([
                HTTPResponseEncoder(),
                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)),
                HTTPServerPipelineHandler(),
                AcceptEverything(),
            ])
        }
    }
    .bind(host: "127.0.0.1", port: port).wait()
say("floor-nio: listening on 127.0.0.1:\(port) with \(System.coreCount) event loops")
try channel.closeFuture.wait()
