import Foundation

/// The intake's rules for a request (SPEC §2), as pure functions of what arrived: no channel,
/// no journal, no clock. The intake's handler reads the request, asks, and answers; a
/// rejected request is never stored.
public enum IntakeAdmission {
    /// What a request head gets.
    public enum Head: Sendable, Equatable {
        /// Refused: answer with the problem.
        case reject(Problem)
        /// A path under the reserved `/_waypost/` prefix: the status API's to answer or refuse.
        case status(path: String)
        /// A request for `route`: read its body. `suppliedCorrelationID` is the source's own
        /// `X-Correlation-ID`; `pattern` is how the source is answered.
        case route(RouteConfig, suppliedCorrelationID: String?, pattern: ResponsePattern)
    }

    /// The decision on a request head (after the HTTP/1.1 rules of the connection): its target
    /// (origin form, no dot segments), the route it matches, the route's header, media type and
    /// body limits, the source's correlation id, and the response pattern (`mode`, `Prefer`).
    ///
    /// - Parameter headers: the head's fields, names in any case.
    @inlinable  // specialized for the intake's header type: this runs for every request
    public static func head(
        target: String, headers: some Sequence<(name: String, value: String)>, routes: RouteTable
    ) -> Head {
        guard target.hasPrefix("/") else { return .reject(.badTarget(target)) }
        let path = target[..<(target.firstIndex(of: "?") ?? target.endIndex)]
        if hasDotSegment(path) { return .reject(.dotSegments(path: String(path))) }
        if path == "/_waypost" || path.hasPrefix("/_waypost/") { return .status(path: String(path)) }
        guard let route = routes.match(path: path)?.route else { return .reject(.notFound(path: String(path))) }
        var headerBytes = 0
        var contentType: String?
        var contentLength: String?
        var supplied: [String] = []
        var preferences: [String] = []
        for (name, value) in headers {
            headerBytes += name.utf8.count + value.utf8.count + 4
            if name.caseInsensitiveEquals("content-type") {
                contentType = contentType ?? value
            } else if name.caseInsensitiveEquals("content-length") {
                contentLength = contentLength ?? value
            } else if name.caseInsensitiveEquals("x-correlation-id") {
                supplied.append(value)
            } else if name.caseInsensitiveEquals("prefer") {
                preferences.append(value)
            }
        }
        if headerBytes > route.maxHeaderBytes {
            return .reject(.headersTooLarge(limit: route.maxHeaderBytes, route: route.name))
        }
        if let allowed = route.contentTypes {
            let mediaType = contentType.map {
                $0.split(separator: ";", maxSplits: 1).first.map { $0.trimmingHTTPWhitespace().lowercased() } ?? ""
            }
            if !allowed.contains(mediaType ?? "") {
                return .reject(.unsupportedMediaType(contentType, allowed: allowed, route: route.name))
            }
        }
        if let length = contentLength.flatMap(Int.init), length > route.maxBodyBytes {
            return .reject(.bodyTooLarge(limit: route.maxBodyBytes, route: route.name))
        }
        guard supplied.count <= 1, supplied.allSatisfy(CorrelationID.isValidSupplied) else { return .reject(.badCorrelationID()) }
        let pattern = ResponsePattern.choose(
            mode: route.mode, syncTimeout: route.syncTimeout, preferences: Preferences(headerValues: preferences))
        return .route(route, suppliedCorrelationID: supplied.first, pattern: pattern)
    }

    /// The message a complete request makes, once its signature (the route's `verify`) and
    /// body (`validate: json`) are checked: the request as received, without hop-by-hop fields
    /// and `Expect`, with its ordering and idempotency keys.
    ///
    /// - Parameters:
    ///   - fields: the head's fields as received (values byte for byte).
    ///   - verifier: the route's inbound verifier, if it has `verify`.
    ///   - now: milliseconds since the Unix epoch: the signature's clock and `receivedAt`.
    public static func message(
        route: RouteConfig, method: String, target: String, fields: [HeaderField], body: [UInt8], correlationID: String,
        correlationIDWasSupplied: Bool, verifier: InboundVerifier?, now: Int64, clientAddress: String?
    ) -> Result<IncomingMessage, Problem> {
        if let verifier, let failure = verifier.verify(headers: fields, body: body, nowMilliseconds: now) {
            return .failure(.signature(failure, route: route.name))
        }
        if route.validate == .json, !JSONValidator.isValid(body) {
            return .failure(.malformedJSON(route: route.name))
        }
        let stored = HTTPHeaderRules.removingHopByHop(fields.filter { !$0.name.caseInsensitiveEquals("expect") })
        // An empty key is no key: requests without one are never repeats of each other.
        let idempotencyKey = fields.first { $0.name.caseInsensitiveEquals(route.idempotencyHeader) }.flatMap {
            $0.value.isEmpty ? nil : $0.value
        }
        return .success(
            IncomingMessage(
                correlationID: correlationID, correlationIDWasSupplied: correlationIDWasSupplied, route: route.name,
                deliveries: deliveries(route: route, target: target, headers: stored, body: body),
                idempotencyKey: idempotencyKey, dedupWindowMilliseconds: route.dedupWindow.milliseconds, method: method,
                path: target, headers: stored, body: body, receivedAt: now, clientAddress: clientAddress))
    }

    /// The message's deliveries, the `reply_from` destination's first: each destination's
    /// ordering key, and whether its filter passes the request (the body is parsed once, and
    /// only when a filter needs it).
    static func deliveries(route: RouteConfig, target: String, headers: [HeaderField], body: [UInt8]) -> [PlannedDelivery] {
        // What the filters see, made for the first filter and shared by the others.
        var input: DeliveryFilter.Input?
        var planned: [PlannedDelivery] = []
        planned.reserveCapacity(route.destinations.count)
        for destination in route.destinations {
            var filtered = false
            if let filter = destination.filter {
                if input == nil {
                    let queryStart = target.firstIndex(of: "?")
                    input = DeliveryFilter.Input(
                        body: JSONValue.parse(body), headers: headers,
                        query: queryStart.map { String(target[target.index(after: $0)...]) } ?? "",
                        path: String(target[..<(queryStart ?? target.endIndex)]))
                }
                filtered = !filter.matches(input!)
            }
            let key = destination.ordering == .key && !filtered ? destination.orderingKey?.value(headers: headers, body: body) : nil
            planned.append(
                PlannedDelivery(
                    destination: destination.name, orderingKey: key, filtered: filtered, unordered: destination.ordering == .none))
        }
        if route.replyFrom != 0 { planned.insert(planned.remove(at: route.replyFrom), at: 0) }
        return planned
    }

    /// Whether `path` has a `.` or `..` segment, literally or percent-encoded. Such a path
    /// could climb out of the upstream's base path once an upstream normalises it.
    public static func hasDotSegment(_ path: Substring) -> Bool {
        guard path.utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "%") }) else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).contains { segment in
            let decoded = segment.lowercased().replacingOccurrences(of: "%2e", with: ".")
            return decoded == "." || decoded == ".."
        }
    }
}
