import Foundation
import Testing
import WaypostCore

/// The repository root, found from this file's path, so the tests read the shipped examples.
private let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // WaypostCoreTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()

private func example(_ name: String) throws -> String {
    try String(contentsOf: repositoryRoot.appendingPathComponent("deploy/examples/\(name)"), encoding: .utf8)
}

private func parse(_ lines: [String]) throws(ConfigError) -> WaypostConfig {
    try WaypostConfig.parse(yaml: lines.joined(separator: "\n") + "\n", file: "test.yaml")
}

/// A valid one-route `routes:` block, four lines long.
private let oneRoute = ["routes:", "  - name: a", "    path: /a", "    upstream: http://127.0.0.1:9000"]

@Suite struct ConfigTests {

    @Test("cluster: node and lease_ttl on a PostgreSQL journal; the defaults (the host's name, 10s) otherwise")
    func cluster() throws {
        let configured = try parse(["journal: { url: 'postgres://u@h/d' }", "cluster: { node: 'eu-1.b:2', lease_ttl: 30s }"] + oneRoute)
        #expect(configured.cluster.node == "eu-1.b:2")
        #expect(configured.cluster.leaseTTL == .seconds(30))
        let defaults = try parse(["journal: { url: 'postgres://u@h/d' }"] + oneRoute)
        #expect(defaults.cluster.node == nil && defaults.cluster.leaseTTL == .seconds(10))
        #expect(!ClusterConfig.isValidNode("") && !ClusterConfig.isValidNode(String(repeating: "n", count: 101)))
        #expect(!ClusterConfig.isValidNode("a\u{0}") && ClusterConfig.isValidNode(String(repeating: "n", count: 100)))
    }

    // MARK: Units

    @Test(arguments: [
        ("250ms", Duration.milliseconds(250)),
        ("0ms", .zero),
        ("0s", .zero),
        ("5s", .seconds(5)),
        ("10m", .seconds(600)),
        ("72h", .seconds(72 * 3600)),
        ("7d", .seconds(7 * 86_400)),
        ("1000000ms", .seconds(1000)),
    ])
    func parsesDurations(text: String, expected: Duration) {
        #expect(parseDuration(text) == expected)
    }

    @Test(arguments: [
        "", "5", "-5s", "+5s", "1.5s", "5 s", " 5s", "5S", "5sec", "s", "1h30m", "5us", "10M",
        "99999999999999999999s", "9223372036854775807d",
    ])
    func rejectsBadDurations(text: String) {
        #expect(parseDuration(text) == nil)
    }

    @Test(arguments: [
        ("0", 0),
        ("512", 512),
        ("512B", 512),
        ("64KiB", 64 * 1024),
        ("5MiB", 5 * 1024 * 1024),
        ("1GiB", 1 << 30),
    ])
    func parsesSizes(text: String, expected: Int) {
        #expect(parseSize(text) == expected)
    }

    @Test(arguments: [
        "", "-1", "1.5MiB", "64 KiB", "64kib", "1KB", "1MB", "1GB", "KiB", "1TiB", "0x10",
        "99999999999999999999", "9223372036854775807GiB",
    ])
    func rejectsBadSizes(text: String) {
        #expect(parseSize(text) == nil)
    }

    // MARK: HostPort

    @Test(arguments: [
        ("0.0.0.0:8080", "0.0.0.0", 8080),
        ("127.0.0.1:9901", "127.0.0.1", 9901),
        ("[::1]:8080", "::1", 8080),
        ("[fe80::1%eth0]:80", "fe80::1%eth0", 80),
        ("localhost:80", "localhost", 80),
        ("127.0.0.1:0", "127.0.0.1", 0),
        ("example.com:65535", "example.com", 65535),
    ])
    func parsesHostPort(text: String, host: String, port: Int) throws {
        let parsed = try HostPort(parsing: text)
        #expect(parsed == HostPort(host: host, port: port))
        #expect(parsed.description == text)
    }

    @Test(arguments: [
        "", "8080", ":8080", "localhost", "localhost:", "localhost:65536", "localhost:-1", "localhost:http",
        "::1:8080", "[::1]", "[::1]8080", "[::1:8080", "[]:80", "exa mple:80", "host:080808",
        "http://localhost:80",
    ])
    func rejectsBadHostPort(text: String) {
        #expect(throws: ConfigError.self) { try HostPort(parsing: text) }
    }

    // MARK: Small value types

    @Test(arguments: [
        ("409", 409, 409),
        ("5xx", 500, 599),
        ("4XX", 400, 499),
        ("500-599", 500, 599),
        ("500 - 504", 500, 504),
    ])
    func parsesStatusRanges(text: String, lower: Int, upper: Int) throws {
        let range = try #require(StatusRange(parsing: text))
        #expect(range == StatusRange(lower: lower, upper: upper))
        #expect(range.contains(lower) && range.contains(upper))
        #expect(!range.contains(lower - 1) && !range.contains(upper + 1))
    }

    @Test(arguments: ["", "99", "600", "6xx", "0xx", "5x", "599-500", "500-", "abc", "500-600"])
    func rejectsBadStatusRanges(text: String) {
        #expect(StatusRange(parsing: text) == nil)
    }

    @Test func statusRangeDescriptionsReadBack() {
        #expect(StatusRange(lower: 409, upper: 409).description == "409")
        #expect(StatusRange(lower: 500, upper: 599).description == "5xx")
        #expect(StatusRange(lower: 500, upper: 504).description == "500-504")
    }

    @Test func parsesOrderingKeys() throws {
        #expect(try OrderingKey(parsing: "header:X-Repo") == .header("X-Repo"))
        #expect(try OrderingKey(parsing: "json:/repository/id") == .jsonPointer("/repository/id"))
        #expect(try OrderingKey(parsing: "json:/a~1b/~0c") == .jsonPointer("/a~1b/~0c"))
        #expect(OrderingKey.jsonPointer("/a").description == "json:/a")
        for bad in ["header:", "header:X Repo", "json:", "json:repository", "json:/a~2", "body:/a", "X-Repo"] {
            #expect(throws: ConfigError.self, "\(bad)") { try OrderingKey(parsing: bad) }
        }
    }

    @Test func errorDescriptionLeavesOutUnknownParts() {
        let full = ConfigError(file: "config.yaml", line: 12, key: "routes[0].retry.factor", message: "expected a number, got \"abc\"")
        #expect(full.description == "config.yaml:12: routes[0].retry.factor: expected a number, got \"abc\"")
        #expect(ConfigError(file: "config.yaml", message: "the file is empty").description == "config.yaml: the file is empty")
        #expect(ConfigError(key: "upstream", message: "bad").description == "upstream: bad")
    }

    // MARK: The shipped examples

    @Test func fullExampleOfTheSpecParses() throws {
        let config = try WaypostConfig.parse(yaml: try example("full.yaml"), file: "full.yaml")
        #expect(config.listen == HostPort(host: "0.0.0.0", port: 8080))
        #expect(config.admin == AdminConfig(listen: HostPort(host: "127.0.0.1", port: 9901), tokenEnv: "WAYPOST_ADMIN_TOKEN"))
        #expect(config.journal.path == "/var/lib/waypost/journal.db")
        #expect(config.journal.durability == .full)
        #expect(config.journal.maxBacklog == 1_000_000)
        #expect(config.journal.retainDelivered == .seconds(7 * 86_400))
        #expect(config.shutdownGrace == .seconds(10))
        #expect(config.defaults == RouteLimits(maxBodyBytes: 1 << 20, maxHeaderBytes: 64 << 10))

        try #require(config.routes.count == 1)
        let route = config.routes[0]
        #expect(route.name == "github")
        #expect(route.path == "/hooks/github")
        #expect(route.upstream == "https://integration.internal/github")
        #expect(route.mode == .async)
        #expect(route.syncTimeout == .seconds(30))
        #expect(route.ordering == .key)
        #expect(route.orderingKey == .header("X-GitHub-Repository-Id"))
        #expect(route.concurrency == 16)
        #expect(route.idempotencyHeader == "X-GitHub-Delivery")
        #expect(route.dedupWindow == .seconds(24 * 3600))
        #expect(
            route.retry
                == RetryPolicy(initial: .seconds(1), factor: 2, maxDelay: .seconds(600), maxAttempts: 20, maxAge: .seconds(72 * 3600)))
        #expect(route.retry.retryOn == nil)
        #expect(route.onExhausted == .deadLetter)
        #expect(route.timeouts == Timeouts(connect: .seconds(5), total: .seconds(30)))
        #expect(route.maxBodyBytes == 5 << 20)
        #expect(route.maxHeaderBytes == 64 << 10)
        #expect(route.contentTypes == ["application/json"])
        #expect(route.validate == .json)
        #expect(route.verify == VerifyConfig(scheme: .github, secret: SecretSource(.env("GITHUB_WEBHOOK_SECRET"))))
        #expect(route.verify?.tolerance == .seconds(300))
        #expect(route.sign == SignConfig(scheme: .standardWebhooks, secret: SecretSource(.env("UPSTREAM_SIGNING_SECRET"))))
        #expect(route.addHeaders == [HeaderField(name: "X-Api-Key", value: "${INTEGRATION_API_KEY}")])
        #expect(route.removeHeaders == ["Cookie"])
    }

    @Test func minimalExampleTakesEveryDefault() throws {
        let config = try WaypostConfig.parse(yaml: try example("minimal.yaml"), file: "minimal.yaml")
        let expected = WaypostConfig(routes: [RouteConfig(name: "default", path: "/", upstream: "http://127.0.0.1:9000")])
        #expect(config == expected)
        #expect(config.listen.description == "127.0.0.1:8080")
        #expect(config.admin.listen.description == "127.0.0.1:9901")
        #expect(config.admin.tokenEnv == "WAYPOST_ADMIN_TOKEN")
        #expect(
            config.journal
                == JournalConfig(path: "./waypost.db", durability: .full, maxBacklog: 1_000_000, retainDelivered: .seconds(604_800)))
        #expect(config.shutdownGrace == .seconds(10))
        let route = config.routes[0]
        #expect(
            route.retry == RetryPolicy(initial: .seconds(1), factor: 2, maxDelay: .seconds(600), maxAttempts: 20, maxAge: .seconds(259_200))
        )
        #expect(route.maxBodyBytes == 1_048_576 && route.maxHeaderBytes == 65_536)
        #expect(route.ordering == .fifo && route.orderingKey == nil && route.concurrency == 16)
        #expect(route.idempotencyHeader == "Idempotency-Key" && route.dedupWindow == .seconds(86_400))
        #expect(route.contentTypes == nil && route.validate == BodyValidation.none)
        #expect(route.verify == nil && route.sign == nil && route.addHeaders.isEmpty && route.removeHeaders.isEmpty)
    }

    // MARK: Defaults and values

    @Test func routesInheritGlobalLimitsUnlessTheySetTheirOwn() throws {
        let config = try parse([
            "defaults: { max_body_bytes: 2MiB, max_header_bytes: 16KiB }",
            "routes:",
            "  - { name: inherits, path: /a, upstream: http://127.0.0.1:9000 }",
            "  - { name: own, path: /b, upstream: http://127.0.0.1:9000, max_body_bytes: 512, max_header_bytes: 8KiB }",
            "  - { name: big, path: /c, upstream: http://127.0.0.1:9000, max_body_bytes: 100MiB }",
        ])
        #expect(config.defaults == RouteLimits(maxBodyBytes: 2 << 20, maxHeaderBytes: 16 << 10))
        #expect(config.routes.map(\.maxBodyBytes) == [2 << 20, 512, 100 << 20])
        #expect(config.routes.map(\.maxHeaderBytes) == [16 << 10, 8 << 10, 16 << 10])
    }

    @Test func keepsAddHeadersInFileOrderAndReadsEverySetting() throws {
        let config = try parse([
            "routes:",
            "  - name: orders.v2",
            "    path: /hooks/orders/",
            "    upstream: HTTPS://[::1]:8443/in/orders",
            "    mode: sync",
            "    sync_timeout: 2500ms",
            "    ordering: key",
            "    ordering_key: json:/order/id",
            "    concurrency: 4",
            "    retry:",
            "      initial: 250ms",
            "      factor: 1.5",
            "      max_delay: 1m",
            "      max_attempts: 3",
            "      max_age: 1h",
            "      retry_on: [409, \"5xx\", \"420-429\"]",
            "    on_exhausted: block",
            "    content_types: [Application/JSON, text/plain]",
            "    verify:",
            "      scheme: hmac-sha256",
            "      secret_file: /run/secrets/orders",
            "      header: X-Signature",
            "      encoding: base64",
            "      prefix: \"sha256=\"",
            "    add_headers:",
            "      X-Zeta: last-letter",
            "      X-Alpha: 1",
            "      Authorization: \"Bearer ${ORDERS_TOKEN}\"",
            "    remove_headers: [Cookie, X-Internal]",
        ])
        let route = try #require(config.routes.first)
        #expect(route.name == "orders.v2")
        #expect(route.path == "/hooks/orders")
        #expect(route.upstream == "HTTPS://[::1]:8443/in/orders")
        #expect(route.mode == .sync)
        #expect(route.syncTimeout == .milliseconds(2500))
        #expect(route.orderingKey == .jsonPointer("/order/id"))
        #expect(route.concurrency == 4)
        #expect(route.retry.initial == .milliseconds(250))
        #expect(route.retry.factor == 1.5)
        #expect(route.retry.maxDelay == .seconds(60))
        #expect(route.retry.maxAttempts == 3)
        #expect(route.retry.maxAge == .seconds(3600))
        #expect(route.retry.retryOn?.map(\.description) == ["409", "5xx", "420-429"])
        #expect(route.retry.retryOn?.first == StatusRange(lower: 409, upper: 409))
        #expect(route.onExhausted == .block)
        #expect(route.contentTypes == ["application/json", "text/plain"])
        let secret = SecretSource(.file("/run/secrets/orders"))
        #expect(
            route.verify == VerifyConfig(scheme: .hmacSHA256, secret: secret, header: "X-Signature", encoding: .base64, prefix: "sha256="))
        #expect(route.addHeaders.map(\.name) == ["X-Zeta", "X-Alpha", "Authorization"])
        #expect(route.addHeaders.map(\.value) == ["last-letter", "1", "Bearer ${ORDERS_TOKEN}"])
        #expect(route.removeHeaders == ["Cookie", "X-Internal"])
    }

    @Test func hmacEncodingDefaultsToHexAndTimestampedSchemesTakeTolerance() throws {
        let config = try parse([
            "routes:",
            "  - { name: a, path: /a, upstream: http://h, verify: { scheme: hmac-sha256, secret_env: S, header: X-Sig } }",
            "  - { name: b, path: /b, upstream: http://h, verify: { scheme: stripe, secret_env: S, tolerance: 30s } }",
        ])
        #expect(config.routes[0].verify?.encoding == .hex)
        #expect(config.routes[0].verify?.prefix == nil)
        #expect(config.routes[1].verify?.tolerance == .seconds(30))
        #expect(config.routes[1].verify?.header == nil && config.routes[1].verify?.encoding == nil)
    }

    @Test func yamlAnchorsAndMergeKeysWork() throws {
        let config = try parse([
            "routes:",
            "  - name: a",
            "    path: /a",
            "    upstream: http://127.0.0.1:9000",
            "    retry: &patient { initial: 5s, max_attempts: 50 }",
            "  - name: b",
            "    path: /b",
            "    upstream: http://127.0.0.1:9000",
            "    retry: { <<: *patient, max_attempts: 5 }",
        ])
        #expect(config.routes[0].retry.initial == .seconds(5) && config.routes[0].retry.maxAttempts == 50)
        #expect(config.routes[1].retry.initial == .seconds(5) && config.routes[1].retry.maxAttempts == 5)
    }

    @Test func rootPathAndTrailingSlashesAreNormalised() throws {
        let config = try parse([
            "routes:",
            "  - { name: root, path: /, upstream: http://h }",
            "  - { name: deep, path: /x/y//, upstream: http://h }",
        ])
        #expect(config.routes.map(\.path) == ["/", "/x/y"])
    }

    @Test func defaultConfigIsOneCatchAllAsyncRoute() throws {
        let config = try WaypostConfig.defaultConfig(upstream: "http://127.0.0.1:9000/in")
        #expect(config.listen == HostPort(host: "127.0.0.1", port: 8080))
        #expect(config.admin.listen == HostPort(host: "127.0.0.1", port: 9901))
        #expect(config.routes == [RouteConfig(name: "default", path: "/", upstream: "http://127.0.0.1:9000/in", mode: .async)])
        for bad in ["ftp://example.com", "127.0.0.1:9000", "", "http://user:pw@h/", "http://h/#x"] {
            let error = #expect(throws: ConfigError.self, "\(bad)") { try WaypostConfig.defaultConfig(upstream: bad) }
            #expect(error?.key == "upstream")
        }
    }

    // MARK: Broken files

    struct Broken: Sendable, CustomTestStringConvertible {
        var label: String
        var lines: [String]
        var key: String?
        var line: Int?
        var mentions: String
        var testDescription: String { label }

        init(_ label: String, _ lines: [String], key: String?, line: Int?, mentions: String = "") {
            self.label = label
            self.lines = lines
            self.key = key
            self.line = line
            self.mentions = mentions
        }
    }

    /// `oneRoute` followed by more lines of its mapping, from line 5 on.
    static func route(_ extra: String...) -> [String] { oneRoute + extra.map { "    " + $0 } }

    /// One route with the given path and upstream: name on line 2, path on 3, upstream on 4.
    static func route(path: String, upstream: String) -> [String] {
        ["routes:", "  - name: a", "    path: \(path)", "    upstream: \(upstream)"]
    }

    static let brokenFiles: [Broken] = [
        Broken(
            "unknown top-level key", ["listen: 127.0.0.1:8080", "listn: x"] + oneRoute, key: "listn", line: 2,
            mentions:
                "valid keys here: listen, admin, journal, shutdown_grace, log_level, header_timeout, min_body_rate, trusted_proxies, transform_timeout, transform_memory, tls, tracing, cluster, defaults, routes"
        ),
        Broken(
            "unknown nested key",
            oneRoute + ["  - name: b", "    path: /b", "    upstream: http://h", "    retry:", "      initial: 1s", "      intial: 2s"],
            key: "routes[1].retry.intial", line: 10, mentions: "did you mean \"initial\"?"),
        Broken("unknown route key", route("upstreem: http://x"), key: "routes[0].upstreem", line: 5),
        Broken(
            "cluster without a PostgreSQL journal", ["cluster: { node: a }"] + oneRoute, key: "cluster", line: 1,
            mentions: "applies only to a PostgreSQL journal"),
        Broken(
            "cluster node with a space", ["journal: { url: 'postgres://u@h/d' }", "cluster: { node: 'a b' }"] + oneRoute,
            key: "cluster.node", line: 2, mentions: "letters, digits and . _ : -"),
        Broken(
            "cluster lease_ttl too short", ["journal: { url: 'postgres://u@h/d' }", "cluster: { lease_ttl: 1s }"] + oneRoute,
            key: "cluster.lease_ttl", line: 2, mentions: "must be from 3s to 10m"),
        Broken(
            "unknown cluster key", ["journal: { url: 'postgres://u@h/d' }", "cluster: { ttl: 5s }"] + oneRoute,
            key: "cluster.ttl", line: 2),
        Broken("unknown admin key", ["admin: { listen: 127.0.0.1:1, token: x }"] + oneRoute, key: "admin.token", line: 1),
        Broken(
            "bad duration", ["shutdown_grace: 10"] + oneRoute, key: "shutdown_grace", line: 1,
            mentions: "expected a duration such as 250ms, 5s, 10m, 72h or 7d, got \"10\""),
        Broken("bad route duration", route("sync_timeout: 5 sec"), key: "routes[0].sync_timeout", line: 5),
        Broken("zero timeout", route("timeouts: { connect: 0s }"), key: "routes[0].timeouts.connect", line: 5),
        Broken("bad size", ["defaults:", "  max_body_bytes: 1MB"] + oneRoute, key: "defaults.max_body_bytes", line: 2, mentions: "binary"),
        Broken("body larger than a BLOB", route("max_body_bytes: 2GiB"), key: "routes[0].max_body_bytes", line: 5),
        Broken(
            "bad enum", route("mode: fire-and-forget"), key: "routes[0].mode", line: 5,
            mentions: "expected one of async, sync, got \"fire-and-forget\""),
        Broken(
            "bad journal durability", ["journal: { durability: fast }"] + oneRoute, key: "journal.durability", line: 1,
            mentions: "full, relaxed"),
        Broken("ordering key missing", route("ordering: key"), key: "routes[0].ordering_key", line: 5),
        Broken("ordering key without ordering: key", route("ordering_key: header:X-Id"), key: "routes[0].ordering_key", line: 5),
        Broken("bad ordering key", route("ordering: key", "ordering_key: json:order.id"), key: "routes[0].ordering_key", line: 6),
        Broken(
            "duplicate names", oneRoute + ["  - name: a", "    path: /b", "    upstream: http://h"], key: "routes[1].name", line: 5,
            mentions: "routes[0], line 2"),
        Broken("duplicate paths", oneRoute + ["  - name: b", "    path: /a/", "    upstream: http://h"], key: "routes[1].path", line: 6),
        Broken("upstream ftp://", route(path: "/a", upstream: "ftp://files.example/x"), key: "routes[0].upstream", line: 4),
        Broken("upstream with credentials", route(path: "/a", upstream: "https://u:p@h/x"), key: "routes[0].upstream", line: 4),
        Broken("upstream with fragment", route(path: "/a", upstream: "https://h/x#y"), key: "routes[0].upstream", line: 4),
        Broken("upstream without host", route(path: "/a", upstream: "http:///x"), key: "routes[0].upstream", line: 4),
        Broken("path without slash", route(path: "hooks", upstream: "http://h"), key: "routes[0].path", line: 3),
        Broken(
            "path under /_waypost", route(path: "/_waypost/x", upstream: "http://h"), key: "routes[0].path", line: 3,
            mentions: "reserved"),
        Broken("path /_waypost itself", route(path: "/_waypost/", upstream: "http://h"), key: "routes[0].path", line: 3),
        Broken(
            "missing upstream", ["routes:", "  - name: a", "    path: /a"], key: "routes[0].upstream", line: 2,
            mentions: "missing required key \"upstream\""),
        Broken("missing name", ["routes:", "  - path: /a", "    upstream: http://h"], key: "routes[0].name", line: 2),
        Broken(
            "bad route name", ["routes:", "  - name: my route", "    path: /a", "    upstream: http://h"], key: "routes[0].name", line: 2),
        Broken("empty routes", ["listen: 127.0.0.1:8080", "routes: []"], key: "routes", line: 2),
        Broken("no routes", ["listen: 127.0.0.1:8080"], key: "routes", line: 1),
        Broken("routes is a mapping", ["routes: { a: b }"], key: "routes", line: 1, mentions: "expected a list of routes"),
        Broken(
            "wrong type", route("retry: { factor: abc }"), key: "routes[0].retry.factor", line: 5,
            mentions: "expected a number, got \"abc\""),
        Broken("factor below 1", route("retry: { factor: 0.5 }"), key: "routes[0].retry.factor", line: 5),
        Broken("max_delay below initial", route("retry: { initial: 1h, max_delay: 1m }"), key: "routes[0].retry.max_delay", line: 5),
        Broken(
            "initial above the default max_delay", route("retry: { initial: 1h }"), key: "routes[0].retry.initial", line: 5,
            mentions: "set max_delay too"),
        Broken("bad retry_on entry", route("retry:", "  retry_on: [409, 7xx]"), key: "routes[0].retry.retry_on[1]", line: 6),
        Broken("concurrency 0", route("concurrency: 0"), key: "routes[0].concurrency", line: 5, mentions: "at least 1"),
        Broken("null value", route("concurrency:"), key: "routes[0].concurrency", line: 5, mentions: "got nothing"),
        Broken("list instead of string", route("idempotency_header: [a, b]"), key: "routes[0].idempotency_header", line: 5),
        Broken("bad listen", ["listen: 8080"] + oneRoute, key: "listen", line: 1, mentions: "HOST:PORT"),
        Broken("bad token_env", ["admin:", "  token_env: 1TOKEN"] + oneRoute, key: "admin.token_env", line: 2),
        Broken("empty content_types", route("content_types: []"), key: "routes[0].content_types", line: 5),
        Broken(
            "content type with parameters", route("content_types: [application/json; charset=utf-8]"),
            key: "routes[0].content_types[0]", line: 5),
        Broken(
            "hmac-sha256 without header", route("verify: { scheme: hmac-sha256, secret_env: S }"),
            key: "routes[0].verify.header", line: 5),
        Broken(
            "header with github", route("verify: { scheme: github, secret_env: S, header: X-Sig }"),
            key: "routes[0].verify.header", line: 5),
        Broken(
            "tolerance with github", route("verify: { scheme: github, secret_env: S, tolerance: 1m }"),
            key: "routes[0].verify.tolerance", line: 5),
        Broken(
            "both secrets", route("verify: { scheme: github, secret_env: S, secret_file: /s }"),
            key: "routes[0].verify.secret_file", line: 5),
        Broken("no secret", route("sign: { scheme: standard-webhooks }"), key: "routes[0].sign.secret_env", line: 5),
        Broken(
            "bad sign scheme", route("sign: { scheme: github, secret_env: S }"), key: "routes[0].sign.scheme", line: 5,
            mentions: "standard-webhooks"),
        Broken(
            "unknown verify scheme", route("verify: { scheme: sha1, secret_env: S }"), key: "routes[0].verify.scheme", line: 5,
            mentions: "standard-webhooks, github, stripe, hmac-sha256"),
        Broken(
            "add_headers with Content-Length", route("add_headers: { Content-Length: 5 }"),
            key: "routes[0].add_headers.Content-Length", line: 5),
        Broken(
            "add_headers value with a line break", route("add_headers: { X-A: \"a\\r\\nX-B: b\" }"),
            key: "routes[0].add_headers.X-A", line: 5),
        Broken("add_headers listed twice", route("add_headers: { X-A: a, x-a: b }"), key: "routes[0].add_headers.x-a", line: 5),
        Broken("top level is a list", ["- a", "- b"], key: nil, line: 1, mentions: "top level"),
        Broken(
            "YAML syntax error", ["listen: 127.0.0.1:8080", "routes:", "  - name: a", "   path: [unclosed"], key: nil, line: 4,
            mentions: "invalid YAML"),
        Broken("YAML tab indentation", ["routes:", "\t- name: a"], key: nil, line: 2, mentions: "invalid YAML"),
        Broken(
            "duplicate YAML key", ["listen: 127.0.0.1:1", "listen: 127.0.0.1:2"] + oneRoute, key: nil, line: 1,
            mentions: "duplicate key \"listen\""),
        Broken("two YAML documents", oneRoute + ["---"] + oneRoute, key: nil, line: 5, mentions: "invalid YAML"),
        Broken("empty file", [], key: nil, line: nil, mentions: "the file is empty"),
        Broken("only comments", ["# nothing here", "   "], key: nil, line: nil, mentions: "the file is empty"),
        Broken("tracing without an endpoint", ["tracing: {}"] + oneRoute, key: "tracing.otlp_endpoint", line: 1, mentions: "otlp_endpoint"),
        Broken(
            "an OTLP endpoint that is not http(s)", ["tracing: { otlp_endpoint: \"grpc://collector:4317\" }"] + oneRoute,
            key: "tracing.otlp_endpoint", line: 1, mentions: "expected an absolute http:// or https:// URL"),
        Broken(
            "an OTLP endpoint with a query", ["tracing: { otlp_endpoint: \"http://c:4318/v1/traces?x=1\" }"] + oneRoute,
            key: "tracing.otlp_endpoint", line: 1, mentions: "the OTLP endpoint must not have a query"),
        Broken(
            "an unknown OTLP protocol", ["tracing: { otlp_endpoint: \"http://c:4318\", otlp_protocol: grpc }"] + oneRoute,
            key: "tracing.otlp_protocol", line: 1, mentions: "http/protobuf, http/json"),
        Broken(
            "an empty service name", ["tracing: { otlp_endpoint: \"http://c:4318\", service_name: \"\" }"] + oneRoute,
            key: "tracing.service_name", line: 1, mentions: "1 to 255 printable characters"),
        Broken("an unknown tracing key", ["tracing: { endpoint: \"http://c:4318\" }"] + oneRoute, key: "tracing.endpoint", line: 1),
    ]

    @Test(arguments: brokenFiles)
    func brokenFileIsRefused(_ broken: Broken) {
        let error = #expect(throws: ConfigError.self) { try parse(broken.lines) }
        guard let error else { return }
        #expect(error.file == "test.yaml")
        #expect(error.key == broken.key, "\(error)")
        #expect(error.line == broken.line, "\(error)")
        #expect(broken.mentions.isEmpty || error.description.contains(broken.mentions), "\(error)")
    }

    @Test("tracing: the endpoint's /v1/traces unless it has a path of its own; protobuf and the name waypost by default")
    func tracing() throws {
        let cases: [(String, String)] = [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            ("https://collector.internal/otlp/v1/traces", "https://collector.internal/otlp/v1/traces"),
        ]
        for (endpoint, url) in cases {
            let config = try parse(["tracing: { otlp_endpoint: \"\(endpoint)\" }"] + oneRoute)
            #expect(config.tracing?.tracesURL == url, "\(endpoint)")
            #expect(config.tracing?.otlpProtocol == .protobuf && config.tracing?.serviceName == "waypost")
        }
        let json = try parse(["tracing: { otlp_endpoint: \"http://c:4318\", otlp_protocol: http/json, service_name: edge-1 }"] + oneRoute)
        #expect(json.tracing?.otlpProtocol == .json && json.tracing?.serviceName == "edge-1")
        #expect(try parse(oneRoute).tracing == nil, "no tracing key: no spans")
    }

    @Test func unknownKeyErrorReadsWell() {
        let error = #expect(throws: ConfigError.self) {
            try parse(oneRoute + ["    retry:", "      intial: 2s"])
        }
        #expect(
            error?.description
                == "test.yaml:6: routes[0].retry.intial: unknown key \"intial\" (did you mean \"initial\"?); "
                + "valid keys here: initial, factor, max_delay, max_attempts, max_age, retry_on")
    }

    @Test func wrongTypeErrorReadsWell() {
        let error = #expect(throws: ConfigError.self) {
            try parse(oneRoute + ["    retry:", "      factor: abc"])
        }
        #expect(error?.description == "test.yaml:6: routes[0].retry.factor: expected a number, got \"abc\"")
    }
}

@Suite("log_level")
struct LogLevelConfigTests {
    static let routes = "routes:\n  - { name: a, path: /, upstream: \"http://127.0.0.1:9/\" }\n"

    @Test func defaultsToInfo() throws {
        #expect(try WaypostConfig.parse(yaml: Self.routes, file: "t.yaml").logLevel == .info)
    }

    @Test(arguments: LogLevel.allCases)
    func parsesEveryLevel(_ level: LogLevel) throws {
        #expect(try WaypostConfig.parse(yaml: "log_level: \(level.rawValue)\n" + Self.routes, file: "t.yaml").logLevel == level)
    }

    @Test func refusesAnUnknownLevel() {
        #expect {
            _ = try WaypostConfig.parse(yaml: "log_level: loud\n" + Self.routes, file: "t.yaml")
        } throws: { error in
            (error as? ConfigError)?.key == "log_level" && (error as? ConfigError)?.description.contains("notice") == true
        }
    }
}
