import ArgumentParser
import Foundation
import WaypostCore
import WaypostJournal

/// `--journal PATH` / `--config FILE`, shared by every command that touches the journal
/// (SPEC §6): the journal is `--journal`, else the config's `journal.path`, else
/// `$WAYPOST_JOURNAL`, else `./waypost.db`.
struct JournalOptions: ParsableArguments {
    @Option(name: .long, help: "The journal file.")
    var journal: String?

    @Option(name: .long, help: "A configuration file whose journal.path to use.")
    var config: String?

    func resolvedPath() throws -> String {
        if let journal { return journal }
        if let config { return try loadConfig(config).journal.path }
        return ProcessInfo.processInfo.environment["WAYPOST_JOURNAL"] ?? "./waypost.db"
    }

    func openReader() throws -> JournalReader {
        let path = try resolvedPath()
        do {
            return try JournalReader(path: path)
        } catch {
            throw Failure("cannot read the journal: \(error.message)")
        }
    }
}

/// An operation failed: the message goes to standard error and the exit code is 1.
struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads and parses a configuration file; an unreadable or invalid file exits with 78 after
/// printing the error, which names the file and, where it can, the key and line.
func loadConfig(_ path: String) throws -> WaypostConfig {
    do {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, message: "cannot read the file: \(error.localizedDescription)")
        }
        return try WaypostConfig.parse(yaml: text, file: path)
    } catch {
        printError("waypost: invalid configuration: \(error)")
        throw ExitCode.invalidConfiguration
    }
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
    } catch let error as SQLiteError {
        printError("waypost: \(error)")
        throw ExitCode.failure
    }
}
