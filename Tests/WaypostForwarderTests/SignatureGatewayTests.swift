import Crypto
import Foundation
import Testing
import WaypostCore
import WaypostForwarder
import WaypostJournal

@Suite("Signatures at the edge, over real sockets")
struct SignatureGatewayTests {
    static let githubSecret = "It's a Secret to Everybody"

    static func githubSignature(_ body: String, secret: String = githubSecret) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    @Test("a route with verify stores only authentic requests; failures are 401 problems naming what was wrong")
    func inboundVerification() async throws {
        let upstream = try await TestUpstream.start()
        defer { Task { await upstream.stop() } }
        let verify = VerifyConfig(scheme: .github, secret: SecretSource(.env("GITHUB_SECRET")))
        let verifier = try InboundVerifier(config: verify, secrets: [Self.githubSecret])
        try await withGateway(
            routes: [RouteConfig(name: "github", path: "/hooks/github", upstream: upstream.url, verify: verify)],
            verifiers: ["github": verifier]
        ) { gateway in
            let body = "{\"zen\":\"Keep it logically awesome.\"}"
            let good = try await gateway.send(
                "POST", "/hooks/github", headers: [HeaderField(name: "X-Hub-Signature-256", value: Self.githubSignature(body))], body: body)
            #expect(good.status == 202)

            let cases: [(String, [HeaderField], String)] = [
                ("signature-mismatch", [HeaderField(name: "X-Hub-Signature-256", value: Self.githubSignature(body))], body + " "),
                (
                    "signature-mismatch", [HeaderField(name: "X-Hub-Signature-256", value: Self.githubSignature(body, secret: "wrong"))],
                    body
                ),
                ("signature-missing", [], body),
                ("signature-malformed", [HeaderField(name: "X-Hub-Signature-256", value: "sha256=not-hex")], body),
            ]
            for (slug, headers, sent) in cases {
                let refused = try await gateway.send("POST", "/hooks/github", headers: headers, body: sent)
                #expect(refused.status == 401, "\(slug)")
                #expect(refused.header("Content-Type") == "application/problem+json")
                let problem = try #require(try JSONSerialization.jsonObject(with: Data(refused.body)) as? [String: Any])
                #expect(problem["type"] as? String == "urn:waypost:problem:\(slug)")
                let detail = try #require(problem["detail"] as? String)
                #expect(detail.contains("X-Hub-Signature-256"), "\(detail)")
                #expect(!detail.contains(Self.githubSecret) && !detail.contains(Self.githubSignature(body).dropFirst(7)), "\(detail)")
            }
            let id = try #require(good.header("X-Correlation-ID"))
            try await gateway.delivery.waitForStates([id], in: ["delivered"])
            #expect(upstream.requests.count == 1)
            #expect(gateway.delivery.writer.statistics.messages == 1)
        }
    }

    @Test("a route with sign: every attempt carries webhook-id, a fresh webhook-timestamp and a signature over the bytes sent")
    func outboundSigning() async throws {
        let secret = "whsec_" + Data("a signing key of enough bytes!!".utf8).base64EncodedString()
        let upstream = try await TestUpstream.start { request in
            // Retry-After: 2 puts the second attempt in a later second than the first (backoff
            // alone has jitter and could retry within the same second).
            request.header("X-Waypost-Attempt") == "1"
                ? .respond(status: 503, headers: [HeaderField(name: "Retry-After", value: "2")]) : .ok
        }
        defer { Task { await upstream.stop() } }
        let sign = SignConfig(secret: SecretSource(.env("SIGNING_SECRET")))
        let signer = try OutboundSigner(config: sign, secrets: [secret])
        try await withGateway(
            routes: [
                RouteConfig(
                    name: "r", path: "/", upstream: upstream.url,
                    retry: RetryPolicy(initial: .milliseconds(100), factor: 1, maxDelay: .milliseconds(100)), sign: sign)
            ],
            signers: ["r/r": signer]
        ) { gateway in
            let accepted = try await gateway.send(
                "POST", "/x",
                headers: [HeaderField(name: "webhook-signature", value: "v1,forged"), HeaderField(name: "Webhook-Id", value: "forged")],
                body: "{\"amount\":42}")
            let id = try #require(accepted.header("X-Correlation-ID"))
            try await gateway.delivery.waitForStates([id], in: ["delivered"], timeout: .seconds(15))
        }
        let requests = upstream.requests
        #expect(requests.count == 2)
        let verifier = try InboundVerifier(
            config: VerifyConfig(scheme: .standardWebhooks, secret: SecretSource(.env("X"))), secrets: [secret])
        var timestamps: [String] = []
        for request in requests {
            let webhookHeaders = request.headers.filter { $0.name.lowercased().hasPrefix("webhook-") }
            #expect(webhookHeaders.count == 3, "\(webhookHeaders)")
            #expect(request.header("webhook-id") == request.header("X-Correlation-ID"))
            timestamps.append(request.header("webhook-timestamp") ?? "")
            #expect(verifier.verify(headers: request.headers, body: request.body, nowMilliseconds: Timestamp.now()) == nil)
        }
        #expect(timestamps[0] != timestamps[1], "the timestamp was not fresh on the retry")
    }
}
