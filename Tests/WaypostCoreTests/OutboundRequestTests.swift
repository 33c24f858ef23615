// How a journaled message becomes the request sent upstream (SPEC §3, §9): the target URL, the
// exact header list of an attempt, and `${ENV_VAR}` expansion in `add_headers`.

import Foundation
import Testing
import WaypostCore

// MARK: - Target URL

/// One row: the route's upstream and path, the request target as received, the URL sent.
struct TargetURLCase: Sendable, CustomTestStringConvertible {
    var upstream: String
    var routePath: String
    var requestTarget: String
    var expected: String

    init(_ upstream: String, _ routePath: String, _ requestTarget: String, _ expected: String) {
        self.upstream = upstream
        self.routePath = routePath
        self.requestTarget = requestTarget
        self.expected = expected
    }

    var testDescription: String { "\(upstream) + route \(routePath) + \(requestTarget)" }
}

private let targetURLCases: [TargetURLCase] = [
    // Catch-all route: the whole path goes after the upstream.
    TargetURLCase("http://up.example", "/", "/x", "http://up.example/x"),
    TargetURLCase("http://up.example/", "/", "/x", "http://up.example/x"),
    TargetURLCase("http://up.example", "/", "/", "http://up.example/"),
    TargetURLCase("http://up.example/", "/", "/", "http://up.example/"),
    TargetURLCase("http://up.example/base", "/", "/x/y", "http://up.example/base/x/y"),
    TargetURLCase("http://up.example/base/", "/", "/x/y", "http://up.example/base/x/y"),
    TargetURLCase("http://up.example:8080", "/", "/x?y=1", "http://up.example:8080/x?y=1"),
    // A route prefix is dropped; nothing after it leaves the upstream as written.
    TargetURLCase("http://up.example/github", "/hooks/github", "/hooks/github", "http://up.example/github"),
    TargetURLCase("http://up.example/github/", "/hooks/github", "/hooks/github", "http://up.example/github/"),
    TargetURLCase("http://up.example", "/hooks/github", "/hooks/github", "http://up.example"),
    TargetURLCase("http://up.example/github", "/hooks/github", "/hooks/github?a=1", "http://up.example/github?a=1"),
    TargetURLCase("http://up.example/github", "/hooks/github", "/hooks/github/", "http://up.example/github/"),
    TargetURLCase("http://up.example/github", "/hooks/github", "/hooks/github/push", "http://up.example/github/push"),
    TargetURLCase("http://up.example/github/", "/hooks/github", "/hooks/github/push", "http://up.example/github/push"),
    TargetURLCase("https://up.example:8443", "/hooks/github", "/hooks/github/a/b?c=d", "https://up.example:8443/a/b?c=d"),
    // The query byte for byte: order, repeats, percent-escapes, empty values, a bare `?`.
    TargetURLCase(
        "http://up.example/in", "/hooks", "/hooks/a?b=2&a=1&a=%20+x&empty=&=v&%2F=%3F",
        "http://up.example/in/a?b=2&a=1&a=%20+x&empty=&=v&%2F=%3F"),
    TargetURLCase("http://up.example/in", "/hooks", "/hooks?", "http://up.example/in?"),
    TargetURLCase("http://up.example/in", "/hooks", "/hooks/x?a=1?b=/c", "http://up.example/in/x?a=1?b=/c"),
    TargetURLCase("http://up.example", "/", "/a%2Fb%20c?x=%41", "http://up.example/a%2Fb%20c?x=%41"),
]

/// Request targets that try to move the request to another host or port.
private let hostChangingCases: [(String, String, String)] = [
    ("http://up.example", "/", "//evil.example/x"),
    ("http://up.example/", "/", "//evil.example/x"),
    ("http://up.example/base", "/", "//evil.example/x"),
    ("http://up.example", "/", "/@evil.example"),
    ("http://up.example:8080", "/", "/@evil.example:80/x"),
    ("http://up.example:8080/base/", "/", "//evil.example:80/x?y=1"),
    ("http://up.example", "/hooks", "/hooks//evil.example/x"),
    ("http://up.example", "/hooks", "/hooks?@evil.example/"),
    ("http://up.example", "/hooks", "/hooks/@evil.example"),
    ("https://up.example:8443", "/", "///evil.example"),
    ("http://127.0.0.1:9000", "/", "//169.254.169.254/latest/meta-data/"),
]

// MARK: - Headers

/// One row: the input of `OutboundRequest.headers(...)` and the exact fields it must return.
struct OutboundHeaderCase: Sendable, CustomTestStringConvertible {
    var label: String
    var stored: [HeaderField]
    var correlationID = "01JD7Z8W1V3K4M5N6P7Q8R9S0T"
    var idempotencyKey: String?
    var attempt = 1
    var clientAddress: String? = "192.0.2.10"
    var trustedPeer = false
    var removeHeaders: [String] = []
    var addHeaders: [HeaderField] = []
    var expected: [HeaderField]

    var testDescription: String { label }
}

private func fields(_ pairs: [(String, String)]) -> [HeaderField] {
    pairs.map { HeaderField(name: $0.0, value: $0.1) }
}

private let headerCases: [OutboundHeaderCase] = [
    OutboundHeaderCase(
        label: "plain request: stored headers, then Waypost's own; Host becomes X-Forwarded-Host",
        stored: fields([("Host", "hooks.example"), ("Content-Type", "application/json"), ("User-Agent", "GitHub-Hookshot/1")]),
        expected: fields([
            ("Content-Type", "application/json"), ("User-Agent", "GitHub-Hookshot/1"),
            ("X-Correlation-ID", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"), ("Idempotency-Key", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"),
            ("X-Waypost-Attempt", "1"), ("X-Forwarded-For", "192.0.2.10"), ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "hooks.example"),
        ])),
    OutboundHeaderCase(
        label: "a trusted proxy's X-Forwarded-* chain is extended, its proto and host kept",
        stored: fields([
            ("X-Forwarded-For", "203.0.113.1"), ("Host", "internal:8080"), ("x-forwarded-for", "198.51.100.2, 198.51.100.3"),
            ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "public.example"), ("Accept", "*/*"),
        ]),
        attempt: 4,
        trustedPeer: true,
        expected: fields([
            ("Accept", "*/*"), ("X-Correlation-ID", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"),
            ("Idempotency-Key", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"), ("X-Waypost-Attempt", "4"),
            ("X-Forwarded-For", "203.0.113.1, 198.51.100.2, 198.51.100.3, 192.0.2.10"), ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "public.example"),
        ])),
    OutboundHeaderCase(
        label: "an untrusted source's X-Forwarded-* values are replaced by what Waypost saw",
        stored: fields([
            ("X-Forwarded-For", "203.0.113.1"), ("Host", "internal:8080"), ("x-forwarded-for", "198.51.100.2, 198.51.100.3"),
            ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "public.example"), ("Accept", "*/*"),
        ]),
        attempt: 4,
        expected: fields([
            ("Accept", "*/*"), ("X-Correlation-ID", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"),
            ("Idempotency-Key", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"), ("X-Waypost-Attempt", "4"),
            ("X-Forwarded-For", "192.0.2.10"), ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "internal:8080"),
        ])),
    OutboundHeaderCase(
        label: "spoofed X-Correlation-ID, Idempotency-Key, X-Waypost-Attempt, Content-Length, Expect are replaced",
        stored: fields([
            ("X-Correlation-ID", "spoofed"), ("idempotency-key", "from-source"), ("X-WAYPOST-ATTEMPT", "99"),
            ("Content-Length", "5"), ("Expect", "100-continue"), ("X-Other", "1"),
        ]),
        correlationID: "corr-2", idempotencyKey: "from-source", attempt: 3, clientAddress: nil,
        expected: fields([
            ("X-Other", "1"), ("X-Correlation-ID", "corr-2"), ("Idempotency-Key", "from-source"),
            ("X-Waypost-Attempt", "3"), ("X-Forwarded-Proto", "http"),
        ])),
    OutboundHeaderCase(
        label: "a route's own idempotency header stays, and its value is the Idempotency-Key",
        stored: fields([("X-GitHub-Delivery", "d-72d3162e"), ("Host", "h")]),
        idempotencyKey: "d-72d3162e",
        expected: fields([
            ("X-GitHub-Delivery", "d-72d3162e"), ("X-Correlation-ID", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"),
            ("Idempotency-Key", "d-72d3162e"), ("X-Waypost-Attempt", "1"), ("X-Forwarded-For", "192.0.2.10"),
            ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "h"),
        ])),
    OutboundHeaderCase(
        label: "repeated fields keep their order and case",
        stored: fields([("x-a", "1"), ("X-B", "2"), ("X-A", "3"), ("Set-Thing", "a, b")]),
        clientAddress: nil,
        expected: fields([
            ("x-a", "1"), ("X-B", "2"), ("X-A", "3"), ("Set-Thing", "a, b"),
            ("X-Correlation-ID", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"), ("Idempotency-Key", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"),
            ("X-Waypost-Attempt", "1"), ("X-Forwarded-Proto", "http"),
        ])),
    OutboundHeaderCase(
        label: "remove_headers match in any case, also Waypost's own",
        stored: fields([
            ("Cookie", "a=1"), ("Accept", "*/*"), ("cookie", "b=2"), ("Authorization", "Bearer x"), ("Host", "h"),
        ]),
        removeHeaders: ["COOKIE", "authorization", "x-forwarded-for", "X-FORWARDED-HOST"],
        expected: fields([
            ("Accept", "*/*"), ("X-Correlation-ID", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"),
            ("Idempotency-Key", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"), ("X-Waypost-Attempt", "1"), ("X-Forwarded-Proto", "http"),
        ])),
    OutboundHeaderCase(
        label: "add_headers come last, in order, replacing same-named source headers",
        stored: fields([("X-Api-Key", "from-source"), ("Accept", "*/*"), ("x-api-key", "again")]),
        clientAddress: nil,
        addHeaders: fields([("X-Api-Key", "secret"), ("X-Extra", "1")]),
        expected: fields([
            ("Accept", "*/*"), ("X-Correlation-ID", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"),
            ("Idempotency-Key", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"), ("X-Waypost-Attempt", "1"), ("X-Forwarded-Proto", "http"),
            ("X-Api-Key", "secret"), ("X-Extra", "1"),
        ])),
    OutboundHeaderCase(
        label: "add_headers replace Waypost's own fields too",
        stored: fields([("Accept", "*/*")]),
        addHeaders: fields([("x-forwarded-proto", "https")]),
        expected: fields([
            ("Accept", "*/*"), ("X-Correlation-ID", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"),
            ("Idempotency-Key", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"), ("X-Waypost-Attempt", "1"),
            ("X-Forwarded-For", "192.0.2.10"), ("x-forwarded-proto", "https"),
        ])),
    OutboundHeaderCase(
        label: "remove and add of one name: the added value is sent",
        stored: fields([("Authorization", "Basic c291cmNl")]),
        clientAddress: nil,
        removeHeaders: ["authorization"],
        addHeaders: fields([("Authorization", "Bearer upstream")]),
        expected: fields([
            ("X-Correlation-ID", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"), ("Idempotency-Key", "01JD7Z8W1V3K4M5N6P7Q8R9S0T"),
            ("X-Waypost-Attempt", "1"), ("X-Forwarded-Proto", "http"), ("Authorization", "Bearer upstream"),
        ])),
    OutboundHeaderCase(
        label: "no stored headers",
        stored: [],
        correlationID: "c", attempt: 20, clientAddress: "::1",
        expected: fields([
            ("X-Correlation-ID", "c"), ("Idempotency-Key", "c"), ("X-Waypost-Attempt", "20"), ("X-Forwarded-For", "::1"),
            ("X-Forwarded-Proto", "http"),
        ])),
]

// MARK: - Environment expansion

private let environment = ["A": "1", "B": "two", "TOKEN": "s3cr3t", "EMPTY": "", "NESTED": "${B}"]

@Suite("OutboundRequest: the request sent upstream (SPEC §3, §9)")
struct OutboundRequestTests {
    @Test("targetURL: upstream + path after the route prefix + query", arguments: targetURLCases)
    func targetURL(_ row: TargetURLCase) {
        #expect(
            OutboundRequest.targetURL(upstream: row.upstream, routePath: row.routePath, requestTarget: row.requestTarget)
                == row.expected)
    }

    @Test("targetURL: a request target cannot change the upstream's scheme, host or port", arguments: hostChangingCases)
    func targetKeepsHost(upstream: String, routePath: String, requestTarget: String) throws {
        let url = OutboundRequest.targetURL(upstream: upstream, routePath: routePath, requestTarget: requestTarget)
        let expected = try #require(URLComponents(string: upstream))
        let actual = try #require(URLComponents(string: url), "\(url) does not parse")
        #expect(actual.scheme == expected.scheme, "\(url)")
        #expect(actual.host == expected.host, "\(url)")
        #expect(actual.port == expected.port, "\(url)")
        #expect(actual.user == nil && actual.password == nil, "\(url)")
        #expect(url.hasPrefix(upstream.hasSuffix("/") ? String(upstream.dropLast()) : upstream), "\(url)")
    }

    @Test("headers: the exact list sent", arguments: headerCases)
    func headers(_ row: OutboundHeaderCase) {
        let result = OutboundRequest.headers(
            stored: row.stored, correlationID: row.correlationID, idempotencyKey: row.idempotencyKey, attempt: row.attempt,
            clientAddress: row.clientAddress, trustedPeer: row.trustedPeer, removeHeaders: row.removeHeaders, addHeaders: row.addHeaders)
        #expect(result.map { [$0.name, $0.value] } == row.expected.map { [$0.name, $0.value] })
    }

    @Test("headers: no header Waypost sets itself appears twice, whatever the source sent")
    func noDuplicatesOfOwnHeaders() {
        let own = ["x-correlation-id", "idempotency-key", "x-waypost-attempt", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
        let stored =
            own.flatMap { [HeaderField(name: $0, value: "a"), HeaderField(name: $0.uppercased(), value: "b")] }
            + [HeaderField(name: "Host", value: "h")]
        let result = OutboundRequest.headers(
            stored: stored, correlationID: "c", idempotencyKey: nil, attempt: 2, clientAddress: "192.0.2.1",
            removeHeaders: [], addHeaders: [])
        for name in own {
            #expect(result.filter { $0.name.lowercased() == name }.count == 1, "\(name) in \(result)")
        }
        #expect(!result.contains { $0.name.lowercased() == "host" }, "Host is set by the client for the upstream")
        #expect(result.first { $0.name == "X-Correlation-ID" }?.value == "c")
        #expect(result.first { $0.name == "X-Waypost-Attempt" }?.value == "2")
    }

    @Test(
        "expandEnvironment replaces every ${NAME}",
        arguments: [
            ("${A}", "1"), ("Bearer ${TOKEN}", "Bearer s3cr3t"), ("${A}-${B}", "1-two"), ("${A}${A}", "11"),
            ("x${EMPTY}y", "xy"), ("no variables", "no variables"), ("", ""), ("$A and {B}", "$A and {B}"),
            ("cost: $5", "cost: $5"), ("${NESTED}", "${B}"), ("unterminated ${A", "unterminated ${A"),
            ("${A} then unterminated ${B", "1 then unterminated ${B"),
        ])
    func expand(value: String, expected: String) throws {
        #expect(try OutboundRequest.expandEnvironment(value, environment: environment) == expected)
    }

    @Test(
        "expandEnvironment throws naming the first unset variable",
        arguments: [("${UNSET}", "UNSET"), ("key=${A}${MISSING_KEY}", "MISSING_KEY"), ("${X_1} ${Y_2}", "X_1")])
    func expandUnset(value: String, missing: String) {
        let error = #expect(throws: OutboundRequest.MissingVariable.self) {
            try OutboundRequest.expandEnvironment(value, environment: environment)
        }
        #expect(error?.name == missing)
    }
}
