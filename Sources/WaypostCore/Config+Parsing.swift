// Reading a `WaypostConfig` from YAML text (SPEC §8).
//
// The YAML is composed into a Yams `Node` tree (not decoded with Codable) so that every error
// can name the line it comes from. Every mapping is checked against the keys valid at its level:
// an unknown key is an error, never silently ignored (SPEC §6).

import Yams

/// An invalid configuration: which file, which line, which key, and what is wrong with it.
///
/// Its ``description`` is the message for the operator, for example
/// `config.yaml:12: routes[0].retry.factor: expected a number, got "abc"`.
/// The command line exits with status 78 on it (SPEC §6).
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file name as given to ``WaypostConfig/parse(yaml:file:)``, if the error comes from a file.
    public var file: String?
    /// The 1-based line of the offending key or value, when known.
    public var line: Int?
    /// The full key path, e.g. `routes[1].retry.initial`, when the error concerns one key.
    public var key: String?
    /// What is wrong, in words a person can act on.
    public var message: String

    /// Creates a configuration error.
    public init(file: String? = nil, line: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// `FILE:LINE: KEY: MESSAGE`, leaving out the parts that are unknown.
    public var description: String {
        var parts: [String] = []
        switch (file, line) {
        case let (file?, line?): parts.append("\(file):\(line)")
        case let (file?, nil): parts.append(file)
        case let (nil, line?): parts.append("line \(line)")
        case (nil, nil): break
        }
        if let key, !key.isEmpty { parts.append(key) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }
}

extension WaypostConfig {
    /// Parses and validates a configuration file's YAML text.
    ///
    /// Unset values take the defaults documented on each type; each route's `max_body_bytes` and
    /// `max_header_bytes` fall back to the `defaults` block. Nothing is read from the environment
    /// or the file system: secrets are only located (``SecretSource``).
    ///
    /// - Parameters:
    ///   - yaml: The file's contents.
    ///   - file: The file's name, used only in error messages.
    /// - Throws: ``ConfigError`` for a YAML syntax error, an empty file, an unknown key (with a
    ///   hint listing the valid keys at that level), a value of the wrong type or out of range,
    ///   a missing required key, an empty `routes` list, or routes sharing a name or a path.
    public static func parse(yaml: String, file: String) throws(ConfigError) -> WaypostConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigError(yamlError: error, file: file)
        } catch {
            throw ConfigError(file: file, message: "cannot read the YAML: \(error)")
        }
        guard let root, !isNull(root) else {
            throw ConfigError(file: file, message: "the file is empty")
        }
        return try ConfigReader(file: file).readConfig(root)
    }
}

extension HostPort {
    /// Parses `HOST:PORT`: `0.0.0.0:8080`, `127.0.0.1:9901`, `[::1]:8080`, `localhost:80`.
    ///
    /// The host is a name or IPv4 address, or an IPv6 address in brackets (stored without them).
    /// The port is `0...65535`, `0` meaning an ephemeral port.
    ///
    /// - Throws: ``ConfigError`` (with only a message) when `text` is not written as above.
    public init(parsing text: String) throws(ConfigError) {
        let usage = "expected HOST:PORT such as 127.0.0.1:8080 or [::1]:8080, got \"\(text)\""
        guard let (host, port, bracketed) = splitAuthority(Substring(text)), let port else {
            throw ConfigError(message: usage)
        }
        guard isValidHost(host, bracketed: bracketed) else { throw ConfigError(message: usage) }
        guard let number = parsePort(port) else {
            throw ConfigError(message: "the port must be a number from 0 to 65535, got \"\(port)\"")
        }
        self.init(host: String(host), port: number)
    }
}

extension StatusRange {
    /// Parses an HTTP status code (`409`), a class (`5xx`) or an inclusive range (`500-599`),
    /// all within `100...599`.
    ///
    /// - Returns: `nil` when `text` is none of these.
    public init?(parsing text: String) {
        let valid = 100...599
        if let code = Int(text), valid.contains(code) {
            self.init(lower: code, upper: code)
            return
        }
        let lowered = text.lowercased()
        if lowered.count == 3, lowered.hasSuffix("xx"), let digit = Int(lowered.prefix(1)), (1...5).contains(digit) {
            self.init(lower: digit * 100, upper: digit * 100 + 99)
            return
        }
        let bounds = text.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2,
            let lower = Int(trimSpaces(bounds[0])), let upper = Int(trimSpaces(bounds[1])),
            valid.contains(lower), valid.contains(upper), lower <= upper
        else { return nil }
        self.init(lower: lower, upper: upper)
    }
}

extension OrderingKey {
    /// Parses `header:NAME` or `json:/pointer` (an RFC 6901 JSON Pointer, starting with `/`).
    ///
    /// - Throws: ``ConfigError`` (with only a message) for any other form.
    public init(parsing text: String) throws(ConfigError) {
        if text.hasPrefix("header:") {
            let name = String(text.dropFirst("header:".count))
            guard isToken(name) else {
                throw ConfigError(message: "expected a header name after \"header:\", got \"\(text)\"")
            }
            self = .header(name)
        } else if text.hasPrefix("json:") {
            let pointer = String(text.dropFirst("json:".count))
            guard pointer.hasPrefix("/") else {
                throw ConfigError(message: "a JSON Pointer starts with \"/\", e.g. json:/repository/id; got \"\(text)\"")
            }
            guard isValidPointerEscaping(pointer) else {
                throw ConfigError(message: "in a JSON Pointer \"~\" must be followed by 0 or 1 (RFC 6901); got \"\(text)\"")
            }
            self = .jsonPointer(pointer)
        } else {
            throw ConfigError(message: "expected header:NAME or json:/pointer, got \"\(text)\"")
        }
    }
}

// MARK: - YAML errors

extension ConfigError {
    /// Turns a Yams error into a configuration error with the line it names.
    init(yamlError: YamlError, file: String) {
        switch yamlError {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
            let .composer(context, problem, mark, _):
            var message = "invalid YAML: \(problem)"
            if let context { message += " (\(context.text), line \(context.mark.line))" }
            self.init(file: file, line: mark.line, message: message)
        case let .duplicatedKeysInMapping(duplicates, context):
            let names = duplicates.map { "\"\($0)\"" }.joined(separator: ", ")
            self.init(file: file, line: context.mark.line, message: "duplicate key \(names) in the same mapping")
        case let .reader(problem, offset, _, yaml):
            let line = offset.map { yaml.prefix($0).reduce(1) { $1 == "\n" ? $0 + 1 : $0 } }
            self.init(file: file, line: line, message: "invalid YAML: \(problem)")
        default:
            self.init(file: file, message: "invalid YAML: \(yamlError)")
        }
    }
}
