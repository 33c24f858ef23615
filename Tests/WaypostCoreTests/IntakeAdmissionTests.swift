// The intake's rules for a request (SPEC §2) without a channel: table-driven heads, and the
// message a complete request makes.

import Crypto
import Foundation
import Testing
import WaypostCore

private let orders = RouteConfig(
    name: "orders", path: "/hooks/orders", upstream: "http://127.0.0.1:9/", mode: .sync, syncTimeout: .seconds(30),
    ordering: .key, orderingKey: .jsonPointer("/order/id"), maxBodyBytes: 100, maxHeaderBytes: 200,
    contentTypes: ["application/json"], validate: .json)
private let any = RouteConfig(name: "any", path: "/", upstream: "http://127.0.0.1:9/")
private let routes = RouteTable(routes: [orders, any])

private struct HeadCase: Sendable, CustomTestStringConvertible {
    var label: String
    var target: String
    var headers: [(String, String)]
    /// The problem's slug, `status`, or the route's name.
    var expected: String
    var testDescription: String { label }
}

private let json = ("Content-Type", "application/json")

private let headCases: [HeadCase] = [
    HeadCase(label: "absolute form", target: "http://a/b", headers: [], expected: "bad-request-target"),
    HeadCase(label: "a dot segment", target: "/hooks/../admin", headers: [], expected: "dot-segments"),
    HeadCase(label: "an encoded dot segment", target: "/hooks/%2E%2e/x?y", headers: [], expected: "dot-segments"),
    HeadCase(label: "a dot in a name is no segment", target: "/hooks/a.b", headers: [], expected: "any"),
    HeadCase(label: "the reserved prefix", target: "/_waypost/messages/x?wait=1", headers: [], expected: "status"),
    HeadCase(label: "the longest route wins", target: "/hooks/orders/7?x=1", headers: [json], expected: "orders"),
    HeadCase(
        label: "a media type not allowed", target: "/hooks/orders", headers: [("Content-Type", "text/plain")],
        expected: "unsupported-media-type"),
    HeadCase(label: "no media type where one is required", target: "/hooks/orders", headers: [], expected: "unsupported-media-type"),
    HeadCase(
        label: "media type parameters and case", target: "/hooks/orders", headers: [("content-type", "Application/JSON; charset=utf-8")],
        expected: "orders"),
    HeadCase(
        label: "headers past max_header_bytes", target: "/hooks/orders", headers: [json, ("X-Big", String(repeating: "a", count: 200))],
        expected: "headers-too-large"),
    HeadCase(
        label: "a Content-Length past max_body_bytes", target: "/hooks/orders", headers: [json, ("Content-Length", "101")],
        expected: "body-too-large"),
    HeadCase(
        label: "two correlation ids", target: "/x", headers: [("X-Correlation-ID", "a"), ("X-Correlation-ID", "b")],
        expected: "bad-correlation-id"),
    HeadCase(label: "a correlation id with a space", target: "/x", headers: [("X-Correlation-ID", "a b")], expected: "bad-correlation-id"),
]

@Suite("IntakeAdmission: the intake's rules, without a channel")
struct IntakeAdmissionTests {
    @Test("heads", arguments: headCases)
    fileprivate func head(_ c: HeadCase) {
        let decision = IntakeAdmission.head(target: c.target, headers: c.headers.map { (name: $0.0, value: $0.1) }, routes: routes)
        switch decision {
        case .reject(let problem): #expect(problem.slug == c.expected, "\(problem)")
        case .status: #expect(c.expected == "status")
        case .route(let route, _, _): #expect(route.name == c.expected)
        }
    }

    @Test("an accepted head carries the source's correlation id and the response pattern Prefer chose")
    func acceptedHead() {
        let decision = IntakeAdmission.head(
            target: "/x", headers: [(name: "X-Correlation-ID", value: "evt-1"), (name: "Prefer", value: "respond-async")], routes: routes)
        guard case .route(let route, let supplied, let pattern) = decision else {
            Issue.record("\(decision)")
            return
        }
        #expect(route.name == "any")
        #expect(supplied == "evt-1")
        #expect(
            pattern
                == ResponsePattern.choose(
                    mode: .async, syncTimeout: .seconds(30), preferences: Preferences(headerValues: ["respond-async"])))
    }

    private func message(
        _ route: String, fields: [HeaderField], body: String, verifier: InboundVerifier? = nil
    ) -> Result<IncomingMessage, Problem> {
        IntakeAdmission.message(
            route: route == "orders" ? orders : any, method: "POST", target: "/hooks/orders?x=1", fields: fields, body: Array(body.utf8),
            correlationID: "c1", correlationIDWasSupplied: false, verifier: verifier, now: 1_790_000_000_000, clientAddress: "192.0.2.1")
    }

    @Test("the message: hop-by-hop fields, Expect and an empty idempotency key left out; the ordering key from the body")
    func acceptedMessage() throws {
        let fields = [
            HeaderField(name: "Host", value: "a"), HeaderField(name: "Connection", value: "keep-alive, X-Drop"),
            HeaderField(name: "X-Drop", value: "1"), HeaderField(name: "Expect", value: "100-continue"),
            HeaderField(name: "Idempotency-Key", value: ""), HeaderField(name: "Content-Type", value: "application/json"),
        ]
        let message = try message("orders", fields: fields, body: #"{"order":{"id":"o-7"}}"#).get()
        #expect(message.headers.map(\.name) == ["Host", "Idempotency-Key", "Content-Type"])
        #expect(message.idempotencyKey == nil)
        #expect(message.deliveries == [PlannedDelivery(destination: "orders", orderingKey: "o-7")])
        #expect(message.path == "/hooks/orders?x=1")
        #expect(message.receivedAt == 1_790_000_000_000)
        #expect(message.clientAddress == "192.0.2.1")
    }

    @Test("a body that is not JSON, and a bad signature, are problems")
    func refusedMessages() throws {
        #expect(throws: Problem.self) { try message("orders", fields: [], body: "{nope").get() }
        let verifier = try InboundVerifier(
            config: VerifyConfig(scheme: .hmacSHA256, secret: SecretSource(.env("S")), header: "X-Sig", encoding: .hex), secrets: ["s3cret"]
        )
        let body = "{}"
        let good = HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: SymmetricKey(data: Array("s3cret".utf8)))
        let hex = good.map { String(format: "%02x", $0) }.joined()
        #expect((try? message("any", fields: [HeaderField(name: "X-Sig", value: hex)], body: body, verifier: verifier).get()) != nil)
        let refused = message(
            "any", fields: [HeaderField(name: "X-Sig", value: String(repeating: "0", count: 64))], body: body, verifier: verifier)
        guard case .failure(let problem) = refused else {
            Issue.record("a wrong signature was accepted")
            return
        }
        #expect(problem.status == 401)
        #expect(problem.slug == "signature-mismatch")
    }
}
