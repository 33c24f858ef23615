import Testing

@testable import WaypostCore

@Suite("the transform's and the reply's documents: input built, output checked (SPEC §11)")
struct TransformDocumentTests {
    private let stored = TransformDocument(
        method: "POST", requestTarget: "/hooks/shop/orders?a=1&b=%20", routePath: "/hooks/shop",
        headers: [
            HeaderField(name: "Host", value: "proxy.example"), HeaderField(name: "Content-Type", value: "application/json"),
            HeaderField(name: "X-Tag", value: "a"), HeaderField(name: "x-tag", value: "b"),
            HeaderField(name: "X-Forwarded-For", value: "10.0.0.1"),
            HeaderField(name: "Content-Length", value: "12"),
        ],
        body: Array(#"{"order":{"id":7,"big":12345678901234567890}}"#.utf8))

    @Test("the input: path after the prefix, query without ?, lower-case headers joined, Waypost's own left out, a JSON body as it is")
    func input() {
        let (json, bodyIsJSON) = stored.input
        #expect(bodyIsJSON)
        #expect(
            String(decoding: json, as: UTF8.self)
                == #"{"method":"POST","path":"/orders","query":"a=1&b=%20","headers":{"content-type":"application/json","x-tag":"a, b"},"body":{"order":{"id":7,"big":12345678901234567890}}}"#
        )
        let text = TransformDocument(method: "PUT", path: "", query: "", headers: [], body: Array("not \"json\"\n".utf8) + [0xFF])
        #expect(text.input.bodyIsJSON == false)
        #expect(
            String(decoding: text.input.json, as: UTF8.self)
                == #"{"method":"PUT","path":"","query":"","headers":{},"body":"not \"json\"\n\#u{FFFD}"}"#)
        let empty = TransformDocument(method: "POST", path: "/", query: "", headers: [], body: [])
        #expect(String(decoding: empty.input.json, as: UTF8.self).hasSuffix(#""body":""}"#))
    }

    @Test("the output replaces what it names; Waypost's own stored headers stay, and the program cannot set them")
    func applying() throws {
        let sent = try stored.applying(
            rest: #"{"method":"PUT","path":"/v2/orders","query":"","headers":{"x-new":["1","2"],"host":"evil","content-length":"1"}}"#,
            body: Array("{}".utf8))
        #expect(sent.method == "PUT" && sent.path == "/v2/orders" && sent.query == "" && sent.body == Array("{}".utf8))
        #expect(
            sent.headers == [
                HeaderField(name: "Host", value: "proxy.example"), HeaderField(name: "X-Forwarded-For", value: "10.0.0.1"),
                HeaderField(name: "Content-Length", value: "12"), HeaderField(name: "x-new", value: "1"),
                HeaderField(name: "x-new", value: "2"),
            ])
        #expect(sent.requestTarget == "/v2/orders")
        let same = try stored.applying(rest: "{}", body: nil)
        #expect(same == stored)
    }

    @Test(
        "an output that cannot be sent names the key",
        arguments: [
            (#"{"data":1}"#, "output .data is not a part of a request"),
            (#"{"method":"GET POST"}"#, "output .method must be a method name"),
            (#"{"path":"orders"}"#, "output .path must be"),
            (#"{"path":"/a b"}"#, "output .path must be"),
            (#"{"path":"/a?b"}"#, "output .path must be"),
            (#"{"query":"a#b"}"#, "output .query must be"),
            (#"{"headers":{"x-a":"1\r\nx-b: 2"}}"#, "output .headers.x-a must be a string"),
            (#"{"headers":{"bad name":"1"}}"#, "is not a header name"),
            (#"{"headers":{"x-a":1}}"#, "output .headers.x-a must be a string"),
            (#"{"headers":[]}"#, "output .headers must be an object"),
            ("[]", "the output is not a JSON object"),
        ])
    func badOutputs(_ output: String, _ message: String) {
        #expect {
            _ = try stored.applying(rest: output, body: nil)
        } throws: { error in
            (error as? TransformOutputError)?.message.contains(message) == true
        }
    }

    @Test("the reply's input and answer")
    func reply() throws {
        let input = ReplyDocument.input(
            status: 201, headers: [HeaderField(name: "Content-Type", value: "application/json")], body: Array(#"{"id":"E-9"}"#.utf8),
            id: "01ABC", attempts: 2)
        #expect(
            String(decoding: input, as: UTF8.self)
                == #"{"status":201,"headers":{"content-type":"application/json"},"body":{"id":"E-9"},"id":"01ABC","attempts":2}"#)
        let none = ReplyDocument.input(status: nil, headers: [], body: [], id: "x", attempts: 3)
        #expect(String(decoding: none, as: UTF8.self) == #"{"status":null,"headers":{},"body":null,"id":"x","attempts":3}"#)

        let json = try ReplyDocument.answer(#"{"status":200,"body":{"ok":true,"n":12.5}}"#)
        #expect(json.status == 200 && String(decoding: json.body, as: UTF8.self) == #"{"ok":true,"n":12.5}"#)
        #expect(json.headers == [HeaderField(name: "Content-Type", value: "application/json")])
        let text = try ReplyDocument.answer(#"{"status":202,"headers":{"content-type":"text/plain"},"body":"thanks"}"#)
        #expect(
            text.status == 202 && text.body == Array("thanks".utf8)
                && text.headers == [HeaderField(name: "content-type", value: "text/plain")])
        #expect(try ReplyDocument.answer("{}").status == 200)
        for bad in [#"{"status":99}"#, #"{"status":200.5}"#, #"{"status":"200"}"#, #"{"code":200}"#, "null", #"{"headers":{"a":"\n"}}"#] {
            #expect(throws: TransformOutputError.self, "\(bad)") { try ReplyDocument.answer(bad) }
        }
    }

    @Test("waypost transform's input document: defaults, a string body as text, anything else as JSON")
    func commandInput() throws {
        let document = try TransformDocument(document: #require(JSONValue.parse(#"{"headers":{"X-A":"1"},"body":{"a":[1,2]}}"#.utf8)))
        #expect(document.method == "POST" && document.path == "" && document.query == "")
        #expect(document.headers == [HeaderField(name: "X-A", value: "1")] && document.body == Array(#"{"a":[1,2]}"#.utf8))
        let text = try TransformDocument(document: #require(JSONValue.parse(#"{"path":"/x","body":"plain"}"#.utf8)))
        #expect(text.body == Array("plain".utf8) && text.path == "/x")
        #expect(throws: TransformOutputError.self) { try TransformDocument(document: .array([])) }
        #expect(throws: TransformOutputError.self) { try TransformDocument(document: #require(JSONValue.parse(#"{"paht":"/x"}"#.utf8))) }
    }

    @Test("one program, once: the table indexes shared programs once and names the first key that gives each")
    func programTable() throws {
        let config = try WaypostConfig.parse(
            yaml: """
                routes:
                  - name: shop
                    path: /shop
                    mode: sync
                    reply: '.'
                    transform: '.body |= .order'
                    destinations:
                      - { name: erp, upstream: "http://127.0.0.1:1/" }
                      - { name: crm, upstream: "http://127.0.0.1:2/" }
                      - { name: raw, upstream: "http://127.0.0.1:3/", transform: '.' }
                  - { name: plain, path: /plain, upstream: "http://127.0.0.1:4/" }
                """, file: "t.yaml")
        let table = ProgramTable(config)
        #expect(table.programs.map(\.text) == [".", ".body |= .order"])
        #expect(table.programs.map(\.path) == ["routes[0].reply", "routes[0].destinations[0].transform"])
        #expect(table.replies == ["shop": 0])
        #expect(table.transforms == ["shop/erp": 1, "shop/crm": 1, "shop/raw": 0])
    }
}
