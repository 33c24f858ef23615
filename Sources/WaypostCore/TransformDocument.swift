/// The request a transform sees and returns (SPEC §11): `{method, path, query, headers, body}`.
/// Pure: the forwarder builds the input from a stored message and applies the program's output
/// to it; a worker process runs the program in between.
public struct TransformDocument: Sendable, Equatable {
    public var method: String
    /// The path after the route's prefix, appended to the upstream (`""` or starting with `/`).
    public var path: String
    /// The query string without `?`; `""` when none.
    public var query: String
    /// As stored, in order. Those Waypost sets itself (`Host`, `Content-Length`, the
    /// `X-Forwarded-*`…) are not shown to the program and cannot be set by it.
    public var headers: [HeaderField]
    public var body: [UInt8]

    public init(method: String, path: String, query: String, headers: [HeaderField], body: [UInt8]) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// The request of a stored message as its route delivers it: `requestTarget` is the path and
    /// query as received.
    public init(method: String, requestTarget: String, routePath: String, headers: [HeaderField], body: [UInt8]) {
        let (path, query) = OutboundRequest.split(requestTarget: requestTarget, routePath: routePath)
        self.init(method: method, path: String(path), query: String(query ?? ""), headers: headers, body: body)
    }

    /// The request target to append to the upstream: the path, then `?` and the query if any.
    public var requestTarget: String { query.isEmpty ? path : path + "?" + query }

    /// The program's input as JSON: header names lower-case, repeated ones joined with `, `;
    /// `body` as its JSON when the stored body is JSON, else as a string (bytes that are not
    /// UTF-8 become U+FFFD: a program that leaves the body alone still sends it as received).
    public var input: (json: [UInt8], bodyIsJSON: Bool) {
        var out = "{\"method\":"
        JSON.appendQuoted(method, to: &out)
        out += ",\"path\":"
        JSON.appendQuoted(path, to: &out)
        out += ",\"query\":"
        JSON.appendQuoted(query, to: &out)
        out += ",\"headers\":"
        Self.appendHeaders(headers, to: &out)
        out += ",\"body\":"
        var json = Array(out.utf8)
        let bodyIsJSON = Self.appendBody(body, to: &json)
        json.append(UInt8(ascii: "}"))
        return (json, bodyIsJSON)
    }

    /// `headers` as a JSON object of lower-case names, repeated ones joined with `, `, without
    /// those Waypost sets itself.
    static func appendHeaders(_ headers: [HeaderField], to out: inout String) {
        var names: [String] = []
        var values: [String: String] = [:]
        for field in headers where !isWaypostOwn(field.name) {
            let name = field.name.lowercased()
            if let earlier = values[name] {
                values[name] = earlier + ", " + field.value
            } else {
                names.append(name)
                values[name] = field.value
            }
        }
        out += "{"
        for (offset, name) in names.enumerated() {
            if offset > 0 { out += "," }
            JSON.appendQuoted(name, to: &out)
            out += ":"
            JSON.appendQuoted(values[name] ?? "", to: &out)
        }
        out += "}"
    }

    /// `body` as it is when it is JSON, else as a JSON string; whether it is JSON.
    static func appendBody(_ body: [UInt8], to json: inout [UInt8]) -> Bool {
        if !body.isEmpty && JSONValidator.isValid(body) {
            json += body
            return true
        }
        json += JSON.quote(String(decoding: body, as: UTF8.self)).utf8
        return false
    }

    /// This request with what the program's output names replaced: `rest` is the output object
    /// without `body` (JSON), `body` the bytes to send, nil to keep the stored ones.
    ///
    /// - Throws: ``TransformOutputError`` naming the first key that is unknown or not valid
    ///   (a method that is not a token, a path that does not start with `/`, a header whose
    ///   name is not a token or whose value holds a control character…).
    public func applying(rest: String, body: [UInt8]?) throws(TransformOutputError) -> TransformDocument {
        guard case .object(let members) = JSONValue.parse(rest.utf8) else {
            throw TransformOutputError(message: "the output is not a JSON object")
        }
        return try applying(members, body: body)
    }

    /// This request with the parts `members` names replaced (``applying(rest:body:)``).
    private func applying(
        _ members: [(key: String, value: JSONValue)], body: [UInt8]?
    ) throws(TransformOutputError) -> TransformDocument {
        var result = self
        if let body { result.body = body }
        for (key, value) in members {
            switch key {
            case "method":
                guard case .string(let method) = value, (1...32).contains(method.utf8.count), isToken(method) else {
                    throw TransformOutputError(message: "output .method must be a method name such as \"POST\", got \(value)")
                }
                result.method = method
            case "path":
                guard case .string(let path) = value, path.isEmpty || path.hasPrefix("/"), Self.isURLText(path, query: false) else {
                    throw TransformOutputError(
                        message:
                            "output .path must be \"\" or start with / and hold URL characters only (no space, ?, # or control), got \(value)"
                    )
                }
                result.path = path
            case "query":
                guard case .string(let query) = value, Self.isURLText(query, query: true) else {
                    throw TransformOutputError(
                        message: "output .query must be a query string without ? and hold URL characters only, got \(value)")
                }
                result.query = query
            case "headers":
                result.headers = try Self.headers(value, keeping: headers)
            default:
                throw TransformOutputError(message: "output .\(key) is not a part of a request (method, path, query, headers, body)")
            }
        }
        return result
    }

    /// The output's `headers` (an object of names to a string or a list of strings), after the
    /// stored fields Waypost sets itself, which the program neither sees nor sets.
    static func headers(_ value: JSONValue, keeping stored: [HeaderField]) throws(TransformOutputError) -> [HeaderField] {
        guard case .object(let members) = value else {
            throw TransformOutputError(message: "output .headers must be an object of header names, got \(value)")
        }
        var fields = stored.filter { isWaypostOwn($0.name) }
        for (name, value) in members {
            guard isToken(name), name.utf8.count <= 256 else {
                throw TransformOutputError(message: "output .headers: \(JSON.quote(name)) is not a header name")
            }
            let values: [JSONValue]
            if case .array(let list) = value { values = list } else { values = [value] }
            for item in values {
                guard case .string(let text) = item,
                    !text.utf8.contains(where: { ($0 < 0x20 && $0 != UInt8(ascii: "\t")) || $0 == 0x7F })
                else {
                    throw TransformOutputError(
                        message: "output .headers.\(name) must be a string (or a list of strings) without control characters, got \(item)")
                }
                if !isWaypostOwn(name) { fields.append(HeaderField(name: name, value: text)) }
            }
        }
        return fields
    }

    /// Whether Waypost sets this header itself on every attempt.
    static func isWaypostOwn(_ name: String) -> Bool {
        OutboundRequest.replaced.contains(where: name.caseInsensitiveEquals)
    }

    /// Printable ASCII but space and `#` (and `?` in a path), at most 8 KiB; `%` escapes as they are.
    private static func isURLText(_ text: String, query: Bool) -> Bool {
        text.utf8.count <= 8192
            && text.utf8.allSatisfy { byte in
                byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "#") && (query || byte != UInt8(ascii: "?"))
            }
    }
}

/// A transform's output cannot be sent: the message says which key is wrong and how.
public struct TransformOutputError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }

    public init(message: String) { self.message = message }
}

/// Every jq program of a configuration (SPEC §11), each once however many destinations share
/// it, in the order of the file: what the transform workers compile, and where to find each.
public struct ProgramTable: Sendable, Equatable {
    /// A program and the first key that gives it (`routes[0].destinations[1].transform`).
    public struct Program: Sendable, Equatable {
        public var path: String
        public var text: String
    }

    public private(set) var programs: [Program] = []
    /// The index of each destination's transform, by ``RouteConfig/destinationKey(route:destination:)``.
    public private(set) var transforms: [String: Int] = [:]
    /// The index of each route's reply program, by route name.
    public private(set) var replies: [String: Int] = [:]

    public init(_ configuration: WaypostConfig) {
        for (index, route) in configuration.routes.enumerated() {
            if let reply = route.reply { replies[route.name] = add(reply, path: "routes[\(index)].reply") }
            for (number, destination) in route.destinations.enumerated() {
                guard let transform = destination.transform else { continue }
                transforms[route.key(of: destination)] = add(
                    transform, path: route.keyPath(index: index, destination: number) + ".transform")
            }
        }
    }

    public var isEmpty: Bool { programs.isEmpty }

    private mutating func add(_ text: String, path: String) -> Int {
        if let index = programs.firstIndex(where: { $0.text == text }) { return index }
        programs.append(Program(path: path, text: text))
        return programs.count - 1
    }
}

/// What a `reply` program sees and returns (SPEC §11): it reads the `reply_from` destination's
/// answer `{status, headers, body, id, attempts}` and makes `{status, headers, body}`, the
/// answer a waiting source gets.
public enum ReplyDocument {
    /// The program's input: `status` null and `headers` empty when the upstream never
    /// answered; `body` parsed when it is JSON, else a string (null when empty).
    public static func input(status: Int?, headers: [HeaderField], body: [UInt8], id: String, attempts: Int) -> [UInt8] {
        var out = "{\"status\":" + (status.map(String.init) ?? "null") + ",\"headers\":"
        TransformDocument.appendHeaders(headers, to: &out)
        out += ",\"body\":"
        var json = Array(out.utf8)
        if body.isEmpty { json += "null".utf8 } else { _ = TransformDocument.appendBody(body, to: &json) }
        json += (",\"id\":" + JSON.quote(id) + ",\"attempts\":" + String(attempts) + "}").utf8
        return json
    }

    /// The answer in the program's output (compact JSON): `status` 200 to 599 (default 200),
    /// `headers` an object of strings, `body` sent as the text of a string, else as JSON
    /// (`Content-Type: application/json` unless the headers name one); nothing else.
    ///
    /// - Throws: ``TransformOutputError`` naming what is wrong.
    public static func answer(_ output: String) throws(TransformOutputError) -> (status: Int, headers: [HeaderField], body: [UInt8]) {
        guard case .object(let members) = JSONValue.parse(output.utf8) else {
            throw TransformOutputError(message: "the reply is not a JSON object")
        }
        var status = 200
        var headers: [HeaderField] = []
        var body: [UInt8] = []
        var bodyIsJSON = false
        for (key, value) in members {
            switch key {
            case "status":
                guard case .number(let number) = value, number == number.rounded(), (200...599).contains(number) else {
                    throw TransformOutputError(message: "reply .status must be a whole number from 200 to 599, got \(value)")
                }
                status = Int(number)
            case "headers":
                headers = try TransformDocument.headers(value, keeping: [])
            case "body":
                switch value {
                case .null: body = []
                case .string(let text): body = Array(text.utf8)
                default:
                    body = Array(value.description.utf8)
                    bodyIsJSON = true
                }
            default:
                throw TransformOutputError(message: "reply .\(key) is not a part of an answer (status, headers, body)")
            }
        }
        if bodyIsJSON && !headers.contains(where: { $0.name.caseInsensitiveEquals("content-type") }) {
            headers.append(HeaderField(name: "Content-Type", value: "application/json"))
        }
        return (status, headers, body)
    }
}

extension TransformDocument {
    /// The request an operator writes for `waypost transform` (SPEC §6): the transform's own
    /// input shape, `method` (default `POST`), `path`, `query` (default `""`), `headers`, and
    /// `body` (a string is the body's text, anything else its JSON; absent or null, empty).
    ///
    /// - Throws: ``TransformOutputError`` naming the member that is not valid.
    public init(document: JSONValue) throws(TransformOutputError) {
        guard case .object(let members) = document else {
            throw TransformOutputError(message: "the input must be a JSON object {method, path, query, headers, body}")
        }
        self = try TransformDocument(method: "POST", path: "", query: "", headers: [], body: [])
            .applying(members.filter { $0.key != "body" }, body: nil)
        switch document["body"] {
        case nil, .null?: body = []
        case .string(let text)?: body = Array(text.utf8)
        case let value?: body = Array(value.description.utf8)
        }
    }
}
