// The destination filter dialect (SPEC §11 "Filter") and the JSON parser it reads bodies with.
// The filter rows follow Hookdeck's documented examples and the test table of Outpost's Go
// port of Hookdeck's matcher (internal/simplejsonmatch/match_test.go).

import Testing
import WaypostCore
import WaypostTestSupport

/// One row: a filter document, a request body (nil: not JSON) and whether it matches.
struct FilterBodyCase: Sendable, CustomTestStringConvertible {
    var filter: String
    var body: String?
    var matches: Bool

    init(_ filter: String, _ body: String?, _ matches: Bool) {
        self.filter = filter
        self.body = body
        self.matches = matches
    }

    var testDescription: String { "\(filter) on \(body ?? "a body that is not JSON") → \(matches)" }
}

/// Convoy's `$and` example, with an `$or` inside.
private let nestedAndOr = #"{"$and":[{"body":{"age":{"$gte":10}}},{"$or":[{"body":{"type":"weekly"}},{"body":{"city":"lagos"}}]}]}"#

private let bodyCases: [FilterBodyCase] = [
    // Literals match by equality; numbers and strings never equal each other.
    FilterBodyCase(#"{"body":{"type":"order.created"}}"#, #"{"type":"order.created","id":1}"#, true),
    FilterBodyCase(#"{"body":{"type":"order.created"}}"#, #"{"type":"order.paid"}"#, false),
    FilterBodyCase(#"{"body":{"n":1}}"#, #"{"n":"1"}"#, false),
    FilterBodyCase(#"{"body":{"n":"1"}}"#, #"{"n":1}"#, false),
    FilterBodyCase(#"{"body":{"n":1}}"#, #"{"n":1.0}"#, true),
    FilterBodyCase(#"{"body":{"ok":true}}"#, #"{"ok":true}"#, true),
    FilterBodyCase(#"{"body":{"ok":true}}"#, #"{"ok":"true"}"#, false),
    FilterBodyCase(#"{"body":{"x":null}}"#, #"{"x":null}"#, true),
    FilterBodyCase(#"{"body":{"x":null}}"#, #"{"x":false}"#, false),
    FilterBodyCase(#"{"body":false}"#, "false", true),
    FilterBodyCase(#"{"body":"ping"}"#, #""ping""#, true),
    FilterBodyCase(#"{"body":"ping"}"#, #"{"ping":1}"#, false),
    // Objects match by their listed keys, recursively.
    FilterBodyCase(#"{"body":{"a":{"b":1}}}"#, #"{"a":{"b":1,"c":2},"d":3}"#, true),
    FilterBodyCase(#"{"body":{"a":{"b":1}}}"#, #"{"a":{"c":2}}"#, false),
    FilterBodyCase(#"{"body":{"a":{"b":1}}}"#, #"{"a":1}"#, false),
    FilterBodyCase(#"{"body":{"a":1,"b":2}}"#, #"{"a":1}"#, false),
    FilterBodyCase(#"{"body":{}}"#, #"{"a":1}"#, true),
    FilterBodyCase(#"{"body":{}}"#, "1", false),
    FilterBodyCase("{}", "1", true),
    // Arrays: a primitive is contained; an array must be contained element by element.
    FilterBodyCase(#"{"body":{"tags":"gift"}}"#, #"{"tags":["gift","sale"]}"#, true),
    FilterBodyCase(#"{"body":{"tags":"gift"}}"#, #"{"tags":["sale"]}"#, false),
    FilterBodyCase(#"{"body":{"tags":["gift","sale"]}}"#, #"{"tags":["new","sale","gift"]}"#, true),
    FilterBodyCase(#"{"body":{"tags":["gift","sale"]}}"#, #"{"tags":["gift"]}"#, false),
    FilterBodyCase(#"{"body":{"tags":["gift"]}}"#, #"{"tags":"gift"}"#, false),
    FilterBodyCase(#"{"body":{"tags":[{"$startsWith":"gi"}]}}"#, #"{"tags":["sale","gift"]}"#, true),
    FilterBodyCase(#"{"body":3}"#, "[1,2,3]", true),
    FilterBodyCase(#"{"body":{"items":{"sku":"A"}}}"#, #"{"items":[{"sku":"B"},{"sku":"A"}]}"#, true),
    FilterBodyCase(#"{"body":{"items":{"sku":"A"}}}"#, #"{"items":[{"sku":"B"}]}"#, false),
    FilterBodyCase(#"{"body":{"items":{"sku":"A","qty":2}}}"#, #"{"items":[{"sku":"A","qty":1},{"sku":"B","qty":2}]}"#, false),
    FilterBodyCase(#"{"body":{"items":{"qty":{"$lte":10}}}}"#, #"{"items":[{"qty":12},{"qty":9}]}"#, true),
    FilterBodyCase(#"{"body":{"items":{"qty":{"$lte":10}}}}"#, #"{"items":[{"qty":12},{"qty":11}]}"#, false),
    // $eq / $neq: deep equality of the whole value.
    FilterBodyCase(#"{"body":{"n":{"$eq":5}}}"#, #"{"n":5}"#, true),
    FilterBodyCase(#"{"body":{"n":{"$eq":5}}}"#, #"{"n":"5"}"#, false),
    FilterBodyCase(#"{"body":{"tags":{"$eq":["a","b"]}}}"#, #"{"tags":["a","b"]}"#, true),
    FilterBodyCase(#"{"body":{"tags":{"$eq":["a","b"]}}}"#, #"{"tags":["b","a"]}"#, false),
    FilterBodyCase(#"{"body":{"tags":{"$eq":["a","b"]}}}"#, #"{"tags":["a","b","c"]}"#, false),
    FilterBodyCase(#"{"body":{"tags":{"$eq":"a"}}}"#, #"{"tags":["a"]}"#, false),
    FilterBodyCase(#"{"body":{"o":{"$eq":{"a":1,"b":[2]}}}}"#, #"{"o":{"b":[2],"a":1}}"#, true),
    FilterBodyCase(#"{"body":{"o":{"$eq":{"a":1}}}}"#, #"{"o":{"a":1,"b":2}}"#, false),
    FilterBodyCase(#"{"body":{"x":{"$eq":null}}}"#, #"{"x":null}"#, true),
    FilterBodyCase(#"{"body":{"type":{"$neq":"created"}}}"#, #"{"type":"updated"}"#, true),
    FilterBodyCase(#"{"body":{"type":{"$neq":"created"}}}"#, #"{"type":"created"}"#, false),
    FilterBodyCase(#"{"body":{"n":{"$neq":"1"}}}"#, #"{"n":1}"#, true),
    FilterBodyCase(#"{"body":{"x":{"$neq":null}}}"#, #"{"x":null}"#, false),
    FilterBodyCase(#"{"body":{"x":{"$neq":null}}}"#, #"{"x":0}"#, true),
    // $in / $nin: membership in a list, substring of a string, element of an array.
    FilterBodyCase(#"{"body":{"type":{"$in":["order.created","order.paid"]}}}"#, #"{"type":"order.paid"}"#, true),
    FilterBodyCase(#"{"body":{"type":{"$in":["order.created","order.paid"]}}}"#, #"{"type":"order.refunded"}"#, false),
    FilterBodyCase(#"{"body":{"id":{"$in":[123,456]}}}"#, #"{"id":456}"#, true),
    FilterBodyCase(#"{"body":{"id":{"$in":[123,456]}}}"#, #"{"id":"123"}"#, false),
    FilterBodyCase(#"{"body":{"type":{"$in":["a","b"]}}}"#, #"{"type":["a"]}"#, false),
    FilterBodyCase(#"{"body":{"event":{"$in":"order"}}}"#, #"{"event":"new_order.created"}"#, true),
    FilterBodyCase(#"{"body":{"event":{"$in":"order"}}}"#, #"{"event":"customer.created"}"#, false),
    FilterBodyCase(#"{"body":{"s":{"$in":"aab"}}}"#, #"{"s":"xaaab"}"#, true),
    FilterBodyCase(#"{"body":{"s":{"$in":"abac"}}}"#, #"{"s":"ababac"}"#, true),
    FilterBodyCase(#"{"body":{"s":{"$in":"abab"}}}"#, #"{"s":"abaabaab"}"#, false),
    FilterBodyCase(#"{"body":{"s":{"$in":"é"}}}"#, #"{"s":"caf\u00e9!"}"#, true),
    FilterBodyCase(#"{"body":{"s":{"$in":""}}}"#, #"{"s":"x"}"#, true),
    FilterBodyCase(#"{"body":{"s":{"$in":"xy"}}}"#, #"{"s":"x"}"#, false),
    FilterBodyCase(#"{"body":{"roles":{"$in":"admin"}}}"#, #"{"roles":["user","admin"]}"#, true),
    FilterBodyCase(#"{"body":{"roles":{"$in":"admin"}}}"#, #"{"roles":["administrator"]}"#, false),
    FilterBodyCase(#"{"body":{"ids":{"$in":5}}}"#, #"{"ids":[1,5]}"#, true),
    FilterBodyCase(#"{"body":{"ids":{"$in":5}}}"#, #"{"ids":5}"#, false),
    FilterBodyCase(#"{"body":{"type":{"$nin":["a","b"]}}}"#, #"{"type":"c"}"#, true),
    FilterBodyCase(#"{"body":{"type":{"$nin":["a","b"]}}}"#, #"{"type":"a"}"#, false),
    FilterBodyCase(#"{"body":{"type":{"$nin":["a","b"]}}}"#, #"{"type":["c"]}"#, false),
    FilterBodyCase(#"{"body":{"tags":{"$nin":"spam"}}}"#, #"{"tags":["news"]}"#, true),
    FilterBodyCase(#"{"body":{"tags":{"$nin":"spam"}}}"#, #"{"tags":["news","spam"]}"#, false),
    FilterBodyCase(#"{"body":{"text":{"$nin":"spam"}}}"#, #"{"text":"no spam here"}"#, false),
    FilterBodyCase(#"{"body":{"text":{"$nin":"spam"}}}"#, #"{"text":"clean"}"#, true),
    // $gt $gte $lt $lte: numbers with numbers, strings with strings.
    FilterBodyCase(#"{"body":{"n":{"$gt":1}}}"#, #"{"n":2}"#, true),
    FilterBodyCase(#"{"body":{"n":{"$gt":1}}}"#, #"{"n":1}"#, false),
    FilterBodyCase(#"{"body":{"n":{"$gt":1}}}"#, #"{"n":"2"}"#, false),
    FilterBodyCase(#"{"body":{"n":{"$gt":1}}}"#, #"{"n":[2]}"#, false),
    FilterBodyCase(#"{"body":{"n":{"$gt":"1"}}}"#, #"{"n":2}"#, false),
    FilterBodyCase(#"{"body":{"n":{"$gte":1}}}"#, #"{"n":1}"#, true),
    FilterBodyCase(#"{"body":{"n":{"$gte":1}}}"#, #"{"n":0.99}"#, false),
    FilterBodyCase(#"{"body":{"n":{"$lt":1}}}"#, #"{"n":0.5}"#, true),
    FilterBodyCase(#"{"body":{"n":{"$lt":1}}}"#, #"{"n":1}"#, false),
    FilterBodyCase(#"{"body":{"n":{"$lte":-1}}}"#, #"{"n":-1}"#, true),
    FilterBodyCase(#"{"body":{"n":{"$lte":-1}}}"#, #"{"n":0}"#, false),
    FilterBodyCase(#"{"body":{"name":{"$gt":"b"}}}"#, #"{"name":"c"}"#, true),
    FilterBodyCase(#"{"body":{"name":{"$gt":"b"}}}"#, #"{"name":"a"}"#, false),
    FilterBodyCase(#"{"body":{"name":{"$lt":"b"}}}"#, #"{"name":"B"}"#, true),
    FilterBodyCase(#"{"body":{"name":{"$lte":"b"}}}"#, #"{"name":"b"}"#, true),
    FilterBodyCase(#"{"body":{"name":{"$gte":"ba"}}}"#, #"{"name":"b"}"#, false),
    FilterBodyCase(#"{"body":{"t":{"$gte":"2025-01-01T00:00:00Z","$lt":"2025-02-01T00:00:00Z"}}}"#, #"{"t":"2025-01-15T10:00:00Z"}"#, true),
    FilterBodyCase(
        #"{"body":{"t":{"$gte":"2025-01-01T00:00:00Z","$lt":"2025-02-01T00:00:00Z"}}}"#, #"{"t":"2025-02-01T00:00:00Z"}"#, false),
    FilterBodyCase(#"{"body":{"amount":{"$gte":100,"$lte":500}}}"#, #"{"amount":300}"#, true),
    FilterBodyCase(#"{"body":{"amount":{"$gte":100,"$lte":500}}}"#, #"{"amount":600}"#, false),
    FilterBodyCase(#"{"body":{"amount":{"$gte":100,"$lte":500}}}"#, #"{"amount":50}"#, false),
    // $startsWith / $endsWith: strings only, bytes not characters.
    FilterBodyCase(#"{"body":{"ref":{"$startsWith":"refs/heads/"}}}"#, #"{"ref":"refs/heads/main"}"#, true),
    FilterBodyCase(#"{"body":{"ref":{"$startsWith":"refs/heads/"}}}"#, #"{"ref":"refs/tags/v1"}"#, false),
    FilterBodyCase(#"{"body":{"ref":{"$startsWith":"1"}}}"#, #"{"ref":12}"#, false),
    FilterBodyCase(#"{"body":{"ref":{"$startsWith":["a","b"]}}}"#, #"{"ref":"bcd"}"#, true),
    FilterBodyCase(#"{"body":{"s":{"$startsWith":"e"}}}"#, #"{"s":"e\u0301t\u00e9"}"#, true),
    FilterBodyCase(#"{"body":{"email":{"$endsWith":"@example.com"}}}"#, #"{"email":"ada@example.com"}"#, true),
    FilterBodyCase(#"{"body":{"email":{"$endsWith":"@example.com"}}}"#, #"{"email":"ada@example.org"}"#, false),
    FilterBodyCase(#"{"body":{"email":{"$endsWith":["@a.com","@b.com"]}}}"#, #"{"email":"x@b.com"}"#, true),
    FilterBodyCase(#"{"body":{"s":{"$endsWith":"xx"}}}"#, #"{"s":"x"}"#, false),
    // $exist, and missing members.
    FilterBodyCase(#"{"body":{"a":{"$exist":true}}}"#, #"{"a":null}"#, true),
    FilterBodyCase(#"{"body":{"a":{"$exist":true}}}"#, #"{"b":1}"#, false),
    FilterBodyCase(#"{"body":{"a":{"$exist":false}}}"#, #"{"b":1}"#, true),
    FilterBodyCase(#"{"body":{"a":{"$exist":false}}}"#, #"{"a":null}"#, false),
    FilterBodyCase(#"{"body":{"a":{"b":{"$exist":false}}}}"#, #"{"a":{"c":1}}"#, true),
    FilterBodyCase(#"{"body":{"a":{"b":{"$exist":false}}}}"#, #"{"c":1}"#, false),
    FilterBodyCase(#"{"body":{"url":{"$exist":true,"$startsWith":"https://"}}}"#, #"{"url":"https://x"}"#, true),
    FilterBodyCase(#"{"body":{"url":{"$exist":true,"$startsWith":"https://"}}}"#, #"{"url":"http://x"}"#, false),
    FilterBodyCase(#"{"body":{"type":"created"}}"#, "{}", false),
    FilterBodyCase(#"{"body":{"n":{"$lt":5}}}"#, "{}", false),
    FilterBodyCase(#"{"body":{"status":{"$neq":"deleted"}}}"#, "{}", false),
    FilterBodyCase(#"{"body":{"tags":{"$nin":["spam"]}}}"#, "{}", false),
    FilterBodyCase(#"{"body":{"status":{"$not":"deleted"}}}"#, "{}", true),
    FilterBodyCase(#"{"body":{"status":{"$not":{"$exist":true}}}}"#, "{}", true),
    FilterBodyCase(#"{"body":{"status":{"$or":[{"$exist":false},"draft"]}}}"#, "{}", true),
    FilterBodyCase(#"{"body":{"status":{"$or":[{"$exist":false},"draft"]}}}"#, #"{"status":"draft"}"#, true),
    FilterBodyCase(#"{"body":{"status":{"$or":[{"$exist":false},"draft"]}}}"#, #"{"status":"live"}"#, false),
    // $or / $and / $not, inside members, at the body and at the top.
    FilterBodyCase(#"{"body":{"status":{"$or":["active","pending"]}}}"#, #"{"status":"pending"}"#, true),
    FilterBodyCase(#"{"body":{"status":{"$or":["active","pending"]}}}"#, #"{"status":"closed"}"#, false),
    FilterBodyCase(#"{"body":{"tags":{"$or":["a","b"]}}}"#, #"{"tags":["c","b"]}"#, true),
    FilterBodyCase(#"{"body":{"$or":[{"a":1},{"b":2}]}}"#, #"{"b":2}"#, true),
    FilterBodyCase(#"{"body":{"$or":[{"a":1},{"b":2}]}}"#, #"{"a":2,"b":1}"#, false),
    FilterBodyCase(#"{"body":{"amount":{"$and":[{"$gte":100},{"$lte":500}]}}}"#, #"{"amount":100}"#, true),
    FilterBodyCase(#"{"body":{"amount":{"$and":[{"$gte":100},{"$lte":500}]}}}"#, #"{"amount":501}"#, false),
    FilterBodyCase(#"{"body":{"status":{"$not":{"$in":["cancelled","refunded"]}}}}"#, #"{"status":"paid"}"#, true),
    FilterBodyCase(#"{"body":{"status":{"$not":{"$in":["cancelled","refunded"]}}}}"#, #"{"status":"refunded"}"#, false),
    FilterBodyCase(#"{"body":{"tags":{"$not":"spam"}}}"#, #"{"tags":["news","spam"]}"#, false),
    FilterBodyCase(#"{"$or":[{"body":{"type":"a"}},{"body":{"type":"b"}}]}"#, #"{"type":"b"}"#, true),
    FilterBodyCase(#"{"$or":[{"body":{"type":"a"}},{"body":{"type":"b"}}]}"#, #"{"type":"c"}"#, false),
    FilterBodyCase(nestedAndOr, #"{"age":12,"city":"lagos"}"#, true),
    FilterBodyCase(nestedAndOr, #"{"age":9,"city":"lagos"}"#, false),
    FilterBodyCase(#"{"$not":{"body":{"status":"deleted"}}}"#, #"{"status":"deleted"}"#, false),
    FilterBodyCase(#"{"$not":{"body":{"status":"deleted"}}}"#, #"{"status":"active"}"#, true),
    FilterBodyCase(#"{"$not":{"body":{"status":"deleted"}}}"#, "{}", true),
    FilterBodyCase(#"{"$not":{"$not":{"body":{"a":1}}}}"#, #"{"a":1}"#, true),
    // Hookdeck's "combine positive and negative conditions" example.
    FilterBodyCase(
        #"{"body":{"event":{"type":"message"}},"$not":{"$or":[{"body":{"event":{"subtype":{"$or":["changed","deleted"]}}}},{"body":{"team":{"$or":["t1","t2"]}}}]}}"#,
        #"{"event":{"type":"message"},"team":"t3"}"#, true),
    FilterBodyCase(
        #"{"body":{"event":{"type":"message"}},"$not":{"$or":[{"body":{"event":{"subtype":{"$or":["changed","deleted"]}}}},{"body":{"team":{"$or":["t1","t2"]}}}]}}"#,
        #"{"event":{"type":"message","subtype":"deleted"},"team":"t3"}"#, false),
    FilterBodyCase(
        #"{"body":{"event":{"type":"message"}},"$not":{"$or":[{"body":{"event":{"subtype":{"$or":["changed","deleted"]}}}},{"body":{"team":{"$or":["t1","t2"]}}}]}}"#,
        #"{"event":{"type":"message"},"team":"t2"}"#, false),
    // A body that is not JSON is a missing body.
    FilterBodyCase(#"{"body":{"a":1}}"#, nil, false),
    FilterBodyCase(#"{"body":{"$exist":false}}"#, nil, true),
    FilterBodyCase(#"{"body":{"$exist":true}}"#, nil, false),
    FilterBodyCase(#"{"body":{"$exist":true}}"#, "null", true),
    FilterBodyCase(#"{"body":{"$not":{"a":1}}}"#, nil, true),
    FilterBodyCase(#"{"path":"/hooks/shop"}"#, nil, true),
    FilterBodyCase("{}", nil, true),
]

private let partKeys = "body, headers, query, path, $or, $and and $not"
private let operators = "$eq, $neq, $in, $nin, $gt, $gte, $lt, $lte, $startsWith, $endsWith, $exist, $or, $and and $not"

private func makeFilter(_ text: String) throws -> DeliveryFilter {
    try DeliveryFilter(json: text)
}

private func parsed(_ text: String?) throws -> JSONValue? {
    guard let text else { return nil }
    let value = try #require(JSONValue.parse(text.utf8), "test body \(text)")
    return value
}

@Suite("DeliveryFilter: the destination filter dialect (SPEC §11)")
struct DeliveryFilterTests {
    @Test("a filter on the body matches as Hookdeck and Outpost document", arguments: bodyCases)
    func body(_ row: FilterBodyCase) throws {
        let filter = try makeFilter(row.filter)
        let input = DeliveryFilter.Input(body: try parsed(row.body), headers: [], query: "", path: "/hooks/shop")
        #expect(filter.matches(input) == row.matches)
    }

    @Test("$not around any filter gives the opposite answer", arguments: bodyCases)
    func negation(_ row: FilterBodyCase) throws {
        let filter = try makeFilter(#"{"$not":\#(row.filter)}"#)
        let input = DeliveryFilter.Input(body: try parsed(row.body), headers: [], query: "", path: "/hooks/shop")
        #expect(filter.matches(input) == !row.matches)
    }

    private static let headers = [
        HeaderField(name: "X-Shop-Topic", value: "orders/create"),
        HeaderField(name: "Accept", value: "text/plain"),
        HeaderField(name: "accept", value: "application/json"),
        HeaderField(name: "Content-Type", value: "application/json; charset=utf-8"),
    ]

    @Test(
        "headers match by case-insensitive name, several fields of a name joined with \", \"",
        arguments: [
            (#"{"headers":{"x-shop-topic":"orders/create"}}"#, true),
            (#"{"headers":{"X-SHOP-TOPIC":"orders/create"}}"#, true),
            (#"{"headers":{"x-shop-topic":"ORDERS/CREATE"}}"#, false),
            (#"{"headers":{"Accept":"text/plain, application/json"}}"#, true),
            (#"{"headers":{"accept":"text/plain"}}"#, false),
            (#"{"headers":{"ACCEPT":{"$in":"application/json"}}}"#, true),
            (#"{"headers":{"x-missing":{"$exist":false}}}"#, true),
            (#"{"headers":{"X-Shop-Topic":{"$exist":true}}}"#, true),
            (#"{"headers":{"$or":[{"X-Other":"1"},{"Content-Type":{"$startsWith":"application/json"}}]}}"#, true),
            (#"{"headers":{"$not":{"X-SHOP-TOPIC":"orders/create"}}}"#, false),
            (#"{"headers":{"content-type":{"$eq":"application/json"}}}"#, false),
        ])
    func headers(filter: String, matches: Bool) throws {
        let input = DeliveryFilter.Input(body: nil, headers: Self.headers, query: "", path: "/")
        #expect(try makeFilter(filter).matches(input) == matches)
    }

    @Test(
        "query items are decoded strings, the first value of a repeated name",
        arguments: [
            (#"{"query":{"region":"eu"}}"#, true),
            (#"{"query":{"Region":"eu"}}"#, false),
            (#"{"query":{"tag":"a"}}"#, true),
            (#"{"query":{"tag":"b"}}"#, false),
            (#"{"query":{"q":"hello world"}}"#, true),
            (#"{"query":{"enc":"/path?x"}}"#, true),
            (#"{"query":{"page":"2"}}"#, true),
            (#"{"query":{"page":2}}"#, false),
            (#"{"query":{"flag":""}}"#, true),
            (#"{"query":{"bad":{"$exist":false}}}"#, true),
            (#"{"query":{"region":{"$in":["eu","us"]},"page":{"$exist":true}}}"#, true),
        ])
    func query(filter: String, matches: Bool) throws {
        let query = "region=eu&tag=a&tag=b&q=hello+world&enc=%2Fpath%3Fx&page=2&flag&bad=%zz&=nameless"
        let input = DeliveryFilter.Input(body: nil, headers: [], query: query, path: "/")
        #expect(try makeFilter(filter).matches(input) == matches)
    }

    @Test("an empty query has no items, but is an object")
    func emptyQuery() throws {
        let input = DeliveryFilter.Input(body: nil, headers: [], query: "", path: "/")
        #expect(try !makeFilter(#"{"query":{"region":{"$exist":true}}}"#).matches(input))
        #expect(try makeFilter(#"{"query":{}}"#).matches(input))
    }

    @Test(
        "the path is a string at the root of its filter",
        arguments: [
            (#"{"path":"/hooks/shop/orders"}"#, true),
            (#"{"path":"/hooks/shop"}"#, false),
            (#"{"path":{"$startsWith":"/hooks/"}}"#, true),
            (#"{"path":{"$in":"shop"}}"#, true),
            (#"{"path":{"$not":{"$endsWith":"/health"}}}"#, true),
            (#"{"path":{"$in":["/a","/hooks/shop/orders"]}}"#, true),
        ])
    func path(filter: String, matches: Bool) throws {
        let input = DeliveryFilter.Input(body: nil, headers: [], query: "", path: "/hooks/shop/orders")
        #expect(try makeFilter(filter).matches(input) == matches)
    }

    @Test("the parts of a document must all match")
    func partsTogether() throws {
        let filter = try makeFilter(#"{"body":{"type":"a"},"headers":{"x-kind":"k"},"query":{"v":"1"},"path":"/p"}"#)
        func input(type: String = "a", kind: String = "k", query: String = "v=1", path: String = "/p") throws -> DeliveryFilter.Input {
            .init(body: try parsed(#"{"type":"\#(type)"}"#), headers: [HeaderField(name: "X-Kind", value: kind)], query: query, path: path)
        }
        #expect(filter.matches(try input()))
        #expect(!filter.matches(try input(type: "b")))
        #expect(!filter.matches(try input(kind: "j")))
        #expect(!filter.matches(try input(query: "v=2")))
        #expect(!filter.matches(try input(path: "/q")))
    }

    @Test(
        "a filter that cannot be compiled names the JSON path of the offending part",
        arguments: [
            (#"{"bodies":{"a":1}}"#, "bodies: unknown key; the keys of a filter are \(partKeys)"),
            (#"{"$nor":[{"body":1}]}"#, "$nor: unknown operator; the keys of a filter are \(partKeys)"),
            (#"[{"body":1}]"#, "a filter is an object whose keys are \(partKeys)"),
            (#"{"$not":"x"}"#, "$not: expects an object whose keys are \(partKeys)"),
            (#"{"$or":[{"body":1},{"nope":1}]}"#, "$or[1].nope: unknown key; the keys of a filter are \(partKeys)"),
            (#"{"$and":[]}"#, "$and: expects a non-empty array"),
            (
                #"{"body":{"type":{"$regex":"^a"}}}"#,
                "body.type.$regex: unknown operator; the operators are \(operators)"
            ),
            (
                #"{"body":{"a":{"$not":{"$exists":true}}}}"#,
                "body.a.$not.$exists: unknown operator; the operators are \(operators)"
            ),
            (#"{"body":{"type":{"$in":{"a":1}}}}"#, "body.type.$in: expects an array, or a string, a number, a boolean or null"),
            (#"{"body":{"type":{"$nin":["a",["b"]]}}}"#, "body.type.$nin[1]: expects a string, a number, a boolean or null"),
            (#"{"body":{"a":{"$exist":"yes"}}}"#, "body.a.$exist: expects true or false"),
            (#"{"body":{"a":{"$gt":[1]}}}"#, "body.a.$gt: expects a number or a string"),
            (#"{"body":{"a":{"$lte":null}}}"#, "body.a.$lte: expects a number or a string"),
            (#"{"body":{"a":{"$startsWith":1}}}"#, "body.a.$startsWith: expects a string or a non-empty array of strings"),
            (#"{"body":{"a":{"$endsWith":["x",2]}}}"#, "body.a.$endsWith[1]: expects a string"),
            (#"{"body":{"a":{"$or":{"b":1}}}}"#, "body.a.$or: expects a non-empty array"),
            (#"{"body":{"a":{"$and":[]}}}"#, "body.a.$and: expects a non-empty array"),
            (#"{"body":{"list":[{"$bad":1}]}}"#, "body.list[0].$bad: unknown operator; the operators are \(operators)"),
            (#"{"headers":{"$or":[{"x-a":{"$gt":{}}}]}}"#, "headers.$or[0].x-a.$gt: expects a number or a string"),
            (#"{"body":{"a":{"$ref":"b"}}}"#, "body.a.$ref: references to other fields ($ref) are not supported"),
            (#"{"body":{"a":1,}}"#, "the filter is not valid JSON"),
        ])
    func invalid(filter: String, message: String) {
        #expect(throws: DeliveryFilter.Invalid.self) { try DeliveryFilter(json: filter) }
        do {
            _ = try DeliveryFilter(json: filter)
        } catch {
            #expect(error.message == message)
        }
    }

    @Test("a filter nested past the depth bound is refused, not overflowing the stack")
    func deepFilter() throws {
        var document = JSONValue.number(1)
        for _ in 0..<1_000 { document = .object([("a", document)]) }
        let deep = JSONValue.object([("body", document)])
        #expect(throws: DeliveryFilter.Invalid.self) { try DeliveryFilter(deep) }
        var fine = JSONValue.number(1)
        for _ in 0..<100 { fine = .object([("a", fine)]) }
        #expect(throws: Never.self) { try DeliveryFilter(.object([("body", fine)])) }
    }

    @Test("the filter keeps the document it was built from")
    func keepsDocument() throws {
        let text = #"{"body":{"type":{"$in":["order.created","order.paid"]}}}"#
        #expect(try makeFilter(text).document == JSONValue.parse(text.utf8))
    }
}

// MARK: - JSONValue

@Suite("JSONValue: the strict RFC 8259 parser")
struct JSONValueTests {
    @Test(
        "valid documents parse to their values",
        arguments: [
            ("null", JSONValue.null),
            (" true ", .bool(true)),
            ("false", .bool(false)),
            ("0", .number(0)),
            ("-0", .number(-0.0)),
            ("-12.5e2", .number(-1250)),
            ("1E-2", .number(0.01)),
            ("123456789012345", .number(123_456_789_012_345)),
            ("12345678901234567890", .number(12_345_678_901_234_567_168)),
            ("1e308", .number(1e308)),
            ("1e-400", .number(0)),
            (#""""#, .string("")),
            (#""héllo 😀""#, .string("héllo 😀")),
            (#""\"\\\/\b\f\n\r\t""#, .string("\"\\/\u{08}\u{0C}\n\r\t")),
            (#""\u00e9\u00E9""#, .string("éé")),
            (#""\ud83d\ude00""#, .string("😀")),
            (#""a\u0000b""#, .string("a\u{0}b")),
            (#""\ud800""#, .string("\u{FFFD}")),
            (#""\udc00x""#, .string("\u{FFFD}x")),
            (#""\ud800\u0041""#, .string("\u{FFFD}A")),
            (#""\ud800\ud800\udc00""#, .string("\u{FFFD}\u{10000}")),
            ("[]", .array([])),
            (" [1 , \"a\" ,[null]] ", .array([.number(1), .string("a"), .array([.null])])),
            ("{}", .object([])),
            (#"{"a":{"b":[true]},"c":1}"#, .object([("a", .object([("b", .array([.bool(true)]))])), ("c", .number(1))])),
            ("\u{FEFF}{\"bom\":1}", .object([("bom", .number(1))])),
            ("\n\t\r {\"ws\" : 1 }\n", .object([("ws", .number(1))])),
        ])
    func valid(text: String, expected: JSONValue) throws {
        let value = try #require(JSONValue.parse(text.utf8), "\(text)")
        #expect(value == expected)
        if case .number(let number) = expected, number == 0 {
            guard case .number(let parsed) = value else { return }
            #expect(parsed.sign == number.sign, "the sign of zero is kept")
        }
    }

    @Test(
        "invalid documents are refused",
        arguments: [
            "", " ", "[1,]", #"{"a":1,}"#, "[,1]", "01", "-01", "00", "1.", ".5", "+1", "-", "1e", "1e+", "0x10",
            "[1 2]", #"{"a" 1}"#, #"{"a":}"#, "{a:1}", "{1:2}", "'x'", "tru", "nul", "falsey", "NaN", "Infinity",
            "-Infinity", "{} {}", "[] x", "\"unterminated", "[", "{", #"{"a""#, "[1,", "\"\\x\"",
            #""\u12G4""#, #""\u12""#, "\"\\", "\"raw\u{01}\"", "\"tab\there\"", "\"new\nline\"", "\u{FEFF}",
        ])
    func invalid(text: String) {
        #expect(JSONValue.parse(text.utf8) == nil, "\(text)")
    }

    @Test("bytes that are not UTF-8 are refused, inside strings and out")
    func invalidUTF8() {
        let quote = UInt8(ascii: "\"")
        #expect(JSONValue.parse([quote, 0xC3, 0x28, quote]) == nil)
        #expect(JSONValue.parse([quote, 0xED, 0xA0, 0x80, quote]) == nil, "an encoded surrogate")
        #expect(JSONValue.parse([quote, 0xFF, quote]) == nil)
        #expect(JSONValue.parse([UInt8(ascii: "["), 0xC3, 0xA9, UInt8(ascii: "]")]) == nil)
        #expect(JSONValue.parse([quote, UInt8(ascii: "\\"), UInt8(ascii: "n"), 0xC3, quote]) == nil, "after an escape")
    }

    @Test("nesting is bounded by JSONValidator.maximumDepth, and 10,000 '[' return nil without crashing")
    func depth() {
        let limit = JSONValidator.maximumDepth
        let deepest = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
        #expect(JSONValue.parse(deepest.utf8) != nil)
        #expect(JSONValidator.isValid(Array(deepest.utf8)))
        let tooDeep = String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)
        #expect(JSONValue.parse(tooDeep.utf8) == nil)
        #expect(!JSONValidator.isValid(Array(tooDeep.utf8)))
        #expect(JSONValue.parse(String(repeating: "[", count: 10_000).utf8) == nil)
        #expect(JSONValue.parse((String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)).utf8) == nil)
        #expect(JSONValue.parse(String(repeating: #"{"a":"#, count: 10_000).utf8) == nil)
    }

    @Test("a repeated key keeps its first place and its last value")
    func duplicateKeys() throws {
        let small = try #require(JSONValue.parse(#"{"a":1,"b":2,"a":3}"#.utf8))
        guard case .object(let members) = small else { throw Failure("not an object: \(small)") }
        #expect(members.map(\.key) == ["a", "b"])
        #expect(small["a"] == .number(3))
        // Past 16 members the parser finds repeats through an index: same result.
        let keys = (0..<20).map { #""k\#($0)":\#($0)"# }.joined(separator: ",")
        let large = try #require(JSONValue.parse(#"{\#(keys),"k3":"x","k19":"y","k20":20}"#.utf8))
        guard case .object(let many) = large else { throw Failure("not an object: \(large)") }
        #expect(many.count == 21)
        #expect(many[3].key == "k3" && many[3].value == .string("x"))
        #expect(large["k19"] == .string("y"))
        #expect(many.last?.key == "k20")
    }

    @Test("equality: objects in any order, 1 equals 1.0, never \"1\", strings byte for byte")
    func equality() throws {
        let a = try #require(JSONValue.parse(#"{"a":1,"b":[1,{"c":null}]}"#.utf8))
        let b = try #require(JSONValue.parse(#"{"b":[1.0,{"c":null}],"a":1e0}"#.utf8))
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(Set([a, b]).count == 1)
        #expect(JSONValue.number(1) != .string("1"))
        #expect(JSONValue.array([.number(1), .number(2)]) != .array([.number(2), .number(1)]))
        #expect(JSONValue.object([("a", .number(1))]) != .object([("a", .number(1)), ("b", .null)]))
        #expect(JSONValue.string("\u{E9}") != .string("e\u{301}"), "no canonical equivalence")
    }

    @Test(
        "description writes JSON that parses back to the same value",
        arguments: [
            #"{"a":[1,-2.5,1e+300,"x\ny\u0001",true,false,null],"b":{}}"#, #""\u00e9\ud83d\ude00""#, "[]", "-0", "0.1",
        ])
    func description(text: String) throws {
        let value = try #require(JSONValue.parse(text.utf8))
        #expect(JSONValue.parse(value.description.utf8) == value, "\(value)")
    }

    @Test("a number beyond a Double is the largest finite one of its sign")
    func hugeNumbers() {
        #expect(JSONValue.parse("1e400".utf8) == .number(.greatestFiniteMagnitude))
        #expect(JSONValue.parse("[-1e400]".utf8) == .array([.number(-.greatestFiniteMagnitude)]))
        #expect(JSONValue.parse("666.666E5555555555555555566666666556665".utf8) == .number(.greatestFiniteMagnitude))
    }

    @Test("parse agrees with JSONValidator")
    func agreesWithValidator() {
        var generator = SplitMix(seed: 0x5EED)
        let alphabet = Array(#"{}[],:"\ 0123456789-+.eEtrufalsn\/ubx"#.utf8) + [0x0A, 0xC3, 0xA9, 0x01]
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 24)
            let bytes = (0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            let parsed = JSONValue.parse(bytes)
            let valid = JSONValidator.isValid(bytes)
            #expect((parsed != nil) == valid, "parsed \(parsed != nil), valid \(valid): \(bytes)")
        }
    }
}

private struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
