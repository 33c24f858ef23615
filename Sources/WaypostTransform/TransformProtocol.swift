import WaypostCore

#if canImport(Glibc)
    import Glibc
#endif

/// One request to a transform worker: run program `program` over `input` (a JSON document).
public struct TransformRequest: Sendable, Equatable {
    public enum Mode: UInt8, Sendable {
        /// The output as JSON: a reply program's, or `waypost transform`'s.
        case document = 0
        /// A transform's output, checked and split into its body and the rest (``ShapedOutput``).
        case transform = 1
    }

    public var program: Int
    public var mode: Mode
    /// Whether the stored body is JSON: when it is not, a string `body` is sent as its text.
    public var bodyIsJSON: Bool
    public var input: [UInt8]

    public init(program: Int, mode: Mode, bodyIsJSON: Bool = true, input: [UInt8]) {
        self.program = program
        self.mode = mode
        self.bodyIsJSON = bodyIsJSON
        self.input = input
    }

    /// A transform of `document` by program `program`.
    public init(transforming document: TransformDocument, program: Int) {
        let (json, bodyIsJSON) = document.input
        self.init(program: program, mode: .transform, bodyIsJSON: bodyIsJSON, input: json)
    }

    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        appendFrame(to: &bytes)
        return Array(bytes.dropFirst(4))
    }

    /// Appends this request as a frame (its length first) to `bytes`.
    func appendFrame(to bytes: inout [UInt8]) {
        bytes += bigEndian(UInt32(clamping: 6 + input.count))
        bytes += bigEndian(UInt32(clamping: program))
        bytes += [mode.rawValue, bodyIsJSON ? 1 : 0]
        bytes += input
    }

    init?(_ frame: [UInt8]) {
        guard frame.count >= 6, let mode = Mode(rawValue: frame[4]) else { return nil }
        program = readBigEndian(frame.prefix(4))
        self.mode = mode
        bodyIsJSON = frame[5] != 0
        input = Array(frame.dropFirst(6))
    }
}

/// A transform's output (SPEC §11), as the worker splits it: the output without `body`, as JSON,
/// and what becomes of the body.
public struct ShapedOutput: Sendable, Equatable {
    public enum Body: Sendable, Equatable {
        /// The output names no body, or the body the program was given: the stored bytes are sent.
        case unchanged
        /// These bytes are sent.
        case replaced([UInt8])
    }

    /// The output object without its `body`, as compact JSON.
    public var rest: String
    public var body: Body

    public init(rest: String, body: Body) {
        self.rest = rest
        self.body = body
    }
}

/// A worker's answer to one ``TransformRequest``.
public enum TransformAnswer: Sendable, Equatable {
    /// A ``TransformRequest/Mode/document`` request's output, as JSON.
    case document(String)
    /// A ``TransformRequest/Mode/transform`` request's output.
    case shaped(ShapedOutput)
    /// No output, or `null`.
    case none
    /// jq's runtime error, or what is wrong with the output.
    case error(String)

    var encoded: [UInt8] {
        switch self {
        case .document(let text): return [0] + Array(text.utf8)
        case .shaped(let output):
            let rest = Array(output.rest.utf8)
            var bytes: [UInt8] = [1] + bigEndian(UInt32(rest.count)) + rest
            if case .replaced(let body) = output.body { bytes += [1] + body } else { bytes += [0] }
            return bytes
        case .none: return [2]
        case .error(let message): return [3] + Array(message.utf8)
        }
    }

    /// The answer in a frame a worker sent; nil when the frame is not one.
    public init?(frame: [UInt8]) {
        guard let kind = frame.first else { return nil }
        let payload = frame.dropFirst()
        switch kind {
        case 0: self = .document(String(decoding: payload, as: UTF8.self))
        case 1:
            guard payload.count >= 5 else { return nil }
            let length = readBigEndian(payload.prefix(4))
            let restEnd = payload.startIndex + 4 + length
            guard restEnd < payload.endIndex else { return nil }
            let rest = String(decoding: payload[(payload.startIndex + 4)..<restEnd], as: UTF8.self)
            let body: ShapedOutput.Body = payload[restEnd] == 1 ? .replaced(Array(payload[(restEnd + 1)...])) : .unchanged
            self = .shaped(ShapedOutput(rest: rest, body: body))
        case 2: self = .none
        case 3: self = .error(String(decoding: payload, as: UTF8.self))
        default: return nil
        }
    }
}

func bigEndian(_ value: UInt32) -> [UInt8] {
    [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
}

/// The unsigned big-endian number in `bytes` (at most 8).
func readBigEndian(_ bytes: some Collection<UInt8>) -> Int {
    Int(truncatingIfNeeded: bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
}

func bigEndian(_ value: UInt64) -> [UInt8] {
    (0..<8).reversed().map { UInt8(value >> (8 * UInt64($0)) & 0xFF) }
}

/// Reads one frame (4-byte big-endian length, then the bytes) from a blocking descriptor; nil
/// at the end of input or on an error.
func readFrame(from descriptor: Int32) -> [UInt8]? {
    var header = [UInt8](repeating: 0, count: 4)
    guard readFully(descriptor, into: &header) else { return nil }
    let length = readBigEndian(header)
    var frame = [UInt8](repeating: 0, count: length)
    return readFully(descriptor, into: &frame) ? frame : nil
}

private func readFully(_ descriptor: Int32, into buffer: inout [UInt8]) -> Bool {
    transferAll(buffer.count) { done in buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + done, $0.count - done) } }
}

/// Writes one frame to a blocking descriptor; false when it cannot.
func writeFrame(_ bytes: [UInt8], to descriptor: Int32) -> Bool {
    writeAll(bigEndian(UInt32(clamping: bytes.count)) + bytes, to: descriptor)
}

/// Writes all of `bytes` to a blocking descriptor; false when it cannot.
func writeAll(_ bytes: [UInt8], to descriptor: Int32) -> Bool {
    transferAll(bytes.count) { done in bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + done, $0.count - done) } }
}

/// Calls `step` (a `read` or `write` of what is left after the first `done` bytes) until `count`
/// bytes have moved; false at the end of input or on an error. Interrupted calls are repeated.
private func transferAll(_ count: Int, _ step: (_ done: Int) -> Int) -> Bool {
    var done = 0
    while done < count {
        let moved = step(done)
        if moved < 0 && errno == EINTR { continue }
        guard moved > 0 else { return false }
        done += moved
    }
    return true
}
