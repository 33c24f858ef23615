/// An RFC 9457 problem: every error answer of Waypost's APIs is one of these, sent as
/// `application/problem+json`.
public struct Problem: Error, Sendable, Equatable {
    /// The HTTP status code.
    public var status: Int
    /// A short, stable slug naming the kind of problem; `type` is `urn:waypost:problem:SLUG`.
    public var slug: String
    /// A short summary of the kind of problem.
    public var title: String
    /// What happened to this request, and what the sender can do about it.
    public var detail: String
    /// Extra header fields for the answer (for instance `Retry-After`).
    public var headers: [HeaderField]

    public init(status: Int, slug: String, title: String, detail: String, headers: [HeaderField] = []) {
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers
    }

    /// The RFC 9457 `type` member.
    public var type: String { "urn:waypost:problem:\(slug)" }

    /// The JSON document.
    public var json: String {
        "{\"type\":\(JSON.quote(type)),\"title\":\(JSON.quote(title)),\"status\":\(status),\"detail\":\(JSON.quote(detail))}"
    }
}

/// Small JSON helpers for the hot path, where Foundation's encoders cost more than the work.
public enum JSON {
    /// `string` as a JSON string literal, quotes included.
    public static func quote(_ string: String) -> String {
        var out = ""
        appendQuoted(string, to: &out)
        return out
    }

    /// Appends `string` as a JSON string literal, quotes included.
    public static func appendQuoted(_ string: String, to out: inout String) {
        out += "\""
        // Most strings (header names and values, ids, states) need no escape at all.
        guard string.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
            out += string
            out += "\""
            return
        }
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// The header fields of a JSON array of `[name, value]` pairs, or `[name, value, "latin1"]`
    /// for a value that is not UTF-8 (as ``encode(headers:)``
    /// writes them); nil when `text` is not such an array. Parsed here rather than with
    /// Foundation because every delivery attempt reads its message's headers.
    public static func decodeHeaders(_ text: String) -> [HeaderField]? {
        var bytes = Array(text.utf8)[...]
        func skipSpace() { while let b = bytes.first, b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { bytes.removeFirst() } }
        func expect(_ byte: UInt8) -> Bool {
            skipSpace()
            guard bytes.first == byte else { return false }
            bytes.removeFirst()
            return true
        }
        func string() -> String? {
            guard expect(UInt8(ascii: "\"")) else { return nil }
            var out: [UInt8] = []
            while let b = bytes.popFirst() {
                switch b {
                case UInt8(ascii: "\""):
                    return String(validating: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let e = bytes.popFirst() else { return nil }
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "u"):
                        guard bytes.count >= 4, let code = UInt32(String(decoding: bytes.prefix(4), as: UTF8.self), radix: 16) else {
                            return nil
                        }
                        bytes.removeFirst(4)
                        // Waypost writes \u escapes only for control characters; others are kept whole.
                        guard let scalar = Unicode.Scalar(code) else { return nil }
                        out.append(contentsOf: Array(String(Character(scalar)).utf8))
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    default: return nil
                    }
                default:
                    out.append(b)
                }
            }
            return nil
        }
        var fields: [HeaderField] = []
        guard expect(UInt8(ascii: "[")) else { return nil }
        if expect(UInt8(ascii: "]")) { return fields }
        repeat {
            guard expect(UInt8(ascii: "[")), let name = string(), expect(UInt8(ascii: ",")), let value = string() else { return nil }
            // A third element "latin1" marks a value whose bytes are not UTF-8 (HeaderField.valueIsLatin1).
            var latin1 = false
            if expect(UInt8(ascii: ",")) {
                guard string() == "latin1", value.unicodeScalars.allSatisfy({ $0.value <= 0xFF }) else { return nil }
                latin1 = true
            }
            guard expect(UInt8(ascii: "]")) else { return nil }
            fields.append(HeaderField(name: name, value: value, valueIsLatin1: latin1))
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "]")) else { return nil }
        skipSpace()
        return bytes.isEmpty ? fields : nil
    }

    /// Header fields as a JSON array of `[name, value]` pairs, in order; a value whose bytes are
    /// not UTF-8 is one character per byte, marked by a third element: `[name, value, "latin1"]`.
    public static func encode(headers: [HeaderField]) -> String {
        var out = "["
        out.reserveCapacity(headers.reduce(2) { $0 + $1.name.utf8.count + $1.value.utf8.count + 8 })
        for (index, field) in headers.enumerated() {
            out += index > 0 ? ",[" : "["
            appendQuoted(field.name, to: &out)
            out += ","
            appendQuoted(field.value, to: &out)
            out += field.valueIsLatin1 ? ",\"latin1\"]" : "]"
        }
        out += "]"
        return out
    }
}
