/// Header rules shared by intake and forwarding.
public enum HTTPHeaderRules {
    /// Hop-by-hop header names (RFC 9110 §7.6.1), lowercased. `Proxy-*` is matched separately.
    public static let hopByHop: Set<String> = [
        "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
    ]

    /// `headers` without hop-by-hop fields: those of ``hopByHop``, every `Proxy-*` field, and
    /// every field named in a `Connection` header. Order and case are kept.
    public static func removingHopByHop(_ headers: [HeaderField]) -> [HeaderField] {
        var named = Set<String>()
        for field in headers where field.name.lowercased() == "connection" {
            for token in field.value.split(separator: ",") {
                named.insert(token.trimmingHTTPWhitespace().lowercased())
            }
        }
        return headers.filter { field in
            let name = field.name.lowercased()
            return !hopByHop.contains(name) && !name.hasPrefix("proxy-") && !named.contains(name)
        }
    }
}

extension Substring {
    /// The substring without leading and trailing spaces and tabs.
    public func trimmingHTTPWhitespace() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
