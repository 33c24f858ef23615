/// The intake's problems (SPEC §2): what a source did wrong, and that nothing was stored.
extension Problem {
    public static func notFound(path: String) -> Problem {
        Problem(status: 404, slug: "no-route", title: "No route", detail: "No route is configured for the path \(path).")
    }

    public static func reserved(path: String) -> Problem {
        Problem(
            status: 404, slug: "not-found", title: "Not found",
            detail: "\(path) is not a Waypost endpoint; the prefix /_waypost/ is reserved and never forwarded.")
    }

    public static func dotSegments(path: String) -> Problem {
        Problem(
            status: 400, slug: "dot-segments", title: "Dot segments in the path",
            detail: "The path \(path.prefix(200)) has a '.' or '..' segment; send the path without them. Nothing was stored.")
    }

    public static func badTarget(_ target: String) -> Problem {
        Problem(
            status: 400, slug: "bad-request-target", title: "Bad request target",
            detail: "The request target must be a path starting with '/' (origin form); got \(target.prefix(200)).")
    }

    public static func bodyTooLarge(limit: Int, route: String) -> Problem {
        Problem(
            status: 413, slug: "body-too-large", title: "Body too large",
            detail: "The body exceeds the limit of \(limit) bytes for route \(route) (max_body_bytes); nothing was stored.")
    }

    public static func headersTooLarge(limit: Int, route: String?) -> Problem {
        Problem(
            status: 431, slug: "headers-too-large", title: "Request header fields too large",
            detail: route.map {
                "The header fields exceed the limit of \(limit) bytes for route \($0) (max_header_bytes); nothing was stored."
            }
                ?? "The header fields exceed the limit of \(limit) bytes; nothing was stored.")
    }

    public static func unsupportedMediaType(_ contentType: String?, allowed: [String], route: String) -> Problem {
        Problem(
            status: 415, slug: "unsupported-media-type", title: "Unsupported media type",
            detail: "Route \(route) accepts Content-Type \(allowed.joined(separator: ", ")); the request had "
                + (contentType.map { "'\($0.prefix(100))'" } ?? "none") + ". Nothing was stored.")
    }

    public static func signature(_ failure: VerificationFailure, route: String) -> Problem {
        let slug: String =
            switch failure {
            case .missing: "signature-missing"
            case .malformed: "signature-malformed"
            case .staleTimestamp, .futureTimestamp: "signature-timestamp"
            case .mismatch: "signature-mismatch"
            }
        return Problem(status: 401, slug: slug, title: failure.title, detail: failure.detail + " Nothing was stored.")
    }

    public static func malformedJSON(route: String) -> Problem {
        Problem(
            status: 400, slug: "malformed-json", title: "Malformed JSON",
            detail: "Route \(route) requires a JSON body (validate: json) and this body does not parse as JSON; nothing was stored.")
    }

    public static func badCorrelationID() -> Problem {
        Problem(
            status: 400, slug: "bad-correlation-id", title: "Bad X-Correlation-ID",
            detail: "X-Correlation-ID must be one value of 1 to 128 characters from A-Z a-z 0-9 . _ : -; nothing was stored.")
    }

    public static func correlationIDConflict(_ id: String) -> Problem {
        Problem(
            status: 409, slug: "correlation-id-conflict", title: "Correlation id in use",
            detail: "The X-Correlation-ID \(id) already names a message of another route; choose another id. Nothing was stored.")
    }
}
