import Foundation

/// Where a PostgreSQL journal is (SPEC §12): `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`
/// with libpq's `sslmode` as a query parameter, and where its password comes from, in libpq's
/// order: the URL, then the configuration's `password_env` variable, then `$PGPASSWORD`, then
/// `~/.pgpass` (or `$PGPASSFILE`).
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    /// libpq's `sslmode` values, weakest first.
    public enum SSLMode: String, Sendable, CaseIterable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode

    /// The URL without its password, for logs and errors.
    public var description: String {
        "postgres://\(user)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)?sslmode=\(sslMode.rawValue)"
    }

    /// Whether `text` names a PostgreSQL journal rather than a SQLite file.
    public static func isURL(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// Parses `url`; the password is the URL's, else the value of `passwordEnv` (which must be
    /// set when named), else found as libpq finds it.
    ///
    /// - Throws: ``PostgresLocationError`` naming what is wrong, never echoing a password.
    public init(
        url: String, passwordEnv: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment
    )
        throws(PostgresLocationError)
    {
        guard Self.isURL(url), let components = URLComponents(string: url), components.fragment == nil else {
            throw PostgresLocationError("is not a URL of the form postgres://USER@HOST:PORT/DATABASE")
        }
        guard let host = components.host, !host.isEmpty else { throw PostgresLocationError("names no host") }
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw PostgresLocationError("has port \(port), not 1–65535") }
        guard let user = components.user, !user.isEmpty else {
            throw PostgresLocationError("names no user (postgres://USER@HOST/DATABASE)")
        }
        self.user = user
        let database = String(components.path.dropFirst())
        guard !database.isEmpty, !database.contains("/") else {
            throw PostgresLocationError("names no database (postgres://USER@HOST/DATABASE)")
        }
        self.database = database
        sslMode = .prefer
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let mode = SSLMode(rawValue: value) else {
                    throw PostgresLocationError(
                        "has sslmode '\(item.value ?? "")'; it must be one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                sslMode = mode
            case "application_name", "connect_timeout":
                continue
            default:
                throw PostgresLocationError("has the parameter '\(item.name)', which Waypost does not know (it knows sslmode)")
            }
        }
        if let password = components.password {
            self.password = password
        } else if let name = passwordEnv {
            guard let value = environment[name], !value.isEmpty else {
                throw PostgresLocationError("takes its password from $\(name), which is not set", isMissingSecret: true)
            }
            password = value
        } else if let value = environment["PGPASSWORD"] {
            password = value
        } else {
            let file = environment["PGPASSFILE"] ?? environment["HOME"].map { $0 + "/.pgpass" }
            password = file.flatMap { Self.passFileEntry($0, host: self.host, port: port, database: database, user: user) }
        }
    }

    /// The password `~/.pgpass` holds for this server, database and user: the first line
    /// `hostname:port:database:username:password` whose fields match (`*` matches anything;
    /// `\:` and `\\` are a colon and a backslash).
    static func passFileEntry(_ path: String, host: String, port: Int, database: String, user: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            var fields: [String] = [""]
            var escaped = false
            for character in line {
                if escaped {
                    fields[fields.count - 1].append(character)
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else if character == ":" && fields.count < 5 {
                    fields.append("")
                } else {
                    fields[fields.count - 1].append(character)
                }
            }
            guard fields.count == 5 else { continue }
            let wanted = [host, String(port), database, user]
            if zip(fields, wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }
}

/// What is wrong with a `journal.url`; the message follows "the journal URL …".
public struct PostgresLocationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var problem: String
    /// The password's variable is not set: exit 78, like any missing secret.
    public var isMissingSecret: Bool

    init(_ problem: String, isMissingSecret: Bool = false) {
        self.problem = problem
        self.isMissingSecret = isMissingSecret
    }

    public var description: String { "the journal URL \(problem)" }
}
