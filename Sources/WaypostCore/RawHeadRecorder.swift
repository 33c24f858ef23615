/// Follows the framing of the HTTP/1.1 requests on one connection as their bytes arrive, and
/// keeps the raw bytes of every request head that holds a byte above 0x7F, so that header values
/// with obs-text are stored and forwarded byte for byte (SPEC §2). The HTTP decoder that parses
/// the requests hands header values on as UTF-8 text, with U+FFFD for bytes that are not UTF-8;
/// ``restoredFields(decoded:raw:)`` puts the bytes back.
///
/// It only observes: the decoder alone decides what a request is, and a raw head is used only
/// when it matches what the decoder made of it field by field. On anything it does not follow
/// (a framing it does not implement, a head or a line past its limit), it gives up for the rest
/// of the connection, and header values are then taken as the decoder gives them.
public struct RawHeadRecorder: Sendable {
    /// What is known of the next request head.
    public enum Head: Sendable, Equatable {
        /// Its bytes are all below 0x80: the decoder's text is the bytes.
        case plain
        /// Its raw bytes, from the request line to the empty line that ends it.
        case raw([UInt8])
        /// The recorder lost track of the framing.
        case unknown
    }

    private enum State: Sendable, Equatable {
        case head
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkEnd
        case trailers
        case lost
    }

    private var state = State.head
    /// The head so far, or (chunk size, chunk end, trailers) the line so far.
    private var buffer: [UInt8] = []
    /// Where the current line of the head starts in `buffer`.
    private var lineStart = 0
    private var highBytes = false
    private var trailerBytes = 0
    private var heads: [Head] = []
    private let limit: Int

    /// - Parameter limit: the most bytes a head (or a chunk's trailers) may have before the
    ///   recorder gives up; the decoder refuses such a request anyway.
    public init(limit: Int) {
        self.limit = limit
    }

    /// The next head, in the order the requests arrived; each head the decoder produces takes one.
    public mutating func nextHead() -> Head {
        guard !heads.isEmpty else { return .unknown }
        return heads.removeFirst()
    }

    /// Stops following the connection, and drops the heads not taken yet: what the decoder made
    /// of it is not what was recorded.
    public mutating func giveUp() {
        lose()
        heads.removeAll()
    }

    /// Stops following the connection from here on; the heads recorded so far stand.
    private mutating func lose() {
        state = .lost
        buffer = []
    }

    /// Takes the next bytes of the connection.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var index = 0
        while index < bytes.count {
            switch state {
            case .lost:
                return
            case .body(let remaining):
                let taken = min(remaining, bytes.count - index)
                index += taken
                state = taken == remaining ? .head : .body(remaining: remaining - taken)
            case .chunkData(let remaining):
                let taken = min(remaining, bytes.count - index)
                index += taken
                state = taken == remaining ? .chunkEnd : .chunkData(remaining: remaining - taken)
            case .head:
                // Empty lines before a request line are skipped (RFC 9112 §2.2).
                if buffer.isEmpty, bytes[index] == 0x0D || bytes[index] == 0x0A {
                    index += 1
                    continue
                }
                // A line (or what has come of it) at a time.
                let newline = bytes[index...].firstIndex(of: 0x0A)
                let piece = UnsafeRawBufferPointer(rebasing: bytes[index..<(newline.map { $0 + 1 } ?? bytes.count)])
                index += piece.count
                buffer.append(contentsOf: piece)
                highBytes = highBytes || piece.contains { $0 >= 0x80 }
                if buffer.count > limit { return lose() }
                guard newline != nil else { continue }
                let line = buffer.count - lineStart
                if lineStart > 0 && (line == 1 || (line == 2 && buffer[buffer.count - 2] == 0x0D)) {
                    headEnded()
                } else {
                    lineStart = buffer.count
                }
            case .chunkSize, .chunkEnd, .trailers:
                let byte = bytes[index]
                index += 1
                guard byte == 0x0A else {
                    buffer.append(byte)
                    if buffer.count > 1024 { lose() }
                    continue
                }
                if buffer.last == 0x0D { buffer.removeLast() }
                lineEnded()
            }
        }
    }

    private mutating func lineEnded() {
        let line = buffer
        buffer.removeAll(keepingCapacity: true)
        switch state {
        case .chunkSize:
            // hex digits, then optional extensions after ';'. Only digits: `Int(_:radix:)` would
            // also take a sign, and a negative size would walk the input backwards for ever.
            let digits = line.prefix { $0 != UInt8(ascii: ";") && $0 != 0x20 && $0 != 0x09 }
            guard !digits.isEmpty, digits.count <= 15, digits.allSatisfy(Self.isHexDigit),
                let size = Int(String(decoding: digits, as: UTF8.self), radix: 16)
            else {
                return lose()
            }
            state = size == 0 ? .trailers : .chunkData(remaining: size)
            trailerBytes = 0
        case .chunkEnd:
            if line.isEmpty { state = .chunkSize } else { lose() }
        case .trailers:
            trailerBytes += line.count + 2
            if line.isEmpty { state = .head } else if trailerBytes > limit { lose() }
        case .head, .body, .chunkData, .lost:
            break
        }
    }

    /// The head is complete: records it, and works out how its body is framed.
    private mutating func headEnded() {
        let framing = Self.framing(of: buffer)
        if highBytes {
            heads.append(.raw(buffer))
            buffer = []
        } else {
            heads.append(.plain)
            buffer.removeAll(keepingCapacity: true)
        }
        lineStart = 0
        highBytes = false
        switch framing {
        case .unsupported: lose()
        case .chunked: state = .chunkSize
        case .length(let length): state = length > 0 ? .body(remaining: length) : .head
        }
    }

    private enum Framing {
        case length(Int)
        case chunked
        /// Framing the recorder does not follow (the decoder refuses it, or changes protocol).
        case unsupported
    }

    /// How the body after `head` is framed, read from its fields without allocating (this runs
    /// for every request).
    private static func framing(of head: [UInt8]) -> Framing {
        var contentLength: Int?
        var chunked = false
        var requestLine = true
        for line in Lines(head[...]) {
            if requestLine {
                requestLine = false
                if startsCaseInsensitive(line, with: "CONNECT ") { return .unsupported }
                continue
            }
            guard let (name, value) = field(line) else { return .unsupported }
            if equalsCaseInsensitive(name, "content-length") {
                // At most 18 digits: no overflow.
                guard !value.isEmpty, value.count <= 18, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return .unsupported }
                let length = value.reduce(0) { $0 * 10 + Int($1 - 0x30) }
                guard contentLength == nil || contentLength == length else { return .unsupported }
                contentLength = length
            } else if equalsCaseInsensitive(name, "transfer-encoding") {
                guard !chunked, equalsCaseInsensitive(value, "chunked") else { return .unsupported }
                chunked = true
            } else if equalsCaseInsensitive(name, "upgrade") {
                return .unsupported
            }
        }
        if chunked { return contentLength == nil ? .chunked : .unsupported }
        return .length(contentLength ?? 0)
    }

    /// The head's fields as the decoder gave them, with the raw bytes of `raw` for the values
    /// that are not UTF-8 (``HeaderField/valueIsLatin1``); nil when `raw` does not match them
    /// field by field (names, and values as UTF-8 text with U+FFFD for what is not).
    public static func restoredFields(decoded: [(name: String, value: String)], raw: [UInt8]) -> [HeaderField]? {
        let lines = Array(Lines(raw[...])).dropFirst()
        guard lines.count == decoded.count else { return nil }
        var fields: [HeaderField] = []
        fields.reserveCapacity(decoded.count)
        for (line, field) in zip(lines, decoded) {
            guard let (name, value) = Self.field(line), String(decoding: name, as: UTF8.self) == field.name,
                String(decoding: value, as: UTF8.self) == field.value
            else { return nil }
            fields.append(HeaderField(name: field.name, valueBytes: value))
        }
        return fields
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
    }

    /// The non-empty lines of a head, without their CR LF (or LF), as slices of it: nothing
    /// is allocated, since the framing of every request is read through it.
    private struct Lines: Sequence, IteratorProtocol {
        var rest: ArraySlice<UInt8>

        init(_ head: ArraySlice<UInt8>) {
            rest = head
        }

        mutating func next() -> ArraySlice<UInt8>? {
            while !rest.isEmpty {
                let end = rest.firstIndex(of: 0x0A) ?? rest.endIndex
                var line = rest[..<end]
                rest = end < rest.endIndex ? rest[(end + 1)...] : []
                if line.last == 0x0D { line = line.dropLast() }
                if !line.isEmpty { return line }
            }
            return nil
        }
    }

    /// A field line's name and value, without the whitespace around the value; nil for a line
    /// without a colon or with whitespace before it (an obsolete line folding included).
    private static func field(_ line: ArraySlice<UInt8>) -> (name: ArraySlice<UInt8>, value: ArraySlice<UInt8>)? {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let name = line[..<colon]
        guard !name.isEmpty, !name.contains(where: { $0 == 0x20 || $0 == 0x09 }) else { return nil }
        var value = line[(colon + 1)...]
        while let first = value.first, first == 0x20 || first == 0x09 { value = value.dropFirst() }
        while let last = value.last, last == 0x20 || last == 0x09 { value = value.dropLast() }
        return (name, value)
    }

    private static func equalsCaseInsensitive(_ bytes: ArraySlice<UInt8>, _ text: String) -> Bool {
        bytes.count == text.utf8.count && zip(bytes, text.utf8).allSatisfy { lower($0) == $1 }
    }

    private static func startsCaseInsensitive(_ bytes: ArraySlice<UInt8>, with text: String) -> Bool {
        bytes.count >= text.utf8.count && zip(bytes, text.utf8).allSatisfy { lower($0) == lower($1) }
    }

    private static func lower(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte }
}
