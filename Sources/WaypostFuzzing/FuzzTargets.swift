// The fuzz targets (issue: fuzzing as a habit). Each takes arbitrary bytes and must neither trap
// nor spin; where a parser has an invariant (a timestamp reads back as it was written, a target
// URL keeps its upstream's host), a violation traps so that the fuzzer reports it.
//
// `scripts/fuzz.sh TARGET SECONDS` runs one under libFuzzer (the `waypost-fuzz` executable);
// the test suite runs every one over its seed corpus and mutations of it for a few seconds.

import Foundation
import WaypostCore
import WaypostJournal
import WaypostPostgres
import WaypostServer
import WaypostTransform

/// The fuzz targets by name.
public enum FuzzTargets {
    /// Every target, in the order `scripts/fuzz.sh all` runs them.
    public static let names = ["intake", "admin", "query", "units", "config", "json", "filter", "signatures", "transform", "notifications"]

    /// The function that runs target `name` on one input; nil for an unknown name.
    ///
    /// - Parameter directory: a scratch directory (the pipeline targets create an empty journal there).
    public static func make(_ name: String, directory: String) async throws -> (@Sendable ([UInt8]) -> Void)? {
        switch name {
        case "intake":
            let fuzzer = try await PipelineFuzzer.make(directory: directory)
            return { fuzzer.intake($0) }
        case "admin":
            let fuzzer = try await PipelineFuzzer.make(directory: directory)
            return { fuzzer.admin($0) }
        case "query": return query
        case "units": return units
        case "config": return config
        case "json": return json
        case "filter": return filter
        case "transform": return transform
        case "notifications": return notifications
        case "signatures":
            let verifiers = try signatureVerifiers()
            return { signatures($0, verifiers: verifiers) }
        default: return nil
        }
    }

    /// Fails the run (the fuzzer reports the input) when an invariant does not hold.
    static func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError("fuzz invariant: \(message())") }
    }

    // MARK: - Query strings, filters, addresses, paths, target URLs

    /// Each line is tried as a query, a filter item, an address, a network, a path, a request
    /// target, and a source's `traceparent` with the next line as its `tracestate`.
    static func query(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        let table = RouteTable(routes: [
            RouteConfig(name: "a", path: "/hooks", upstream: "http://a.internal:8080/base/"),
            RouteConfig(name: "b", path: "/hooks/github", upstream: "https://b.internal"),
            RouteConfig(name: "c", path: "/", upstream: "http://c.internal/x"),
        ])
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).prefix(64) {
            let value = String(line)
            if let items = try? QueryString.items(line) {
                var filter = MessageFilter()
                for (name, item) in items { try? filter.set(name, item, now: 1_764_000_000_000) }
                check(MessageFilter.limits.contains(filter.limit), "limit \(filter.limit)")
                if let since = filter.since { check(Timestamp.parse(since) != nil, "since \(since)") }
            }
            _ = try? QueryString.dictionary(line, allowed: ["state", "route", "limit"])
            // What an attempt sends on is a well-formed traceparent and header-safe, whatever came.
            let trace = AttemptTrace.headers(
                AttemptTrace.context(
                    stored: [
                        HeaderField(name: "traceparent", value: value), HeaderField(name: "tracestate", value: String(text.prefix(512))),
                    ],
                    correlationID: value))
            check(trace[0].value.utf8.count == 55 && trace[0].value.hasPrefix("00-"), "traceparent \(trace[0].value)")
            check(trace.allSatisfy { !$0.value.utf8.contains { $0 < 0x20 || $0 == 0x7F } }, "trace headers \(trace)")
            _ = try? HostPort(parsing: value)
            if let network = CIDR(value) { _ = network.contains(value) }
            _ = CIDR("10.0.0.0/8")?.contains(value)
            // The intake takes origin-form targets only (starting with "/").
            guard line.hasPrefix("/") else { continue }
            let path = line.prefix { $0 != "?" }
            if let match = table.match(path: path) {
                let route = match.route
                let url = OutboundRequest.targetURL(upstream: route.upstream, routePath: route.path, requestTarget: value)
                // URLs are bytes: what follows the upstream's own bytes starts a path or a query.
                let base = Array((route.upstream.hasSuffix("/") ? String(route.upstream.dropLast()) : route.upstream).utf8)
                let bytes = Array(url.utf8)
                check(bytes.starts(with: base), "\(url) does not start with its upstream \(route.upstream)")
                let rest = bytes.dropFirst(base.count)
                check(rest.isEmpty || rest.first == UInt8(ascii: "/") || rest.first == UInt8(ascii: "?"), "\(url): the host could change")
            }
        }
    }

    // MARK: - Durations, sizes, timestamps, HTTP dates, Retry-After, Prefer

    static func units(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        let now: Int64 = 1_764_000_000_000
        if let duration = parseDuration(text) { check(duration <= maximumDuration && duration >= .zero, "duration \(text)") }
        if let size = parseSize(text) { check(size >= 0, "size \(text)") }
        _ = parseDigits(Substring(text), clampedTo: 60).map { check((0...60).contains($0), "digits \(text)") }
        if let ms = Timestamp.parse(text) { check(Timestamp.format(millisecondsSince1970: ms) == text, "\(text) does not read back") }
        if let bound = Timestamp.filterBound(text, now: now) { check(Timestamp.parse(bound) != nil, "bound \(bound)") }
        _ = HTTPDate.parse(Substring(text))
        if let delay = RetryPolicy.parseRetryAfter(text, now: now) {
            check(delay >= .zero && delay <= maximumDuration + .seconds(1), "Retry-After \(text): \(delay)")
        }
        for attempt in [1, 7, Int.max] {
            _ = RetryPolicy().verdict(.response(status: 503, retryAfter: text), attempt: attempt, cycleStart: now, now: now, random: 0.5)
        }
        let preferences = Preferences(headerValues: [text])
        _ = ResponsePattern.choose(mode: .async, syncTimeout: .seconds(30), preferences: preferences)
        _ = StatusRange(parsing: text)
        _ = try? OrderingKey(parsing: text)
        // A journal URL (no environment: no password file is read).
        if let location = try? PostgresLocation(url: text, environment: [:]) {
            check((1...65535).contains(location.port) && !location.host.isEmpty, "journal URL \(text)")
        }
    }

    // MARK: - Configuration files

    static func config(_ bytes: [UInt8]) {
        guard let text = String(validating: bytes, as: UTF8.self) else { return }
        guard let config = try? WaypostConfig.parse(yaml: text, file: "fuzz.yaml"), let url = config.journal.url else { return }
        _ = try? PostgresLocation(url: url, passwordEnv: config.journal.passwordEnv, environment: [:])
    }

    // MARK: - JSON: validation, ordering keys, stored headers

    static func json(_ bytes: [UInt8]) {
        _ = JSONValidator.isValid(bytes)
        for pointer in ["/order/id", "/a/0", "/", "/~0~1/x"] {
            _ = OrderingKey.jsonPointer(pointer).value(headers: [], body: bytes)
        }
        _ = JSON.decodeHeaders(String(decoding: bytes, as: UTF8.self))
        // The parser takes what the validator takes, and its values print back as themselves.
        let value = JSONValue.parse(bytes)
        check((value != nil) == JSONValidator.isValid(bytes), "JSONValue.parse and JSONValidator disagree")
        if let value { check(JSONValue.parse(Array(value.description.utf8)) == value, "\(value) does not read back as itself") }
    }

    // MARK: - Destination filters

    /// The first line is a filter document (SPEC §11), the rest a request body: a filter that
    /// compiles is matched against it, with headers, a query and a path.
    static func filter(_ bytes: [UInt8]) {
        let newline = bytes.firstIndex(of: 10) ?? bytes.endIndex
        let document = String(decoding: bytes[..<newline], as: UTF8.self)
        let body = Array(bytes[min(newline + 1, bytes.endIndex)...])
        guard let filter = try? DeliveryFilter(json: document) else { return }
        let input = DeliveryFilter.Input(
            body: JSONValue.parse(body),
            headers: [HeaderField(name: "X-Kind", value: "order.paid"), HeaderField(name: "x-kind", value: "b")],
            query: "page=2&tag=a&tag=b&bad=%zz", path: "/hooks/shop/orders")
        _ = filter.matches(input)
    }

    // MARK: - What a transform worker answers

    /// The bytes as a worker's answer frame, and as the output a transform or a reply program
    /// printed: what the server reads back from a program it does not trust. Whatever the
    /// output, the target URL keeps the upstream's host and the headers stay header-shaped.
    static func transform(_ bytes: [UInt8]) {
        _ = TransformAnswer(frame: bytes)
        let text = String(decoding: bytes, as: UTF8.self)
        _ = try? ReplyDocument.answer(text)
        if let document = JSONValue.parse(bytes) { _ = try? TransformDocument(document: document) }
        let stored = TransformDocument(
            method: "POST", path: "/in", query: "a=1",
            headers: [HeaderField(name: "Host", value: "h"), HeaderField(name: "X-A", value: "1")],
            body: Array(#"{"n":1}"#.utf8))
        guard let sent = try? stored.applying(rest: text, body: nil) else { return }
        let url = OutboundRequest.targetURL(upstream: "http://up.internal:8080/base", path: sent.path, query: sent.query)
        check(
            url.hasPrefix("http://up.internal:8080/base")
                && (url.count == 28 || "/?".contains(url[url.index(url.startIndex, offsetBy: 28)])), url)
        check(sent.headers.allSatisfy { !$0.value.utf8.contains(where: { $0 == 10 || $0 == 13 || $0 == 0 }) }, "\(sent.headers)")
        check(sent.headers.filter { $0.name.caseInsensitiveEquals("host") }.map(\.value) == ["h"], "\(sent.headers)")
    }

    // MARK: - The cluster's notifications

    /// Each line is a notification that node `a` takes in: its channel's last word (`stored`,
    /// `outcomes`, `breakers`), a space, the payload. Anyone who may connect to the database can
    /// notify; what is not news leaves what was learned as it was, and what is learned is
    /// well-formed: outcomes are correlation-id-shaped words, breakers name a destination.
    static func notifications(_ bytes: [UInt8]) {
        var others = OthersCommitted()
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n").prefix(64) {
            let channel = line.prefix { $0 != " " }
            let payload = String(line.dropFirst(channel.count + 1))
            let before = others
            let news = others.take(payload, on: "waypost_\(channel)", node: "a")
            check(news || others == before, "\(line): not news, yet taken in")
            check(others.outcomes.allSatisfy { !$0.isEmpty && !$0.contains(" ") }, "\(others.outcomes)")
            check(others.breakers.allSatisfy { !$0.key.isEmpty }, "\(others.breakers)")
            if news, channel == "stored" { check(others.storedFrom! <= before.storedFrom ?? .max, "\(line)") }
        }
    }

    // MARK: - Signature headers

    /// One verifier per scheme, each over the same secret.
    static func signatureVerifiers() throws -> [InboundVerifier] {
        let env = SecretSource(.env("FUZZ"))
        return [
            try InboundVerifier(config: VerifyConfig(scheme: .github, secret: env), secrets: ["s3cret"]),
            try InboundVerifier(config: VerifyConfig(scheme: .stripe, secret: env), secrets: ["s3cret", "other"]),
            try InboundVerifier(
                config: VerifyConfig(scheme: .standardWebhooks, secret: env), secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]),
            try InboundVerifier(
                config: VerifyConfig(scheme: .hmacSHA256, secret: env, header: "X-Sig", encoding: .hex, prefix: "sha256="),
                secrets: ["s3cret"]),
            try InboundVerifier(
                config: VerifyConfig(scheme: .hmacSHA256, secret: env, header: "X-Sig", encoding: .base64), secrets: ["s3cret"]),
        ]
    }

    /// Header lines (`Name: value`) up to a blank line, then the body.
    static func signatures(_ bytes: [UInt8], verifiers: [InboundVerifier]) {
        let separator: Range<Int>? = bytes.firstRange(of: [10, 10] as [UInt8])
        let head = String(decoding: bytes.prefix(separator?.lowerBound ?? bytes.count), as: UTF8.self)
        let body = Array(bytes.suffix(from: separator?.upperBound ?? bytes.count))
        let headers = head.split(separator: "\n").prefix(32).map { (line: Substring) -> HeaderField in
            let colon = line.firstIndex(of: ":") ?? line.endIndex
            let value = line.suffix(from: colon).dropFirst()
            return HeaderField(name: String(line.prefix(upTo: colon)), value: String(value).trimmingCharacters(in: .whitespaces))
        }
        for verifier in verifiers {
            _ = verifier.verify(headers: headers, body: body, nowMilliseconds: 1_764_000_000_000)
        }
    }
}
