import CCurl
import WaypostCore

/// An easy handle; a raw pointer that only the owning thread of its ``CurlMulti`` dereferences.
struct EasyHandle: Hashable {
    let pointer: UnsafeMutableRawPointer
}

/// The context of one request while curl works on it: the memory curl reads from (body,
/// header list, error buffer) and the response it writes into.
///
/// Confined to the thread that owns the ``CurlMulti``: created, mutated (by the header and write callbacks, which
/// curl calls from `curl_multi_perform`) and released there. curl holds an unretained pointer
/// to it (`CURLOPT_PRIVATE`, `CURLOPT_HEADERDATA`, `CURLOPT_WRITEDATA`); the multi's table of
/// running transfers keeps it alive until the handle has been removed from the multi.
final class CurlTransfer {
    let id: CurlMulti.RequestID
    let easy: EasyHandle
    let completion: CurlMulti.Completion
    let maxBodyBytes: Int
    var started: ContinuousClock.Instant

    var headers: [HeaderField] = []
    var body: [UInt8] = []
    var bodyTruncated = false

    /// `CURLOPT_ERRORBUFFER`, `CURL_ERROR_SIZE` bytes.
    let errorBuffer: UnsafeMutablePointer<CChar>
    /// `CURLOPT_POSTFIELDS`: curl does not copy it, so it lives as long as the transfer.
    private var postFields: UnsafeMutableRawPointer?
    /// `CURLOPT_HTTPHEADER`.
    private var headerList: UnsafeMutablePointer<curl_slist>?

    init(
        id: CurlMulti.RequestID, easy: EasyHandle, request: CurlRequest,
        completion: @escaping CurlMulti.Completion
    ) {
        self.id = id
        self.easy = easy
        self.completion = completion
        self.maxBodyBytes = max(0, request.maxResponseBodyBytes)
        self.started = .now
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    deinit {
        errorBuffer.deallocate()
        postFields?.deallocate()
        curl_slist_free_all(headerList)
    }

    /// The text curl left in the error buffer, if any.
    var errorText: String {
        var text = String(cString: errorBuffer)
        while text.last?.isNewline == true { text.removeLast() }
        return text
    }

    /// The response, once curl reported the transfer done with `CURLE_OK`.
    func response() -> CurlResponse {
        var status = 0
        _ = waypost_easy_getinfo_long(easy.pointer, CURLINFO_RESPONSE_CODE, &status)
        return CurlResponse(
            status: status, headers: headers, body: body, bodyTruncated: bodyTruncated,
            duration: ContinuousClock.now - started)
    }

    /// Sets every option of the request on the (fresh or reset) easy handle.
    func configure(_ request: CurlRequest) throws(CurlError) {
        let method = request.method
        guard !method.isEmpty, method.utf8.allSatisfy(Self.isTokenByte) else {
            throw .invalidRequest("invalid HTTP method \"\(method)\"")
        }
        let handle = easy.pointer
        var code = CURLE_OK
        func set(_ option: CURLoption, _ value: Int) { if code == CURLE_OK { code = waypost_easy_setopt_long(handle, option, value) } }
        func set(_ option: CURLoption, _ value: String) {
            if code == CURLE_OK { code = value.withCString { waypost_easy_setopt_string(handle, option, $0) } }
        }
        func set(_ option: CURLoption, pointer: UnsafeMutableRawPointer?) {
            if code == CURLE_OK { code = waypost_easy_setopt_pointer(handle, option, pointer) }
        }

        // Set the error buffer first, so a failing option below explains itself.
        set(CURLOPT_ERRORBUFFER, pointer: UnsafeMutableRawPointer(errorBuffer))
        set(CURLOPT_NOSIGNAL, 1)
        set(CURLOPT_PROTOCOLS_STR, "http,https")
        set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        set(CURLOPT_FOLLOWLOCATION, 0)
        // An empty proxy disables proxies, including http_proxy/https_proxy/all_proxy from the
        // environment: Waypost only ever contacts the configured upstream.
        set(CURLOPT_PROXY, "")
        set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
        // While a TLS connection to the host is being set up, wait for ALPN to tell whether it
        // multiplexes (HTTP/2) rather than opening a second one at once. Not in clear text:
        // there curl learns it only from the first response, so requests would queue.
        if String(request.url.prefix(8)).caseInsensitiveEquals("https://") { set(CURLOPT_PIPEWAIT, 1) }
        set(CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(request.connectTimeout))
        set(CURLOPT_TIMEOUT_MS, Self.milliseconds(request.totalTimeout))
        set(CURLOPT_TCP_KEEPALIVE, 1)
        set(CURLOPT_URL, request.url)
        if let caFile = request.caFile { set(CURLOPT_CAINFO, caFile) }

        let unmanaged = Unmanaged.passUnretained(self).toOpaque()
        set(CURLOPT_PRIVATE, pointer: unmanaged)
        set(CURLOPT_HEADERDATA, pointer: unmanaged)
        set(CURLOPT_WRITEDATA, pointer: unmanaged)
        if code == CURLE_OK { code = waypost_easy_setopt_data_callback(handle, CURLOPT_HEADERFUNCTION, curlHeaderCallback) }
        if code == CURLE_OK { code = waypost_easy_setopt_data_callback(handle, CURLOPT_WRITEFUNCTION, curlWriteCallback) }

        let sendsBody: Bool
        if method == "HEAD" {
            set(CURLOPT_NOBODY, 1)
            sendsBody = false
        } else if request.body.isEmpty && ["GET", "DELETE", "OPTIONS"].contains(method) {
            set(CURLOPT_HTTPGET, 1)
            if method != "GET" { set(CURLOPT_CUSTOMREQUEST, method) }
            sendsBody = false
        } else {
            // POSTFIELDS must never be NULL (curl would then read the body from stdin), so an
            // empty body still gets a one-byte allocation, of which zero bytes are sent.
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(1, request.body.count), alignment: 1)
            request.body.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress { buffer.copyMemory(from: base, byteCount: bytes.count) }
            }
            postFields = buffer
            if code == CURLE_OK { code = waypost_easy_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)) }
            set(CURLOPT_POSTFIELDS, pointer: buffer)
            if method != "POST" { set(CURLOPT_CUSTOMREQUEST, method) }
            sendsBody = true
        }

        headerList = try Self.headerList(request.headers, sendsBody: sendsBody)
        if code == CURLE_OK { code = waypost_easy_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList) }
        guard code == CURLE_OK else { throw CurlError(code, errorBuffer: errorText) }
    }

    /// The `CURLOPT_HTTPHEADER` list for `headers`, plus the entries that switch off curl's
    /// own `Accept`, `Expect` and (with a body) `Content-Type` unless the caller gave them.
    private static func headerList(_ headers: [HeaderField], sendsBody: Bool) throws(CurlError) -> UnsafeMutablePointer<curl_slist>? {
        var lines: [[UInt8]] = []
        lines.reserveCapacity(headers.count + 3)
        var givesAccept = false
        var givesExpect = false
        var givesContentType = false
        for field in headers {
            let name = field.name
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
                throw .invalidRequest("invalid header name \"\(name)\"")
            }
            // "Name: value", or "Name;" for an empty value ("Name:" would remove the field in
            // curl's syntax), NUL-terminated; the value's bytes go as they are, obs-text included.
            var line: [UInt8] = []
            line.reserveCapacity(name.utf8.count + field.value.utf8.count + 3)
            line += name.utf8
            line += [UInt8(ascii: ":"), UInt8(ascii: " ")]
            let valueStart = line.count
            if field.valueIsLatin1 { line += field.valueBytes } else { line += field.value.utf8 }
            guard !line[valueStart...].contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
                throw .invalidRequest("the value of header \(name) contains CR, LF or NUL")
            }
            if line.count == valueStart { line.replaceSubrange((valueStart - 2)..., with: [UInt8(ascii: ";")]) }
            line.append(0)
            // The length always comes from the body; a stale one would corrupt the framing.
            if name.caseInsensitiveEquals("content-length") || name.caseInsensitiveEquals("transfer-encoding") { continue }
            givesAccept = givesAccept || name.caseInsensitiveEquals("accept")
            givesExpect = givesExpect || name.caseInsensitiveEquals("expect")
            givesContentType = givesContentType || name.caseInsensitiveEquals("content-type")
            lines.append(line)
        }
        if !givesAccept { lines.append(Array("Accept:\0".utf8)) }
        if !givesExpect { lines.append(Array("Expect:\0".utf8)) }
        if sendsBody && !givesContentType { lines.append(Array("Content-Type:\0".utf8)) }

        var list: UnsafeMutablePointer<curl_slist>? = nil
        for line in lines {
            let appended = line.withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { curl_slist_append(list, $0.baseAddress) }
            }
            guard let appended else {
                curl_slist_free_all(list)
                throw CurlError(CURLE_OUT_OF_MEMORY)
            }
            list = appended
        }
        return list
    }

    /// tchar of RFC 9110 §5.6.2.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    /// A timeout for curl in milliseconds: at least 1 (0 would mean "no timeout").
    private static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 1 }
        guard seconds < Int64(Int.max / 1000) - 1 else { return Int.max }
        let ms = Int(seconds) * 1000 + Int((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
        return max(1, ms)
    }

    /// One line of the response head, as curl hands it to the header callback.
    fileprivate func headerLine(_ bytes: UnsafeBufferPointer<UInt8>) {
        var end = bytes.count
        while end > 0, bytes[end - 1] == 0x0A || bytes[end - 1] == 0x0D { end -= 1 }
        let line = UnsafeBufferPointer(rebasing: bytes[0..<end])
        if line.starts(with: Array("HTTP/".utf8)) {
            // A status line starts a new response: the fields of a 1xx before it are dropped.
            headers.removeAll(keepingCapacity: true)
            return
        }
        if line.isEmpty { return }
        if line[0] == 0x20 || line[0] == 0x09 {
            // obs-fold: a continuation of the previous field's value.
            if !headers.isEmpty {
                headers[headers.count - 1].value += " " + Self.text(Self.trimmed(line[...]))
            }
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
        let name = Self.text(line[..<colon])
        let value = Self.text(Self.trimmed(line[(colon + 1)...]))
        headers.append(HeaderField(name: name, value: value))
    }

    /// A chunk of the response body.
    fileprivate func bodyChunk(_ bytes: UnsafeBufferPointer<UInt8>) {
        let room = maxBodyBytes - body.count
        if bytes.count <= room {
            body.append(contentsOf: bytes)
        } else {
            if room > 0 { body.append(contentsOf: bytes[0..<room]) }
            bodyTruncated = true
        }
    }

    private static func trimmed(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> Slice<UnsafeBufferPointer<UInt8>> {
        var slice = bytes
        while let first = slice.first, first == 0x20 || first == 0x09 { slice.removeFirst() }
        while let last = slice.last, last == 0x20 || last == 0x09 { slice.removeLast() }
        return slice
    }

    /// UTF-8 when valid, else ISO-8859-1 (every byte one character), so nothing is lost.
    private static func text(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> String {
        if let utf8 = String(validating: bytes, as: UTF8.self) { return utf8 }
        return String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
    }
}

/// `CURLOPT_HEADERFUNCTION`: one call per header line, status line and blank line included.
private let curlHeaderCallback: waypost_data_callback = { data, size, count, userdata in
    deliver(data, size * count, to: userdata) { $0.headerLine($1) }
}

/// `CURLOPT_WRITEFUNCTION`: body chunks. It always claims the whole chunk, so a body over
/// the cap is read to its end (and the connection stays reusable) but not stored.
private let curlWriteCallback: waypost_data_callback = { data, size, count, userdata in
    deliver(data, size * count, to: userdata) { $0.bodyChunk($1) }
}

/// Hands the `length` bytes curl passed to a callback to the transfer in `userdata`; the
/// callback's return value (what was consumed: everything, or 0 without a transfer).
private func deliver(
    _ data: UnsafeMutablePointer<CChar>?, _ length: Int, to userdata: UnsafeMutableRawPointer?,
    _ consume: (CurlTransfer, UnsafeBufferPointer<UInt8>) -> Void
) -> Int {
    guard let userdata else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(userdata).takeUnretainedValue()
    if let data, length > 0 {
        consume(transfer, UnsafeBufferPointer(start: UnsafeRawPointer(data).assumingMemoryBound(to: UInt8.self), count: length))
    }
    return length
}
