// The walk over the YAML `Node` tree that builds a `WaypostConfig` (SPEC §8): every mapping is
// checked against the keys valid at its level, every value is read with its type and bounds, and
// every error names the file, the line and the key path.

import Yams

// MARK: - The reader

/// Keys valid at each level of the file, in the order of SPEC §8.
enum Keys {
    static let top = [
        "listen", "admin", "journal", "shutdown_grace", "log_level", "header_timeout", "min_body_rate", "trusted_proxies",
        "transform_timeout", "transform_memory", "tls", "tracing", "cluster", "defaults", "routes",
    ]
    static let admin = ["listen", "token_env"]
    static let tls = ["cert_file", "key_file"]
    static let tracing = ["otlp_endpoint", "otlp_protocol", "service_name"]
    static let journal = ["path", "url", "password_env", "durability", "max_backlog", "retain_delivered"]
    static let cluster = ["node", "lease_ttl"]
    static let defaults = ["max_body_bytes", "max_header_bytes"]
    static let route = [
        "name", "path", "upstream", "mode", "sync_timeout", "ordering", "ordering_key", "concurrency",
        "idempotency_header", "dedup_window", "retry", "on_exhausted", "timeouts", "max_body_bytes",
        "max_header_bytes", "content_types", "validate", "verify", "sign", "add_headers", "remove_headers", "filter",
        "rate_limit", "rate_limit_burst", "breaker", "transform", "ca_file", "destinations", "reply_from", "reply",
    ]
    /// The keys a destination has of its own (SPEC §11); the route's are its defaults.
    static let destination = [
        "name", "upstream", "ordering", "ordering_key", "concurrency", "retry", "on_exhausted", "timeouts", "add_headers",
        "remove_headers", "sign", "filter", "rate_limit", "rate_limit_burst", "breaker", "transform", "ca_file",
    ]
    static let breaker = ["failures", "probe_interval"]
    static let retry = ["initial", "factor", "max_delay", "max_attempts", "max_age", "retry_on"]
    static let timeouts = ["connect", "total"]
    static let verify = ["scheme", "secret_env", "secret_file", "tolerance", "header", "encoding", "prefix"]
    static let sign = ["scheme", "secret_env", "secret_file"]
}

/// The checked entries of one YAML mapping, with the key path that leads to it.
struct Fields {
    /// Key path of the mapping itself (`""` for the top level).
    let path: String
    /// The mapping node, for the line of errors about missing keys.
    let node: Node
    /// Value nodes by key.
    let values: [String: Node]

    subscript(key: String) -> Node? { values[key] }

    /// Key path of one of the mapping's keys.
    func path(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }
}

/// Turns the `Node` tree into a `WaypostConfig`, checking as it goes.
struct ConfigReader {
    let file: String

    func fail(_ path: String, _ node: Node?, _ message: String) -> ConfigError {
        ConfigError(file: file, line: node?.mark?.line, key: path.isEmpty ? nil : path, message: message)
    }

    /// Runs `body`, giving any error it throws this reader's file, `path` and `node`'s line.
    func at<T>(_ path: String, _ node: Node, _ body: () throws(ConfigError) -> T) throws(ConfigError) -> T {
        do {
            return try body()
        } catch {
            throw fail(path, node, error.message)
        }
    }

    // MARK: Whole file

    func readConfig(_ root: Node) throws(ConfigError) -> WaypostConfig {
        guard case .mapping = root else {
            throw fail(
                "", root, "expected a mapping of settings (\(Keys.top.joined(separator: ", "))) at the top level, got \(describe(root))")
        }
        let top = try mapping(root, path: "", allowed: Keys.top)
        var config = WaypostConfig(routes: [])

        if let node = top["listen"] {
            config.listen = try hostPort(node, top.path("listen"))
        }
        if let node = top["admin"] {
            let admin = try mapping(node, path: "admin", allowed: Keys.admin)
            if let node = admin["listen"] {
                config.admin.listen = try hostPort(node, admin.path("listen"))
            }
            if let name = try envName(admin, "token_env") {
                config.admin.tokenEnv = name
            }
        }
        if let node = top["journal"] {
            let journal = try mapping(node, path: "journal", allowed: Keys.journal)
            if let path = try string(journal, "path") { config.journal.path = path }
            if let url = try string(journal, "url") {
                guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
                    throw fail(journal.path("url"), journal["url"], "must be a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE")
                }
                guard journal["path"] == nil else {
                    throw fail(
                        journal.path("url"), journal["url"], "names a PostgreSQL journal: give journal.path or journal.url, not both")
                }
                guard journal["durability"] == nil else {
                    throw fail(
                        journal.path("durability"), journal["durability"],
                        "applies to a SQLite journal; a PostgreSQL journal commits with synchronous_commit = on")
                }
                config.journal.url = url
            }
            if let name = try envName(journal, "password_env") {
                guard journal["url"] != nil else {
                    throw fail(journal.path("password_env"), journal["password_env"], "applies only with journal.url")
                }
                config.journal.passwordEnv = name
            }
            if let durability: Durability = try choice(journal, "durability") { config.journal.durability = durability }
            if let backlog = try integer(journal, "max_backlog", in: 1...1_000_000_000) { config.journal.maxBacklog = backlog }
            if let retain = try duration(journal, "retain_delivered", allowZero: true) {
                config.journal.retainDelivered = retain
            }
        }
        if let node = top["cluster"] {
            let cluster = try mapping(node, path: "cluster", allowed: Keys.cluster)
            guard config.journal.url != nil else {
                throw fail("cluster", node, "applies only to a PostgreSQL journal (journal.url): one process delivers a SQLite journal")
            }
            if let name = try string(cluster, "node") {
                guard ClusterConfig.isValidNode(name) else {
                    throw fail(
                        cluster.path("node"), cluster["node"],
                        "expected a name of 1 to 100 letters, digits and . _ : - (unique in the cluster), got \"\(name)\"")
                }
                config.cluster.node = name
            }
            if let ttl = try duration(cluster, "lease_ttl", allowZero: false) {
                guard ttl >= .seconds(3), ttl <= .seconds(600) else {
                    throw fail(cluster.path("lease_ttl"), cluster["lease_ttl"], "must be from 3s to 10m")
                }
                config.cluster.leaseTTL = ttl
            }
        }
        if let grace = try duration(top, "shutdown_grace", allowZero: true) {
            config.shutdownGrace = grace
        }
        if let level: LogLevel = try choice(top, "log_level") { config.logLevel = level }
        if let timeout = try duration(top, "header_timeout", allowZero: false) { config.headerTimeout = timeout }
        if let rate = try size(top, "min_body_rate", range: 1...(1 << 30), why: " per second") { config.minBodyRate = rate }
        if let node = top["trusted_proxies"] {
            let usage = "a list of networks such as [10.0.0.0/8, \"::1\"]"
            config.trustedProxies = try list(node, path: "trusted_proxies", expected: usage).map { (item, itemPath) throws(ConfigError) in
                let spelling = try text(item, itemPath, expected: "a network such as 10.0.0.0/8")
                guard let network = CIDR(spelling) else {
                    throw fail(
                        itemPath, item,
                        "expected an IPv4 or IPv6 address or network such as 10.0.0.0/8 or 2001:db8::/32, got \"\(spelling)\"")
                }
                return network
            }
        }
        if let timeout = try duration(top, "transform_timeout", allowZero: false) { config.transformTimeout = timeout }
        if let memory = try size(top, "transform_memory", range: (16 << 20)...(64 << 30), why: "") { config.transformMemory = memory }
        if let node = top["tls"] {
            let tls = try mapping(node, path: "tls", allowed: Keys.tls)
            let cert = try required(tls, "cert_file", hint: "the PEM file of the certificate and its chain")
            let key = try required(tls, "key_file", hint: "the PEM file of the certificate's private key")
            config.tls = TLSFiles(certFile: try text(cert, tls.path("cert_file")), keyFile: try text(key, tls.path("key_file")))
        }
        if let node = top["tracing"] {
            let tracing = try mapping(node, path: "tracing", allowed: Keys.tracing)
            let endpointNode = try required(tracing, "otlp_endpoint", hint: "the OTLP/HTTP collector's URL, such as http://127.0.0.1:4318")
            let endpoint = try text(endpointNode, tracing.path("otlp_endpoint"))
            if let problem = checkURL(endpoint, what: "OTLP endpoint") { throw fail(tracing.path("otlp_endpoint"), endpointNode, problem) }
            var exported = TracingConfig(otlpEndpoint: endpoint)
            if let encoding: TracingConfig.Encoding = try choice(tracing, "otlp_protocol") { exported.otlpProtocol = encoding }
            if let node = tracing["service_name"] {
                let name = try text(node, tracing.path("service_name"))
                guard !name.isEmpty, name.utf8.count <= 255, !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f })
                else { throw fail(tracing.path("service_name"), node, "expected a name of 1 to 255 printable characters") }
                exported.serviceName = name
            }
            config.tracing = exported
        }
        if let node = top["defaults"] {
            let defaults = try mapping(node, path: "defaults", allowed: Keys.defaults)
            if let size = try bodySize(defaults) { config.defaults.maxBodyBytes = size }
            if let size = try headerSize(defaults) { config.defaults.maxHeaderBytes = size }
        }

        let routesNode = try required(top, "routes", hint: "a list of routes, each with name, path and upstream")
        guard case .sequence(let items) = routesNode else {
            throw fail("routes", routesNode, "expected a list of routes, got \(describe(routesNode))")
        }
        guard !items.isEmpty else {
            throw fail("routes", routesNode, "must list at least one route")
        }
        var seenNames: [String: (index: Int, line: Int?)] = [:]
        var seenPaths: [String: (index: Int, line: Int?)] = [:]
        for (index, item) in items.enumerated() {
            let path = "routes[\(index)]"
            let (route, fields) = try readRoute(item, path: path, defaults: config.defaults)
            if let earlier = seenNames[route.name] {
                throw fail(fields.path("name"), fields["name"], "duplicate route name \"\(route.name)\" (also \(where: earlier))")
            }
            if let earlier = seenPaths[route.path] {
                throw fail(fields.path("path"), fields["path"], "duplicate route path \"\(route.path)\" (also \(where: earlier))")
            }
            seenNames[route.name] = (index, fields["name"]?.mark?.line)
            seenPaths[route.path] = (index, fields["path"]?.mark?.line)
            config.routes.append(route)
        }
        return config
    }

    // MARK: Routes

    func readRoute(_ node: Node, path: String, defaults: RouteLimits) throws(ConfigError) -> (RouteConfig, Fields) {
        guard case .mapping = node else {
            throw fail(path, node, "expected a route (a mapping with name, path and upstream), got \(describe(node))")
        }
        let fields = try mapping(node, path: path, allowed: Keys.route)

        let name = try readName(fields, of: "route", hint: "the route's unique name")
        let pathNode = try required(fields, "path", hint: "the path prefix it takes, e.g. /hooks/github")
        let routePath = try at(fields.path("path"), pathNode) { () throws(ConfigError) in
            try normalizedRoutePath(try text(pathNode, fields.path("path")))
        }
        let destinationsNode = fields["destinations"]
        if destinationsNode == nil {
            _ = try required(fields, "upstream", hint: "the URL to deliver to (or destinations, a list of them)")
        }

        var route = RouteConfig(
            name: name, path: routePath, upstream: "", maxBodyBytes: defaults.maxBodyBytes, maxHeaderBytes: defaults.maxHeaderBytes)

        if let mode: DeliveryMode = try choice(fields, "mode") { route.mode = mode }
        if let timeout = try duration(fields, "sync_timeout", allowZero: false) { route.syncTimeout = timeout }
        if let header = try headerName(fields, "idempotency_header") { route.idempotencyHeader = header }
        if let window = try duration(fields, "dedup_window", allowZero: true) { route.dedupWindow = window }
        if let size = try bodySize(fields) { route.maxBodyBytes = size }
        if let size = try headerSize(fields) { route.maxHeaderBytes = size }
        if let node = fields["content_types"] {
            route.contentTypes = try readContentTypes(node, path: fields.path("content_types"))
        }
        if let validate: BodyValidation = try choice(fields, "validate") { route.validate = validate }
        if let node = fields["verify"] {
            route.verify = try readVerify(node, path: fields.path("verify"))
        }

        if let node = fields["reply"] {
            route.reply = try program(node, fields.path("reply"))
            guard route.mode == .sync else {
                throw fail(fields.path("reply"), node, "a reply program is for a waiting source: it needs mode: sync")
            }
        }

        // The route's delivery keys: its one destination's, or its destinations' defaults.
        var own = DestinationConfig(name: name, defaults: route)
        try readDeliveryKeys(fields, into: &own, checkOrderingKey: destinationsNode == nil, owner: "route")
        route.defaults = own

        guard let destinationsNode else {
            route.destinations = [own]
            if let node = fields["reply_from"], try text(node, fields.path("reply_from")) != name {
                throw fail(
                    fields.path("reply_from"), node,
                    "names no destination of this route: without destinations, its one destination is named like the route (\(name))")
            }
            return (route, fields)
        }
        let listPath = fields.path("destinations")
        let items = try list(destinationsNode, path: listPath, expected: "a list of destinations, each with a name and an upstream")
        guard !items.isEmpty else {
            throw fail(listPath, destinationsNode, "must list at least one destination; or leave destinations out and give upstream")
        }
        route.destinations = []
        for (item, itemPath) in items {
            let destination = try readDestination(item, path: itemPath, route: route)
            if route.destinations.contains(where: { $0.name == destination.name }) {
                throw fail(itemPath + ".name", item, "duplicate destination name \"\(destination.name)\" in route \(name)")
            }
            route.destinations.append(destination)
        }
        if let node = fields["reply_from"] {
            let reply = try text(node, fields.path("reply_from"))
            guard let index = route.destinations.firstIndex(where: { $0.name == reply }) else {
                let names = route.destinations.map(\.name).joined(separator: ", ")
                throw fail(fields.path("reply_from"), node, "names no destination of this route (\(names)), got \"\(reply)\"")
            }
            route.replyFrom = index
        }
        return (route, fields)
    }

    /// The required `name` of a route or destination: 1 to 64 characters of `[A-Za-z0-9._-]`.
    func readName(_ fields: Fields, of what: String, hint: String) throws(ConfigError) -> String {
        let node = try required(fields, "name", hint: hint)
        let name = try text(node, fields.path("name"))
        guard isValidRouteName(name) else {
            throw fail(fields.path("name"), node, "a \(what) name is 1 to 64 characters of A-Z a-z 0-9 . _ -, got \"\(name)\"")
        }
        return name
    }

    /// One entry of a route's `destinations`: the route's delivery keys, overridden by its own.
    func readDestination(_ node: Node, path: String, route: RouteConfig) throws(ConfigError) -> DestinationConfig {
        guard case .mapping = node else {
            throw fail(path, node, "expected a destination (a mapping with name and upstream), got \(describe(node))")
        }
        let fields = try mapping(node, path: path, allowed: Keys.destination)
        let name = try readName(fields, of: "destination", hint: "the destination's name, unique in its route")
        var destination = DestinationConfig(name: name, defaults: route)
        try readDeliveryKeys(fields, into: &destination, checkOrderingKey: true, owner: "destination")
        if destination.upstream.isEmpty {
            throw fail(fields.path("upstream"), node, "missing required key \"upstream\" (the URL to deliver to, here or on the route)")
        }
        return destination
    }

    /// Reads the delivery keys a route and each of its destinations may have (SPEC §11) over
    /// `destination`'s defaults. `checkOrderingKey`: whether `ordering` and `ordering_key`
    /// must agree here (a route with destinations may give them as separate defaults).
    func readDeliveryKeys(
        _ fields: Fields, into destination: inout DestinationConfig, checkOrderingKey: Bool, owner: String
    ) throws(ConfigError) {
        if let node = fields["upstream"] {
            let upstream = try text(node, fields.path("upstream"))
            if let problem = checkURL(upstream, what: "upstream URL") { throw fail(fields.path("upstream"), node, problem) }
            destination.upstream = upstream
        }
        if let ordering: Ordering = try choice(fields, "ordering") { destination.ordering = ordering }
        if let keyNode = fields["ordering_key"] {
            let keyPath = fields.path("ordering_key")
            let spelling = try text(keyNode, keyPath)
            destination.orderingKey = try at(keyPath, keyNode) { () throws(ConfigError) in try OrderingKey(parsing: spelling) }
            if checkOrderingKey && destination.ordering != .key {
                let ordering = destination.ordering.rawValue
                throw fail(
                    keyPath, keyNode, "ordering_key is used only with \"ordering: key\", but this \(owner)'s ordering is \(ordering)")
            }
        }
        if checkOrderingKey {
            if destination.ordering == .key && destination.orderingKey == nil {
                throw fail(
                    fields.path("ordering_key"), fields["ordering"] ?? fields.node,
                    "\"ordering: key\" needs ordering_key: header:NAME or json:/pointer")
            }
            if destination.ordering != .key { destination.orderingKey = nil }
        }
        if let concurrency = try integer(fields, "concurrency", in: 1...4096) { destination.concurrency = concurrency }
        if let node = fields["retry"] {
            destination.retry = try readRetry(node, path: fields.path("retry"))
        }
        if let exhausted: OnExhausted = try choice(fields, "on_exhausted") { destination.onExhausted = exhausted }
        if let node = fields["timeouts"] {
            let timeouts = try mapping(node, path: fields.path("timeouts"), allowed: Keys.timeouts)
            if let connect = try duration(timeouts, "connect", allowZero: false) { destination.timeouts.connect = connect }
            if let total = try duration(timeouts, "total", allowZero: false) { destination.timeouts.total = total }
        }
        if let node = fields["sign"] {
            destination.sign = try readSign(node, path: fields.path("sign"))
        }
        if let node = fields["add_headers"] {
            destination.addHeaders = try readAddHeaders(node, path: fields.path("add_headers"))
        }
        if let node = fields["remove_headers"] {
            let listPath = fields.path("remove_headers")
            destination.removeHeaders = []
            for (item, itemPath) in try list(node, path: listPath, expected: "a list of header names") {
                let name = try text(item, itemPath)
                guard isToken(name) else { throw fail(itemPath, item, "expected a header name, got \"\(name)\"") }
                destination.removeHeaders.append(name)
            }
        }
        if let node = fields["filter"] {
            destination.filter = try readFilter(node, path: fields.path("filter"))
        }
        if let node = fields["rate_limit"] {
            destination.rateLimit = try readRateLimit(node, path: fields.path("rate_limit"))
        }
        if let burst = try integer(fields, "rate_limit_burst", in: 1...1_000_000) {
            guard let limit = destination.rateLimit else {
                throw fail(fields.path("rate_limit_burst"), fields["rate_limit_burst"], "is used only with rate_limit")
            }
            destination.rateLimit = RateLimit(count: limit.count, perMilliseconds: limit.perMilliseconds, burst: burst)
        }
        if let node = fields["breaker"] {
            destination.breaker = try readBreaker(node, path: fields.path("breaker"))
        }
        if let node = fields["transform"] {
            destination.transform = try program(node, fields.path("transform"))
        }
        if let file = try string(fields, "ca_file") { destination.caFile = file }
    }

    /// A jq program (`transform`, `reply`): a string of 1 byte to 64 KiB. jq itself compiles
    /// it at start-up (and `check-config`).
    func program(_ node: Node, _ path: String) throws(ConfigError) -> String {
        let text = try text(node, path, expected: "a jq program such as '.body |= {id: .order.id}'")
        guard !text.allSatisfy(\.isWhitespace), text.utf8.count <= 64 << 10 else {
            throw fail(path, node, "expected a jq program of 1 byte to 64 KiB, got \(text.utf8.count) bytes")
        }
        return text
    }

    /// `rate_limit: N/s` or `N/m`, N from 1 to 1,000,000.
    func readRateLimit(_ node: Node, path: String) throws(ConfigError) -> RateLimit {
        let spelling = try text(node, path, expected: "a rate such as 50/s or 600/m")
        let parts = spelling.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let count = parseDigits(parts[0], clampedTo: 1_000_001), (1...1_000_000).contains(count),
            let unit = ["s": Int64(1000), "m": 60_000][String(parts[1])]
        else {
            throw fail(
                path, node, "expected a rate such as 50/s or 600/m (a whole number from 1 to 1000000, per s or m), got \"\(spelling)\"")
        }
        return RateLimit(count: Int(count), perMilliseconds: unit)
    }

    /// `breaker: off`, or `{ failures: N, probe_interval: DURATION }`.
    func readBreaker(_ node: Node, path: String) throws(ConfigError) -> BreakerPolicy? {
        if case .scalar = node {
            guard try text(node, path) == "off" else {
                throw fail(path, node, "expected off, or a mapping such as { failures: 20, probe_interval: 30s }")
            }
            return nil
        }
        let fields = try mapping(node, path: path, allowed: Keys.breaker)
        var policy = BreakerPolicy()
        if let failures = try integer(fields, "failures", in: 1...1_000_000) { policy.failures = failures }
        if let interval = try duration(fields, "probe_interval", allowZero: false) {
            policy.probeIntervalMilliseconds = interval.milliseconds
        }
        return policy
    }

    /// A filter (SPEC §11), written as YAML or as a string of JSON.
    func readFilter(_ node: Node, path: String) throws(ConfigError) -> DeliveryFilter {
        let document: JSONValue
        if case .scalar = node {
            let spelling = try text(node, path, expected: "a filter: a mapping such as { body: { type: order.paid } }")
            guard let parsed = JSONValue.parse(spelling.utf8) else {
                throw fail(path, node, "expected a filter: a mapping, or a string of JSON, got \"\(spelling)\"")
            }
            document = parsed
        } else {
            document = try jsonValue(node, path: path, depth: 0)
        }
        do {
            return try DeliveryFilter(document)
        } catch {
            throw fail(error.path.isEmpty ? path : "\(path).\(error.path)", node, error.reason)
        }
    }

    /// A YAML node as JSON: scalars by their resolved YAML type (a quoted scalar is a string).
    func jsonValue(_ node: Node, path: String, depth: Int) throws(ConfigError) -> JSONValue {
        guard depth < 64 else { throw fail(path, node, "is nested more than 64 levels deep") }
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: if let value = node.bool { return .bool(value) }
            case .int: if let value = node.int { return .number(Double(value)) }
            case .float: if let value = node.float, value.isFinite { return .number(value) }
            default: break
            }
            return .string(scalar.string)
        case .sequence(let items):
            var values: [JSONValue] = []
            for (index, item) in items.enumerated() {
                values.append(try jsonValue(item, path: "\(path)[\(index)]", depth: depth + 1))
            }
            return .array(values)
        case .mapping(let pairs):
            var members: [(key: String, value: JSONValue)] = []
            for (key, value) in pairs {
                guard case .scalar(let keyScalar) = key else { throw fail(path, key, "a key must be a string") }
                members.append((keyScalar.string, try jsonValue(value, path: "\(path).\(keyScalar.string)", depth: depth + 1)))
            }
            return .object(members)
        case .alias:
            throw fail(path, node, "YAML aliases are not supported here")
        }
    }

    func readRetry(_ node: Node, path: String) throws(ConfigError) -> RetryPolicy {
        let fields = try mapping(node, path: path, allowed: Keys.retry)
        var retry = RetryPolicy()
        if let initial = try duration(fields, "initial", allowZero: false) { retry.initial = initial }
        if let node = fields["factor"] {
            let spelling = try text(node, fields.path("factor"), expected: "a number")
            guard let factor = parseDecimal(spelling) else {
                throw fail(fields.path("factor"), node, "expected a number, got \"\(spelling)\"")
            }
            guard (1...100).contains(factor) else {
                throw fail(fields.path("factor"), node, "must be from 1 (delays never shrink) to 100, got \(spelling)")
            }
            retry.factor = factor
        }
        if let maxDelay = try duration(fields, "max_delay", allowZero: false) {
            guard maxDelay >= retry.initial else {
                throw fail(fields.path("max_delay"), fields["max_delay"], "must not be shorter than initial")
            }
            retry.maxDelay = maxDelay
        } else if retry.initial > retry.maxDelay {
            throw fail(
                fields.path("initial"), fields["initial"],
                "is longer than max_delay (10m unless set), which caps every delay; set max_delay too")
        }
        if let attempts = try integer(fields, "max_attempts", in: 1...1_000_000) { retry.maxAttempts = attempts }
        if let maxAge = try duration(fields, "max_age", allowZero: false) { retry.maxAge = maxAge }
        if let node = fields["retry_on"] {
            var ranges: [StatusRange] = []
            let usage = "a list of status codes and ranges, e.g. [409, \"5xx\", \"500-599\"]"
            for (item, itemPath) in try list(node, path: fields.path("retry_on"), expected: usage) {
                let spelling = try text(item, itemPath, expected: "a status code or range")
                guard let range = StatusRange(parsing: spelling) else {
                    let usage = "a status code (409), class (\"5xx\") or range (\"500-599\") within 100-599"
                    throw fail(itemPath, item, "expected \(usage), got \"\(spelling)\"")
                }
                ranges.append(range)
            }
            retry.retryOn = ranges
        }
        return retry
    }

    func readContentTypes(_ node: Node, path: String) throws(ConfigError) -> [String] {
        var types: [String] = []
        for (item, itemPath) in try list(node, path: path, expected: "a list of media types such as application/json") {
            let spelling = try text(item, itemPath)
            let type = spelling.lowercased()
            if type.contains(";") {
                throw fail(itemPath, item, "list the media type without parameters (e.g. application/json), got \"\(spelling)\"")
            }
            let parts = type.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, isToken(parts[0]), isToken(parts[1]) else {
                throw fail(itemPath, item, "expected a media type such as application/json, got \"\(spelling)\"")
            }
            if !types.contains(type) { types.append(type) }
        }
        guard !types.isEmpty else {
            throw fail(path, node, "must list at least one media type; leave content_types out to accept any")
        }
        return types
    }

    func readVerify(_ node: Node, path: String) throws(ConfigError) -> VerifyConfig {
        let fields = try mapping(node, path: path, allowed: Keys.verify)
        let schemeNode = try required(fields, "scheme", hint: "one of \(allowedValues(VerifyScheme.self))")
        let scheme: VerifyScheme = try choice(schemeNode, fields.path("scheme"))
        var verify = VerifyConfig(scheme: scheme, secret: try secretSource(fields))
        if let tolerance = try duration(fields, "tolerance", allowZero: false) {
            guard scheme.isTimestamped else {
                let message = "tolerance applies only to the timestamped schemes standard-webhooks and stripe, not \(scheme.rawValue)"
                throw fail(fields.path("tolerance"), fields["tolerance"], message)
            }
            verify.tolerance = tolerance
        }
        for key in ["header", "encoding", "prefix"] where scheme != .hmacSHA256 {
            if let node = fields[key] {
                throw fail(fields.path(key), node, "\(key) is used only with scheme: hmac-sha256")
            }
        }
        guard scheme == .hmacSHA256 else { return verify }
        let headerNode = try required(fields, "header", hint: "the header that carries the signature")
        verify.header = try headerName(headerNode, fields.path("header"))
        verify.encoding = try choice(fields, "encoding") ?? .hex
        if let prefix = try string(fields, "prefix") { verify.prefix = prefix }
        return verify
    }

    func readSign(_ node: Node, path: String) throws(ConfigError) -> SignConfig {
        let fields = try mapping(node, path: path, allowed: Keys.sign)
        let schemeNode = try required(fields, "scheme", hint: "one of \(allowedValues(SignScheme.self))")
        let scheme: SignScheme = try choice(schemeNode, fields.path("scheme"))
        return SignConfig(scheme: scheme, secret: try secretSource(fields))
    }

    /// `secret_env` or `secret_file`, exactly one.
    func secretSource(_ fields: Fields) throws(ConfigError) -> SecretSource {
        let env = try envName(fields, "secret_env")
        let file = try string(fields, "secret_file")
        switch (env, file) {
        case let (name?, nil): return SecretSource(.env(name))
        case let (nil, path?): return SecretSource(.file(path))
        case (nil, nil):
            throw fail(
                fields.path("secret_env"), fields.node, "missing the secret: give secret_env (a variable name) or secret_file (a path)")
        case (_?, _?):
            throw fail(fields.path("secret_file"), fields["secret_file"], "give secret_env or secret_file, not both")
        }
    }

    func readAddHeaders(_ node: Node, path: String) throws(ConfigError) -> [HeaderField] {
        guard case .mapping = node else {
            throw fail(
                path, node, "expected a mapping of header names to values, e.g. { X-Api-Key: \"${API_KEY}\" }, got \(describe(node))")
        }
        var headers: [HeaderField] = []
        for (keyNode, valueNode) in try pairs(of: node, path: path) {
            let name = try text(keyNode, path)
            let headerPath = "\(path).\(name)"
            guard isToken(name) else { throw fail(headerPath, keyNode, "expected a header name, got \"\(name)\"") }
            let lowered = name.lowercased()
            if ["connection", "content-length", "transfer-encoding"].contains(lowered) {
                throw fail(headerPath, keyNode, "\(name) is managed by Waypost and cannot be added")
            }
            if headers.contains(where: { $0.name.lowercased() == lowered }) {
                throw fail(headerPath, keyNode, "header \(name) is listed twice")
            }
            let value = try text(valueNode, headerPath, expected: "a header value")
            if value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
                throw fail(headerPath, valueNode, "a header value must not contain line breaks or NUL")
            }
            headers.append(HeaderField(name: name, value: value))
        }
        return headers
    }

    // MARK: Typed values

    /// The value of a key that must be present.
    func required(_ fields: Fields, _ key: String, hint: String) throws(ConfigError) -> Node {
        guard let node = fields[key] else {
            throw fail(fields.path(key), fields.node, "missing required key \"\(key)\" (\(hint))")
        }
        return node
    }

    /// The text of a scalar; anything else (a list, a mapping, null) is an error.
    func text(_ node: Node, _ path: String, expected: String = "a string") throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node, !isNull(node) else {
            throw fail(path, node, "expected \(expected), got \(describe(node))")
        }
        return scalar.string
    }

    /// A non-empty string.
    func string(_ fields: Fields, _ key: String) throws(ConfigError) -> String? {
        guard let node = fields[key] else { return nil }
        let value = try text(node, fields.path(key))
        guard !value.isEmpty else { throw fail(fields.path(key), node, "must not be empty") }
        return value
    }

    func integer(_ fields: Fields, _ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let node = fields[key] else { return nil }
        let path = fields.path(key)
        let spelling = try text(node, path, expected: "a whole number")
        let digits = spelling.filter { $0 != "_" }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isWholeNumber || $0 == "-" || $0 == "+") }),
            let value = Int(digits)
        else {
            throw fail(path, node, "expected a whole number, got \"\(spelling)\"")
        }
        guard value >= range.lowerBound else { throw fail(path, node, "must be at least \(range.lowerBound), got \(value)") }
        guard value <= range.upperBound else { throw fail(path, node, "must be at most \(range.upperBound), got \(value)") }
        return value
    }

    func duration(_ fields: Fields, _ key: String, allowZero: Bool) throws(ConfigError) -> Duration? {
        guard let node = fields[key] else { return nil }
        let path = fields.path(key)
        let spelling = try text(node, path, expected: "a duration")
        guard let value = parseDuration(spelling) else {
            // Digits and a valid unit: the number is too large.
            if parseDuration("0" + spelling.drop { $0.isASCII && $0.isWholeNumber }) != nil, spelling.first?.isWholeNumber == true {
                throw fail(path, node, "must be at most 36500d (about 100 years), got \"\(spelling)\"")
            }
            throw fail(path, node, "expected a duration such as 250ms, 5s, 10m, 72h or 7d, got \"\(spelling)\"")
        }
        guard allowZero || value > .zero else { throw fail(path, node, "must be longer than 0s") }
        return value
    }

    func size(_ fields: Fields, _ key: String, range: ClosedRange<Int>, why: String) throws(ConfigError) -> Int? {
        guard let node = fields[key] else { return nil }
        let path = fields.path(key)
        let spelling = try text(node, path, expected: "a size")
        guard let value = parseSize(spelling) else {
            var message = "expected a size such as 512, 64KiB, 5MiB or 1GiB, got \"\(spelling)\""
            if ["kb", "mb", "gb", "k", "m", "g"].contains(where: { spelling.lowercased().hasSuffix($0) }) {
                message += " (units are binary and case-sensitive: B, KiB, MiB, GiB)"
            }
            throw fail(path, node, message)
        }
        guard range.contains(value) else {
            throw fail(path, node, "must be from \(range.lowerBound) to \(range.upperBound) bytes\(why), got \(value)")
        }
        return value
    }

    func bodySize(_ fields: Fields) throws(ConfigError) -> Int? {
        try size(fields, "max_body_bytes", range: 1...RouteLimits.bodyBytesCeiling, why: " (a body is stored as one SQLite BLOB)")
    }

    func headerSize(_ fields: Fields) throws(ConfigError) -> Int? {
        try size(fields, "max_header_bytes", range: 1...Int(Int32.max), why: "")
    }

    func choice<E: RawRepresentable & CaseIterable>(_ fields: Fields, _ key: String) throws(ConfigError) -> E?
    where E.RawValue == String {
        guard let node = fields[key] else { return nil }
        return try choice(node, fields.path(key)) as E
    }

    func choice<E: RawRepresentable & CaseIterable>(_ node: Node, _ path: String) throws(ConfigError) -> E
    where E.RawValue == String {
        let expected = "one of \(allowedValues(E.self))"
        let spelling = try text(node, path, expected: expected)
        guard let value = E(rawValue: spelling) else {
            throw fail(path, node, "expected \(expected), got \"\(spelling)\"")
        }
        return value
    }

    func hostPort(_ node: Node, _ path: String) throws(ConfigError) -> HostPort {
        let spelling = try text(node, path, expected: "HOST:PORT")
        return try at(path, node) { () throws(ConfigError) in try HostPort(parsing: spelling) }
    }

    func envName(_ fields: Fields, _ key: String) throws(ConfigError) -> String? {
        guard let node = fields[key] else { return nil }
        let name = try text(node, fields.path(key), expected: "an environment variable name")
        guard isValidEnvName(name) else {
            let usage = "the name of an environment variable (letters, digits and _, not starting with a digit)"
            throw fail(fields.path(key), node, "expected \(usage), got \"\(name)\"")
        }
        return name
    }

    func headerName(_ fields: Fields, _ key: String) throws(ConfigError) -> String? {
        guard let node = fields[key] else { return nil }
        return try headerName(node, fields.path(key))
    }

    func headerName(_ node: Node, _ path: String) throws(ConfigError) -> String {
        let name = try text(node, path, expected: "a header name")
        guard isToken(name) else { throw fail(path, node, "expected a header name, got \"\(name)\"") }
        return name
    }

    /// The items of a list, each with its key path (`path[i]`).
    func list(_ node: Node, path: String, expected: String) throws(ConfigError) -> [(Node, String)] {
        guard case .sequence(let sequence) = node else {
            throw fail(path, node, "expected \(expected), got \(describe(node))")
        }
        return sequence.enumerated().map { ($1, "\(path)[\($0)]") }
    }

    // MARK: Mappings

    /// Checks that `node` is a mapping whose keys are all in `allowed`.
    func mapping(_ node: Node, path: String, allowed: [String]) throws(ConfigError) -> Fields {
        guard case .mapping = node else {
            throw fail(path, node, "expected a mapping with the keys \(allowed.joined(separator: ", ")), got \(describe(node))")
        }
        var values: [String: Node] = [:]
        for (keyNode, valueNode) in try pairs(of: node, path: path) {
            let key = try text(keyNode, path, expected: "a key")
            guard allowed.contains(key) else {
                let keyPath = path.isEmpty ? key : "\(path).\(key)"
                var message = "unknown key \"\(key)\""
                if let guess = closest(to: key, in: allowed) { message += " (did you mean \"\(guess)\"?)" }
                message += "; valid keys here: \(allowed.joined(separator: ", "))"
                throw fail(keyPath, keyNode, message)
            }
            values[key] = valueNode
        }
        return Fields(path: path, node: node, values: values)
    }

    /// The key/value pairs of a mapping, with YAML merge keys (`<<: *anchor`) expanded: keys
    /// written in the mapping itself win over merged ones.
    func pairs(of node: Node, path: String) throws(ConfigError) -> [(Node, Node)] {
        guard case .mapping(let mapping) = node else { return [] }
        var own: [(Node, Node)] = []
        var merged: [(Node, Node)] = []
        for (key, value) in mapping {
            guard key.tag.rawValue == Tag.Name.merge.rawValue else {
                own.append((key, value))
                continue
            }
            let sources: [Node]
            switch value {
            case .mapping: sources = [value]
            case .sequence(let sequence): sources = Array(sequence)
            default: sources = []
            }
            guard !sources.isEmpty else { throw fail(path, key, "\"<<\" must merge a mapping or a list of mappings") }
            for source in sources {
                guard case .mapping = source else {
                    throw fail(path, source, "\"<<\" must merge a mapping or a list of mappings")
                }
                for pair in try pairs(of: source, path: path) where !merged.contains(where: { $0.0 == pair.0 }) {
                    merged.append(pair)
                }
            }
        }
        let ownKeys = own.map(\.0)
        return own + merged.filter { !ownKeys.contains($0.0) }
    }
}

func allowedValues<E: RawRepresentable & CaseIterable>(_ type: E.Type) -> String where E.RawValue == String {
    E.allCases.map(\.rawValue).joined(separator: ", ")
}

/// Whether `node` is a YAML null (`~`, `null`, or no value at all).
func isNull(_ node: Node) -> Bool {
    node.tag.rawValue == Tag.Name.null.rawValue
}

/// How a node looks, for "expected …, got …" messages.
func describe(_ node: Node) -> String {
    switch node {
    case .scalar(let scalar): isNull(node) ? "nothing (null)" : "\"\(scalar.string)\""
    case .mapping: "a mapping"
    case .sequence: "a list"
    case .alias: "an alias"
    }
}

/// The allowed key closest to a misspelt one, when it is close enough to be a likely typo.
func closest(to key: String, in allowed: [String]) -> String? {
    let lowered = key.lowercased()
    let scored = allowed.map { ($0, editDistance(lowered, $0)) }
    guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(1, min(3, key.count / 3)) else { return nil }
    return best.0
}

/// Levenshtein distance between two short strings.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
    if a.isEmpty { return b.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in stride(from: 1, through: b.count, by: 1) {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}

/// `text` without leading and trailing spaces.

extension DefaultStringInterpolation {
    /// `routes[0], line 5` for messages about duplicates.
    fileprivate mutating func appendInterpolation(where earlier: (index: Int, line: Int?)) {
        appendLiteral("routes[\(earlier.index)]")
        if let line = earlier.line { appendLiteral(", line \(line)") }
    }
}
