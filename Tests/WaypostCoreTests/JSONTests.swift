import Foundation
import Testing
import WaypostCore

/// Parses `text` with Foundation, top-level fragments allowed.
private func parseJSON(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
}

/// Strings that must survive `JSON.quote` unchanged, scalar for scalar.
private let awkwardStrings: [String] = [
    "",
    "plain",
    "say \"hi\"",
    "C:\\path\\to\\file",
    "\\\"",
    "line\nbreak",
    "\r\n",
    "tab\there",
    "\u{01}",
    "\u{1F}",
    "\0nul",
    String((0..<0x20).map { Character(Unicode.Scalar(UInt8($0))) }),
    "\u{7F}del",
    "/slash/",
    "naïve café ✓",
    "e\u{301}",  // decomposed é: must not be normalized
    "\u{E9}",  // precomposed é
    "日本語",
    "🚀👩‍👩‍👧",
    "\u{2028}\u{2029}",
    "zero\u{FEFF}width\u{200B}space",
    "</script>",
    "{\"nested\":[1,2]}",
]

@Suite struct JSONTests {

    @Test(
        "JSON.quote writes the expected literal",
        arguments: [
            ("", #""""#),
            ("plain", #""plain""#),
            ("a\"b", #""a\"b""#),
            ("a\\b", #""a\\b""#),
            ("line\nbreak", #""line\nbreak""#),
            ("\r\t", #""\r\t""#),
            ("\u{01}", #""\u0001""#),
            ("\u{1F}", #""\u001f""#),
            ("\0", #""\u0000""#),
            ("\u{08}\u{0C}", #""\u0008\u000c""#),
            ("é ✓ 🚀", "\"é ✓ 🚀\""),
            ("a/b", #""a/b""#),
        ] as [(String, String)]
    )
    func quoteLiterals(input: String, expected: String) {
        #expect(JSON.quote(input) == expected)
    }

    @Test("JSON.quote round-trips through JSONSerialization", arguments: awkwardStrings)
    func quoteRoundTrips(original: String) throws {
        let quoted = JSON.quote(original)
        let parsed = try #require(try parseJSON(quoted) as? String, "\(quoted) is not a JSON string")
        #expect(Array(parsed.unicodeScalars) == Array(original.unicodeScalars))
        // Inside an object too, as the status API embeds it.
        let object = try #require(try parseJSON("{\"k\":\(quoted)}") as? [String: String])
        #expect(object["k"].map { Array($0.unicodeScalars) } == Array(original.unicodeScalars))
    }

    /// Through `JSONDecoder` as well, which (unlike Linux `JSONSerialization`) keeps a leading U+FEFF.
    @Test("JSON.quote round-trips through JSONDecoder", arguments: awkwardStrings + ["\u{FEFF}leading bom"])
    func quoteRoundTripsThroughDecoder(original: String) throws {
        let decoded = try JSONDecoder().decode(String.self, from: Data(JSON.quote(original).utf8))
        #expect(Array(decoded.unicodeScalars) == Array(original.unicodeScalars))
    }

    @Test func quoteLeavesNoRawControlCharacter() {
        for value in 0..<0x20 {
            let scalar = Unicode.Scalar(UInt8(value))
            let quoted = JSON.quote("x" + String(Character(scalar)) + "y")
            #expect(!quoted.unicodeScalars.contains { $0.value < 0x20 }, "U+\(String(value, radix: 16)) left raw")
        }
    }

    @Test func encodeHeadersLiteral() {
        #expect(JSON.encode(headers: []) == "[]")
        let headers = [
            HeaderField(name: "Content-Type", value: "application/json"),
            HeaderField(name: "X-Quote", value: "say \"hi\"\n"),
        ]
        #expect(JSON.encode(headers: headers) == #"[["Content-Type","application/json"],["X-Quote","say \"hi\"\n"]]"#)
    }

    @Test(
        "JSON.encode(headers:) round-trips in order, duplicates and case kept",
        arguments: [
            [],
            [("Host", "example.com")],
            [("X-B", "1"), ("x-a", "2"), ("X-B", "3"), ("Set-Cookie", "a=1; Path=/"), ("set-cookie", "b=\"2\"")],
            [("X-Empty", ""), ("X-Unicode", "naïve ✓ 🚀"), ("X-Control", "\u{01}\t\\")],
            awkwardStrings.enumerated().map { ("X-\($0.offset)", $0.element) },
        ] as [[(String, String)]]
    )
    func encodeHeadersRoundTrips(pairs: [(String, String)]) throws {
        let headers = pairs.map { HeaderField(name: $0.0, value: $0.1) }
        let text = JSON.encode(headers: headers)
        let parsed = try #require(try parseJSON(text) as? [[String]], "\(text)")
        #expect(parsed.count == headers.count)
        #expect(parsed.allSatisfy { $0.count == 2 })
        for (row, field) in zip(parsed, headers) {
            #expect(Array(row[0].unicodeScalars) == Array(field.name.unicodeScalars))
            #expect(Array(row[1].unicodeScalars) == Array(field.value.unicodeScalars))
        }
    }

    // MARK: Problem

    @Test(
        "Problem.json is an RFC 9457 document with type, title, status and detail",
        arguments: [
            Problem(
                status: 413, slug: "body-too-large", title: "Payload too large",
                detail: "The body has 2000000 bytes; route \"github\" accepts at most 1048576."),
            Problem(status: 404, slug: "no-route", title: "No route", detail: "No route takes /nowhere."),
            Problem(
                status: 503, slug: "journal-unavailable", title: "Service unavailable",
                detail: "The journal is full.\nRetry later.", headers: [HeaderField(name: "Retry-After", value: "1")]),
            Problem(status: 400, slug: "bad-correlation-id", title: "Bad \\ id", detail: "Got \"a b\"\t(é ✓ \u{01})"),
            Problem(status: 401, slug: "signature", title: "", detail: ""),
        ]
    )
    func problemJSON(problem: Problem) throws {
        let document = try #require(try parseJSON(problem.json) as? [String: Any], "\(problem.json)")
        #expect(Set(document.keys) == ["type", "title", "status", "detail"])
        #expect(document["type"] as? String == "urn:waypost:problem:\(problem.slug)")
        #expect(document["type"] as? String == problem.type)
        #expect(document["title"] as? String == problem.title)
        #expect(document["status"] as? Int == problem.status)
        #expect(document["detail"] as? String == problem.detail)
        // `status` is a JSON number, not a string.
        #expect(problem.json.contains("\"status\":\(problem.status),"))
    }
}

@Suite("Stored header JSON round trip")
struct HeaderJSONRoundTripTests {
    @Test(arguments: [
        [] as [HeaderField],
        [HeaderField(name: "Content-Type", value: "application/json")],
        [HeaderField(name: "X-A", value: "quote \" backslash \\ slash / tab \t newline \n cr \r"), HeaderField(name: "X-A", value: "")],
        [HeaderField(name: "X-Ctl", value: "\u{01}\u{1F}"), HeaderField(name: "X-Uni", value: "é 😀 ü")],
    ])
    func roundTrip(_ fields: [HeaderField]) {
        #expect(JSON.decodeHeaders(JSON.encode(headers: fields)) == fields)
    }

    @Test(arguments: [
        "", "{}", "[", "[[\"a\"]]", "[[\"a\",\"b\",\"c\"]]", "[[\"a\",\"b\"],]", "[[\"a\",\"b\"]] x", "[[\"a\",1]]", "[[\"\\x\",\"b\"]]",
    ])
    func refusesOtherShapes(_ text: String) {
        #expect(JSON.decodeHeaders(text) == nil, "\(text)")
    }

    @Test func readsWhatFoundationWrites() throws {
        let data = try JSONSerialization.data(withJSONObject: [["X-A", "1/2"], ["X-B", "\u{7}"]])
        #expect(
            JSON.decodeHeaders(String(decoding: data, as: UTF8.self)) == [
                HeaderField(name: "X-A", value: "1/2"), HeaderField(name: "X-B", value: "\u{7}"),
            ])
    }
}
