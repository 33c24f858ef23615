#if canImport(Glibc)
    import Glibc
#endif

/// An IPv4 or IPv6 network, written `10.0.0.0/8`, `2001:db8::/32`, or a single address
/// (`127.0.0.1`, `::1`): the `trusted_proxies` of SPEC §14.
public struct CIDR: Sendable, Equatable, CustomStringConvertible {
    /// The network's address bytes (4 or 16), host bits zero.
    public let network: [UInt8]
    /// The prefix length in bits.
    public let prefixLength: Int

    /// - Returns: nil when `text` is not an address, optionally followed by `/` and a prefix
    ///   length that fits the address family.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bytes = Self.addressBytes(String(parts[0])) else { return nil }
        let bits = bytes.count * 8
        var length = bits
        if parts.count == 2 {
            guard parts[1].utf8.count <= 3, let value = parseDigits(parts[1], clampedTo: 999), value <= bits else { return nil }
            length = Int(value)
        }
        network = Self.masked(bytes, to: length)
        prefixLength = length
    }

    /// Whether `address` (as a peer address is written, `192.0.2.7` or `2001:db8::1`) is in
    /// this network. An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) counts as its IPv4 one.
    public func contains(_ address: String) -> Bool {
        guard var bytes = Self.addressBytes(address) else { return false }
        if bytes.count == 16, network.count == 4, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            bytes = Array(bytes[12...])
        }
        return bytes.count == network.count && Self.masked(bytes, to: prefixLength) == network
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = network.count == 4 ? AF_INET : AF_INET6
        let text = network.withUnsafeBytes { raw in
            inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil
                ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        }
        return "\(text)/\(prefixLength)"
    }

    /// The 4 or 16 bytes of a literal IPv4 or IPv6 address (a zone such as `%eth0` is ignored).
    static func addressBytes(_ text: String) -> [UInt8]? {
        let host = text.split(separator: "%", maxSplits: 1).first.map(String.init) ?? text
        guard !host.isEmpty, host.utf8.count <= 45 else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    private static func masked(_ bytes: [UInt8], to length: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let kept = min(8, max(0, length - index * 8))
            return kept == 8 ? byte : byte & ~(0xFF >> UInt8(kept))
        }
    }
}
