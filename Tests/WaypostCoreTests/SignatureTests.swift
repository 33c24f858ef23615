import Crypto
import Foundation
import Testing
import WaypostCore

// Signatures of SPEC §9. Expected MACs are either published by the scheme's authors (GitHub's
// example, the Standard Webhooks test vector; both also checked with `openssl dgst -hmac`) or
// computed here with swift-crypto and Foundation's base64 directly, not through Waypost's codecs.

// MARK: - Independent helpers

/// HMAC-SHA256 computed with swift-crypto directly.
private func hmacSHA256(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
    Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
}

private func hmacSHA256(key: String, _ message: String) -> [UInt8] {
    hmacSHA256(key: Array(key.utf8), Array(message.utf8))
}

private func hexLower(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
}

private func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

private func fields(_ pairs: [(String, String)]) -> [HeaderField] {
    pairs.map { HeaderField(name: $0.0, value: $0.1) }
}

private let anySource = SecretSource(.env("WEBHOOK_SECRET"))

/// The secrets and expected MACs (or their first 16 characters) that a failure's texts reveal.
private func leaks(_ failure: VerificationFailure?, secrets: [String], expectedMACs: [[UInt8]]) -> [String] {
    guard let failure else { return [] }
    var texts = [failure.detail, failure.header, failure.title]
    if case .malformed(_, let reason) = failure { texts.append(reason) }
    var forbidden: [String] = []
    for secret in secrets {
        forbidden.append(secret)
        if secret.hasPrefix("whsec_") { forbidden.append(String(secret.dropFirst(6))) }
    }
    for mac in expectedMACs {
        forbidden += [hexLower(mac), hexLower(mac).uppercased(), base64(mac)]
        forbidden += [String(hexLower(mac).prefix(16)), String(base64(mac).prefix(16))]
    }
    return forbidden.filter { value in texts.contains { $0.contains(value) } }
}

/// Expects that nothing a failure says reveals a secret or an expected MAC.
private func expectNoLeak(
    _ failure: VerificationFailure?, secrets: [String], expectedMACs: [[UInt8]],
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let revealed = leaks(failure, secrets: secrets, expectedMACs: expectedMACs)
    #expect(revealed.isEmpty, "\(String(describing: failure)) reveals \(revealed)", sourceLocation: sourceLocation)
}

@Suite("Signatures (SPEC §9)")
struct SignatureTests {

    // MARK: - Standard Webhooks

    /// The test vector of the Standard Webhooks specification.
    enum Vector {
        static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        static let id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
        static let timestamp: Int64 = 1_614_265_330
        static let body = Array(#"{"test": 2432232314}"#.utf8)
        static let signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        static let now = timestamp * 1000 + 1234

        static var key: [UInt8] { Array(Data(base64Encoded: String(secret.dropFirst(6)))!) }

        static func headers(
            id: String? = id, timestamp: String? = "1614265330", signature: String? = signature
        ) -> [HeaderField] {
            var result = [HeaderField(name: "Content-Type", value: "application/json")]
            if let id { result.append(HeaderField(name: "webhook-id", value: id)) }
            if let timestamp { result.append(HeaderField(name: "webhook-timestamp", value: timestamp)) }
            if let signature { result.append(HeaderField(name: "webhook-signature", value: signature)) }
            return result
        }

        /// The MAC of a request, computed independently.
        static func mac(key: [UInt8] = key, id: String = id, timestamp: Int64 = timestamp, body: [UInt8] = body) -> [UInt8] {
            hmacSHA256(key: key, Array("\(id).\(timestamp).".utf8) + body)
        }

        static func verifier(secrets: [String] = [secret], tolerance: Duration = .seconds(300)) throws -> InboundVerifier {
            try InboundVerifier(
                config: VerifyConfig(scheme: .standardWebhooks, secret: anySource, tolerance: tolerance), secrets: secrets)
        }
    }

    @Test func standardWebhooksVectorIsRecomputedIndependently() {
        // Guards the vector itself: swift-crypto + Foundation agree with the published signature.
        #expect("v1," + base64(Vector.mac()) == Vector.signature)
    }

    @Test func standardWebhooksAcceptsThePublishedVector() throws {
        let verifier = try Vector.verifier()
        #expect(verifier.verify(headers: Vector.headers(), body: Vector.body, nowMilliseconds: Vector.now) == nil)
    }

    @Test func standardWebhooksHeaderNamesMatchInAnyCase() throws {
        let headers = fields([
            ("Webhook-Id", Vector.id), ("WEBHOOK-TIMESTAMP", "1614265330"), ("Webhook-Signature", Vector.signature),
        ])
        #expect(try Vector.verifier().verify(headers: headers, body: Vector.body, nowMilliseconds: Vector.now) == nil)
    }

    @Test func standardWebhooksRejectsTampering() throws {
        let verifier = try Vector.verifier()
        let tamperedBody = Array(#"{"test": 2432232315}"#.utf8)
        let failure = verifier.verify(headers: Vector.headers(), body: tamperedBody, nowMilliseconds: Vector.now)
        #expect(failure == .mismatch(header: "webhook-signature"))
        expectNoLeak(failure, secrets: [Vector.secret], expectedMACs: [Vector.mac(body: tamperedBody)])

        let otherID = verifier.verify(headers: Vector.headers(id: "msg_other"), body: Vector.body, nowMilliseconds: Vector.now)
        #expect(otherID == .mismatch(header: "webhook-signature"))
        expectNoLeak(otherID, secrets: [Vector.secret], expectedMACs: [Vector.mac(id: "msg_other")])

        let otherTimestamp = verifier.verify(
            headers: Vector.headers(timestamp: "1614265331"), body: Vector.body, nowMilliseconds: Vector.now)
        #expect(otherTimestamp == .mismatch(header: "webhook-signature"))

        // A body that is one byte longer (e.g. a trailing newline added in transit).
        let longer = verifier.verify(headers: Vector.headers(), body: Vector.body + [0x0A], nowMilliseconds: Vector.now)
        #expect(longer == .mismatch(header: "webhook-signature"))
    }

    @Test func standardWebhooksRejectsAWrongSecret() throws {
        let wrong = "whsec_" + base64(Array("another secret of 24 byt".utf8))
        let failure = try Vector.verifier(secrets: [wrong])
            .verify(headers: Vector.headers(), body: Vector.body, nowMilliseconds: Vector.now)
        #expect(failure == .mismatch(header: "webhook-signature"))
        expectNoLeak(failure, secrets: [wrong, Vector.secret], expectedMACs: [Vector.mac(key: Array("another secret of 24 byt".utf8))])
    }

    @Test func standardWebhooksRotation() throws {
        let old = "whsec_" + base64(Array(repeating: 7, count: 32))
        // The second of two configured secrets matches.
        #expect(
            try Vector.verifier(secrets: [old, Vector.secret])
                .verify(headers: Vector.headers(), body: Vector.body, nowMilliseconds: Vector.now) == nil)
        // Several entries, only the last valid; unknown versions and junk are ignored.
        let oldSignature = "v1," + base64(Vector.mac(key: Array(repeating: 7, count: 32)))
        let several = "v1a,\(base64(Array(repeating: 1, count: 32))) \(oldSignature) v2,abc   \(Vector.signature)"
        #expect(
            try Vector.verifier()
                .verify(headers: Vector.headers(signature: several), body: Vector.body, nowMilliseconds: Vector.now) == nil)
        // A valid entry next to an undecodable one still suffices.
        #expect(
            try Vector.verifier()
                .verify(headers: Vector.headers(signature: "v1,%%% \(Vector.signature)"), body: Vector.body, nowMilliseconds: Vector.now)
                == nil)
        // Several entries, none valid.
        let failure = try Vector.verifier()
            .verify(
                headers: Vector.headers(signature: oldSignature + " v1," + base64(Array(repeating: 2, count: 32))),
                body: Vector.body, nowMilliseconds: Vector.now)
        #expect(failure == .mismatch(header: "webhook-signature"))
        expectNoLeak(failure, secrets: [Vector.secret], expectedMACs: [Vector.mac()])
    }

    @Test func standardWebhooksSignatureOnlyInAnotherVersionIsMalformed() throws {
        let valid = String(Vector.signature.dropFirst(3))
        let failure = try Vector.verifier()
            .verify(headers: Vector.headers(signature: "v1a,\(valid) v2,\(valid)"), body: Vector.body, nowMilliseconds: Vector.now)
        guard case .malformed(let header, let reason) = failure else {
            Issue.record("expected malformed, got \(String(describing: failure))")
            return
        }
        #expect(header == "webhook-signature")
        #expect(reason.contains("v1"))
        expectNoLeak(failure, secrets: [Vector.secret], expectedMACs: [Vector.mac()])
    }

    @Test(arguments: [
        ("webhook-signature", Vector.headers(signature: nil)),
        ("webhook-id", Vector.headers(id: nil)),
        ("webhook-timestamp", Vector.headers(timestamp: nil)),
        ("webhook-signature", [HeaderField]()),
    ])
    func standardWebhooksMissingHeaders(header: String, headers: [HeaderField]) throws {
        let failure = try Vector.verifier().verify(headers: headers, body: Vector.body, nowMilliseconds: Vector.now)
        #expect(failure == .missing(header: header))
        #expect(failure?.detail.contains(header) == true)
        expectNoLeak(failure, secrets: [Vector.secret], expectedMACs: [Vector.mac()])
    }

    @Test(arguments: [
        ("webhook-signature", Vector.headers(signature: "v1,not*base64")),
        ("webhook-signature", Vector.headers(signature: "v1,")),
        ("webhook-signature", Vector.headers(signature: "v1," + base64(Array(repeating: 1, count: 20)))),  // SHA-1 sized
        ("webhook-signature", Vector.headers(signature: String(Vector.signature.dropFirst(3)))),  // no "v1,"
        ("webhook-signature", Vector.headers() + fields([("webhook-signature", Vector.signature)])),  // twice
        ("webhook-timestamp", Vector.headers(timestamp: "abc")),
        ("webhook-timestamp", Vector.headers(timestamp: "-1614265330")),
        ("webhook-timestamp", Vector.headers(timestamp: "1614265330.5")),
        ("webhook-timestamp", Vector.headers(timestamp: "+1614265330")),
        ("webhook-timestamp", Vector.headers(timestamp: "")),
        ("webhook-timestamp", Vector.headers(timestamp: "99999999999999999999999")),
        ("webhook-id", Vector.headers(id: "")),
    ])
    func standardWebhooksMalformedHeaders(header: String, headers: [HeaderField]) throws {
        let failure = try Vector.verifier().verify(headers: headers, body: Vector.body, nowMilliseconds: Vector.now)
        guard case .malformed(let actualHeader, _) = failure else {
            Issue.record("expected malformed \(header), got \(String(describing: failure))")
            return
        }
        #expect(actualHeader == header)
        #expect(failure?.detail.contains(header) == true)
        expectNoLeak(failure, secrets: [Vector.secret], expectedMACs: [Vector.mac()])
    }

    /// (now minus the signed time in ms, tolerance in seconds, the expected outcome)
    @Test(
        arguments: [
            (Int64(0), 300, nil),
            (300_000, 300, nil),
            (-300_000, 300, nil),
            (300_001, 300, VerificationFailure.staleTimestamp(header: "webhook-timestamp")),
            (86_400_000, 300, .staleTimestamp(header: "webhook-timestamp")),
            (-300_001, 300, .futureTimestamp(header: "webhook-timestamp")),
            (-86_400_000, 300, .futureTimestamp(header: "webhook-timestamp")),
            (599_000, 600, nil),
            (-599_000, 600, nil),
            (601_000, 600, .staleTimestamp(header: "webhook-timestamp")),
        ] as [(Int64, Int, VerificationFailure?)])
    func standardWebhooksTolerance(offset: Int64, toleranceSeconds: Int, expected: VerificationFailure?) throws {
        let verifier = try Vector.verifier(tolerance: .seconds(toleranceSeconds))
        let failure = verifier.verify(
            headers: Vector.headers(), body: Vector.body, nowMilliseconds: Vector.timestamp * 1000 + offset)
        #expect(failure == expected)
        expectNoLeak(failure, secrets: [Vector.secret], expectedMACs: [Vector.mac()])
    }

    @Test func standardWebhooksStaleTimestampIsRefusedEvenWithAValidSignature() throws {
        // A replay a day later: the signature is genuine, the timestamp is not recent.
        let failure = try Vector.verifier()
            .verify(headers: Vector.headers(), body: Vector.body, nowMilliseconds: Vector.now + 86_400_000)
        #expect(failure == .staleTimestamp(header: "webhook-timestamp"))
    }

    @Test(arguments: [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  // no whsec_ prefix
        "whsec_",  // nothing after it
        "whsec_not*base64!",
        "whsec_abcde",  // a base64 length that cannot be
    ])
    func standardWebhooksRefusesMalformedSecrets(secret: String) {
        let source = SecretSource(.file("/run/secrets/hooks"))
        let config = VerifyConfig(scheme: .standardWebhooks, secret: source)
        let error = #expect(throws: SecretError.self) { try InboundVerifier(config: config, secrets: [Vector.secret, secret]) }
        #expect(error?.message.contains("file /run/secrets/hooks") == true)
        #expect(error?.message.contains("secret 2 of 2") == true)
        let value = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
        if !value.isEmpty { #expect(error?.message.contains(value) == false) }
        #expect(error?.message.contains(Vector.secret) == false)
        #expect(throws: SecretError.self) { try OutboundSigner(config: SignConfig(secret: source), secrets: [secret]) }
    }

    @Test func verifierNeedsASecret() {
        for scheme in VerifyScheme.allCases {
            let config = VerifyConfig(scheme: scheme, secret: anySource, header: "X-Signature")
            let error = #expect(throws: SecretError.self) { try InboundVerifier(config: config, secrets: []) }
            #expect(error?.message.contains("WEBHOOK_SECRET") == true)
        }
    }

    // MARK: - GitHub

    /// GitHub's documented example (docs.github.com, "Validating webhook deliveries").
    enum GitHub {
        static let secret = "It's a Secret to Everybody"
        static let body = Array("Hello, World!".utf8)
        static let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        static let now: Int64 = 1_700_000_000_000

        static func verifier(secrets: [String] = [secret]) throws -> InboundVerifier {
            try InboundVerifier(config: VerifyConfig(scheme: .github, secret: anySource), secrets: secrets)
        }

        static func headers(_ value: String) -> [HeaderField] {
            fields([("X-GitHub-Event", "push"), ("X-Hub-Signature-256", value)])
        }
    }

    @Test func githubAcceptsTheDocumentedExample() throws {
        #expect(
            try GitHub.verifier().verify(headers: GitHub.headers(GitHub.signature), body: GitHub.body, nowMilliseconds: GitHub.now) == nil)
        // Also with the header name in lower case, as HTTP/2 sends it, and the digits in upper case.
        let upper = "sha256=" + GitHub.signature.dropFirst(7).uppercased()
        #expect(
            try GitHub.verifier()
                .verify(headers: fields([("x-hub-signature-256", upper)]), body: GitHub.body, nowMilliseconds: GitHub.now) == nil)
    }

    @Test func githubRejectsATamperedBodyAndAWrongSecret() throws {
        let tampered = Array("Hello, World?".utf8)
        let failure = try GitHub.verifier().verify(headers: GitHub.headers(GitHub.signature), body: tampered, nowMilliseconds: GitHub.now)
        #expect(failure == .mismatch(header: "X-Hub-Signature-256"))
        expectNoLeak(failure, secrets: [GitHub.secret], expectedMACs: [hmacSHA256(key: Array(GitHub.secret.utf8), tampered)])

        let wrong = try GitHub.verifier(secrets: ["It's a Secret to Nobody"])
            .verify(headers: GitHub.headers(GitHub.signature), body: GitHub.body, nowMilliseconds: GitHub.now)
        #expect(wrong == .mismatch(header: "X-Hub-Signature-256"))
        expectNoLeak(
            wrong, secrets: ["It's a Secret to Nobody"], expectedMACs: [hmacSHA256(key: "It's a Secret to Nobody", "Hello, World!")])
    }

    @Test func githubRotation() throws {
        #expect(
            try GitHub.verifier(secrets: ["new-secret", GitHub.secret])
                .verify(headers: GitHub.headers(GitHub.signature), body: GitHub.body, nowMilliseconds: GitHub.now) == nil)
    }

    @Test(arguments: [
        ("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", "sha256="),  // no prefix
        ("sha1=757107ea0eb2509fc211221cce984b8a37570b6d", "sha256="),
        ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g", "hex"),  // bad digit
        ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1", "hex"),  // odd length
        ("sha256=757107ea", "hex"),  // too short
        ("sha256=", "hex"),
    ])
    func githubMalformedHeaders(value: String, reasonMentions: String) throws {
        let failure = try GitHub.verifier().verify(headers: GitHub.headers(value), body: GitHub.body, nowMilliseconds: GitHub.now)
        guard case .malformed(let header, let reason) = failure else {
            Issue.record("expected malformed, got \(String(describing: failure))")
            return
        }
        #expect(header == "X-Hub-Signature-256")
        #expect(reason.contains(reasonMentions))
        expectNoLeak(failure, secrets: [GitHub.secret], expectedMACs: [hmacSHA256(key: GitHub.secret, "Hello, World!")])
    }

    @Test func githubMissingHeader() throws {
        let failure = try GitHub.verifier()
            .verify(headers: fields([("X-Hub-Signature", "sha1=0123")]), body: GitHub.body, nowMilliseconds: GitHub.now)
        #expect(failure == .missing(header: "X-Hub-Signature-256"))
        #expect(failure?.detail == "The request has no X-Hub-Signature-256 header; this route accepts only signed requests.")
    }

    // MARK: - Stripe

    enum Stripe {
        /// Stripe's secrets look like Standard Webhooks ones but are used as UTF-8 bytes.
        static let secret = "whsec_StripeStyleSecretUsedAsUTF8"
        static let body = Array(#"{"id":"evt_1","object":"event","type":"charge.succeeded"}"#.utf8)
        static let t: Int64 = 1_700_000_000
        static let now = t * 1000 + 20_000

        static func mac(secret: String = secret, t: Int64 = t, body: [UInt8] = body) -> [UInt8] {
            hmacSHA256(key: Array(secret.utf8), Array("\(t).".utf8) + body)
        }

        static var v1: String { "v1=" + hexLower(mac()) }

        static func verifier(secrets: [String] = [secret], tolerance: Duration = .seconds(300)) throws -> InboundVerifier {
            try InboundVerifier(config: VerifyConfig(scheme: .stripe, secret: anySource, tolerance: tolerance), secrets: secrets)
        }

        static func verify(
            _ value: String, body: [UInt8] = body, now: Int64 = now, secrets: [String] = [secret]
        ) throws
            -> VerificationFailure?
        {
            try verifier(secrets: secrets).verify(headers: fields([("Stripe-Signature", value)]), body: body, nowMilliseconds: now)
        }
    }

    @Test func stripeAcceptsAnIndependentlyComputedSignature() throws {
        #expect(try Stripe.verify("t=\(Stripe.t),\(Stripe.v1)") == nil)
        // With a v0 entry, spaces after commas, and the header name in lower case.
        let value = "t=\(Stripe.t), \(Stripe.v1), v0=\(hexLower(Array(repeating: 9, count: 32)))"
        #expect(
            try Stripe.verifier()
                .verify(headers: fields([("stripe-signature", value)]), body: Stripe.body, nowMilliseconds: Stripe.now) == nil)
    }

    @Test func stripeRejectsTamperingAndAWrongSecret() throws {
        var tampered = Stripe.body
        tampered[tampered.count - 2] = UInt8(ascii: "X")
        let failure = try Stripe.verify("t=\(Stripe.t),\(Stripe.v1)", body: tampered)
        #expect(failure == .mismatch(header: "Stripe-Signature"))
        expectNoLeak(failure, secrets: [Stripe.secret], expectedMACs: [Stripe.mac(body: tampered)])

        // The same signature presented with another timestamp.
        let moved = try Stripe.verify("t=\(Stripe.t + 1),\(Stripe.v1)")
        #expect(moved == .mismatch(header: "Stripe-Signature"))
        expectNoLeak(moved, secrets: [Stripe.secret], expectedMACs: [Stripe.mac(t: Stripe.t + 1)])

        let wrong = try Stripe.verify("t=\(Stripe.t),\(Stripe.v1)", secrets: ["whsec_another"])
        #expect(wrong == .mismatch(header: "Stripe-Signature"))
        expectNoLeak(wrong, secrets: ["whsec_another"], expectedMACs: [Stripe.mac(secret: "whsec_another")])

        // Only a v0 (test-mode) signature matches: v0 is never accepted.
        let onlyV0 = try Stripe.verify("t=\(Stripe.t),v1=\(hexLower(Array(repeating: 3, count: 32))),v0=\(hexLower(Stripe.mac()))")
        #expect(onlyV0 == .mismatch(header: "Stripe-Signature"))
    }

    @Test func stripeRotation() throws {
        // The second of two secrets matches.
        #expect(try Stripe.verify("t=\(Stripe.t),\(Stripe.v1)", secrets: ["whsec_old", Stripe.secret]) == nil)
        // Several v1 entries, only one valid (Stripe sends one per active secret while rolling).
        let other = "v1=" + hexLower(Stripe.mac(secret: "whsec_rolled"))
        #expect(try Stripe.verify("t=\(Stripe.t),\(other),\(Stripe.v1)") == nil)
        #expect(try Stripe.verify("t=\(Stripe.t),\(Stripe.v1),\(other)") == nil)
        // Upper-case hex is read too.
        #expect(try Stripe.verify("t=\(Stripe.t),v1=\(hexLower(Stripe.mac()).uppercased())") == nil)
        let none = try Stripe.verify("t=\(Stripe.t),\(other),v1=\(hexLower(Stripe.mac(secret: "x")))")
        #expect(none == .mismatch(header: "Stripe-Signature"))
        expectNoLeak(none, secrets: [Stripe.secret], expectedMACs: [Stripe.mac()])
    }

    @Test(
        arguments: [
            (Int64(300_000), nil),
            (-300_000, nil),
            (300_001, VerificationFailure.staleTimestamp(header: "Stripe-Signature")),
            (3_600_000, .staleTimestamp(header: "Stripe-Signature")),
            (-300_001, .futureTimestamp(header: "Stripe-Signature")),
            (-3_600_000, .futureTimestamp(header: "Stripe-Signature")),
        ] as [(Int64, VerificationFailure?)])
    func stripeTolerance(offset: Int64, expected: VerificationFailure?) throws {
        let failure = try Stripe.verify("t=\(Stripe.t),\(Stripe.v1)", now: Stripe.t * 1000 + offset)
        #expect(failure == expected)
        expectNoLeak(failure, secrets: [Stripe.secret], expectedMACs: [Stripe.mac()])
    }

    @Test func stripeMissingHeader() throws {
        let failure = try Stripe.verifier()
            .verify(headers: fields([("X-Stripe", "t=1")]), body: Stripe.body, nowMilliseconds: Stripe.now)
        #expect(failure == .missing(header: "Stripe-Signature"))
    }

    @Test(arguments: [
        ("\(Stripe.v1)", "t="),  // no timestamp
        ("t=\(Stripe.t)", "v1"),  // no signature
        ("t=\(Stripe.t),v0=\(hexLower(Array(repeating: 9, count: 32)))", "v1"),  // only v0
        ("t=\(Stripe.t),v1=zz\(hexLower(Stripe.mac()).dropFirst(2))", "hex"),  // bad hex
        ("t=\(Stripe.t),v1=\(hexLower(Stripe.mac()).dropLast(2))", "hex"),  // too short
        ("t=\(Stripe.t),v1=", "hex"),
        ("t=abc,\(Stripe.v1)", "t="),
        ("t=,\(Stripe.v1)", "t="),
        ("t=\(Stripe.t),t=\(Stripe.t),\(Stripe.v1)", "t="),  // two timestamps
        ("", "t="),
        ("garbage", "t="),
    ])
    func stripeMalformedHeaders(value: String, reasonMentions: String) throws {
        let failure = try Stripe.verify(value)
        guard case .malformed(let header, let reason) = failure else {
            Issue.record("expected malformed for \(value), got \(String(describing: failure))")
            return
        }
        #expect(header == "Stripe-Signature")
        #expect(reason.contains(reasonMentions))
        expectNoLeak(failure, secrets: [Stripe.secret], expectedMACs: [Stripe.mac()])
    }

    // MARK: - hmac-sha256

    enum Plain {
        static let secret = "plain-shared-secret"
        static let body: [UInt8] = [0x00, 0xFF, 0x10, 0x80] + Array("binary-safe body\r\n".utf8)
        static var mac: [UInt8] { hmacSHA256(key: Array(secret.utf8), body) }

        static func verify(
            _ value: String?, header: String = "X-Signature", encoding: SignatureEncoding = .hex, prefix: String? = nil,
            body: [UInt8] = body, secrets: [String] = [secret]
        ) throws -> VerificationFailure? {
            let config = VerifyConfig(
                scheme: .hmacSHA256, secret: anySource, header: header, encoding: encoding, prefix: prefix)
            let headers = value.map { fields([("x-signature", $0)]) } ?? []
            return try InboundVerifier(config: config, secrets: secrets).verify(headers: headers, body: body, nowMilliseconds: 0)
        }
    }

    @Test func hmacHexInEitherCase() throws {
        #expect(try Plain.verify(hexLower(Plain.mac)) == nil)
        #expect(try Plain.verify(hexLower(Plain.mac).uppercased()) == nil)
        // The header name is matched case-insensitively against the configured spelling.
        #expect(try Plain.verify(hexLower(Plain.mac), header: "X-SIGNATURE") == nil)
    }

    @Test func hmacBase64() throws {
        #expect(try Plain.verify(base64(Plain.mac), encoding: .base64) == nil)
        // Hex is not base64 and base64 is not hex.
        #expect(try Plain.verify(hexLower(Plain.mac), encoding: .base64).map(isMalformed) == true)
        #expect(try Plain.verify(base64(Plain.mac), encoding: .hex).map(isMalformed) == true)
    }

    @Test func hmacPrefixIsRequiredWhenConfigured() throws {
        #expect(try Plain.verify("sha256=" + hexLower(Plain.mac), prefix: "sha256=") == nil)
        #expect(try Plain.verify("sha256=" + base64(Plain.mac), encoding: .base64, prefix: "sha256=") == nil)

        let withoutPrefix = try Plain.verify(hexLower(Plain.mac), prefix: "sha256=")
        guard case .malformed(let header, let reason) = withoutPrefix else {
            Issue.record("expected malformed, got \(String(describing: withoutPrefix))")
            return
        }
        #expect(header == "X-Signature")
        #expect(reason.contains("start with sha256="))
        expectNoLeak(withoutPrefix, secrets: [Plain.secret], expectedMACs: [Plain.mac])

        // Without a configured prefix, a prefixed value is not hex.
        #expect(try Plain.verify("sha256=" + hexLower(Plain.mac)).map(isMalformed) == true)
    }

    @Test func hmacRejectsTamperingWrongSecretsAndMissingHeader() throws {
        let tampered = Plain.body + [0]
        let failure = try Plain.verify(hexLower(Plain.mac), body: tampered)
        #expect(failure == .mismatch(header: "X-Signature"))
        expectNoLeak(failure, secrets: [Plain.secret], expectedMACs: [hmacSHA256(key: Array(Plain.secret.utf8), tampered)])

        let wrong = try Plain.verify(hexLower(Plain.mac), secrets: ["other"])
        #expect(wrong == .mismatch(header: "X-Signature"))
        expectNoLeak(wrong, secrets: ["other"], expectedMACs: [hmacSHA256(key: Array("other".utf8), Plain.body)])

        #expect(try Plain.verify(hexLower(Plain.mac), secrets: ["other", Plain.secret]) == nil)
        #expect(try Plain.verify(nil) == .missing(header: "X-Signature"))
        #expect(try Plain.verify("").map(isMalformed) == true)
    }

    // MARK: - What a failure says

    @Test func everyFailureNamesItsHeaderInItsDetail() {
        let failures: [VerificationFailure] = [
            .missing(header: "X-Sig"), .malformed(header: "X-Sig", reason: "it has no v1= signature"),
            .staleTimestamp(header: "X-Sig"), .futureTimestamp(header: "X-Sig"), .mismatch(header: "X-Sig"),
        ]
        for failure in failures {
            #expect(failure.header == "X-Sig")
            #expect(failure.detail.contains("X-Sig"))
        }
        #expect(Set(failures.map(\.title)).count == failures.count)
        #expect(failures[1].detail == "The X-Sig header is malformed: it has no v1= signature.")
    }

    @Test func theLeakCheckCatchesALeak() {
        // Guards `leaks`, on which the checks above rely.
        let mac = Stripe.mac()
        #expect(!leaks(.malformed(header: "X", reason: "expected \(hexLower(mac))"), secrets: [], expectedMACs: [mac]).isEmpty)
        #expect(!leaks(.mismatch(header: "X-\(base64(mac))"), secrets: [], expectedMACs: [mac]).isEmpty)
        #expect(
            !leaks(.malformed(header: "X", reason: "key MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), secrets: [Vector.secret], expectedMACs: [])
                .isEmpty)
        #expect(leaks(.mismatch(header: "X"), secrets: [Vector.secret], expectedMACs: [mac]).isEmpty)
    }

    // MARK: - Outbound signing

    @Test func signerReproducesThePublishedVector() throws {
        let signer = try OutboundSigner(config: SignConfig(secret: anySource), secrets: [Vector.secret])
        let headers = signer.headers(messageID: Vector.id, timestampSeconds: Vector.timestamp, body: Vector.body)
        #expect(
            headers
                == fields([
                    ("webhook-id", Vector.id), ("webhook-timestamp", "1614265330"), ("webhook-signature", Vector.signature),
                ]))
        #expect(headers.map(\.name) == OutboundSigner.headerNames)
    }

    @Test func signerRoundTripsThroughTheVerifier() throws {
        let secret = "whsec_" + base64((0..<32).map { UInt8($0 * 7 & 0xFF) })
        let signer = try OutboundSigner(config: SignConfig(secret: anySource), secrets: [secret])
        let verifier = try Vector.verifier(secrets: [secret])
        let body: [UInt8] = Array(0...255)
        let now: Int64 = 1_732_000_000_123
        let headers = signer.headers(messageID: "01JD7Z8W1V3K4M5N6P7Q8R9S0T", timestampSeconds: now / 1000, body: body)
        #expect(headers.first { $0.name == "webhook-timestamp" }?.value == "1732000000")
        #expect(headers.first { $0.name == "webhook-id" }?.value == "01JD7Z8W1V3K4M5N6P7Q8R9S0T")
        #expect(verifier.verify(headers: headers, body: body, nowMilliseconds: now) == nil)
        #expect(verifier.verify(headers: headers, body: body + [1], nowMilliseconds: now) == .mismatch(header: "webhook-signature"))
        let signature = try #require(headers.first { $0.name == "webhook-signature" }?.value)
        let key = Array(Data(base64Encoded: String(secret.dropFirst(6)))!)
        #expect(signature == "v1," + base64(hmacSHA256(key: key, Array("01JD7Z8W1V3K4M5N6P7Q8R9S0T.1732000000.".utf8) + body)))
    }

    @Test func signerWithTwoSecretsGivesTwoEntriesEachValid() throws {
        let second = "whsec_" + base64(Array(repeating: 0x42, count: 24))
        let signer = try OutboundSigner(config: SignConfig(secret: anySource), secrets: [Vector.secret, second])
        let headers = signer.headers(messageID: Vector.id, timestampSeconds: Vector.timestamp, body: Vector.body)
        let signature = try #require(headers.first { $0.name == "webhook-signature" }?.value)
        let entries = signature.split(separator: " ")
        #expect(entries.count == 2)
        #expect(entries.first.map(String.init) == Vector.signature)
        #expect(entries.allSatisfy { $0.hasPrefix("v1,") })
        // Each secret alone accepts the request: either side of a rotation works.
        #expect(
            try Vector.verifier(secrets: [Vector.secret]).verify(headers: headers, body: Vector.body, nowMilliseconds: Vector.now) == nil)
        #expect(try Vector.verifier(secrets: [second]).verify(headers: headers, body: Vector.body, nowMilliseconds: Vector.now) == nil)
    }

    @Test func signerTimestampHeaderEqualsTheInput() throws {
        let signer = try OutboundSigner(config: SignConfig(secret: anySource), secrets: [Vector.secret])
        for timestamp: Int64 in [0, 1, 1_614_265_330, 4_102_444_800] {
            let headers = signer.headers(messageID: "m", timestampSeconds: timestamp, body: [])
            #expect(headers[1] == HeaderField(name: "webhook-timestamp", value: String(timestamp)))
        }
    }

    private func isMalformed(_ failure: VerificationFailure) -> Bool {
        if case .malformed = failure { return true }
        return false
    }
}

// MARK: - Secrets.load

@Suite("Secrets.load (SPEC §9)")
final class SecretsLoadTests {
    /// A fresh directory for each test, removed afterwards.
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("waypost-secrets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }

    private func file(_ name: String, _ contents: String) throws -> String {
        let path = directory.appendingPathComponent(name).path
        try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func fromTheEnvironment() throws {
        let source = SecretSource(.env("HOOK_SECRET"))
        #expect(try Secrets.load(source, environment: ["HOOK_SECRET": "s3cr3t", "OTHER": "x"]) == ["s3cr3t"])
        #expect(try Secrets.load(source, environment: ["HOOK_SECRET": "new old"]) == ["new", "old"])
        #expect(try Secrets.load(source, environment: ["HOOK_SECRET": " new\t old\n"]) == ["new", "old"])
    }

    @Test func fromAFileWithATrailingNewline() throws {
        let path = try file("secret", "s3cr3t\n")
        #expect(try Secrets.load(SecretSource(.file(path)), environment: [:]) == ["s3cr3t"])
        let crlf = try file("crlf", "s3cr3t\r\n")
        #expect(try Secrets.load(SecretSource(.file(crlf)), environment: [:]) == ["s3cr3t"])
        let none = try file("no-newline", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        #expect(try Secrets.load(SecretSource(.file(none)), environment: [:]) == ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    }

    @Test func severalSecretsForRotation() throws {
        let path = try file("rotation", "whsec_new whsec_old\nwhsec_older\n")
        #expect(try Secrets.load(SecretSource(.file(path)), environment: [:]) == ["whsec_new", "whsec_old", "whsec_older"])
    }

    @Test func secretsKeepTheirOtherCharacters() throws {
        // Only whitespace separates: punctuation, '=' padding and non-ASCII stay in the secret.
        #expect(try Secrets.load(SecretSource(.env("S")), environment: ["S": "It's=a+Secret/ü"]) == ["It's=a+Secret/ü"])
    }

    @Test func aMissingVariableIsNamed() {
        let error = #expect(throws: SecretError.self) {
            try Secrets.load(SecretSource(.env("GITHUB_WEBHOOK_SECRET")), environment: ["OTHER": "value"])
        }
        #expect(error?.message.contains("environment variable GITHUB_WEBHOOK_SECRET") == true)
        #expect(error?.message.contains("not set") == true)
        #expect(error?.description == error?.message)
    }

    @Test(arguments: ["", " ", "\n", " \t\r\n "])
    func anEmptyVariableIsNamed(value: String) {
        let error = #expect(throws: SecretError.self) {
            try Secrets.load(SecretSource(.env("GITHUB_WEBHOOK_SECRET")), environment: ["GITHUB_WEBHOOK_SECRET": value])
        }
        #expect(error?.message == "environment variable GITHUB_WEBHOOK_SECRET is empty; it must hold the secret")
    }

    @Test(arguments: ["", "\n", "  \n\n"])
    func anEmptyFileIsNamed(contents: String) throws {
        let path = try file("empty", contents)
        let error = #expect(throws: SecretError.self) { try Secrets.load(SecretSource(.file(path)), environment: [:]) }
        #expect(error?.message.contains("file \(path)") == true)
        #expect(error?.message.contains("empty") == true)
    }

    @Test func aMissingFileIsNamed() {
        let path = directory.appendingPathComponent("does-not-exist").path
        let error = #expect(throws: SecretError.self) { try Secrets.load(SecretSource(.file(path)), environment: [:]) }
        #expect(error?.message.contains("file \(path)") == true)
        #expect(error?.message.contains("No such file") == true)
    }

    @Test func aDirectoryIsNotReadable() {
        let error = #expect(throws: SecretError.self) {
            try Secrets.load(SecretSource(.file(directory.path)), environment: [:])
        }
        #expect(error?.message.contains("file \(directory.path)") == true)
    }

    @Test(.enabled(if: getuid() != 0, "root reads files whatever their mode"))
    func anUnreadableFileIsNamed() throws {
        let path = try file("locked", "s3cr3t\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: path)
        let error = #expect(throws: SecretError.self) { try Secrets.load(SecretSource(.file(path)), environment: [:]) }
        #expect(error?.message.contains("file \(path)") == true)
        #expect(error?.message.contains("s3cr3t") == false)
    }

    @Test func aFileThatIsNotUTF8IsRefusedWithoutItsContents() throws {
        let path = directory.appendingPathComponent("binary").path
        try Data([0x73, 0x65, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: SecretError.self) { try Secrets.load(SecretSource(.file(path)), environment: [:]) }
        #expect(error?.message == "file \(path) is not UTF-8 text")
    }

    @Test func aHugeFileIsRefused() throws {
        let path = try file("huge", String(repeating: "a", count: Secrets.maxFileBytes + 1))
        let error = #expect(throws: SecretError.self) { try Secrets.load(SecretSource(.file(path)), environment: [:]) }
        #expect(error?.message.contains("file \(path) is larger than") == true)
    }
}
