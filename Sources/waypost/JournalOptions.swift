import ArgumentParser
import Foundation
import Logging
import WaypostCore
import WaypostJournal
import WaypostPostgres

/// `--journal PATH|URL` / `--config FILE`, shared by every command that touches the journal
/// (SPEC §6, §12): the journal is `--journal` (a SQLite file, or a `postgres://` URL), else the
/// config's `journal.path` or `journal.url`, else `$WAYPOST_JOURNAL`, else `./waypost.db`.
struct JournalOptions: ParsableArguments {
    @Option(name: .long, help: "The journal: a SQLite file, or a PostgreSQL URL postgres://USER@HOST:PORT/DATABASE.")
    var journal: String?

    @Option(name: .long, help: "A configuration file whose journal.path or journal.url to use.")
    var config: String?

    func validate() throws {
        if journal?.isEmpty == true {
            throw ValidationError("--journal needs the path of the journal file; it was given as an empty string")
        }
        if config?.isEmpty == true {
            throw ValidationError("--config needs the path of a configuration file; it was given as an empty string")
        }
    }

    /// The journal these options name.
    func open() throws -> any Journal {
        var settings = JournalConfig()
        if let journal {
            settings.take(journal)
        } else if let config {
            settings = try loadConfig(config).journal
        } else {
            settings.take(ProcessInfo.processInfo.environment["WAYPOST_JOURNAL"] ?? "./waypost.db")
        }
        let location = try postgresLocation(settings, environment: ProcessInfo.processInfo.environment)
        return location.map { PostgresJournal(location: $0, logger: Logger(label: "waypost")) } ?? SQLiteJournal(path: settings.path)
    }

    func openReader() throws -> any JournalReading {
        let journal = try open()
        do {
            return try journal.reader()
        } catch {
            throw Failure("cannot read the journal: \(error.message)")
        }
    }
}

extension JournalConfig {
    /// The journal `--journal` or `$WAYPOST_JOURNAL` names: a `postgres://` URL, else a SQLite file.
    mutating func take(_ location: String) {
        if PostgresLocation.isURL(location) {
            url = location
        } else {
            path = location
            url = nil
        }
    }
}

/// Where the PostgreSQL journal of `settings` is, with its password; nil for a SQLite journal.
///
/// - Throws: `ExitCode.invalidConfiguration` (78) after printing what is wrong with the URL,
///   or that its `password_env` variable is not set.
func postgresLocation(_ settings: JournalConfig, environment: [String: String]) throws -> PostgresLocation? {
    guard let url = settings.url else { return nil }
    do {
        return try PostgresLocation(url: url, passwordEnv: settings.passwordEnv, environment: environment)
    } catch {
        printError("waypost: invalid configuration: journal.\(error.isMissingSecret ? "password_env" : "url"): \(error)")
        throw ExitCode.invalidConfiguration
    }
}

/// An operation failed: the message goes to standard error and the exit code is 1.
struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The filter that `flags` (name without `--`, value) give, checked by ``MessageFilter/set(_:_:states:now:)``:
/// a bad value is exit 64 with a message naming the flag.
func messageFilter(_ flags: [(String, String?)], states: [MessageState] = MessageState.allCases) throws -> MessageFilter {
    var filter = MessageFilter()
    for case (let key, let value?) in flags {
        do {
            try filter.set(key, value, states: states)
        } catch {
            throw ValidationError("--\(error.key) \(error.message)")
        }
    }
    return filter
}

/// Reads and parses a configuration file; an unreadable or invalid file exits with 78 after
/// printing the error, which names the file and, where it can, the key and line.
func loadConfig(_ path: String) throws -> WaypostConfig {
    do {
        return try WaypostConfig.parse(yaml: try readConfigText(path), file: path)
    } catch {
        printError("waypost: invalid configuration: \(error)")
        throw ExitCode.invalidConfiguration
    }
}

/// The largest configuration file Waypost reads.
let maximumConfigBytes = 1 << 20

/// The text of configuration file `path`: at most ``maximumConfigBytes``, UTF-8.
///
/// - Throws: ``ConfigError`` naming the file when it cannot be read, is a directory, is larger,
///   or is not UTF-8.
func readConfigText(_ path: String) throws(ConfigError) -> String {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw ConfigError(file: path, message: "cannot read the file: it is a directory")
    }
    guard let handle = FileHandle(forReadingAtPath: path) else {
        let reason = FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file"
        throw ConfigError(file: path, message: "cannot read the file: \(reason)")
    }
    defer { try? handle.close() }
    let data: Data
    do {
        data = try handle.read(upToCount: maximumConfigBytes + 1) ?? Data()
    } catch {
        throw ConfigError(file: path, message: "cannot read the file: \(error.localizedDescription)")
    }
    guard data.count <= maximumConfigBytes else {
        throw ConfigError(file: path, message: "the file is larger than 1 MiB; a configuration file is at most \(maximumConfigBytes) bytes")
    }
    guard let text = String(validating: data, as: UTF8.self) else {
        throw ConfigError(file: path, message: "the file is not UTF-8 text")
    }
    return text
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Runs `body`, turning a ``Failure`` into its message and exit code 1.
func reportingFailure<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let failure as Failure {
        printError("waypost: \(failure)")
        throw ExitCode.failure
    } catch let error as JournalError {
        printError("waypost: \(error)")
        throw ExitCode.failure
    }
}
