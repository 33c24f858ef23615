// Low-level parsers of the values a configuration file holds: decimals, ports, authorities,
// tokens (durations and sizes are in Units.swift).

func splitAuthority(_ text: Substring) -> (host: Substring, port: Substring?, bracketed: Bool)? {
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]") else { return nil }
        let host = text[text.index(after: text.startIndex)..<close]
        let rest = text[text.index(after: close)...]
        if rest.isEmpty { return (host, nil, true) }
        guard rest.hasPrefix(":") else { return nil }
        return (host, rest.dropFirst(), true)
    }
    guard let colon = text.firstIndex(of: ":") else { return (text, nil, false) }
    let port = text[text.index(after: colon)...]
    guard !port.contains(":") else { return nil }
    return (text[..<colon], port, false)
}

/// A host name or IPv4 address (letters, digits, `.`, `-`, `_`), or the inside of an IPv6
/// literal (hex digits, `:`, `.`, and a `%zone`).
func isValidHost(_ host: Substring, bracketed: Bool) -> Bool {
    guard !host.isEmpty else { return false }
    if bracketed {
        let parts = host.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts[0].contains(":"), parts[0].allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return false }
        return parts.count == 1 || (!parts[1].isEmpty && parts[1].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
    }
    return host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }
}

/// A port number `0...65535` written in 1 to 5 ASCII digits.
func parsePort(_ text: Substring) -> Int? {
    guard (1...5).contains(text.count), text.allSatisfy({ $0.isASCII && $0.isWholeNumber }),
        let value = Int(text), value <= 65_535
    else { return nil }
    return value
}

/// An HTTP token (RFC 9110 §5.6.2): a header name, or a media type's type or subtype.
func isToken(_ text: some StringProtocol) -> Bool {
    !text.isEmpty
        && text.unicodeScalars.allSatisfy { scalar in
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9": true
            case "!", "#", "$", "%", "&", "'", "*", "+", "-", ".", "^", "_", "`", "|", "~": true
            default: false
            }
        }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
func parseDecimal(_ text: String) -> Double? {
    guard !text.isEmpty, text.allSatisfy({ "0123456789.eE+-_".contains($0) }),
        let value = Double(text.filter { $0 != "_" }), value.isFinite
    else { return nil }
    return value
}

/// `a, b, c`: the raw values of an enumeration, for error messages.
func trimSpaces(_ text: Substring) -> Substring {
    var text = text
    while text.first == " " { text.removeFirst() }
    while text.last == " " { text.removeLast() }
    return text
}
