/// A JSON value (RFC 8259), as ``parse(_:)`` reads it from a request body or a filter.
///
/// Numbers are `Double`s (integers beyond 2⁵³ lose precision, as in JavaScript and Go's
/// `encoding/json`). Strings compare by their UTF-8 bytes, not by Unicode canonical
/// equivalence: `"é"` and `"e\u{301}"` are different strings here, as they are in JSON
/// tools written in Go or JavaScript. Objects keep their members in document order; a parsed
/// object has unique keys. Two objects are equal when they have the same members, in any
/// order.
///
///     let value = JSONValue.parse(#"{"type":"order.created","total":12.5}"#.utf8)
///     value?["type"]  // .string("order.created")
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    /// The members in document order. In a parsed object every key appears once: a key given
    /// twice keeps its first place and its last value.
    case object([(key: String, value: JSONValue)])

    /// The value of the member `key` when this is an object that has it, else nil. When a
    /// hand-built object repeats a key, the last one wins, as in a parsed one.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return Self.member(key, in: members)
    }

    /// The value of the member `key` (compared byte for byte), the last one when repeated.
    static func member(_ key: String, in members: [(key: String, value: JSONValue)]) -> JSONValue? {
        let count = key.utf8.count
        for member in members.reversed() where member.key.utf8.count == count && member.key.utf8.elementsEqual(key.utf8) {
            return member.value
        }
        return nil
    }
}

// MARK: - Equality

extension JSONValue: Hashable {
    /// Deep equality: numbers by value (`1` and `1.0` are equal, `1` and `"1"` are not),
    /// strings byte for byte, arrays in order, objects as sets of members.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return sameText(a, b)
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)):
            guard a.count == b.count else { return false }
            return a.allSatisfy { entry in member(entry.key, in: b) == member(entry.key, in: a) }
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null:
            hasher.combine(0)
        case .bool(let value):
            hasher.combine(1)
            hasher.combine(value)
        case .number(let value):
            hasher.combine(2)
            hasher.combine(value)
        case .string(let value):
            hasher.combine(3)
            Self.hashText(value, into: &hasher)
        case .array(let values):
            hasher.combine(4)
            hasher.combine(values)
        case .object(let members):
            // Order-independent, as == is: the sum of each member's own hash.
            hasher.combine(5)
            hasher.combine(members.count)
            var sum = 0
            for member in members {
                var memberHasher = Hasher()
                Self.hashText(member.key, into: &memberHasher)
                memberHasher.combine(member.value)
                sum &+= memberHasher.finalize()
            }
            hasher.combine(sum)
        }
    }

    /// Whether two strings have the same UTF-8 bytes.
    static func sameText(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8)
    }

    private static func hashText(_ text: String, into hasher: inout Hasher) {
        hasher.combine(text.utf8.count)
        for byte in text.utf8 { hasher.combine(byte) }
    }
}

extension JSONValue {
    /// A string key that compares and hashes by its UTF-8 bytes, like JSON strings here
    /// (Swift's own `String` equality is canonical equivalence).
    struct UTF8Key: Hashable {
        let text: String

        init(_ text: String) { self.text = text }

        static func == (lhs: UTF8Key, rhs: UTF8Key) -> Bool { JSONValue.sameText(lhs.text, rhs.text) }

        func hash(into hasher: inout Hasher) {
            for byte in text.utf8 { hasher.combine(byte) }
        }
    }
}

// MARK: - Writing

extension JSONValue: CustomStringConvertible {
    /// The value as compact JSON text (integers without a fraction, other numbers as Swift
    /// writes a `Double`, which is valid JSON for every finite value).
    public var description: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null:
            out += "null"
        case .bool(let value):
            out += value ? "true" : "false"
        case .number(let value):
            if value == value.rounded(), abs(value) < 1e15 {
                out += String(Int(value))
            } else {
                out += String(describing: value)
            }
        case .string(let value):
            JSON.appendQuoted(value, to: &out)
        case .array(let values):
            out += "["
            for (offset, value) in values.enumerated() {
                if offset > 0 { out += "," }
                value.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (offset, member) in members.enumerated() {
                if offset > 0 { out += "," }
                JSON.appendQuoted(member.key, to: &out)
                out += ":"
                member.value.write(to: &out)
            }
            out += "}"
        }
    }
}

// MARK: - Parsing

extension JSONValue {
    /// The value of `bytes` when they are exactly one JSON text in UTF-8, else nil.
    ///
    /// Accepts what ``JSONValidator/isValid(_:)`` accepts (RFC 8259: any value at the top,
    /// surrounded by optional whitespace, a leading byte order mark ignored, nesting up to
    /// ``JSONValidator/maximumDepth``); a number too large for a `Double` (`1e400`) becomes the
    /// largest finite one of its sign, so the document stays JSON (and prints back as JSON),
    /// and a `\u` escape of a lone UTF-16 surrogate (`"\ud800"`) becomes U+FFFD, the replacement
    ///   character, as Go's `encoding/json` and JavaScript's `TextDecoder` do, since a Swift
    ///   `String` cannot hold it. Raw bytes that are not UTF-8 are refused.
    ///
    /// A repeated key in an object keeps its first place and takes its last value. Never traps:
    /// nesting is bounded before the stack is, and every read is bounds-checked.
    public static func parse(_ bytes: some Collection<UInt8>) -> JSONValue? {
        if let parsed = bytes.withContiguousStorageIfAvailable({ parse(buffer: $0) }) { return parsed }
        return Array(bytes).withUnsafeBufferPointer { parse(buffer: $0) }
    }

    private static func parse(buffer: UnsafeBufferPointer<UInt8>) -> JSONValue? {
        var parser = Parser(bytes: buffer)
        return parser.document()
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0
        /// The bytes of a string with escapes, reused from one string to the next.
        var scratch: [UInt8] = []

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func document() -> JSONValue? {
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
            skipWhitespace()
            guard let value = value(depth: 0) else { return nil }
            skipWhitespace()
            return index == bytes.count ? value : nil
        }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
        }

        mutating func consume(_ byte: UInt8) -> Bool {
            guard current == byte else { return false }
            index += 1
            return true
        }

        mutating func literal(_ text: StaticString, _ value: JSONValue) -> JSONValue? {
            let count = text.utf8CodeUnitCount
            guard bytes.count - index >= count else { return nil }
            for offset in 0..<count where bytes[index + offset] != text.utf8Start[offset] { return nil }
            index += count
            return value
        }

        /// The value at `index`; `depth` counts the containers around it.
        mutating func value(depth: Int) -> JSONValue? {
            guard depth < JSONValidator.maximumDepth, let byte = current else { return nil }
            switch byte {
            case UInt8(ascii: "{"): return object(depth: depth + 1)
            case UInt8(ascii: "["): return array(depth: depth + 1)
            case UInt8(ascii: "\""): return string().map(JSONValue.string)
            case UInt8(ascii: "t"): return literal("true", .bool(true))
            case UInt8(ascii: "f"): return literal("false", .bool(false))
            case UInt8(ascii: "n"): return literal("null", .null)
            default: return number()
            }
        }

        mutating func object(depth: Int) -> JSONValue? {
            index += 1
            skipWhitespace()
            var members: [(key: String, value: JSONValue)] = []
            if consume(UInt8(ascii: "}")) { return .object(members) }
            // Past a few members, repeated keys are found through an index instead of a scan,
            // so that a large object costs linear time.
            var positions: [UTF8Key: Int]?
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\""), let key = string() else { return nil }
                skipWhitespace()
                guard consume(UInt8(ascii: ":")) else { return nil }
                skipWhitespace()
                guard let value = value(depth: depth) else { return nil }
                if let position = position(of: key, in: members, positions) {
                    members[position].value = value
                } else {
                    members.append((key, value))
                    if positions != nil {
                        positions?[UTF8Key(key)] = members.count - 1
                    } else if members.count == 16 {
                        var index: [UTF8Key: Int] = [:]
                        for (offset, member) in members.enumerated() { index[UTF8Key(member.key)] = offset }
                        positions = index
                    }
                }
                skipWhitespace()
                if consume(UInt8(ascii: "}")) { return .object(members) }
                guard consume(UInt8(ascii: ",")) else { return nil }
            }
        }

        func position(of key: String, in members: [(key: String, value: JSONValue)], _ positions: [UTF8Key: Int]?) -> Int? {
            if let positions { return positions[UTF8Key(key)] }
            return members.firstIndex { JSONValue.sameText($0.key, key) }
        }

        mutating func array(depth: Int) -> JSONValue? {
            index += 1
            skipWhitespace()
            var values: [JSONValue] = []
            if consume(UInt8(ascii: "]")) { return .array(values) }
            while true {
                skipWhitespace()
                guard let value = value(depth: depth) else { return nil }
                values.append(value)
                skipWhitespace()
                if consume(UInt8(ascii: "]")) { return .array(values) }
                guard consume(UInt8(ascii: ",")) else { return nil }
            }
        }

        /// The string whose opening quote is at `index`.
        mutating func string() -> String? {
            index += 1
            let start = index
            // Most strings have no escape: validate the bytes in place.
            while let byte = current {
                if byte == UInt8(ascii: "\"") {
                    defer { index += 1 }
                    return String(validating: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                }
                if byte == UInt8(ascii: "\\") { break }
                if byte < 0x20 { return nil }
                index += 1
            }
            guard current != nil else { return nil }
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
            while let byte = current {
                index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return String(validating: scratch, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let escaped = current else { return nil }
                    index += 1
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(escaped)
                    case UInt8(ascii: "b"): scratch.append(0x08)
                    case UInt8(ascii: "f"): scratch.append(0x0C)
                    case UInt8(ascii: "n"): scratch.append(0x0A)
                    case UInt8(ascii: "r"): scratch.append(0x0D)
                    case UInt8(ascii: "t"): scratch.append(0x09)
                    case UInt8(ascii: "u"):
                        guard let scalar = unicodeEscape() else { return nil }
                        scratch.append(contentsOf: scalar.utf8)
                    default: return nil
                    }
                case 0x00..<0x20:
                    return nil
                default:
                    scratch.append(byte)
                }
            }
            return nil
        }

        /// The scalar of the `\u` escape whose four hex digits are at `index`, joined with the
        /// low surrogate that follows a high one; U+FFFD for a lone surrogate.
        mutating func unicodeEscape() -> Unicode.Scalar? {
            guard let unit = hexQuad(at: index) else { return nil }
            index += 4
            switch unit {
            case 0xD800...0xDBFF:
                guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u"),
                    let low = hexQuad(at: index + 2), (0xDC00...0xDFFF).contains(low)
                else { return "\u{FFFD}" }
                index += 6
                return Unicode.Scalar(0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)) ?? "\u{FFFD}"
            case 0xDC00...0xDFFF:
                return "\u{FFFD}"
            default:
                return Unicode.Scalar(unit) ?? "\u{FFFD}"
            }
        }

        func hexQuad(at start: Int) -> UInt16? {
            guard start >= 0, bytes.count - start >= 4 else { return nil }
            var unit: UInt16 = 0
            for offset in 0..<4 {
                let byte = bytes[start + offset]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: return nil
                }
                unit = unit << 4 | UInt16(digit)
            }
            return unit
        }

        mutating func number() -> JSONValue? {
            let start = index
            let negative = consume(UInt8(ascii: "-"))
            guard let first = current, isDigit(first) else { return nil }
            index += 1
            if first != UInt8(ascii: "0") { skipDigits() }
            let integerEnd = index
            var isInteger = true
            if consume(UInt8(ascii: ".")) {
                guard let byte = current, isDigit(byte) else { return nil }
                skipDigits()
                isInteger = false
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                index += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
                guard let byte = current, isDigit(byte) else { return nil }
                skipDigits()
                isInteger = false
            }
            let digitsStart = negative ? start + 1 : start
            // Up to 15 digits, an integer is exact in a Double and cannot overflow an Int.
            if isInteger, integerEnd - digitsStart <= 15 {
                var magnitude = 0
                for byte in UnsafeBufferPointer(rebasing: bytes[digitsStart..<integerEnd]) {
                    magnitude = magnitude * 10 + Int(byte - UInt8(ascii: "0"))
                }
                let value = Double(magnitude)
                return .number(negative ? -value : value)
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            guard let value = Double(text) else { return nil }
            return .number(value.isFinite ? value : (value < 0 ? -Double.greatestFiniteMagnitude : .greatestFiniteMagnitude))
        }

        mutating func skipDigits() {
            while let byte = current, isDigit(byte) { index += 1 }
        }

        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
    }
}
