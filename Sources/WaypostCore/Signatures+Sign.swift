// Outbound signing (SPEC §9): Standard Webhooks headers on every delivery attempt.

import Crypto

/// Signs a route's outbound deliveries with Standard Webhooks headers (SPEC §9,
/// https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md).
///
/// Built once per route at start-up; ``headers(messageID:timestampSeconds:body:)`` is called
/// for every attempt, with a fresh timestamp and the exact body bytes sent.
///
/// ```swift
/// // The Standard Webhooks test vector: secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
/// let fields = signer.headers(
///     messageID: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestampSeconds: 1614265330,
///     body: Array(#"{"test": 2432232314}"#.utf8))
/// // webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek
/// // webhook-timestamp: 1614265330
/// // webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
/// ```
public struct OutboundSigner: Sendable {
    /// The names of the headers ``headers(messageID:timestampSeconds:body:)`` returns, lowercased:
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`. Fields of these names from the
    /// source must be removed before the signed ones are added (SPEC §9: replaced, not duplicated).
    public static let headerNames = [
        StandardWebhooks.idHeader, StandardWebhooks.timestampHeader, StandardWebhooks.signatureHeader,
    ]

    private let keys: [SymmetricKey]

    /// Creates the signer of one route.
    ///
    /// - Parameters:
    ///   - config: The route's `sign` block.
    ///   - secrets: The secrets as ``Secrets/load(_:environment:)`` returns them, each
    ///     `whsec_<base64>`; several give several signatures, so that the upstream may rotate.
    /// - Throws: ``SecretError`` naming `config.secret` (never the value) when `secrets` is empty
    ///   or a secret lacks the `whsec_` prefix or is not base64 after it.
    public init(config: SignConfig, secrets: [String]) throws(SecretError) {
        switch config.scheme {
        case .standardWebhooks:
            keys = try StandardWebhooks.keys(from: secrets, source: config.secret)
        }
    }

    /// The three headers of one attempt, in this order:
    /// - `webhook-id`: `messageID` (the correlation id, the same on every attempt);
    /// - `webhook-timestamp`: `timestampSeconds` in decimal;
    /// - `webhook-signature`: `v1,<base64>` for each secret, space-separated, each the
    ///   HMAC-SHA256 of `{messageID}.{timestampSeconds}.{body}`.
    public func headers(messageID: String, timestampSeconds: Int64, body: [UInt8]) -> [HeaderField] {
        let prefix = StandardWebhooks.signedPrefix(id: messageID, timestamp: timestampSeconds)
        let signatures = keys.map { key in
            "v1," + Base64.encode(Array(SignatureMAC.compute(key: key, prefix: prefix, body: body)))
        }
        return [
            HeaderField(name: StandardWebhooks.idHeader, value: messageID),
            HeaderField(name: StandardWebhooks.timestampHeader, value: String(timestampSeconds)),
            HeaderField(name: StandardWebhooks.signatureHeader, value: signatures.joined(separator: " ")),
        ]
    }
}
