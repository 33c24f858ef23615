// Child processes for tests, started with posix_spawn and reaped with waitpid.
//
// Not Foundation's `Process`: on Linux it learns that a child exited when a socket it leaks into
// that child closes (swift-corelibs-foundation #4795), and a child that another test starts at
// the same moment can inherit that socket too. The first child's exit then goes unnoticed until
// the second one ends: `check-config` "did not exit within 10 s" while a `serve` of another test
// ran. Here every descriptor the test process holds is closed in the child, the pipes are
// close-on-exec, and the exit is what `waitpid` says.

import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A child process; its standard output and error are collected (or discarded) and its input is
/// /dev/null or a pipe the test writes to.
public final class ChildProcess: Sendable {
    /// Where the child's standard output and error go.
    public enum Output: Sendable {
        /// Both discarded (/dev/null).
        case discarded
        /// Each collected apart (``stdout``, ``stderr``).
        case collected
        /// Standard error joins standard output (``stdout``).
        case merged
    }

    public let pid: pid_t
    /// The standard output (and the standard error when ``Output/merged``), or nil when discarded.
    public let stdout: PipeCollector?
    /// The standard error, when ``Output/collected``.
    public let stderr: PipeCollector?
    /// The writing end of the child's standard input, when started with `input: true`.
    public let input: FileHandle?
    private let status = Mutex<Int32?>(nil)

    /// Starts `EXECUTABLE ARGUMENTS` (a path; `/usr/bin/env` finds a command on `PATH`) with
    /// exactly `environment` (the test process's own when nil), in `directory`.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: String? = nil,
        output: Output = .collected, input: Bool = false
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var ours: [Int32] = []  // the parent's ends, kept
        var theirs: [Int32] = []  // the child's ends, closed here once it runs
        defer { theirs.forEach { close($0) } }
        func pipe() throws -> (read: Int32, write: Int32) {
            var ends: [Int32] = [0, 0]
            guard GNU.pipe2(&ends, O_CLOEXEC) == 0 else { throw ChildProcessError("pipe2: errno \(errno)") }
            return (ends[0], ends[1])
        }

        if input {
            let ends = try pipe()
            ours.append(ends.write)
            theirs.append(ends.read)
            posix_spawn_file_actions_adddup2(&actions, ends.read, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        var outRead: Int32 = -1
        var errRead: Int32 = -1
        switch output {
        case .discarded:
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        case .collected, .merged:
            let out = try pipe()
            outRead = out.read
            ours.append(out.read)
            theirs.append(out.write)
            posix_spawn_file_actions_adddup2(&actions, out.write, 1)
            if case .merged = output {
                posix_spawn_file_actions_adddup2(&actions, out.write, 2)
            } else {
                let err = try pipe()
                errRead = err.read
                ours.append(err.read)
                theirs.append(err.write)
                posix_spawn_file_actions_adddup2(&actions, err.write, 2)
            }
        }
        _ = GNU.closeFrom(&actions, 3)
        if let directory { _ = GNU.chdir(&actions, directory) }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let environ = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + environ).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else {
            ours.forEach { close($0) }
            throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(spawned)))")
        }
        self.pid = pid
        self.input = input ? FileHandle(fileDescriptor: ours[0], closeOnDealloc: true) : nil
        stdout = outRead >= 0 ? PipeCollector(FileHandle(fileDescriptor: outRead, closeOnDealloc: true)) : nil
        stderr = errRead >= 0 ? PipeCollector(FileHandle(fileDescriptor: errRead, closeOnDealloc: true)) : nil
    }

    /// A child that still runs when the test lets go of it is killed and reaped.
    deinit {
        if isRunning {
            _ = kill(pid, SIGKILL)
            _ = waitpid(pid, nil, 0)
        }
    }

    /// The exit status once the child has ended (the signal's number when a signal ended it, as
    /// Foundation's `terminationStatus`), nil while it runs. Reaps it.
    public var exitStatus: Int32? {
        status.withLock { known in
            if let known { return known }
            var raw: Int32 = 0
            let reaped = waitpid(pid, &raw, WNOHANG)
            guard reaped == pid else { return nil }
            known = raw & 0x7f == 0 ? (raw >> 8) & 0xff : raw & 0x7f
            return known
        }
    }

    public var isRunning: Bool { exitStatus == nil }

    /// Waits for the child to end, at most `timeout`; its exit status, or nil when it still runs.
    public func wait(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let exitStatus { return exitStatus }
            guard ContinuousClock.now < deadline else { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits for the child to end, blocking the calling thread.
    public func waitUntilExit() -> Int32 {
        while true {
            if let exitStatus { return exitStatus }
            usleep(5_000)
        }
    }

    /// Sends `signal` to the child, if it has not been reaped.
    public func send(_ signal: Int32) {
        if isRunning { _ = kill(pid, signal) }
    }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// glibc's extensions that Swift's Glibc module does not declare (they need _GNU_SOURCE): a
/// close-on-exec pipe, and closing every inherited descriptor and changing directory in a child.
private enum GNU {
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    typealias Chdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    static let pipe2 = unsafeBitCast(symbol("pipe2"), to: Pipe2.self)
    static let closeFrom = unsafeBitCast(symbol("posix_spawn_file_actions_addclosefrom_np"), to: CloseFrom.self)
    static let chdir = unsafeBitCast(symbol("posix_spawn_file_actions_addchdir_np"), to: Chdir.self)

    private static func symbol(_ name: String) -> UnsafeMutableRawPointer {
        guard let pointer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else {
            fatalError("glibc 2.34 or later is needed for \(name)")
        }
        return pointer
    }
}

/// Drains one pipe on a thread of its own, so that a chatty child never blocks on a full pipe.
public final class PipeCollector: Sendable {
    private struct State {
        var data = Data()
        var finished = false
    }

    private let state = Mutex(State())

    public init(_ handle: FileHandle) {
        let thread = Thread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                state.withLock { $0.data.append(chunk) }
            }
            state.withLock { $0.finished = true }
        }
        thread.start()
    }

    /// Everything read so far, as UTF-8 text (invalid bytes replaced).
    public var text: String { state.withLock { String(decoding: $0.data, as: UTF8.self) } }

    /// Waits until end of file, at most `timeout` (a grandchild holding the pipe open must not
    /// hang the test: the text read so far is still there).
    public func waitForEnd(timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while !state.withLock({ $0.finished }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits until end of file, blocking the calling thread.
    public func waitForEndBlocking() {
        while !state.withLock({ $0.finished }) { usleep(2_000) }
    }
}
