/// How a journaled message becomes the request sent upstream (SPEC §3). Pure functions: the
/// forwarder supplies the stored message, the attempt number and the route.
public enum OutboundRequest {
    /// Header names Waypost sets itself on every attempt; the source's own values are replaced.
    static let replaced: [String] = [
        "host", "content-length", "x-correlation-id", "idempotency-key", "x-waypost-attempt", "x-forwarded-for",
        "x-forwarded-proto", "x-forwarded-host", "expect", "traceparent", "tracestate",
    ]

    /// The route's `upstream`, then the request path after the route's prefix, then the
    /// original query. The result always keeps the upstream's scheme, host and port: the
    /// appended part starts with `/` or `?`, so nothing from a request can change the host.
    ///
    /// - Parameter requestTarget: path and query as received (origin form, starts with `/`).
    public static func targetURL(upstream: String, routePath: String, requestTarget: String) -> String {
        let (path, query) = split(requestTarget: requestTarget, routePath: routePath)
        // The query byte for byte, a bare `?` included.
        return targetURL(upstream: upstream, path: path) + (query.map { "?" + $0 } ?? "")
    }

    /// The `upstream`, then `path` (`""` or starting with `/`), then `?` and `query` if any.
    public static func targetURL(upstream: String, path: some StringProtocol, query: some StringProtocol) -> String {
        let url = targetURL(upstream: upstream, path: path)
        return query.isEmpty ? url : url + "?" + query
    }

    private static func targetURL(upstream: String, path: some StringProtocol) -> String {
        var url = upstream
        if !path.isEmpty {
            if url.hasSuffix("/") && path.hasPrefix("/") { url.removeLast() }
            // An upstream with no path gets the remainder as its path: "http://h" + "/x".
            url += path
        }
        return url
    }

    /// The path after the route's prefix and the query after its `?` (nil without one, `""`
    /// for a bare `?`) of a request target as received.
    public static func split(requestTarget: String, routePath: String) -> (path: Substring, query: Substring?) {
        let queryStart = requestTarget.firstIndex(of: "?")
        let path = requestTarget[..<(queryStart ?? requestTarget.endIndex)]
        return (
            routePath == "/" ? path : path.dropFirst(routePath.count), queryStart.map { requestTarget[requestTarget.index(after: $0)...] }
        )
    }

    /// The header fields of attempt `attempt`: the stored ones in order, without those
    /// Waypost sets itself, then `X-Correlation-ID`, `Idempotency-Key` (the source's
    /// idempotency key, else the correlation id), `X-Waypost-Attempt`, `X-Forwarded-For`,
    /// `X-Forwarded-Proto`, `X-Forwarded-Host`, the attempt's own `trace` (``AttemptTrace``);
    /// then `remove_headers` are removed and `add_headers` (already expanded) are added.
    ///
    /// The `X-Forwarded-*` values are Waypost's own (SPEC §14): `clientAddress`, `scheme` (the
    /// intake's: `https` with `tls`), and the `Host` as received. Only when the peer is a trusted proxy (`trustedPeer`) are its own
    /// values kept: its `X-Forwarded-For` chain extended with `clientAddress`, its
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` as they came.
    public static func headers(
        stored: [HeaderField], correlationID: String, idempotencyKey: String?, attempt: Int, clientAddress: String?,
        trustedPeer: Bool = false, scheme: String = "http", trace: [HeaderField] = [], removeHeaders: [String],
        addHeaders: [HeaderField]
    ) -> [HeaderField] {
        var forwardedFor: [String] = []
        var proto: String?
        var forwardedHost: String?
        var host: String?
        var fields: [HeaderField] = []
        fields.reserveCapacity(stored.count + 6 + addHeaders.count)
        for field in stored {
            let name = field.name
            if name.caseInsensitiveEquals("host") {
                host = host ?? field.value
            } else if trustedPeer {
                // An untrusted source's own X-Forwarded-* values are not read, only replaced.
                if name.caseInsensitiveEquals("x-forwarded-for") {
                    forwardedFor.append(field.value)
                } else if name.caseInsensitiveEquals("x-forwarded-proto") {
                    proto = proto ?? field.value
                } else if name.caseInsensitiveEquals("x-forwarded-host") {
                    forwardedHost = forwardedHost ?? field.value
                }
            }
            if !replaced.contains(where: name.caseInsensitiveEquals) { fields.append(field) }
        }
        if let clientAddress { forwardedFor.append(clientAddress) }
        fields.append(HeaderField(name: "X-Correlation-ID", value: correlationID))
        fields.append(HeaderField(name: "Idempotency-Key", value: idempotencyKey ?? correlationID))
        fields.append(HeaderField(name: "X-Waypost-Attempt", value: String(attempt)))
        if !forwardedFor.isEmpty { fields.append(HeaderField(name: "X-Forwarded-For", value: forwardedFor.joined(separator: ", "))) }
        fields.append(HeaderField(name: "X-Forwarded-Proto", value: proto ?? scheme))
        if let forwardedHost = forwardedHost ?? host { fields.append(HeaderField(name: "X-Forwarded-Host", value: forwardedHost)) }
        fields += trace
        if !removeHeaders.isEmpty || !addHeaders.isEmpty {
            fields.removeAll { field in
                removeHeaders.contains(where: field.name.caseInsensitiveEquals)
                    || addHeaders.contains { $0.name.caseInsensitiveEquals(field.name) }
            }
        }
        return fields + addHeaders
    }

    /// `value` with every `${NAME}` replaced by the environment variable `NAME`.
    ///
    /// - Throws: the name of the first variable that is not set.
    public static func expandEnvironment(_ value: String, environment: [String: String]) throws(MissingVariable) -> String {
        var result = ""
        var rest = Substring(value)
        while let start = rest.firstRange(of: "${") {
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else { break }
            let name = String(rest[start.upperBound..<end])
            guard let replacement = environment[name] else { throw MissingVariable(name: name) }
            result += rest[..<start.lowerBound]
            result += replacement
            rest = rest[rest.index(after: end)...]
        }
        return result + rest
    }

    /// An `add_headers` value names an environment variable that is not set.
    public struct MissingVariable: Error, Equatable {
        public var name: String
    }
}
