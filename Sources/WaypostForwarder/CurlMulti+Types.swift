import CCurl
import WaypostCore

/// One HTTP request for ``CurlMulti``: what to send, where, and how long to wait.
///
/// It is sent with `headers` in the given order and adds only what curl must: `Host` (from
/// the URL, unless the caller gives one) and `Content-Length` (from `body`). curl's own
/// `Expect: 100-continue`, `Accept: */*` and, for requests with a body,
/// `Content-Type: application/x-www-form-urlencoded` are suppressed unless the caller gives
/// those fields. A caller's `Content-Length` or `Transfer-Encoding` is dropped: the length
/// always comes from `body`.
///
/// ```swift
/// let request = CurlRequest(
///     url: "https://integration.internal/github/push",
///     method: "POST",
///     headers: [HeaderField(name: "Content-Type", value: "application/json")],
///     body: Array(#"{"ok":true}"#.utf8),
///     totalTimeout: .seconds(10))
/// ```
public struct CurlRequest: Sendable {
    /// The absolute `http://` or `https://` URL. Any other scheme is refused without I/O.
    public var url: String
    /// The method, sent as given (`POST`, `PUT`, `GET`, ...). It must be an HTTP token.
    ///
    /// `HEAD` never sends a body and reads none. `GET`, `HEAD`, `DELETE` and `OPTIONS` with an
    /// empty `body` send no body and no `Content-Length`; every other method (or any
    /// method with a non-empty body) sends `body` with its `Content-Length`, even when empty.
    public var method: String
    /// Header fields, sent in this order. Names must be HTTP tokens; values must not contain
    /// CR, LF or NUL. An empty value is sent as an empty field.
    public var headers: [HeaderField]
    /// The request body, sent byte for byte.
    public var body: [UInt8]
    /// The longest time to wait for the TCP (and TLS) connection (`CURLOPT_CONNECTTIMEOUT_MS`).
    public var connectTimeout: Duration
    /// The longest time the whole transfer may take, connection included (`CURLOPT_TIMEOUT_MS`).
    public var totalTimeout: Duration
    /// The stored response body is cut at this many bytes (``CurlResponse/bodyTruncated``);
    /// the transfer itself still completes, so the connection can be reused.
    public var maxResponseBodyBytes: Int
    /// The PEM file of the certificate authorities an `https` upstream's certificate must chain
    /// to (`CURLOPT_CAINFO`); nil: the system's.
    public var caFile: String?

    /// Creates a request; by default a `POST` with a 5s connect timeout, a 30s total timeout
    /// and a 1 MiB response body cap.
    public init(
        url: String,
        method: String = "POST",
        headers: [HeaderField] = [],
        body: [UInt8] = [],
        connectTimeout: Duration = .seconds(5),
        totalTimeout: Duration = .seconds(30),
        maxResponseBodyBytes: Int = 1 << 20,
        caFile: String? = nil
    ) {
        self.url = url
        self.method = method
        self.headers = headers
        self.body = body
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.maxResponseBodyBytes = maxResponseBodyBytes
        self.caFile = caFile
    }
}

/// The upstream's answer to a ``CurlRequest``.
public struct CurlResponse: Sendable, Equatable {
    /// The final status code (`CURLINFO_RESPONSE_CODE`); a 3xx is an answer, never followed.
    public var status: Int
    /// The final response's header fields in the order received. Interim `1xx` responses are
    /// dropped; on HTTP/2 the names arrive in lower case, as sent.
    public var headers: [HeaderField]
    /// The body as received (no content decoding), at most
    /// ``CurlRequest/maxResponseBodyBytes`` bytes.
    public var body: [UInt8]
    /// True when the upstream sent more than ``CurlRequest/maxResponseBodyBytes`` bytes.
    public var bodyTruncated: Bool
    /// Time from the start of the transfer (when it was submitted) to its end.
    public var duration: Duration

    /// Creates a response value.
    public init(status: Int, headers: [HeaderField], body: [UInt8], bodyTruncated: Bool = false, duration: Duration = .zero) {
        self.status = status
        self.headers = headers
        self.body = body
        self.bodyTruncated = bodyTruncated
        self.duration = duration
    }

    /// The value of the first field named `name` (case-insensitive), if any.
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name.lowercased() == lowered }?.value
    }
}

/// A request that got no answer: a `CURLcode` and curl's explanation.
///
/// `message` is the text curl wrote to the transfer's `CURLOPT_ERRORBUFFER` (which names the
/// host, the timeout or the TLS problem), else
/// [`curl_easy_strerror`](https://curl.se/libcurl/c/curl_easy_strerror.html) of `code`. See
/// [libcurl-errors](https://curl.se/libcurl/c/libcurl-errors.html) for the codes.
public struct CurlError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `CURLcode`, e.g. 7 (`CURLE_COULDNT_CONNECT`), 28 (`CURLE_OPERATION_TIMEDOUT`).
    public var code: Int32
    /// What went wrong, in curl's words.
    public var message: String
    /// True when the connect or total timeout expired (`CURLE_OPERATION_TIMEDOUT`).
    public var isTimeout: Bool
    /// True when the request was cancelled (``CurlMulti/cancel(_:)`` or ``CurlMulti/close()``)
    /// before it completed; `code` is then
    /// `CURLE_ABORTED_BY_CALLBACK` (42).
    public var isCancelled: Bool

    /// Creates an error value.
    public init(code: Int32, message: String, isTimeout: Bool = false, isCancelled: Bool = false) {
        self.code = code
        self.message = message
        self.isTimeout = isTimeout
        self.isCancelled = isCancelled
    }

    /// An error for `code` with curl's error-buffer text, or `curl_easy_strerror` when empty.
    init(_ code: CURLcode, errorBuffer: String = "") {
        let text = errorBuffer.isEmpty ? String(cString: curl_easy_strerror(code)) : errorBuffer
        self.init(code: Int32(bitPattern: code.rawValue), message: text, isTimeout: code == CURLE_OPERATION_TIMEDOUT)
    }

    /// The error of a request that was cancelled before it completed.
    public static func cancelled(_ why: String) -> CurlError {
        CurlError(code: Int32(bitPattern: CURLE_ABORTED_BY_CALLBACK.rawValue), message: why, isCancelled: true)
    }

    /// A request refused before any I/O (bad method, header or option).
    static func invalidRequest(_ why: String) -> CurlError {
        CurlError(code: Int32(bitPattern: CURLE_BAD_FUNCTION_ARGUMENT.rawValue), message: why)
    }

    public var description: String {
        "curl error \(code): \(message)"
    }
}
