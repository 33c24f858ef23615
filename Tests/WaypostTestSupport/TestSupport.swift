// What every test target shares: scratch directories, the stock `sqlite3` CLI, and running a
// command to its end.

import Foundation

/// A fresh directory under the system's temporary directory; `remove()` deletes it.
public struct ScratchDirectory: Sendable {
    public let path: String

    public init() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("waypost-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        path = url.path
    }

    public func file(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to `name` in this directory and returns the file's path.
    @discardableResult
    public func write(_ name: String, _ text: String) throws -> String {
        try text.write(toFile: file(name), atomically: true, encoding: .utf8)
        return file(name)
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A command that could not run, or failed.
public struct CommandFailed: Error, CustomStringConvertible {
    public var description: String
}

/// Runs `/usr/bin/env ARGUMENTS` to its end, with its standard output and error discarded.
///
/// - Returns: The exit status, or -1 when it cannot start.
@discardableResult
public func runSync(_ arguments: [String]) -> Int32 {
    guard let child = try? ChildProcess("/usr/bin/env", arguments, output: .discarded) else { return -1 }
    return child.waitUntilExit()
}

/// Runs `sql` with the stock `sqlite3` CLI on `database` (waiting up to 5 s for a lock) and
/// returns its standard output without the whitespace around it.
///
/// - Throws: ``CommandFailed`` when sqlite3 cannot run or exits non-zero.
public func sqlite3(_ database: String, _ sql: String) throws -> String {
    let child = try ChildProcess("/usr/bin/env", ["sqlite3", "-bail", "-cmd", ".timeout 5000", database, sql])
    let status = child.waitUntilExit()
    child.stdout?.waitForEndBlocking()
    child.stderr?.waitForEndBlocking()
    guard status == 0 else {
        throw CommandFailed(description: "sqlite3 \(database) \"\(sql)\" exited \(status): \(child.stderr?.text ?? "")")
    }
    return (child.stdout?.text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
}

/// SplitMix64: a tiny seeded generator, so a test (or a fuzz smoke run) repeats the same
/// randomness and a failing case can be found again.
public struct SplitMix: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
