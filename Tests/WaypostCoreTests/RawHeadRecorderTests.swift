// The raw request heads of a connection (SPEC §2, obs-text byte for byte): the recorder follows
// the framing of pipelined requests, fed whole or a byte at a time, and gives up on what it does
// not follow.

import Testing
import WaypostCore

private typealias Head = RawHeadRecorder.Head

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A head with obs-text (0xFF 0xFE) in a header value.
private let obsHead: [UInt8] = bytes("POST /a HTTP/1.1\r\nHost: a\r\nX-Obs: ") + [0xFF, 0xFE] + bytes("\r\nContent-Length: 3\r\n\r\n")

private struct Stream: Sendable, CustomTestStringConvertible {
    var label: String
    var input: [UInt8]
    var heads: [Head]
    var testDescription: String { label }
}

private let streams: [Stream] = [
    Stream(
        label: "a plain head, then one with obs-text after a Content-Length body",
        input: bytes("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n\r\n\r\n\r") + obsHead + bytes("xyz"),
        heads: [.plain, .raw(obsHead)]),
    Stream(
        label: "a body holding what looks like a head is skipped by its length",
        input: bytes("POST /a HTTP/1.1\r\nContent-Length: 22\r\n\r\nGET / HTTP/1.1\r\n\r\n\u{FF}xx") + obsHead + bytes("abc"),
        heads: [.plain, .raw(obsHead)]),
    Stream(
        label: "chunked, with extensions and trailers, then obs-text",
        input: bytes("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n")
            + obsHead + bytes("abc"),
        heads: [.plain, .raw(obsHead)]),
    Stream(
        label: "empty lines before a request are skipped; bare LF ends lines",
        input: bytes("\r\n\nGET / HTTP/1.1\nHost: a\n\n") + obsHead,
        heads: [.plain, .raw(obsHead)]),
    Stream(
        label: "a head with UTF-8 in it is raw too (restoring it changes nothing)",
        input: bytes("GET / HTTP/1.1\r\nX: café\r\n\r\n"),
        heads: [.raw(bytes("GET / HTTP/1.1\r\nX: café\r\n\r\n"))]),
    Stream(
        label: "Content-Length and chunked together: lost after that head",
        input: bytes("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") + obsHead,
        heads: [.plain, .unknown]),
    Stream(
        label: "a coding other than chunked: lost",
        input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n") + obsHead,
        heads: [.plain, .unknown]),
    Stream(
        label: "two different Content-Lengths: lost",
        input: bytes("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n") + obsHead,
        heads: [.plain, .unknown]),
    Stream(
        label: "a chunk size that is not hex, or too long: lost",
        input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") + obsHead,
        heads: [.plain, .unknown]),
    Stream(
        // Found by the intake fuzz target: `Int("-5", radix: 16)` is -5, and a negative size
        // walked the input backwards for ever (the event loop spun).
        label: "a signed chunk size (-5, +5): lost, not a loop",
        input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n{") + obsHead,
        heads: [.plain, .unknown]),
    Stream(
        label: "a plus-signed chunk size: lost",
        input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nabcde\r\n0\r\n\r\n") + obsHead,
        heads: [.plain, .unknown]),
    Stream(
        label: "a chunk size past 15 hex digits: lost",
        input: bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n") + obsHead,
        heads: [.plain, .unknown]),
    Stream(
        label: "CONNECT and Upgrade change the protocol: lost",
        input: bytes("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n") + obsHead,
        heads: [.plain, .unknown]),
    Stream(
        label: "a head past the limit: lost",
        input: bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 300) + "\r\n\r\n") + obsHead,
        heads: [.unknown]),
]

@Suite("RawHeadRecorder: raw request heads by the connection's framing")
struct RawHeadRecorderTests {
    private func heads(_ input: [UInt8], splitEvery size: Int) -> [Head] {
        var recorder = RawHeadRecorder(limit: 256)
        var start = 0
        while start < input.count {
            let piece = Array(input[start..<min(start + size, input.count)])
            piece.withUnsafeBytes { recorder.feed($0) }
            start += size
        }
        var heads: [Head] = []
        while true {
            let head = recorder.nextHead()
            heads.append(head)
            if head == .unknown { break }
        }
        return heads
    }

    @Test("streams, fed whole, a byte at a time and in pieces of 7", arguments: streams)
    fileprivate func stream(_ stream: Stream) {
        // Every sequence ends with .unknown: nothing more was recorded.
        let expected = stream.heads.last == .unknown ? stream.heads : stream.heads + [.unknown]
        for size in [stream.input.count, 1, 7] {
            #expect(heads(stream.input, splitEvery: size) == expected, "pieces of \(size)")
        }
    }

    @Test("restoredFields puts back the bytes the decoder replaced, and refuses a head that does not match")
    func restore() {
        let decoded = [(name: "Host", value: "a"), (name: "X-Obs", value: "\u{FFFD}\u{FFFD}"), (name: "Content-Length", value: "3")]
        let fields = RawHeadRecorder.restoredFields(decoded: decoded, raw: obsHead)
        #expect(fields?.map(\.name) == ["Host", "X-Obs", "Content-Length"])
        #expect(fields?[1].valueIsLatin1 == true)
        #expect(fields?[1].valueBytes == [0xFF, 0xFE])
        #expect(fields?[0] == HeaderField(name: "Host", value: "a"))
        // Another head's bytes: a different count, name or value.
        #expect(RawHeadRecorder.restoredFields(decoded: Array(decoded.prefix(2)), raw: obsHead) == nil)
        #expect(
            RawHeadRecorder.restoredFields(decoded: [decoded[0], (name: "X-Other", value: "\u{FFFD}\u{FFFD}"), decoded[2]], raw: obsHead)
                == nil)
        #expect(RawHeadRecorder.restoredFields(decoded: [decoded[0], (name: "X-Obs", value: "ab"), decoded[2]], raw: obsHead) == nil)
    }

    @Test("a Latin-1 value survives the journal's JSON, and a bad marker is refused")
    func json() {
        let fields = [HeaderField(name: "X-Obs", valueBytes: [0xFF, 0x80, 0x41]), HeaderField(name: "X-Utf", valueBytes: Array("é".utf8))]
        #expect(fields.map(\.valueIsLatin1) == [true, false])
        let text = JSON.encode(headers: fields)
        #expect(text == #"[["X-Obs","ÿ\#u{80}A","latin1"],["X-Utf","é"]]"#)
        #expect(JSON.decodeHeaders(text) == fields)
        #expect(JSON.decodeHeaders(#"[["X","a","utf16"]]"#) == nil)
        #expect(JSON.decodeHeaders(#"[["X","\u0100","latin1"]]"#) == nil, "a character past U+00FF is no byte")
    }
}
