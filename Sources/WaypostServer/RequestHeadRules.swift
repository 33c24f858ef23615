import NIOHTTP1
import WaypostCore

/// The rules of RFC 9112 on a request head that NIO's parser leaves to the application, for
/// both listeners.
enum RequestHeadRules {
    /// Nil when the head may be served, else the problem to answer with. When a body may follow
    /// such a head (a `Transfer-Encoding` or a non-zero `Content-Length`), the connection closes
    /// after the answer: that body's framing cannot be trusted. (The admin listener always closes.)
    ///
    /// - An HTTP/1.1 request without `Host`, or any request with two, is `400` (RFC 9112 §3.2).
    /// - A transfer coding other than `chunked` is `501`; one whose final coding is not
    ///   `chunked` is `400` (RFC 9112 §6.1, §7).
    static func problem(_ head: HTTPRequestHead) -> Problem? {
        // One pass, no allocation for the usual head (this runs for every request).
        var hosts = 0
        var transferEncoding = false
        for (name, _) in head.headers {
            if name.caseInsensitiveEquals("host") {
                hosts += 1
            } else if name.caseInsensitiveEquals("transfer-encoding") {
                transferEncoding = true
            }
        }
        if hosts > 1 {
            return Problem(
                status: 400, slug: "bad-host", title: "Two Host header fields",
                detail: "The request has \(hosts) Host header fields; send exactly one (RFC 9112 §3.2). Nothing was stored.")
        }
        if hosts == 0 && (head.version.major, head.version.minor) >= (1, 1) {
            return Problem(
                status: 400, slug: "bad-host", title: "No Host header field",
                detail: "An HTTP/1.1 request must carry a Host header field (RFC 9112 §3.2). Nothing was stored.")
        }
        guard transferEncoding else { return nil }
        let codings = head.headers["transfer-encoding"].flatMap { $0.split(separator: ",") }.map {
            $0.trimmingHTTPWhitespace().lowercased()
        }
        if !codings.isEmpty && codings != ["chunked"] {
            let list = codings.joined(separator: ", ").prefix(100)
            guard codings.last == "chunked" else {
                return Problem(
                    status: 400, slug: "bad-transfer-encoding", title: "Bad Transfer-Encoding",
                    detail: "The final transfer coding of a request must be chunked (RFC 9112 §6.3); got \(list). Nothing was stored.")
            }
            return Problem(
                status: 501, slug: "transfer-coding-not-implemented", title: "Transfer coding not implemented",
                detail:
                    "Waypost implements only the chunked transfer coding; got \(list). Send the body without other codings. Nothing was stored."
            )
        }
        return nil
    }
}
