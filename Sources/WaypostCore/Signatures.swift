// Webhook signatures (SPEC §9): what a failed inbound check reports, and the small codecs the
// schemes share. The verifier is in `Signatures+Verify.swift`, the outbound signer in
// `Signatures+Sign.swift`, the loading of secrets in `Secrets.swift`.

import Crypto
import Foundation

/// Why an inbound request's signature was refused (SPEC §9). The intake answers `401` with
/// ``detail`` and stores nothing.
///
/// No case carries a secret or the expected signature, and neither does ``detail``: a failure
/// says which header was wrong and how, never what the right value would have been.
public enum VerificationFailure: Error, Sendable, Equatable {
    /// The signature header (or, for standard-webhooks, `webhook-id` or `webhook-timestamp`) is absent.
    case missing(header: String)
    /// The header is present but cannot be read: no `v1` entry, bad hex or base64, a bad
    /// timestamp, a missing prefix, or the header sent more than once. `reason` is a clause
    /// such as `it has no v1= entry`.
    case malformed(header: String, reason: String)
    /// The signed timestamp is older than the route's `tolerance`.
    case staleTimestamp(header: String)
    /// The signed timestamp is further in the future than the route's `tolerance`.
    case futureTimestamp(header: String)
    /// The header is well-formed, but no signature in it matches the request under any secret.
    case mismatch(header: String)

    /// The header the failure is about, as the scheme names it (e.g. `webhook-signature`,
    /// `X-Hub-Signature-256`, or the configured header of `hmac-sha256`).
    public var header: String {
        switch self {
        case .missing(let header), .malformed(let header, _), .staleTimestamp(let header),
            .futureTimestamp(let header), .mismatch(let header):
            header
        }
    }

    /// A short title for a problem document: `Missing signature`, `Malformed signature`,
    /// `Stale signature timestamp`, `Future signature timestamp` or `Signature mismatch`.
    public var title: String {
        switch self {
        case .missing: "Missing signature"
        case .malformed: "Malformed signature"
        case .staleTimestamp: "Stale signature timestamp"
        case .futureTimestamp: "Future signature timestamp"
        case .mismatch: "Signature mismatch"
        }
    }

    /// A sentence a person can act on: which header, and what was wrong with it. Never
    /// contains a secret or the expected signature.
    public var detail: String {
        switch self {
        case .missing(let header):
            "The request has no \(header) header; this route accepts only signed requests."
        case .malformed(let header, let reason):
            "The \(header) header is malformed: \(reason)."
        case .staleTimestamp(let header):
            "The timestamp signed in \(header) is older than this route's tolerance; sign the request "
                + "again with the current time, and check the sender's clock."
        case .futureTimestamp(let header):
            "The timestamp signed in \(header) lies further in the future than this route's tolerance; "
                + "check the sender's clock."
        case .mismatch(let header):
            "The signature in \(header) does not match the request: check that the sender uses this "
                + "route's secret and that the body arrives exactly as it was signed."
        }
    }
}

// MARK: - Shared helpers

/// HMAC-SHA256, the one MAC every scheme uses.
enum SignatureMAC {
    /// The length of an HMAC-SHA256 in bytes.
    static let byteCount = SHA256.byteCount

    /// HMAC-SHA256 under `key` of `prefix` followed by `body`, without copying the body.
    static func compute(key: SymmetricKey, prefix: [UInt8] = [], body: [UInt8]) -> HashedAuthenticationCode<SHA256> {
        var hmac = HMAC<SHA256>(key: key)
        if !prefix.isEmpty { hmac.update(data: prefix) }
        hmac.update(data: body)
        return hmac.finalize()
    }

    /// Whether any candidate equals the HMAC of `prefix + body` under any key. Each candidate
    /// is compared with swift-crypto's constant-time comparison; the MAC is computed once per key.
    static func anyMatches(
        _ candidates: [[UInt8]], keys: [SymmetricKey], prefix: [UInt8] = [], body: [UInt8]
    ) -> Bool {
        for key in keys {
            let mac = compute(key: key, prefix: prefix, body: body)
            // `HashedAuthenticationCode == DataProtocol` is constant-time (CRYPTO_memcmp).
            for candidate in candidates where mac == candidate { return true }
        }
        return false
    }
}

/// Standard base64 (RFC 4648 §4), written with padding; read with or without it.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, character) in alphabet.enumerated() { table[Int(character)] = UInt8(index) }
        return table
    }()

    /// `bytes` in standard base64 with `=` padding.
    static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var iterator = bytes.makeIterator()
        while let b0 = iterator.next() {
            let b1 = iterator.next()
            let b2 = iterator.next()
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | (b1 ?? 0) >> 4)])
            out.append(b1.map { alphabet[Int(($0 & 0x0F) << 2 | (b2 ?? 0) >> 6)] } ?? UInt8(ascii: "="))
            out.append(b2.map { alphabet[Int($0 & 0x3F)] } ?? UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of standard base64 `text`, or nil when it is not base64: a character outside
    /// the alphabet, a wrong length, or wrong padding. Padding may be left out.
    static func decode(_ text: some StringProtocol) -> [UInt8]? {
        var digits = Array(text.utf8)
        if digits.last == UInt8(ascii: "=") {
            guard digits.count % 4 == 0 else { return nil }
            digits.removeLast()
            if digits.last == UInt8(ascii: "=") { digits.removeLast() }
        }
        guard digits.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for digit in digits {
            let value = decodeTable[Int(digit)]
            guard value != 0xFF else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return out
    }
}

/// Hexadecimal, as the `github`, `stripe` and `hmac-sha256` schemes carry MACs.
enum Hex {
    /// The bytes of `text`, digits in either case; nil for an odd length or a non-hex character.
    static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// What the Standard Webhooks scheme (https://www.standardwebhooks.com) shares between the
/// inbound verifier and the outbound signer.
enum StandardWebhooks {
    static let idHeader = "webhook-id"
    static let timestampHeader = "webhook-timestamp"
    static let signatureHeader = "webhook-signature"
    static let secretPrefix = "whsec_"

    /// The HMAC keys of `whsec_<base64>` secrets.
    ///
    /// - Throws: ``SecretError`` naming `source` (and which of several secrets) when there is
    ///   no secret, or one lacks the `whsec_` prefix or is not base64 after it. Never the value.
    static func keys(from secrets: [String], source: SecretSource) throws(SecretError) -> [SymmetricKey] {
        guard !secrets.isEmpty else { throw SecretError(message: "\(source) holds no secret") }
        var keys: [SymmetricKey] = []
        for (index, secret) in secrets.enumerated() {
            let which = secrets.count == 1 ? "the secret in \(source)" : "secret \(index + 1) of \(secrets.count) in \(source)"
            guard secret.hasPrefix(secretPrefix) else {
                throw SecretError(message: "\(which) is not a Standard Webhooks secret: it must start with whsec_ followed by base64")
            }
            guard let bytes = Base64.decode(secret.dropFirst(secretPrefix.count)), !bytes.isEmpty else {
                throw SecretError(message: "\(which) is not a Standard Webhooks secret: the part after whsec_ must be standard base64")
            }
            keys.append(SymmetricKey(data: bytes))
        }
        return keys
    }

    /// The bytes signed before the body: `{id}.{timestamp}.`.
    static func signedPrefix(id: some StringProtocol, timestamp: Int64) -> [UInt8] {
        Array("\(id).\(timestamp).".utf8)
    }
}
