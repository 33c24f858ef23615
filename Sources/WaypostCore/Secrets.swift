// Reading the secrets a configuration only locates (SPEC §9): at start-up, from an environment
// variable or a file, and again on SIGHUP. The one place in WaypostCore that touches the file system.

import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A secret that cannot be loaded or used. The executable prints ``message`` and exits 78
/// (SPEC §9).
///
/// The message names the environment variable or file (and which of several secrets), never a
/// secret's value.
public struct SecretError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong, naming the variable or file: e.g. `environment variable GITHUB_SECRET is not set`.
    public var message: String

    /// Creates a secret error.
    public init(message: String) {
        self.message = message
    }

    /// The ``message``.
    public var description: String { message }
}

/// Loads the secrets of a ``SecretSource``.
public enum Secrets {
    /// The largest secret file read: secrets are short, and a large file is a wrong path.
    public static let maxFileBytes = 64 << 10

    /// Loads the secrets of `source`: `secret_env` names an environment variable, `secret_file`
    /// a file (trailing newline ignored). Several secrets separated by whitespace (spaces,
    /// tabs, newlines) allow rotation; they are returned in their order.
    ///
    /// ```swift
    /// // GITHUB_SECRET="new-secret old-secret"
    /// let secrets = try Secrets.load(SecretSource(.env("GITHUB_SECRET")), environment: ProcessInfo.processInfo.environment)
    /// // ["new-secret", "old-secret"]
    /// ```
    ///
    /// - Parameters:
    ///   - source: Where the secrets are.
    ///   - environment: The process environment (a parameter, so that tests need not set it).
    /// - Returns: One or more non-empty secrets, none containing whitespace.
    /// - Throws: ``SecretError`` naming the variable or file when the variable is not set, the
    ///   file cannot be read (missing, no permission, a directory, larger than ``maxFileBytes``,
    ///   not UTF-8), or either holds nothing but whitespace. Never contains a secret.
    public static func load(_ source: SecretSource, environment: [String: String]) throws(SecretError) -> [String] {
        let text: String
        switch source.kind {
        case .env(let name):
            guard let value = environment[name] else {
                throw SecretError(message: "\(source) is not set; it must hold the secret")
            }
            text = value
        case .file(let path):
            text = try readFile(path, source: source)
        }
        let secrets = split(text)
        guard !secrets.isEmpty else {
            throw SecretError(message: "\(source) is empty; it must hold the secret")
        }
        return secrets
    }

    /// The whitespace-separated words of `text`. Only ASCII whitespace separates, so that a
    /// secret keeps every other byte it has.
    static func split(_ text: String) -> [String] {
        text.utf8.split { byte in
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n")
                || byte == UInt8(ascii: "\r") || byte == 0x0B || byte == 0x0C
        }
        .map { String(decoding: $0, as: UTF8.self) }
    }

    /// The contents of the file at `path` as UTF-8 text.
    private static func readFile(_ path: String, source: SecretSource) throws(SecretError) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw SecretError(message: "\(source) cannot be opened: \(describeErrno(errno))")
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                throw SecretError(message: "\(source) cannot be read: \(describeErrno(code))")
            }
            bytes.append(contentsOf: buffer[..<count])
            guard bytes.count <= maxFileBytes else {
                throw SecretError(message: "\(source) is larger than \(maxFileBytes / 1024) KiB; it must hold only the secret")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw SecretError(message: "\(source) is not UTF-8 text")
        }
        return text
    }

    private static func describeErrno(_ code: Int32) -> String {
        "\(String(cString: strerror(code))) (errno \(code))"
    }
}

/// The loaded keys of every route's `verify` and `sign`, shared by the intake and the
/// forwarder, and replaced whole when `SIGHUP` re-reads the `secret_file` secrets (SPEC §10).
public final class RouteSecrets: Sendable {
    /// The routes' keys: verifiers by route name, signers by ``RouteConfig/key(of:)``.
    public struct Keys: Sendable {
        public var verifiers: [String: InboundVerifier]
        public var signers: [String: OutboundSigner]

        public init(verifiers: [String: InboundVerifier] = [:], signers: [String: OutboundSigner] = [:]) {
            self.verifiers = verifiers
            self.signers = signers
        }
    }

    private let keys: Mutex<Keys>

    public init(_ keys: Keys = Keys()) {
        self.keys = Mutex(keys)
    }

    /// Reads the secrets of every route with `verify` or `sign` (SPEC §9).
    ///
    /// - Throws: ``SecretError`` naming the route, the key and the variable or file, never a
    ///   secret's value.
    public static func load(_ configuration: WaypostConfig, environment: [String: String]) throws(SecretError) -> Keys {
        var keys = Keys()
        for (index, route) in configuration.routes.enumerated() {
            do {
                if let verify = route.verify {
                    keys.verifiers[route.name] = try InboundVerifier(
                        config: verify, secrets: Secrets.load(verify.secret, environment: environment))
                }
            } catch {
                throw SecretError(message: "routes[\(index)].verify: \(error.message)")
            }
            for (number, destination) in route.destinations.enumerated() {
                do {
                    if let sign = destination.sign {
                        keys.signers[route.key(of: destination)] = try OutboundSigner(
                            config: sign, secrets: Secrets.load(sign.secret, environment: environment))
                    }
                } catch {
                    throw SecretError(message: "\(route.keyPath(index: index, destination: number)).sign: \(error.message)")
                }
            }
        }
        return keys
    }

    /// The secret files `configuration` reads, for the reload's log line.
    public static func files(of configuration: WaypostConfig) -> [String] {
        configuration.routes.flatMap { route in
            ([route.verify?.secret] + route.destinations.map { $0.sign?.secret }).compactMap { source in
                if case .file(let path)? = source?.kind { return path }
                return nil
            }
        }
    }

    /// The inbound check of route `name`, if it has `verify`.
    public func verifier(_ name: String) -> InboundVerifier? { keys.withLock { $0.verifiers[name] } }

    /// The outbound signer of a destination (by ``RouteConfig/key(of:)``), if it has `sign`.
    public func signer(_ name: String) -> OutboundSigner? { keys.withLock { $0.signers[name] } }

    /// Puts `keys` in place of the current ones, for every request and attempt from now on.
    public func replace(with keys: Keys) { self.keys.withLock { $0 = keys } }
}
