// Inbound signature verification (SPEC §9): standard-webhooks, github, stripe, hmac-sha256.

import Crypto
import Foundation

/// Checks the signatures of a route's inbound requests (SPEC §9).
///
/// Built once per route at start-up from its ``VerifyConfig`` and loaded secrets, then used
/// from any thread. Every MAC is HMAC-SHA256 over the raw body as received, keyed with the
/// secret's UTF-8 bytes (the base64-decoded bytes after `whsec_` for standard-webhooks).
/// MACs are compared in constant time; when several secrets are configured (rotation), any
/// one may match, and when a header carries several signatures, any one valid suffices.
///
/// ```swift
/// let verifier = try InboundVerifier(config: route.verify!, secrets: Secrets.load(route.verify!.secret, environment: env))
/// if let failure = verifier.verify(headers: request.headers, body: request.body, nowMilliseconds: now) {
///     // answer 401 with failure.detail; store nothing
/// }
/// ```
///
/// Schemes:
/// - `standard-webhooks`: `webhook-id`, `webhook-timestamp` (Unix seconds) and
///   `webhook-signature` with space-separated `v1,<base64>` entries (other versions ignored),
///   over `{id}.{timestamp}.{body}` (https://github.com/standard-webhooks/standard-webhooks).
/// - `github`: `X-Hub-Signature-256: sha256=<hex>` over the body
///   (https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries).
/// - `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…][,v0=…]` over `{t}.{body}`
///   (https://docs.stripe.com/webhooks#verify-manually).
/// - `hmac-sha256`: the configured header holds the body's MAC in hex (either case) or base64,
///   after the configured prefix, which is then required.
///
/// The timestamped schemes refuse a timestamp further than ``VerifyConfig/tolerance`` from now,
/// in either direction; the timestamp is checked before any MAC is computed.
public struct InboundVerifier: Sendable {
    /// The scheme this verifier checks.
    public let scheme: VerifyScheme
    private let keys: [SymmetricKey]
    private let toleranceMilliseconds: Int64
    /// The signature header of `hmac-sha256`, as configured.
    private let configuredHeader: String
    private let encoding: SignatureEncoding
    private let prefix: String

    /// Creates the verifier of one route.
    ///
    /// - Parameters:
    ///   - config: The route's `verify` block.
    ///   - secrets: The secrets as ``Secrets/load(_:environment:)`` returns them. For
    ///     standard-webhooks each must be `whsec_<base64>`; it is decoded once, here.
    /// - Throws: ``SecretError`` naming `config.secret` (never the value) when `secrets` is
    ///   empty or a standard-webhooks secret is malformed, or, for `hmac-sha256`, when
    ///   `config.header` is not set (the configuration parser already requires it).
    public init(config: VerifyConfig, secrets: [String]) throws(SecretError) {
        scheme = config.scheme
        switch config.scheme {
        case .standardWebhooks:
            keys = try StandardWebhooks.keys(from: secrets, source: config.secret)
        case .github, .stripe, .hmacSHA256:
            guard !secrets.isEmpty else { throw SecretError(message: "\(config.secret) holds no secret") }
            keys = secrets.map { SymmetricKey(data: Array($0.utf8)) }
        }
        toleranceMilliseconds = Self.milliseconds(config.tolerance)
        if config.scheme == .hmacSHA256 {
            guard let header = config.header, !header.isEmpty else {
                throw SecretError(message: "scheme hmac-sha256 needs the header that carries the signature (verify.header)")
            }
            configuredHeader = header
        } else {
            configuredHeader = ""
        }
        encoding = config.encoding ?? .hex
        prefix = config.prefix ?? ""
    }

    /// Checks one request.
    ///
    /// - Parameters:
    ///   - headers: The request's header fields in received order; names match case-insensitively.
    ///     A header the scheme reads must appear at most once.
    ///   - body: The raw body bytes as received.
    ///   - nowMilliseconds: The current time in milliseconds since 1970.
    /// - Returns: nil when the request is authentic; otherwise why not.
    public func verify(headers: [HeaderField], body: [UInt8], nowMilliseconds: Int64) -> VerificationFailure? {
        do {
            switch scheme {
            case .standardWebhooks: try verifyStandardWebhooks(headers, body, nowMilliseconds)
            case .github: try verifyGitHub(headers, body)
            case .stripe: try verifyStripe(headers, body, nowMilliseconds)
            case .hmacSHA256: try verifyHMAC(headers, body)
            }
            return nil
        } catch {
            return error
        }
    }

    // MARK: Schemes

    private func verifyStandardWebhooks(_ headers: [HeaderField], _ body: [UInt8], _ now: Int64) throws(VerificationFailure) {
        let signatureHeader = StandardWebhooks.signatureHeader
        let signatureValue = try Self.value(of: signatureHeader, in: headers)
        let id = try Self.value(of: StandardWebhooks.idHeader, in: headers)
        guard !id.isEmpty else { throw .malformed(header: StandardWebhooks.idHeader, reason: "it is empty") }
        let timestampHeader = StandardWebhooks.timestampHeader
        let timestampValue = try Self.value(of: timestampHeader, in: headers)
        guard let timestamp = Self.unixSeconds(timestampValue) else {
            throw .malformed(header: timestampHeader, reason: "it must be whole seconds since 1970 in decimal digits")
        }

        var candidates: [[UInt8]] = []
        var versionOneEntries = 0
        for entry in signatureValue.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            guard let comma = entry.firstIndex(of: ","), entry[..<comma] == "v1" else { continue }
            versionOneEntries += 1
            if let mac = Base64.decode(entry[entry.index(after: comma)...]), mac.count == SignatureMAC.byteCount {
                candidates.append(mac)
            }
        }
        guard versionOneEntries > 0 else {
            throw .malformed(header: signatureHeader, reason: "it has no v1,<base64> entry")
        }
        guard !candidates.isEmpty else {
            throw .malformed(header: signatureHeader, reason: "no v1 entry holds the base64 of a 32-byte HMAC-SHA256")
        }

        try checkTimestamp(timestamp, header: timestampHeader, now: now)
        let prefix = StandardWebhooks.signedPrefix(id: id, timestamp: timestamp)
        guard SignatureMAC.anyMatches(candidates, keys: keys, prefix: prefix, body: body) else {
            throw .mismatch(header: signatureHeader)
        }
    }

    private func verifyGitHub(_ headers: [HeaderField], _ body: [UInt8]) throws(VerificationFailure) {
        let header = "X-Hub-Signature-256"
        let value = try Self.value(of: header, in: headers)
        guard value.hasPrefix("sha256=") else {
            throw .malformed(header: header, reason: "it must start with sha256= followed by 64 hex digits")
        }
        guard let mac = Hex.decode(value.dropFirst("sha256=".count)), mac.count == SignatureMAC.byteCount else {
            throw .malformed(header: header, reason: "sha256= must be followed by 64 hex digits")
        }
        guard SignatureMAC.anyMatches([mac], keys: keys, body: body) else { throw .mismatch(header: header) }
    }

    private func verifyStripe(_ headers: [HeaderField], _ body: [UInt8], _ now: Int64) throws(VerificationFailure) {
        let header = "Stripe-Signature"
        let value = try Self.value(of: header, in: headers)
        var timestampValue: Substring?
        var candidates: [[UInt8]] = []
        var versionOneEntries = 0
        for item in value.split(separator: ",") {
            let item = item.trimmingHTTPWhitespace()
            guard let equals = item.firstIndex(of: "=") else { continue }
            let key = item[..<equals]
            let itemValue = item[item.index(after: equals)...]
            switch key {
            case "t":
                guard timestampValue == nil else {
                    throw .malformed(header: header, reason: "it has more than one t= timestamp")
                }
                timestampValue = itemValue
            case "v1":
                versionOneEntries += 1
                if let mac = Hex.decode(itemValue), mac.count == SignatureMAC.byteCount { candidates.append(mac) }
            default:
                continue  // v0 and schemes to come are ignored
            }
        }
        guard let timestampValue else {
            throw .malformed(header: header, reason: "it has no t= timestamp")
        }
        guard let timestamp = Self.unixSeconds(timestampValue) else {
            throw .malformed(header: header, reason: "its t= timestamp must be whole seconds since 1970 in decimal digits")
        }
        guard versionOneEntries > 0 else {
            throw .malformed(header: header, reason: "it has no v1= signature")
        }
        guard !candidates.isEmpty else {
            throw .malformed(header: header, reason: "no v1= entry holds 64 hex digits")
        }

        try checkTimestamp(timestamp, header: header, now: now)
        let prefix = Array("\(timestamp).".utf8)
        guard SignatureMAC.anyMatches(candidates, keys: keys, prefix: prefix, body: body) else {
            throw .mismatch(header: header)
        }
    }

    private func verifyHMAC(_ headers: [HeaderField], _ body: [UInt8]) throws(VerificationFailure) {
        let header = configuredHeader
        var value = try Self.value(of: header, in: headers)
        if !prefix.isEmpty {
            guard value.hasPrefix(prefix) else {
                throw .malformed(header: header, reason: "it must start with \(prefix)")
            }
            value = value.dropFirst(prefix.count)
        }
        let mac: [UInt8]?
        let expected: String
        switch encoding {
        case .hex:
            mac = Hex.decode(value)
            expected = "64 hex digits"
        case .base64:
            mac = Base64.decode(value)
            expected = "the base64 of 32 bytes"
        }
        guard let mac, mac.count == SignatureMAC.byteCount else {
            let what = prefix.isEmpty ? "it" : "the part after \(prefix)"
            throw .malformed(header: header, reason: "\(what) must be an HMAC-SHA256 in \(expected)")
        }
        guard SignatureMAC.anyMatches([mac], keys: keys, body: body) else { throw .mismatch(header: header) }
    }

    // MARK: Helpers

    /// The value of the one field named `name`, without surrounding spaces and tabs.
    private static func value(of name: String, in headers: [HeaderField]) throws(VerificationFailure) -> Substring {
        var found: Substring?
        for field in headers where field.name.caseInsensitiveEquals(name) {
            guard found == nil else { throw .malformed(header: name, reason: "it appears more than once") }
            found = Substring(field.value).trimmingHTTPWhitespace()
        }
        guard let found else { throw .missing(header: name) }
        return found
    }

    /// Decimal digits only (no sign, no spaces), as a number of seconds.
    private static func unixSeconds(_ text: Substring) -> Int64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        return Int64(text)
    }

    /// Refuses `seconds` when it lies further than the tolerance from `now` (in milliseconds).
    private func checkTimestamp(_ seconds: Int64, header: String, now: Int64) throws(VerificationFailure) {
        let (signed, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        guard !overflow else { throw .futureTimestamp(header: header) }
        let (age, ageOverflow) = now.subtractingReportingOverflow(signed)
        if ageOverflow { throw now > 0 ? .staleTimestamp(header: header) : .futureTimestamp(header: header) }
        if age > toleranceMilliseconds { throw .staleTimestamp(header: header) }
        if age < -toleranceMilliseconds { throw .futureTimestamp(header: header) }
    }

    /// `duration` in whole milliseconds, clamped to `0...Int64.max`.
    private static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        guard !overflow else { return .max }
        let (total, sumOverflow) = whole.addingReportingOverflow(attoseconds / 1_000_000_000_000_000)
        return sumOverflow ? .max : total
    }
}
