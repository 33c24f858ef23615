import Testing
import WaypostCore

/// One row of the hop-by-hop table: the headers a source sent and those Waypost stores.
struct HopByHopCase: Sendable, CustomTestStringConvertible {
    var label: String
    var input: [HeaderField]
    var expected: [HeaderField]

    init(_ label: String, _ input: [(String, String)], keeps expected: [(String, String)]) {
        self.label = label
        self.input = input.map { HeaderField(name: $0.0, value: $0.1) }
        self.expected = expected.map { HeaderField(name: $0.0, value: $0.1) }
    }

    var testDescription: String { label }
}

private let hopByHopCases: [HopByHopCase] = [
    HopByHopCase("nothing in, nothing out", [], keeps: []),
    HopByHopCase(
        "end-to-end headers pass untouched",
        [("Host", "example.com"), ("Content-Type", "application/json"), ("X-GitHub-Event", "push")],
        keeps: [("Host", "example.com"), ("Content-Type", "application/json"), ("X-GitHub-Event", "push")]
    ),
    HopByHopCase(
        "every RFC 9110 hop-by-hop field is dropped",
        [
            ("Host", "example.com"), ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5, max=100"),
            ("TE", "trailers"), ("Trailer", "Expires"), ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"), ("Content-Type", "text/plain"),
        ],
        keeps: [("Host", "example.com"), ("Content-Type", "text/plain")]
    ),
    HopByHopCase(
        "Proxy-* fields are dropped",
        [
            ("Proxy-Authorization", "Basic c2VjcmV0"), ("X-A", "1"), ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authenticate", "Basic"), ("proxy-anything", "x"), ("PROXY-Foo", "y"),
        ],
        keeps: [("X-A", "1")]
    ),
    HopByHopCase(
        "names match in any case",
        [
            ("CONNECTION", "close"), ("keep-alive", "1"), ("te", "trailers"), ("tRaIlEr", "X"),
            ("TRANSFER-ENCODING", "chunked"), ("upgrade", "h2c"), ("Accept", "*/*"),
        ],
        keeps: [("Accept", "*/*")]
    ),
    HopByHopCase(
        "fields named in Connection are dropped, in any case, with spaces and tabs",
        [
            ("Connection", "X-Foo, x-bar ,\tX-Baz\t, keep-alive"), ("X-Foo", "1"), ("X-BAR", "2"), ("x-baz", "3"),
            ("X-Foobar", "4"), ("X-Fo", "5"), ("Keep-Alive", "timeout=5"),
        ],
        keeps: [("X-Foobar", "4"), ("X-Fo", "5")]
    ),
    HopByHopCase(
        "a field named in Connection is dropped even when it comes before Connection",
        [("X-Secret-Hop", "1"), ("Date", "Tue, 01 Jan 2030 00:00:00 GMT"), ("Connection", "x-secret-hop")],
        keeps: [("Date", "Tue, 01 Jan 2030 00:00:00 GMT")]
    ),
    HopByHopCase(
        "several Connection fields all count",
        [("Connection", "A"), ("a", "1"), ("Connection", "b, C"), ("B", "2"), ("c", "3"), ("D", "4")],
        keeps: [("D", "4")]
    ),
    HopByHopCase(
        "empty tokens in Connection drop nothing else",
        [("Connection", " , ,X-A,,"), ("X-A", "1"), ("X-B", "2"), ("X-C", "")],
        keeps: [("X-B", "2"), ("X-C", "")]
    ),
    HopByHopCase(
        "Connection: close names no other field",
        [("Connection", "close"), ("Close", "not a real header"), ("X-Close", "x")],
        keeps: [("X-Close", "x")]
    ),
    HopByHopCase(
        "order, case, values and duplicates of the rest are kept",
        [
            ("X-B", "1"), ("x-a", "2"), ("Connection", "keep-alive"), ("X-B", "3"), ("Set-Cookie", "a=1"),
            ("set-cookie", "b=2"), ("Set-Cookie", "a=1"), ("X-Value", "  spaced , value  "),
        ],
        keeps: [
            ("X-B", "1"), ("x-a", "2"), ("X-B", "3"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2"),
            ("Set-Cookie", "a=1"), ("X-Value", "  spaced , value  "),
        ]
    ),
    HopByHopCase(
        "look-alike names are not hop-by-hop",
        [
            ("Upgrade-Insecure-Requests", "1"), ("TE-Extra", "x"), ("Trailers", "x"), ("Connections", "x"),
            ("X-Proxy-Id", "x"), ("Proxy", "x"), ("X-Connection", "x"), ("Transfer-Encodings", "x"),
            ("Keep-Alive-Extra", "x"),
        ],
        keeps: [
            ("Upgrade-Insecure-Requests", "1"), ("TE-Extra", "x"), ("Trailers", "x"), ("Connections", "x"),
            ("X-Proxy-Id", "x"), ("Proxy", "x"), ("X-Connection", "x"), ("Transfer-Encodings", "x"),
            ("Keep-Alive-Extra", "x"),
        ]
    ),
    HopByHopCase(
        "Connection may name end-to-end headers too, and they go",
        [("Connection", "Content-Type, Authorization"), ("Content-Type", "a/b"), ("Authorization", "t"), ("Host", "h")],
        keeps: [("Host", "h")]
    ),
]

@Suite struct HTTPHeaderRulesTests {

    @Test(arguments: hopByHopCases)
    func removingHopByHop(_ row: HopByHopCase) {
        #expect(HTTPHeaderRules.removingHopByHop(row.input) == row.expected)
    }

    /// Removing twice changes nothing more.
    @Test(arguments: hopByHopCases)
    func removingIsIdempotent(_ row: HopByHopCase) {
        let once = HTTPHeaderRules.removingHopByHop(row.input)
        #expect(HTTPHeaderRules.removingHopByHop(once) == once)
    }

    @Test(
        arguments: [
            (" a ", "a"), ("\ta\t", "a"), ("a", "a"), ("", ""), ("   ", ""), (" a b ", "a b"), ("\u{A0}a", "\u{A0}a"),
        ] as [(String, String)]
    )
    func trimmingHTTPWhitespace(input: String, expected: String) {
        #expect(Substring(input).trimmingHTTPWhitespace() == Substring(expected))
    }
}
