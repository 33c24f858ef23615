// The typed configuration of a Waypost instance (SPEC §8).
//
// These are plain values: no I/O, no environment look-ups. Secrets are only *located* here
// (`SecretSource`); the executable reads them at start-up. Parsing from YAML lives in
// `Config+Parsing.swift`, durations and sizes in `Units.swift`.

/// The whole configuration of one Waypost instance, as read from a YAML file (SPEC §8).
///
/// Every value has been validated by ``WaypostConfig/parse(yaml:file:)``: routes have unique
/// names and paths, upstreams are absolute `http`/`https` URLs, and each route already carries
/// its effective limits (its own `max_body_bytes` or the global `defaults`).
///
/// ```swift
/// let config = try WaypostConfig.parse(yaml: text, file: "waypost.yaml")
/// print(config.listen)            // 0.0.0.0:8080
/// print(config.routes[0].name)    // github
/// ```
public struct WaypostConfig: Sendable, Equatable {
    /// The intake listener (also serves the status API). Default `127.0.0.1:8080`.
    public var listen: HostPort
    /// The admin listener and its token.
    public var admin: AdminConfig
    /// Where and how messages are journaled.
    public var journal: JournalConfig
    /// How this node takes part in a cluster on a PostgreSQL journal (SPEC §12).
    public var cluster = ClusterConfig()
    /// How long in-flight deliveries may take to finish after SIGTERM. Default 10s.
    public var shutdownGrace: Duration
    /// The least severe log messages written (`--log-level` overrides it). Default `info`.
    public var logLevel: LogLevel = .info
    /// A request head must arrive within this (SPEC §2). Default 10s.
    public var headerTimeout: Duration = .seconds(10)
    /// Bytes per second a request body must keep up after its first 10s (SPEC §2). Default 1KiB.
    public var minBodyRate: Int = 1024
    /// Peers whose own `X-Forwarded-*` values are kept and extended (SPEC §14). Default none.
    public var trustedProxies: [CIDR] = []
    /// How long one run of a transform or reply program may take (SPEC §11). Default 1s.
    public var transformTimeout: Duration = .seconds(1)
    /// The data segment a transform worker may grow to (`transform_memory`). Default 256 MiB.
    public var transformMemory: Int = 256 << 20
    /// TLS at the intake (SPEC §14): the certificate chain and key, PEM files. Nil: plain HTTP.
    public var tls: TLSFiles?
    /// Spans exported with OTLP (SPEC §14). Nil: none are made.
    public var tracing: TracingConfig?
    /// Global limits that a route uses unless it sets its own.
    public var defaults: RouteLimits
    /// The routes, in the order of the file. Never empty in a parsed configuration.
    public var routes: [RouteConfig]

    /// Creates a configuration; every argument but `routes` has the documented default.
    public init(
        listen: HostPort = HostPort(host: "127.0.0.1", port: 8080),
        admin: AdminConfig = AdminConfig(),
        journal: JournalConfig = JournalConfig(),
        shutdownGrace: Duration = .seconds(10),
        defaults: RouteLimits = RouteLimits(),
        routes: [RouteConfig]
    ) {
        self.listen = listen
        self.admin = admin
        self.journal = journal
        self.shutdownGrace = shutdownGrace
        self.defaults = defaults
        self.routes = routes
    }

    /// The configuration used when `waypost serve` runs without a config file (SPEC §6):
    /// one catch-all route named `default` on path `/`, in async mode, to `upstream`, with every
    /// other setting at its default.
    ///
    /// - Parameter upstream: The `--upstream` flag or `$WAYPOST_UPSTREAM`.
    /// - Throws: ``ConfigError`` with key `upstream` when `upstream` is not an absolute
    ///   `http://` or `https://` URL with a host (and without userinfo, query or fragment).
    public static func defaultConfig(upstream: String) throws(ConfigError) -> WaypostConfig {
        if let problem = RouteConfig.upstreamProblem(upstream) {
            throw ConfigError(key: "upstream", message: problem)
        }
        return WaypostConfig(routes: [RouteConfig(name: "default", path: "/", upstream: upstream)])
    }
}

/// Log levels, as swift-log names them.
public enum LogLevel: String, Sendable, Equatable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// A listening address: a host name or IP address, and a TCP port.
///
/// Written `HOST:PORT`, with IPv6 addresses in brackets: `0.0.0.0:8080`, `127.0.0.1:9901`,
/// `[::1]:8080`, `localhost:80`. The stored ``host`` has no brackets (`::1`).
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    /// The host name or IP address, without brackets.
    public var host: String
    /// The TCP port, `0...65535`; `0` asks the system for an ephemeral port (used by tests).
    public var port: Int

    /// Creates an address from its parts, unchecked.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `HOST:PORT`, with brackets around an IPv6 host, so that `HostPort(parsing:)` reads it back.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// The admin listener (SPEC §5).
public struct AdminConfig: Sendable, Equatable {
    /// Where the admin API listens. Default `127.0.0.1:9901`.
    public var listen: HostPort
    /// The name of the environment variable that holds the bearer token (not the token itself).
    /// Default `WAYPOST_ADMIN_TOKEN`.
    public var tokenEnv: String

    /// Creates an admin configuration with the documented defaults.
    public init(listen: HostPort = HostPort(host: "127.0.0.1", port: 9901), tokenEnv: String = "WAYPOST_ADMIN_TOKEN") {
        self.listen = listen
        self.tokenEnv = tokenEnv
    }
}

/// How hard a commit is pushed to disk before a message is acknowledged (SPEC §2).
public enum Durability: String, Sendable, Equatable, CaseIterable {
    /// `PRAGMA synchronous=FULL`: an acknowledged message survives a power loss. The default.
    case full
    /// `PRAGMA synchronous=NORMAL`: survives a process crash, not a power loss.
    case relaxed
}

/// The journal and its limits (SPEC §2, §7, §12).
public struct JournalConfig: Sendable, Equatable {
    /// Path of the SQLite file. Default `./waypost.db`.
    public var path: String
    /// A PostgreSQL journal's `postgres://` URL instead of the SQLite file (SPEC §12).
    public var url: String?
    /// The variable holding the PostgreSQL password, when the URL has none.
    public var passwordEnv: String?
    /// Default ``Durability/full``.
    public var durability: Durability
    /// At most this many messages queued or in flight; past it intake answers `503`. Default 1 000 000.
    public var maxBacklog: Int
    /// How long delivered messages are kept before they may be purged. Default 7 days.
    public var retainDelivered: Duration

    /// Creates a journal configuration with the documented defaults.
    public init(
        path: String = "./waypost.db",
        durability: Durability = .full,
        maxBacklog: Int = 1_000_000,
        retainDelivered: Duration = .seconds(7 * 86_400)
    ) {
        self.path = path
        self.durability = durability
        self.maxBacklog = maxBacklog
        self.retainDelivered = retainDelivered
    }
}

/// Request size limits (SPEC §2): the global `defaults` block.
public struct RouteLimits: Sendable, Equatable {
    /// The largest accepted body in bytes (larger → `413`). Default 1 MiB.
    public var maxBodyBytes: Int
    /// The largest accepted header block in bytes (larger → `431`). Default 64 KiB.
    public var maxHeaderBytes: Int

    /// The largest `max_body_bytes` the parser accepts: SQLite's default limit on the length
    /// of a BLOB (`SQLITE_MAX_LENGTH`, 10⁹ bytes), since a body is stored as one BLOB.
    public static let bodyBytesCeiling = 1_000_000_000

    /// Creates limits with the documented defaults.
    public init(maxBodyBytes: Int = 1 << 20, maxHeaderBytes: Int = 64 << 10) {
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
    }
}

/// A route's default delivery pattern (SPEC §1); a request may override it with `Prefer`.
public enum DeliveryMode: String, Sendable, Equatable, CaseIterable {
    /// Answer `202` once the message is committed. The default.
    case async
    /// Wait up to `sync_timeout` for the upstream's answer.
    case sync
}

/// How a route's messages are queued for delivery (SPEC §3).
public enum Ordering: String, Sendable, Equatable, CaseIterable {
    /// One ordered queue per route. The default.
    case fifo
    /// One ordered queue per value of the route's ``OrderingKey``.
    case key
    /// No ordering: up to `concurrency` deliveries in parallel.
    case none
}

/// Where the ordering key of a message comes from, for `ordering: key`.
///
/// Written `header:NAME` or `json:/pointer` (an RFC 6901 JSON Pointer into the body).
public enum OrderingKey: Sendable, Equatable, CustomStringConvertible {
    /// The value of this request header (name as configured; compare case-insensitively).
    case header(String)
    /// The value at this JSON Pointer in the body; always starts with `/`.
    case jsonPointer(String)

    /// The configuration spelling: `header:NAME` or `json:/pointer`.
    public var description: String {
        switch self {
        case .header(let name): "header:\(name)"
        case .jsonPointer(let pointer): "json:\(pointer)"
        }
    }
}

/// What happens to a message whose retries are exhausted (SPEC §3).
public enum OnExhausted: String, Sendable, Equatable, CaseIterable {
    /// Mark it `failed` and let its queue move on. The default.
    case deadLetter = "dead_letter"
    /// Keep it `failed` at the head of its queue until an operator replays or skips it.
    case block
}

/// Body validation at intake (SPEC §2).
public enum BodyValidation: String, Sendable, Equatable, CaseIterable {
    /// Any bytes. The default.
    case none
    /// The body must be well-formed JSON, else `400`.
    case json
}

/// An inclusive range of HTTP status codes, for `retry.retry_on`.
///
/// Written as a code (`409`), a class (`"5xx"`) or a range (`"500-599"`), all within 100...599.
public struct StatusRange: Sendable, Equatable, CustomStringConvertible {
    /// The lowest status in the range.
    public var lower: Int
    /// The highest status in the range (inclusive).
    public var upper: Int

    /// Creates the range `lower...upper`, unchecked.
    public init(lower: Int, upper: Int) {
        self.lower = lower
        self.upper = upper
    }

    /// Whether `status` lies in the range.
    public func contains(_ status: Int) -> Bool {
        lower <= status && status <= upper
    }

    /// `409`, `5xx` or `500-599`.
    public var description: String {
        if lower == upper { return "\(lower)" }
        if lower % 100 == 0 && upper == lower + 99 { return "\(lower / 100)xx" }
        return "\(lower)-\(upper)"
    }
}

/// Retry schedule of a route (SPEC §3): exponential backoff with jitter.
public struct RetryPolicy: Sendable, Equatable {
    /// Delay before the first retry. Default 1s.
    public var initial: Duration
    /// Growth factor between retries, at least 1. Default 2.
    public var factor: Double
    /// The longest delay between two attempts (an upstream's `Retry-After` may exceed it). Default 10m.
    public var maxDelay: Duration
    /// The most attempts in all, the first one included. Default 20.
    public var maxAttempts: Int
    /// No retry is scheduled later than this after the message was received. Default 72h.
    public var maxAge: Duration
    /// When set, replaces the retryable statuses (408, 425, 429 and 5xx) with these ranges.
    /// Connection errors and timeouts are retried either way.
    public var retryOn: [StatusRange]?

    /// Creates a policy with the documented defaults.
    public init(
        initial: Duration = .seconds(1),
        factor: Double = 2,
        maxDelay: Duration = .seconds(600),
        maxAttempts: Int = 20,
        maxAge: Duration = .seconds(72 * 3600),
        retryOn: [StatusRange]? = nil
    ) {
        self.initial = initial
        self.factor = factor
        self.maxDelay = maxDelay
        self.maxAttempts = maxAttempts
        self.maxAge = maxAge
        self.retryOn = retryOn
    }
}

/// Timeouts of one delivery attempt (SPEC §3).
public struct Timeouts: Sendable, Equatable {
    /// Time allowed to establish the connection (TCP and TLS). Default 5s.
    public var connect: Duration
    /// Time allowed for the whole attempt. Default 30s.
    public var total: Duration

    /// Creates timeouts with the documented defaults.
    public init(connect: Duration = .seconds(5), total: Duration = .seconds(30)) {
        self.connect = connect
        self.total = total
    }
}

/// Where a secret is read from at start-up. The configuration never holds the secret itself.
public struct SecretSource: Sendable, Equatable, CustomStringConvertible {
    /// The two places a secret may come from.
    public enum Kind: Sendable, Equatable {
        /// The environment variable of this name (`secret_env`).
        case env(String)
        /// The file at this path, a trailing newline ignored (`secret_file`).
        case file(String)
    }

    /// Where the secret is.
    public var kind: Kind

    /// Creates a secret source.
    public init(_ kind: Kind) {
        self.kind = kind
    }

    /// For messages: `environment variable NAME` or `file PATH`.
    public var description: String {
        switch kind {
        case .env(let name): "environment variable \(name)"
        case .file(let path): "file \(path)"
        }
    }
}

/// Inbound signature schemes (SPEC §9).
public enum VerifyScheme: String, Sendable, Equatable, CaseIterable {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    case standardWebhooks = "standard-webhooks"
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`.
    case github
    /// Stripe: `Stripe-Signature: t=…,v1=…`.
    case stripe
    /// A plain HMAC-SHA256 of the body in a configured header.
    case hmacSHA256 = "hmac-sha256"

    /// Whether the scheme signs a timestamp, so that `tolerance` applies.
    public var isTimestamped: Bool {
        self == .standardWebhooks || self == .stripe
    }
}

/// How an `hmac-sha256` signature is encoded in its header.
public enum SignatureEncoding: String, Sendable, Equatable, CaseIterable {
    /// Hexadecimal digits, in either case.
    case hex
    /// Standard base64.
    case base64
}

/// Inbound signature verification of a route (SPEC §9).
public struct VerifyConfig: Sendable, Equatable {
    /// The signature scheme.
    public var scheme: VerifyScheme
    /// Where the secret (or space-separated secrets, for rotation) is read from.
    public var secret: SecretSource
    /// For timestamped schemes: how far a timestamp may be from now. Default 5m.
    public var tolerance: Duration
    /// For `hmac-sha256` only (and required there): the header carrying the signature.
    public var header: String?
    /// For `hmac-sha256` only: the signature's encoding; the parser sets `.hex` when it is omitted.
    public var encoding: SignatureEncoding?
    /// For `hmac-sha256` only: a prefix the header value must carry before the signature (e.g. `sha256=`).
    public var prefix: String?

    /// Creates a verification configuration.
    public init(
        scheme: VerifyScheme,
        secret: SecretSource,
        tolerance: Duration = .seconds(300),
        header: String? = nil,
        encoding: SignatureEncoding? = nil,
        prefix: String? = nil
    ) {
        self.scheme = scheme
        self.secret = secret
        self.tolerance = tolerance
        self.header = header
        self.encoding = encoding
        self.prefix = prefix
    }
}

/// Outbound signature schemes (SPEC §9).
public enum SignScheme: String, Sendable, Equatable, CaseIterable {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    case standardWebhooks = "standard-webhooks"
}

/// Outbound signing of a route's deliveries (SPEC §9).
public struct SignConfig: Sendable, Equatable {
    /// The signature scheme.
    public var scheme: SignScheme
    /// Where the signing secret is read from.
    public var secret: SecretSource

    /// Creates a signing configuration.
    public init(scheme: SignScheme = .standardWebhooks, secret: SecretSource) {
        self.scheme = scheme
        self.secret = secret
    }
}

/// One header name and value, e.g. an entry of `add_headers`.
public struct HeaderField: Sendable, Equatable {
    /// The header name, as written.
    public var name: String
    /// The value; in `add_headers` it may contain `${ENV_VAR}` references, expanded at start-up.
    /// Its bytes are its UTF-8, unless ``valueIsLatin1``.
    public var value: String
    /// The value's bytes are not UTF-8 (obs-text, RFC 9110 §5.5): `value` holds one character
    /// per byte (U+0000…U+00FF), so that the bytes are stored and forwarded as they came.
    public var valueIsLatin1: Bool

    /// Creates a header field.
    public init(name: String, value: String, valueIsLatin1: Bool = false) {
        self.name = name
        self.value = value
        self.valueIsLatin1 = valueIsLatin1
    }

    /// A field whose value is `bytes` as received: UTF-8 text when they are UTF-8, else one
    /// character per byte (``valueIsLatin1``).
    public init(name: String, valueBytes bytes: some Collection<UInt8>) {
        if let text = String(validating: bytes, as: UTF8.self) {
            self.init(name: name, value: text)
        } else {
            var text = ""
            text.unicodeScalars.append(contentsOf: bytes.map { Unicode.Scalar($0) })
            self.init(name: name, value: text, valueIsLatin1: true)
        }
    }

    /// The value's bytes on the wire.
    public var valueBytes: [UInt8] {
        valueIsLatin1 ? value.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) } : Array(value.utf8)
    }
}

/// One route: which requests it takes and how it delivers them (SPEC §1–§3, §8, §9, §11).
public struct RouteConfig: Sendable, Equatable {
    /// Unique name, used by the admin API, logs and metrics: 1–64 characters of `[A-Za-z0-9._-]`.
    public var name: String
    /// Path prefix, matched by whole segments. Starts with `/`, has no trailing slash (except `/`
    /// itself), and is never under `/_waypost`.
    public var path: String
    /// Default ``DeliveryMode/async``.
    public var mode: DeliveryMode
    /// The longest a synchronous request waits for the upstream's answer. Default 30s.
    public var syncTimeout: Duration
    /// The request header that carries an idempotency key. Default `Idempotency-Key`.
    public var idempotencyHeader: String
    /// How long an idempotency key is remembered. Default 24h.
    public var dedupWindow: Duration
    /// Effective body limit: the route's own value or else the global default.
    public var maxBodyBytes: Int
    /// Effective header limit: the route's own value or else the global default.
    public var maxHeaderBytes: Int
    /// Allowed media types, lowercased, without parameters (e.g. `application/json`); `nil` = any.
    public var contentTypes: [String]?
    /// Default ``BodyValidation/none``.
    public var validate: BodyValidation
    /// Inbound signature verification, if any.
    public var verify: VerifyConfig?
    /// The route's own delivery keys (``upstream``, ``ordering``, …): its one destination's
    /// when it is written without `destinations`, else their defaults. Named like the route.
    public var defaults: DestinationConfig
    /// Where each message goes (SPEC §11), never empty. A route written without
    /// `destinations` has one: ``defaults``.
    public var destinations: [DestinationConfig]
    /// The index in ``destinations`` of the one whose answer a waiting source gets
    /// (`reply_from`; default the first).
    public var replyFrom: Int
    /// The jq program that makes a waiting source's answer from that destination's (`reply`,
    /// sync mode only).
    public var reply: String?

    /// Creates a route; everything but `name`, `path` and `upstream` has the documented default.
    /// Without `destinations`, the route has one destination made of its own delivery keys.
    /// Nothing is validated here: ``WaypostConfig/parse(yaml:file:)`` does that.
    public init(
        name: String,
        path: String,
        upstream: String,
        mode: DeliveryMode = .async,
        syncTimeout: Duration = .seconds(30),
        ordering: Ordering = .fifo,
        orderingKey: OrderingKey? = nil,
        concurrency: Int = 16,
        idempotencyHeader: String = "Idempotency-Key",
        dedupWindow: Duration = .seconds(24 * 3600),
        retry: RetryPolicy = RetryPolicy(),
        onExhausted: OnExhausted = .deadLetter,
        timeouts: Timeouts = Timeouts(),
        maxBodyBytes: Int = RouteLimits().maxBodyBytes,
        maxHeaderBytes: Int = RouteLimits().maxHeaderBytes,
        contentTypes: [String]? = nil,
        validate: BodyValidation = .none,
        verify: VerifyConfig? = nil,
        sign: SignConfig? = nil,
        addHeaders: [HeaderField] = [],
        removeHeaders: [String] = [],
        filter: DeliveryFilter? = nil,
        rateLimit: RateLimit? = nil,
        breaker: BreakerPolicy? = BreakerPolicy(),
        destinations: [DestinationConfig]? = nil,
        replyFrom: Int = 0
    ) {
        self.name = name
        self.path = path
        self.mode = mode
        self.syncTimeout = syncTimeout
        self.idempotencyHeader = idempotencyHeader
        self.dedupWindow = dedupWindow
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.contentTypes = contentTypes
        self.validate = validate
        self.verify = verify
        self.defaults = DestinationConfig(
            name: name, upstream: upstream, ordering: ordering, orderingKey: orderingKey, concurrency: concurrency, retry: retry,
            onExhausted: onExhausted, timeouts: timeouts, sign: sign, addHeaders: addHeaders, removeHeaders: removeHeaders,
            filter: filter, rateLimit: rateLimit, breaker: breaker)
        self.destinations = destinations ?? [defaults]
        self.replyFrom = replyFrom
    }

    /// ``destinationKey(route:destination:)`` of one of its destinations.
    public func key(of destination: DestinationConfig) -> String { Self.destinationKey(route: name, destination: destination.name) }

    /// `route/destination`: unique among every route's destinations (names have no `/`); how
    /// the scheduler, the journal's control rows (paused, tripped) and the keys name it.
    public static func destinationKey(route: String, destination: String) -> String { "\(route)/\(destination)" }

    /// The route and destination names of a ``destinationKey(route:destination:)``; nil for a
    /// text without `/` (a route's own name).
    public static func splitDestinationKey(_ key: Substring) -> (route: String, destination: String)? {
        guard let slash = key.firstIndex(of: "/") else { return nil }
        return (String(key[..<slash]), String(key[key.index(after: slash)...]))
    }

    /// Where a destination's keys are in the file, for messages: the route's own
    /// (`routes[0]`) for a route written without `destinations`.
    public func keyPath(index: Int, destination: Int) -> String {
        destinations.count == 1 && destinations[0].name == name ? "routes[\(index)]" : "routes[\(index)].destinations[\(destination)]"
    }

    /// The destination whose answer a waiting source gets.
    public var replyDestination: DestinationConfig { destinations[replyFrom] }
}

extension RouteConfig {
    // The route's delivery keys, kept in ``defaults``.

    /// Absolute `http://` or `https://` URL the messages are delivered to, as written.
    public var upstream: String { defaults.upstream }
    /// Default ``Ordering/fifo``.
    public var ordering: Ordering { defaults.ordering }
    /// Set exactly when ``ordering`` is ``Ordering/key``.
    public var orderingKey: OrderingKey? { defaults.orderingKey }
    /// Parallel deliveries for `ordering: key` and `none`; at least 1. Default 16.
    public var concurrency: Int { defaults.concurrency }
    /// The retry schedule.
    public var retry: RetryPolicy { defaults.retry }
    /// Default ``OnExhausted/deadLetter``.
    public var onExhausted: OnExhausted { defaults.onExhausted }
    /// Timeouts of one attempt.
    public var timeouts: Timeouts { defaults.timeouts }
    /// Outbound signing, if any.
    public var sign: SignConfig? { defaults.sign }
    /// Headers added to every delivery, in the order of the file.
    public var addHeaders: [HeaderField] { defaults.addHeaders }
    /// Header names removed from every delivery (compare case-insensitively).
    public var removeHeaders: [String] { defaults.removeHeaders }
}

/// One upstream of a route, with its own queues, retries and outcome (SPEC §11).
public struct DestinationConfig: Sendable, Equatable {
    /// Unique within its route: 1–64 characters of `[A-Za-z0-9._-]`.
    public var name: String
    public var upstream: String
    public var ordering: Ordering
    /// Set exactly when ``ordering`` is ``Ordering/key``.
    public var orderingKey: OrderingKey?
    public var concurrency: Int
    public var retry: RetryPolicy
    public var onExhausted: OnExhausted
    public var timeouts: Timeouts
    public var sign: SignConfig?
    public var addHeaders: [HeaderField]
    public var removeHeaders: [String]
    /// Messages it does not match get this destination's delivery as `filtered`.
    public var filter: DeliveryFilter?
    /// `rate_limit` (and `rate_limit_burst`), if any.
    public var rateLimit: RateLimit?
    /// `breaker`; nil for `breaker: off`. Default: 20 failures, probes every 30s.
    public var breaker: BreakerPolicy?
    /// The jq program run over each attempt's request (`transform`), if any.
    public var transform: String?
    /// `ca_file`: the certificate authorities (PEM) an `https` upstream must chain to, in place
    /// of the system's (a private CA).
    public var caFile: String?

    /// A destination; everything but `name` and `upstream` has the documented default.
    public init(
        name: String, upstream: String, ordering: Ordering = .fifo, orderingKey: OrderingKey? = nil, concurrency: Int = 16,
        retry: RetryPolicy = RetryPolicy(), onExhausted: OnExhausted = .deadLetter, timeouts: Timeouts = Timeouts(),
        sign: SignConfig? = nil, addHeaders: [HeaderField] = [], removeHeaders: [String] = [], filter: DeliveryFilter? = nil,
        rateLimit: RateLimit? = nil, breaker: BreakerPolicy? = BreakerPolicy()
    ) {
        self.name = name
        self.upstream = upstream
        self.ordering = ordering
        self.orderingKey = orderingKey
        self.concurrency = concurrency
        self.retry = retry
        self.onExhausted = onExhausted
        self.timeouts = timeouts
        self.sign = sign
        self.addHeaders = addHeaders
        self.removeHeaders = removeHeaders
        self.filter = filter
        self.rateLimit = rateLimit
        self.breaker = breaker
    }

    /// A destination named `name` with `route`'s delivery keys (its defaults).
    public init(name: String, defaults route: RouteConfig) {
        self = route.defaults
        self.name = name
    }
}

/// `tls: { cert_file, key_file }` (SPEC §14): PEM files, the certificate first in its chain.
public struct TLSFiles: Sendable, Equatable {
    public var certFile: String
    public var keyFile: String

    public init(certFile: String, keyFile: String) {
        self.certFile = certFile
        self.keyFile = keyFile
    }
}

/// `cluster: { node, lease_ttl }` (SPEC §12): a node of several `waypost serve` processes on
/// one PostgreSQL journal.
public struct ClusterConfig: Sendable, Equatable {
    /// The node's name, unique in the cluster; nil: the host's name.
    public var node: String?
    /// How long a node's lease on a partition of the queues lasts without a heartbeat. Default 10s.
    public var leaseTTL: Duration = .seconds(10)

    public init() {}

    /// 1 to 100 of `A-Z a-z 0-9 . _ : -` (notifications separate words by spaces).
    public static func isValidNode(_ name: String) -> Bool {
        (1...100).contains(name.utf8.count)
            && name.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"):
                    true
                default: false
                }
            }
    }
}

/// `tracing: { otlp_endpoint, otlp_protocol, service_name }` (SPEC §14): where spans go.
public struct TracingConfig: Sendable, Equatable {
    /// `otlp_protocol`: how spans are encoded in OTLP/HTTP requests.
    public enum Encoding: String, Sendable, Equatable, CaseIterable {
        case protobuf = "http/protobuf"
        case json = "http/json"
    }

    /// The collector's URL as configured.
    public var otlpEndpoint: String
    public var otlpProtocol: Encoding = .protobuf
    /// The `service.name` resource attribute. Default `waypost`.
    public var serviceName = "waypost"

    public init(otlpEndpoint: String) {
        self.otlpEndpoint = otlpEndpoint
    }

    /// Where spans are posted: the endpoint as given when it has a path, else its `/v1/traces`
    /// (as OpenTelemetry's `OTEL_EXPORTER_OTLP_ENDPOINT` means a base URL).
    public var tracesURL: String {
        let afterScheme = otlpEndpoint.firstRange(of: "://").map { otlpEndpoint[$0.upperBound...] } ?? Substring(otlpEndpoint)
        guard let slash = afterScheme.firstIndex(of: "/") else { return otlpEndpoint + "/v1/traces" }
        return afterScheme[slash...] == "/" ? otlpEndpoint + "v1/traces" : otlpEndpoint
    }
}
