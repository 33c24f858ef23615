// The configuration's domain rules (SPEC §8, §9): what an upstream URL, a route path, a route
// name, an environment variable name or a JSON pointer may be.

extension RouteConfig {
    /// Why `url` cannot be an upstream, or `nil` when it can: an absolute `http://` or `https://`
    /// URL with a host and optional port, without userinfo, query, fragment, spaces or control characters.
    static func upstreamProblem(_ url: String) -> String? {
        checkURL(url, what: "upstream URL")
    }
}

/// Why `url` cannot be the `what` (an upstream, the OTLP endpoint), or `nil` when it can.
func checkURL(_ url: String, what: String) -> String? {
    let lowered = url.lowercased()
    let afterScheme: Substring
    if lowered.hasPrefix("http://") {
        afterScheme = url.dropFirst("http://".count)
    } else if lowered.hasPrefix("https://") {
        afterScheme = url.dropFirst("https://".count)
    } else {
        return "expected an absolute http:// or https:// URL, got \"\(url)\""
    }
    if url.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7f }) {
        return "a URL must not contain spaces or control characters, got \"\(url)\""
    }
    if url.contains("#") {
        return "the \(what) must not have a fragment (#…), got \"\(url)\""
    }
    let authorityEnd = afterScheme.firstIndex { $0 == "/" || $0 == "?" } ?? afterScheme.endIndex
    let authority = afterScheme[..<authorityEnd]
    if authority.contains("@") {
        return "the \(what) must not carry credentials (user:password@); send them with add_headers and ${ENV_VAR}"
    }
    if afterScheme[authorityEnd...].contains("?") {
        return "the \(what) must not have a query" + (what == "upstream URL" ? ": the request's own query is appended to it" : "")
    }
    guard let (host, port, bracketed) = splitAuthority(authority), !host.isEmpty else {
        return "the \(what) has no host, got \"\(url)\""
    }
    guard isValidHost(host, bracketed: bracketed) else {
        return "the \(what)'s host \"\(host)\" is not a valid host name or IP address"
    }
    if let port {
        guard let number = parsePort(port), number > 0 else {
            return "the \(what)'s port must be a number from 1 to 65535, got \"\(port)\""
        }
    }
    return nil
}

/// A route path checked and normalised: starts with `/`, no trailing slash (except `/`), no empty,
/// `.` or `..` segments, no query or fragment, and not under the reserved `/_waypost`.
func normalizedRoutePath(_ path: String) throws(ConfigError) -> String {
    guard path.hasPrefix("/") else {
        throw ConfigError(message: "a route path starts with \"/\", got \"\(path)\"")
    }
    if path.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7f }) {
        throw ConfigError(message: "a route path must not contain spaces or control characters, got \"\(path)\"")
    }
    if path.contains("?") || path.contains("#") {
        throw ConfigError(message: "a route path must not contain \"?\" or \"#\", got \"\(path)\"")
    }
    var normalized = path
    while normalized.count > 1 && normalized.hasSuffix("/") {
        normalized.removeLast()
    }
    if normalized != "/" {
        let segments = normalized.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        if segments.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw ConfigError(message: "a route path must not contain empty, \".\" or \"..\" segments, got \"\(path)\"")
        }
    }
    if normalized == "/_waypost" || normalized.hasPrefix("/_waypost/") {
        throw ConfigError(message: "paths under /_waypost are reserved for Waypost's own status API, got \"\(path)\"")
    }
    return normalized
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`. `port` is `nil` when there is no colon;
/// the whole result is `nil` when the brackets are unbalanced or an unbracketed host has colons.
func isValidEnvName(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
    return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
}

/// A route name: 1 to 64 characters of `[A-Za-z0-9._-]`.
func isValidRouteName(_ name: String) -> Bool {
    (1...64).contains(name.unicodeScalars.count)
        && name.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-"
        }
}

/// Every `~` in a JSON Pointer is followed by `0` or `1` (RFC 6901 §3).
func isValidPointerEscaping(_ pointer: String) -> Bool {
    var scalars = pointer.unicodeScalars.makeIterator()
    while let scalar = scalars.next() {
        if scalar == "~" {
            guard let next = scalars.next(), next == "0" || next == "1" else { return false }
        }
    }
    return true
}

/// A plain decimal number (`2`, `1.5`, `1e1`): no hex, `nan` or infinity.
