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
        var out = "\""
        out.reserveCapacity(string.utf8.count + 2)
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
        return out
    }

    /// Header fields as a JSON array of `[name, value]` pairs, in order.
    public static func encode(headers: [HeaderField]) -> String {
        var out = "["
        for (index, field) in headers.enumerated() {
            if index > 0 { out += "," }
            out += "[" + quote(field.name) + "," + quote(field.value) + "]"
        }
        return out + "]"
    }
}
