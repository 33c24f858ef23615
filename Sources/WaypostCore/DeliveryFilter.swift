/// Which messages a destination receives (SPEC §11, "Filter"): a JSON document matched
/// against the request at intake, in the dialect Hookdeck, Outpost and Convoy share.
///
///     let filter = try DeliveryFilter(json: #"{"body":{"type":{"$in":["order.created","order.paid"]}}}"#)
///     filter.matches(.init(body: JSONValue.parse(bytes), headers: fields, query: "", path: "/hooks/shop"))
///
/// The document is an object whose keys are the parts of the request, all of which must match:
/// `body` (the parsed JSON body; absent when the body is not JSON), `headers` (an object of
/// the header fields, names compared case-insensitively, several fields of one name joined
/// with `", "` as RFC 9110 §5.3 combines them), `query` (an object of the query items,
/// percent-decoded and `+` read as a space, the first value of a repeated name; an item that
/// does not decode is left out), `path` (a string), and the logical operators `$or`, `$and`
/// (arrays of such documents) and `$not` (one such document). `{}` matches every message.
/// Header and query values are strings: `{"query":{"page":"2"}}` matches `?page=2`, `2` does
/// not. The path is matched as a string at the root of its filter, as Hookdeck does
/// (`{"path":{"$startsWith":"/hooks/"}}`), not under a `path` key as Convoy does.
///
/// Inside a part, a filter value matches a request value this way:
/// - a string, number, boolean or null matches an equal value, or an array that contains one;
///   types never mix (`1` does not match `"1"`), and `1` matches `1.0`;
/// - an array matches an array that contains, for each of its elements, an element it
///   matches (`["a","b"]` matches `["b","c","a"]`); use `$eq` for exact equality;
/// - an object matches by its listed keys only, each against the member of that name
///   (extra members do not matter); against an array it matches when one element matches all
///   of its keys (`{"items":{"sku":"A"}}` matches `{"items":[{"sku":"B"},{"sku":"A"}]}`);
/// - operators (the keys of an object that start with `$`, so a member named `$x` cannot be
///   matched) all must hold, beside the object's other keys, and apply to the value as a whole
///   (an array included):
///   - `$eq`, `$neq`: deep equality with any JSON value (objects in any member order);
///   - `$gt`, `$gte`, `$lt`, `$lte`: a number with a number, a string with a string (by bytes,
///     so ISO 8601 times compare as times); other pairs never match;
///   - `$in`: with an array, the value (a string, number, boolean or null) equals one of its
///     elements; with a string, the value is a string containing it or an array containing it;
///     with a number, boolean or null, the value is an array containing it;
///   - `$nin`: the opposite of `$in` in the same cases, and no match where `$in` does not apply
///     (an array value against an array, for instance);
///   - `$startsWith`, `$endsWith`: the value is a string with that prefix or suffix (bytes, not
///     characters), or with one of them when given an array of strings;
///   - `$exist`: `true` when the member is present (`null` included), `false` when absent;
///   - `$or`, `$and`: an array of filter values, any or all of which match the value;
///   - `$not`: a filter value that must not match.
/// - A missing member matches nothing except `$exist: false`, and through `$or`, `$and` and
///   `$not` what they make of that: `{"status":{"$neq":"deleted"}}` and
///   `{"tags":{"$nin":["spam"]}}` do not match a message without `status` or `tags`, while
///   `{"status":{"$not":"deleted"}}` does. A body that is not JSON is a missing body.
///
/// Sources: Hookdeck's filter syntax (https://hookdeck.com/docs/filters: array contains and
/// "must contain all the specified values", the operator table, `$exist` versus `null`, `$in`
/// as substring), Outpost's destination filters (https://github.com/hookdeck/outpost,
/// `docs/content/features/filter.mdoc`, and its Go port of Hookdeck's matcher,
/// `internal/simplejsonmatch`, of https://github.com/hookdeck/simple-json-match, whose test
/// table settles the edge cases: `$startsWith` with an array, `$nin` on a missing member,
/// `$eq` on arrays) and Convoy's (https://docs.getconvoy.io/product-manual/filters: the
/// `body`, `headers`, `query` and `path` scopes). Where they differ this type is stricter:
/// an unknown `$operator`, an operator argument of the wrong type, `$ref` (Hookdeck only) and an
/// empty `$or`/`$and` are refused when the filter is built rather than never matching; `$not`
/// inside a member negates what its argument makes of a missing member, as it does at the top.
///
/// Matching allocates nothing for `body` and `path`; the `headers` and `query` objects are
/// built once per ``matches(_:)`` call, and only when the filter reaches them.
public struct DeliveryFilter: Sendable, Equatable {
    /// The document the filter was built from.
    public let document: JSONValue
    private let rule: Rule

    /// Compiles `document`.
    ///
    /// - Throws: ``Invalid`` naming the JSON path of the first part that is not a filter: an
    ///   unknown key at the top, an unknown operator, an operator argument of the wrong type.
    public init(_ document: JSONValue) throws(Invalid) {
        self.document = document
        self.rule = try Self.compileDocument(document, path: "", depth: 0)
    }

    /// Parses and compiles a filter written as JSON text.
    ///
    /// - Throws: ``Invalid`` when `text` is not JSON, or as ``init(_:)``.
    public init(json text: String) throws(Invalid) {
        guard let document = JSONValue.parse(text.utf8) else {
            throw Invalid(path: "", reason: "the filter is not valid JSON")
        }
        try self.init(document)
    }

    /// Two filters are equal when they were built from equal documents.
    public static func == (lhs: DeliveryFilter, rhs: DeliveryFilter) -> Bool { lhs.document == rhs.document }

    /// Whether the request `input` passes the filter.
    public func matches(_ input: Input) -> Bool {
        var parts = Parts(input: input)
        return Self.evaluate(rule, &parts)
    }
}

// MARK: - Input and errors

extension DeliveryFilter {
    /// The parts of a request a filter sees.
    public struct Input: Sendable {
        /// The body parsed as JSON; nil when it is not JSON (or empty).
        public var body: JSONValue?
        /// The header fields as received.
        public var headers: [HeaderField]
        /// The query string without `?`, `""` when there is none.
        public var query: String
        /// The request path, without the query; compared as given.
        public var path: String

        public init(body: JSONValue?, headers: [HeaderField], query: String, path: String) {
            self.body = body
            self.headers = headers
            self.query = query
            self.path = path
        }
    }

    /// A filter document that cannot be compiled.
    public struct Invalid: Error, Sendable, Equatable, CustomStringConvertible {
        /// The JSON path of the offending part, like `body.type.$in` or `$or[1].headers`; `""`
        /// for the document itself.
        public var path: String
        /// What is wrong with it.
        public var reason: String

        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }

        /// `path: reason`, or the reason alone for the document itself.
        public var message: String { path.isEmpty ? reason : "\(path): \(reason)" }
        public var description: String { message }
    }
}

// MARK: - The compiled tree

extension DeliveryFilter {
    private enum Part { case body, headers, query, path }

    /// A condition on the whole request.
    private indirect enum Rule: Sendable {
        case part(Part, Node)
        case all([Rule])
        case any([Rule])
        case not(Rule)
    }

    /// A condition on one value, which may be missing.
    private indirect enum Node: Sendable {
        /// A string, number, boolean or null: equal, or an array containing it.
        case equals(JSONValue)
        /// Each node matches an element of an array.
        case containsAll([Node])
        /// An object (or an element of an array) whose members match these.
        case members([(key: String, node: Node)])
        case all([Node])
        case any([Node])
        case not(Node)
        case test(Test)
    }

    /// An operator other than the logical ones.
    private enum Test: Sendable {
        case equal(JSONValue)
        case notEqual(JSONValue)
        case compare(Comparison, Bound)
        case contains(Membership, negated: Bool)
        case hasPrefix([String])
        case hasSuffix([String])
        case exists(Bool)
    }

    private enum Comparison { case greater, greaterOrEqual, less, lessOrEqual }
    private enum Bound { case number(Double), string(String) }

    /// The argument of `$in` / `$nin`.
    private enum Membership {
        /// An array of primitives: the value is one of them.
        case oneOf([JSONValue])
        /// A string: a substring of a string value, or an element of an array value.
        case text(Needle)
        /// A number, boolean or null: an element of an array value.
        case element(JSONValue)
    }

    /// A substring to look for, with its Knuth–Morris–Pratt table built with the filter, so
    /// that a search takes linear time and allocates nothing, whatever the body holds.
    private struct Needle: Sendable {
        let text: String
        private let bytes: [UInt8]
        /// For each prefix of `bytes`, the length of its longest proper prefix that is also
        /// its suffix: where to resume after a mismatch.
        private let fallback: [Int]

        init(_ text: String) {
            self.text = text
            let bytes = Array(text.utf8)
            var fallback = [Int](repeating: 0, count: bytes.count)
            var length = 0
            for index in bytes.indices.dropFirst() {
                while length > 0, bytes[index] != bytes[length] { length = fallback[length - 1] }
                if bytes[index] == bytes[length] { length += 1 }
                fallback[index] = length
            }
            self.bytes = bytes
            self.fallback = fallback
        }

        /// Whether `text` occurs in `haystack`, byte for byte.
        func isFound(in haystack: String) -> Bool {
            guard !bytes.isEmpty else { return true }
            var matched = 0
            for byte in haystack.utf8 {
                while matched > 0, bytes[matched] != byte { matched = fallback[matched - 1] }
                if bytes[matched] == byte {
                    matched += 1
                    if matched == bytes.count { return true }
                }
            }
            return false
        }
    }

    private static let partKeys = "body, headers, query, path, $or, $and and $not"
    private static let operatorKeys = "$eq, $neq, $in, $nin, $gt, $gte, $lt, $lte, $startsWith, $endsWith, $exist, $or, $and and $not"
}

// MARK: - Compiling

extension DeliveryFilter {
    private static func compileDocument(_ document: JSONValue, path: String, depth: Int) throws(Invalid) -> Rule {
        guard case .object(let members) = document else {
            let reason = path.isEmpty ? "a filter is an object whose keys are" : "expects an object whose keys are"
            throw Invalid(path: path, reason: "\(reason) \(partKeys)")
        }
        try checkDepth(depth, path: path)
        var rules: [Rule] = []
        for (key, value) in members {
            let keyPath = joined(path, key)
            switch key {
            case "body": rules.append(.part(.body, try compileNode(value, path: keyPath, foldKeys: false, depth: depth + 1)))
            case "headers": rules.append(.part(.headers, try compileNode(value, path: keyPath, foldKeys: true, depth: depth + 1)))
            case "query": rules.append(.part(.query, try compileNode(value, path: keyPath, foldKeys: false, depth: depth + 1)))
            case "path": rules.append(.part(.path, try compileNode(value, path: keyPath, foldKeys: false, depth: depth + 1)))
            case "$or", "$and":
                var branches: [Rule] = []
                for (offset, element) in try nonEmptyArray(value, path: keyPath).enumerated() {
                    branches.append(try compileDocument(element, path: "\(keyPath)[\(offset)]", depth: depth + 1))
                }
                rules.append(key == "$or" ? .any(branches) : .all(branches))
            case "$not":
                rules.append(.not(try compileDocument(value, path: keyPath, depth: depth + 1)))
            default:
                let what = key.hasPrefix("$") ? "unknown operator" : "unknown key"
                throw Invalid(path: keyPath, reason: "\(what); the keys of a filter are \(partKeys)")
            }
        }
        return rules.count == 1 ? rules[0] : .all(rules)
    }

    /// Compiles a filter value; `foldKeys` lower-cases the member names of this level (header
    /// names), through `$or`, `$and` and `$not`.
    private static func compileNode(_ value: JSONValue, path: String, foldKeys: Bool, depth: Int) throws(Invalid) -> Node {
        try checkDepth(depth, path: path)
        switch value {
        case .null, .bool, .number, .string:
            return .equals(value)
        case .array(let elements):
            var nodes: [Node] = []
            for (offset, element) in elements.enumerated() {
                nodes.append(try compileNode(element, path: "\(path)[\(offset)]", foldKeys: false, depth: depth + 1))
            }
            return .containsAll(nodes)
        case .object(let members):
            var parts: [Node] = []
            var fields: [(key: String, node: Node)] = []
            for (key, argument) in members {
                let keyPath = joined(path, key)
                guard key.hasPrefix("$") else {
                    let node = try compileNode(argument, path: keyPath, foldKeys: false, depth: depth + 1)
                    fields.append((foldKeys ? key.lowercased() : key, node))
                    continue
                }
                parts.append(try compileOperator(key, argument, path: keyPath, foldKeys: foldKeys, depth: depth))
            }
            if !fields.isEmpty || members.isEmpty { parts.append(.members(fields)) }
            return parts.count == 1 ? parts[0] : .all(parts)
        }
    }

    private static func compileOperator(
        _ name: String, _ argument: JSONValue, path: String, foldKeys: Bool, depth: Int
    ) throws(Invalid) -> Node {
        switch name {
        case "$eq": return .test(.equal(argument))
        case "$neq": return .test(.notEqual(argument))
        case "$gt", "$gte", "$lt", "$lte":
            let bound: Bound
            switch argument {
            case .number(let number): bound = .number(number)
            case .string(let string): bound = .string(string)
            default: throw Invalid(path: path, reason: "expects a number or a string")
            }
            let comparison: Comparison =
                switch name {
                case "$gt": .greater
                case "$gte": .greaterOrEqual
                case "$lt": .less
                default: .lessOrEqual
                }
            return .test(.compare(comparison, bound))
        case "$in", "$nin":
            let membership: Membership
            switch argument {
            case .array(let elements):
                for (offset, element) in elements.enumerated() where !element.isPrimitive {
                    throw Invalid(path: "\(path)[\(offset)]", reason: "expects a string, a number, a boolean or null")
                }
                membership = .oneOf(elements)
            case .string(let string): membership = .text(Needle(string))
            case .null, .bool, .number: membership = .element(argument)
            case .object: throw Invalid(path: path, reason: "expects an array, or a string, a number, a boolean or null")
            }
            return .test(.contains(membership, negated: name == "$nin"))
        case "$startsWith", "$endsWith":
            let strings: [String]
            switch argument {
            case .string(let string):
                strings = [string]
            case .array(let elements) where !elements.isEmpty:
                var collected: [String] = []
                for (offset, element) in elements.enumerated() {
                    guard case .string(let string) = element else {
                        throw Invalid(path: "\(path)[\(offset)]", reason: "expects a string")
                    }
                    collected.append(string)
                }
                strings = collected
            default:
                throw Invalid(path: path, reason: "expects a string or a non-empty array of strings")
            }
            return .test(name == "$startsWith" ? .hasPrefix(strings) : .hasSuffix(strings))
        case "$exist":
            guard case .bool(let present) = argument else { throw Invalid(path: path, reason: "expects true or false") }
            return .test(.exists(present))
        case "$or", "$and":
            var branches: [Node] = []
            for (offset, element) in try nonEmptyArray(argument, path: path).enumerated() {
                branches.append(try compileNode(element, path: "\(path)[\(offset)]", foldKeys: foldKeys, depth: depth + 1))
            }
            return name == "$or" ? .any(branches) : .all(branches)
        case "$not":
            return .not(try compileNode(argument, path: path, foldKeys: foldKeys, depth: depth + 1))
        case "$ref":
            throw Invalid(path: path, reason: "references to other fields ($ref) are not supported")
        default:
            throw Invalid(path: path, reason: "unknown operator; the operators are \(operatorKeys)")
        }
    }

    private static func nonEmptyArray(_ value: JSONValue, path: String) throws(Invalid) -> [JSONValue] {
        guard case .array(let elements) = value, !elements.isEmpty else {
            throw Invalid(path: path, reason: "expects a non-empty array")
        }
        return elements
    }

    private static func checkDepth(_ depth: Int, path: String) throws(Invalid) {
        guard depth < JSONValidator.maximumDepth else {
            throw Invalid(path: path, reason: "the filter is nested more than \(JSONValidator.maximumDepth) levels deep")
        }
    }

    private static func joined(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }
}

// MARK: - Matching

extension DeliveryFilter {
    /// The request's parts as JSON values; `headers` and `query` are built on first use.
    private struct Parts {
        let input: Input
        var headers: JSONValue?
        var query: JSONValue?

        init(input: Input) { self.input = input }

        mutating func value(of part: Part) -> JSONValue? {
            switch part {
            case .body:
                return input.body
            case .path:
                return .string(input.path)
            case .headers:
                if let headers { return headers }
                let built = Self.headersObject(input.headers)
                headers = built
                return built
            case .query:
                if let query { return query }
                let built = Self.queryObject(input.query)
                query = built
                return built
            }
        }

        /// Lower-case names; the values of one name joined with ", " in the order received.
        static func headersObject(_ fields: [HeaderField]) -> JSONValue {
            var members: [(key: String, value: JSONValue)] = []
            var positions: [JSONValue.UTF8Key: Int] = [:]
            for field in fields {
                let name = field.name.lowercased()
                if let position = positions[JSONValue.UTF8Key(name)], case .string(let earlier) = members[position].value {
                    members[position].value = .string(earlier + ", " + field.value)
                } else {
                    positions[JSONValue.UTF8Key(name)] = members.count
                    members.append((name, .string(field.value)))
                }
            }
            return .object(members)
        }

        /// The decoded items, the first value of a repeated name; items that do not decode (a
        /// bad `%` escape, not UTF-8) or have no name are left out.
        static func queryObject(_ query: String) -> JSONValue {
            var members: [(key: String, value: JSONValue)] = []
            var seen: Set<JSONValue.UTF8Key> = []
            for item in query.split(separator: "&", omittingEmptySubsequences: true) {
                let equals = item.firstIndex(of: "=")
                let rawValue = equals.map { item[item.index(after: $0)...] } ?? ""
                guard let name = try? QueryString.decode(item[..<(equals ?? item.endIndex)]), !name.isEmpty,
                    let value = try? QueryString.decode(rawValue), seen.insert(JSONValue.UTF8Key(name)).inserted
                else { continue }
                members.append((name, .string(value)))
            }
            return .object(members)
        }
    }

    private static func evaluate(_ rule: Rule, _ parts: inout Parts) -> Bool {
        switch rule {
        case .part(let part, let node): return evaluate(node, parts.value(of: part))
        case .all(let rules): return rules.allSatisfy { evaluate($0, &parts) }
        case .any(let rules): return rules.contains { evaluate($0, &parts) }
        case .not(let rule): return !evaluate(rule, &parts)
        }
    }

    private static func evaluate(_ node: Node, _ value: JSONValue?) -> Bool {
        guard let value else { return evaluateMissing(node) }
        switch node {
        case .equals(let literal):
            if case .array(let elements) = value { return elements.contains { evaluate(node, $0) } }
            return value == literal
        case .containsAll(let nodes):
            guard case .array(let elements) = value else { return false }
            return nodes.allSatisfy { node in elements.contains { evaluate(node, $0) } }
        case .members(let fields):
            switch value {
            case .object(let members): return fields.allSatisfy { evaluate($0.node, JSONValue.member($0.key, in: members)) }
            case .array(let elements): return elements.contains { evaluate(node, $0) }
            default: return false
            }
        case .all(let nodes): return nodes.allSatisfy { evaluate($0, value) }
        case .any(let nodes): return nodes.contains { evaluate($0, value) }
        case .not(let node): return !evaluate(node, value)
        case .test(let test): return holds(test, for: value)
        }
    }

    /// A missing member: only `$exist: false` matches it, and the logical operators combine that.
    private static func evaluateMissing(_ node: Node) -> Bool {
        switch node {
        case .test(.exists(let present)): return !present
        case .all(let nodes): return nodes.allSatisfy(evaluateMissing)
        case .any(let nodes): return nodes.contains(where: evaluateMissing)
        case .not(let node): return !evaluateMissing(node)
        case .equals, .containsAll, .members, .test: return false
        }
    }

    private static func holds(_ test: Test, for value: JSONValue) -> Bool {
        switch test {
        case .equal(let other):
            return value == other
        case .notEqual(let other):
            return value != other
        case .compare(let comparison, let bound):
            switch (value, bound) {
            case (.number(let number), .number(let limit)):
                switch comparison {
                case .greater: return number > limit
                case .greaterOrEqual: return number >= limit
                case .less: return number < limit
                case .lessOrEqual: return number <= limit
                }
            case (.string(let string), .string(let limit)):
                switch comparison {
                case .greater: return limit.utf8.lexicographicallyPrecedes(string.utf8)
                case .greaterOrEqual: return !string.utf8.lexicographicallyPrecedes(limit.utf8)
                case .less: return string.utf8.lexicographicallyPrecedes(limit.utf8)
                case .lessOrEqual: return !limit.utf8.lexicographicallyPrecedes(string.utf8)
                }
            default:
                return false
            }
        case .contains(let membership, let negated):
            guard let contained = contains(membership, value) else { return false }
            return contained != negated
        case .hasPrefix(let prefixes):
            guard case .string(let string) = value else { return false }
            return prefixes.contains { string.utf8.starts(with: $0.utf8) }
        case .hasSuffix(let suffixes):
            guard case .string(let string) = value else { return false }
            return suffixes.contains { string.utf8.reversed().starts(with: $0.utf8.reversed()) }
        case .exists(let present):
            return present
        }
    }

    /// `$in`: whether `value` is in `membership`, or nil when it does not apply to that value.
    private static func contains(_ membership: Membership, _ value: JSONValue) -> Bool? {
        switch (membership, value) {
        case (.oneOf(let elements), _):
            guard value.isPrimitive else { return nil }
            return elements.contains(value)
        case (.text(let needle), .string(let string)):
            return needle.isFound(in: string)
        case (.text(let needle), .array(let elements)):
            return elements.contains(.string(needle.text))
        case (.element(let element), .array(let elements)):
            return elements.contains(element)
        default:
            return nil
        }
    }
}

extension JSONValue {
    /// A string, number, boolean or null.
    var isPrimitive: Bool {
        switch self {
        case .null, .bool, .number, .string: true
        case .array, .object: false
        }
    }
}
