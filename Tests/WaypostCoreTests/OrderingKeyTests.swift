import Foundation
import Testing
import WaypostCore

private let requestHeaders: [HeaderField] = [
    HeaderField(name: "Content-Type", value: "application/json"),
    HeaderField(name: "X-GitHub-Repository-Id", value: "123"),
    HeaderField(name: "x-github-repository-id", value: "456"),
    HeaderField(name: "X-Tenant", value: "acme corp"),
    HeaderField(name: "X-Empty", value: ""),
]

/// A webhook body with every kind of value a pointer can reach.
private let eventBody = Array(
    #"""
    {
      "id": "evt_1",
      "n": 42,
      "neg": -7,
      "f": 1.5,
      "zero": 0,
      "repo": {"id": "r-9", "owner": {"login": "octo", "id": 583231}},
      "items": [{"sku": "a"}, {"sku": "b"}],
      "matrix": [[1, 2], [3, "four"]],
      "a/b": "slash",
      "m~n": "tilde",
      "~1": "escaped-tilde-one",
      "": "empty-key",
      "sp ace": "space",
      "naïve": "unicode-key",
      "escaped": "caf\u00e9 \u2713",
      "nothing": null,
      "obj": {},
      "arr": [],
      "yes": true,
      "no": false
    }
    """#.utf8)

@Suite struct OrderingKeyTests {

    // MARK: header:NAME

    @Test(
        "header keys: the first value of the named field, name in any case",
        arguments: [
            ("X-GitHub-Repository-Id", "123"),
            ("x-github-repository-id", "123"),
            ("X-GITHUB-REPOSITORY-ID", "123"),
            ("x-tenant", "acme corp"),
            ("CONTENT-TYPE", "application/json"),
            ("X-Missing", nil),
            ("X-GitHub-Repository-I", nil),
            ("X-GitHub-Repository-Idx", nil),
            ("X_GitHub_Repository_Id", nil),
            ("X-Tenanţ", nil),
        ] as [(String, String?)]
    )
    func headerKey(name: String, expected: String?) {
        #expect(OrderingKey.header(name).value(headers: requestHeaders, body: eventBody) == expected)
    }

    @Test func headerKeyIgnoresTheBody() {
        let key = OrderingKey.header("X-Tenant")
        #expect(key.value(headers: requestHeaders, body: []) == "acme corp")
        #expect(key.value(headers: requestHeaders, body: Array("not json".utf8)) == "acme corp")
        #expect(key.value(headers: [], body: eventBody) == nil)
    }

    // MARK: json:/pointer

    @Test(
        "JSON pointer keys: strings as they are, numbers as text, nothing else",
        arguments: [
            ("/id", "evt_1"),
            ("/n", "42"),
            ("/neg", "-7"),
            ("/f", "1.5"),
            ("/zero", "0"),
            ("/repo/id", "r-9"),
            ("/repo/owner/login", "octo"),
            ("/repo/owner/id", "583231"),
            ("/items/0/sku", "a"),
            ("/items/1/sku", "b"),
            ("/matrix/1/1", "four"),
            ("/matrix/0/1", "2"),
            ("/a~1b", "slash"),
            ("/m~0n", "tilde"),
            ("/~01", "escaped-tilde-one"),
            ("/", "empty-key"),
            ("/sp ace", "space"),
            ("/naïve", "unicode-key"),
            ("/escaped", "café ✓"),
            // Missing or not a scalar → nil (the message joins the queue of keyless messages).
            ("/missing", nil),
            ("/ID", nil),
            ("/repo/missing", nil),
            ("/repo/owner/login/x", nil),
            ("/id/0", nil),
            ("/items/2/sku", nil),
            ("/items/-1/sku", nil),
            ("/items/-/sku", nil),
            ("/items/01/sku", nil),
            ("/items/+1/sku", nil),
            ("/items/sku", nil),
            ("/a/b", nil),
            ("/nothing", nil),
            ("/obj", nil),
            ("/arr", nil),
            ("/items", nil),
            ("/repo", nil),
            ("/repo/", nil),
        ] as [(String, String?)]
    )
    func jsonPointerKey(pointer: String, expected: String?) {
        #expect(OrderingKey.jsonPointer(pointer).value(headers: requestHeaders, body: eventBody) == expected)
    }

    /// `OrderingKey.value` promises booleans "as JSON text", not NSNumber's 1 and 0.
    @Test(arguments: [("/yes", "true"), ("/no", "false")] as [(String, String)])
    func jsonPointerBooleanKey(pointer: String, expected: String) {
        #expect(OrderingKey.jsonPointer(pointer).value(headers: [], body: eventBody) == expected)
    }

    /// Whatever booleans are spelled, `true` must not land in the same queue as the number `1`.
    @Test
    func booleanAndNumberKeysDiffer() {
        let key = OrderingKey.jsonPointer("/k")
        let fromTrue = key.value(headers: [], body: Array(#"{"k":true}"#.utf8))
        let fromOne = key.value(headers: [], body: Array(#"{"k":1}"#.utf8))
        #expect(fromTrue != nil)
        #expect(fromTrue != fromOne)
    }

    @Test(
        "JSON pointer keys on other bodies",
        arguments: [
            (#"["x","y"]"#, "/1", "y"),
            (#"[["x"]]"#, "/0/0", "x"),
            (#"{"a":{"b":{"c":{"d":"deep"}}}}"#, "/a/b/c/d", "deep"),
            (#"{"id":"first","id2":"second"}"#, "/id2", "second"),
            (#"{"n":12345678901234}"#, "/n", "12345678901234"),
            (#"{"k":"\"quoted\"\n"}"#, "/k", "\"quoted\"\n"),
            (#"  {"k" : "spaced"}  "#, "/k", "spaced"),
            ("\u{FEFF}{\"k\":\"bom\"}", "/k", "bom"),
            // No journal's text holds NUL: it is kept as U+FFFD.
            (#"{"k":"a\u0000b"}"#, "/k", "a\u{FFFD}b"),
        ] as [(String, String, String)]
    )
    func jsonPointerOtherBodies(body: String, pointer: String, expected: String) {
        #expect(OrderingKey.jsonPointer(pointer).value(headers: [], body: Array(body.utf8)) == expected)
    }

    @Test(
        "a body that is not JSON has no key",
        arguments: [
            Array("".utf8),
            Array("not json".utf8),
            Array(#"{"id":"#.utf8),
            Array(#"{"id":"evt_1""#.utf8),
            Array(#"{"id":"evt_1"} trailing"#.utf8),
            Array(#"{id:"evt_1"}"#.utf8),
            Array(#"{'id':'evt_1'}"#.utf8),
            Array("id=evt_1&n=42".utf8),
            [0x7B, 0x22, 0x69, 0x64, 0x22, 0x3A, 0x22, 0xFF, 0xFE, 0x22, 0x7D],  // {"id":"<invalid UTF-8>"}
            [0x00, 0x01, 0x02],
        ] as [[UInt8]]
    )
    func malformedBody(body: [UInt8]) {
        #expect(OrderingKey.jsonPointer("/id").value(headers: requestHeaders, body: body) == nil)
    }

    // MARK: JSONPointer.resolve

    @Test func resolveEdgeCases() throws {
        let document = try JSONSerialization.jsonObject(with: Data(eventBody))
        let whole = try #require(JSONPointer.resolve("", in: document) as? [String: Any])
        #expect(whole["id"] as? String == "evt_1")
        #expect(JSONPointer.resolve("id", in: document) == nil)
        #expect(JSONPointer.resolve("#/id", in: document) == nil)
        let owner = try #require(JSONPointer.resolve("/repo/owner", in: document) as? [String: Any])
        #expect(owner["login"] as? String == "octo")
        let items = try #require(JSONPointer.resolve("/items", in: document) as? [Any])
        #expect(items.count == 2)
        #expect(JSONPointer.resolve("/x", in: "scalar") == nil)
        #expect(JSONPointer.resolve("", in: "scalar") as? String == "scalar")
    }

    // MARK: String.caseInsensitiveEquals

    @Test(
        arguments: [
            ("Content-Type", "content-type", true),
            ("ETAG", "etag", true),
            ("X-1_a", "x-1_A", true),
            ("", "", true),
            ("a", "b", false),
            ("abc", "abcd", false),
            ("abcd", "abc", false),
            ("@", "`", false),
            ("[", "{", false),
            ("]", "}", false),
            ("^", "~", false),
            ("_", "\u{7F}", false),
            ("-", "\r", false),
            ("1", "Q", false),
            ("é", "É", false),  // ASCII only, as HTTP field names
            ("k", "\u{212A}", false),  // KELVIN SIGN
            ("straße", "STRASSE", false),
        ] as [(String, String, Bool)]
    )
    func caseInsensitiveEquals(a: String, b: String, expected: Bool) {
        #expect(a.caseInsensitiveEquals(b) == expected)
        #expect(b.caseInsensitiveEquals(a) == expected)
    }
}
