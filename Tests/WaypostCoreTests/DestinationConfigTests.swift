import Testing
import WaypostCore

private func parse(_ lines: [String]) throws(ConfigError) -> WaypostConfig {
    try WaypostConfig.parse(yaml: lines.joined(separator: "\n") + "\n", file: "test.yaml")
}

/// A route `shop` on /shop with the lines given after its path (line 4 on).
private func shop(_ lines: String...) -> [String] {
    ["routes:", "  - name: shop", "    path: /shop"] + lines.map { "    " + $0 }
}

/// SPEC §11: `destinations` per route, the route's delivery keys as their defaults.
@Suite struct DestinationConfigTests {
    @Test func aRouteWithoutDestinationsHasOneNamedLikeIt() throws {
        let config = try parse(shop("upstream: http://erp.internal/in", "ordering: key", "ordering_key: header:X-Key", "concurrency: 4"))
        let route = config.routes[0]
        #expect(route.destinations.count == 1)
        let destination = route.destinations[0]
        #expect(destination.name == "shop")
        #expect(destination.upstream == "http://erp.internal/in")
        #expect(destination.ordering == .key)
        #expect(destination.orderingKey == .header("X-Key"))
        #expect(destination.concurrency == 4)
        #expect(route.replyFrom == 0)
    }

    @Test func routeKeysAreTheDestinationsDefaults() throws {
        let config = try parse(
            shop(
                "ordering: none", "concurrency: 8", "retry: { max_attempts: 3 }", "add_headers: { X-From: waypost }",
                "reply_from: analytics",
                "destinations:",
                "  - name: erp",
                "    upstream: http://erp.internal/in",
                "    ordering: key",
                "    ordering_key: json:/order/id",
                "  - name: analytics",
                "    upstream: http://analytics.internal/in",
                "    concurrency: 2",
                "    filter: { body: { type: { $in: [order.created, order.paid] } } }"))
        let route = config.routes[0]
        #expect(route.destinations.map(\.name) == ["erp", "analytics"])
        let (erp, analytics) = (route.destinations[0], route.destinations[1])
        #expect(erp.ordering == .key && erp.orderingKey == .jsonPointer("/order/id"))
        #expect(erp.concurrency == 8 && erp.retry.maxAttempts == 3)
        #expect(erp.addHeaders == [HeaderField(name: "X-From", value: "waypost")])
        #expect(analytics.ordering == .none && analytics.orderingKey == nil && analytics.concurrency == 2)
        #expect(erp.filter == nil)
        let filter = try #require(analytics.filter)
        let paid = DeliveryFilter.Input(body: JSONValue.parse(#"{"type":"order.paid"}"#.utf8), headers: [], query: "", path: "/")
        let refunded = DeliveryFilter.Input(body: JSONValue.parse(#"{"type":"order.refunded"}"#.utf8), headers: [], query: "", path: "/")
        #expect(filter.matches(paid) && !filter.matches(refunded))
        #expect(route.replyFrom == 1 && route.replyDestination.name == "analytics")
    }

    @Test func aFilterMayBeWrittenAsJSONText() throws {
        let config = try parse(shop("upstream: http://h/", #"filter: '{"headers": {"x-kind": "a"}}'"#))
        let filter = try #require(config.routes[0].destinations[0].filter)
        #expect(filter.matches(.init(body: nil, headers: [HeaderField(name: "X-Kind", value: "a")], query: "", path: "/")))
        #expect(!filter.matches(.init(body: nil, headers: [], query: "", path: "/")))
    }

    @Test func flowControlKeys() throws {
        let config = try parse(
            shop(
                "upstream: http://h/", "rate_limit: 600/m", "breaker: { failures: 3, probe_interval: 2s }",
                "destinations:",
                "  - { name: a }",
                "  - { name: b, rate_limit: 50/s, rate_limit_burst: 5, breaker: off }"))
        let (a, b) = (config.routes[0].destinations[0], config.routes[0].destinations[1])
        #expect(a.rateLimit == RateLimit(count: 600, perMilliseconds: 60_000) && a.rateLimit?.burst == 10)
        #expect(a.breaker == BreakerPolicy(failures: 3, probeIntervalMilliseconds: 2000))
        #expect(b.rateLimit == RateLimit(count: 50, perMilliseconds: 1000, burst: 5))
        #expect(b.breaker == nil)
        let plain = try parse(shop("upstream: http://h/"))
        #expect(plain.routes[0].destinations[0].rateLimit == nil)
        #expect(plain.routes[0].destinations[0].breaker == BreakerPolicy(failures: 20, probeIntervalMilliseconds: 30_000))
    }

    struct Broken: Sendable, CustomTestStringConvertible {
        var label: String
        var lines: [String]
        var key: String
        var mentions: String
        var testDescription: String { label }
    }

    static let broken: [Broken] = [
        Broken(
            label: "no upstream anywhere", lines: shop("destinations:", "  - name: a"), key: "routes[0].destinations[0].upstream",
            mentions: "missing required key \"upstream\""),
        Broken(
            label: "no name", lines: shop("destinations:", "  - upstream: http://h/"), key: "routes[0].destinations[0].name",
            mentions: "missing required key \"name\""),
        Broken(
            label: "duplicate names",
            lines: shop("upstream: http://h/", "destinations:", "  - name: a", "  - name: a"), key: "routes[0].destinations[1].name",
            mentions: "duplicate destination name \"a\""),
        Broken(
            label: "empty list", lines: shop("upstream: http://h/", "destinations: []"), key: "routes[0].destinations",
            mentions: "at least one destination"),
        Broken(
            label: "a route-only key in a destination",
            lines: shop("destinations:", "  - name: a", "    upstream: http://h/", "    mode: sync"), key: "routes[0].destinations[0].mode",
            mentions: "unknown key"),
        Broken(
            label: "reply_from names nothing",
            lines: shop("reply_from: b", "destinations:", "  - name: a", "    upstream: http://h/"), key: "routes[0].reply_from",
            mentions: "names no destination of this route (a)"),
        Broken(
            label: "reply_from without destinations names another", lines: shop("upstream: http://h/", "reply_from: erp"),
            key: "routes[0].reply_from", mentions: "named like the route (shop)"),
        Broken(
            label: "ordering key missing in a destination",
            lines: shop("destinations:", "  - name: a", "    upstream: http://h/", "    ordering: key"),
            key: "routes[0].destinations[0].ordering_key", mentions: "needs ordering_key"),
        Broken(
            label: "a filter with an unknown operator",
            lines: shop("upstream: http://h/", "filter: { body: { n: { $near: 1 } } }"), key: "routes[0].filter.body.n.$near",
            mentions: "$near"),
        Broken(
            label: "a filter on an unknown part",
            lines: shop("destinations:", "  - name: a", "    upstream: http://h/", "    filter: { bodyy: {} }"),
            key: "routes[0].destinations[0].filter.bodyy", mentions: ""),
        Broken(
            label: "a filter that is not JSON", lines: shop("upstream: http://h/", "filter: '{body'"), key: "routes[0].filter",
            mentions: "a string of JSON"),
        Broken(
            label: "a rate per hour", lines: shop("upstream: http://h/", "rate_limit: 50/h"), key: "routes[0].rate_limit",
            mentions: "50/s or 600/m"),
        Broken(
            label: "a rate of zero", lines: shop("upstream: http://h/", "rate_limit: 0/s"), key: "routes[0].rate_limit",
            mentions: "from 1 to 1000000"),
        Broken(
            label: "a burst without a rate", lines: shop("upstream: http://h/", "rate_limit_burst: 5"),
            key: "routes[0].rate_limit_burst", mentions: "only with rate_limit"),
        Broken(label: "breaker: on", lines: shop("upstream: http://h/", "breaker: on"), key: "routes[0].breaker", mentions: "expected off"),
        Broken(
            label: "breaker failures 0", lines: shop("upstream: http://h/", "breaker: { failures: 0 }"),
            key: "routes[0].breaker.failures", mentions: ""),
        Broken(
            label: "breaker with an unknown key", lines: shop("upstream: http://h/", "breaker: { failure: 3 }"),
            key: "routes[0].breaker.failure", mentions: "unknown key"),
        Broken(
            label: "a bad upstream", lines: shop("destinations:", "  - name: a", "    upstream: ftp://h/"),
            key: "routes[0].destinations[0].upstream", mentions: "http://"),
    ]

    @Test(arguments: broken)
    func refuses(_ case: Broken) {
        do {
            _ = try parse(`case`.lines)
            Issue.record("accepted")
        } catch {
            #expect(error.key == `case`.key, "\(error)")
            #expect(error.description.contains(`case`.mentions), "\(error)")
            #expect(error.description.contains("test.yaml"), "\(error)")
        }
    }
}
