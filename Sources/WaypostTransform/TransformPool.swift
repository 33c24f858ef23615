import DequeModule
import Foundation
import Synchronization
import WaypostCore
import WaypostJournal

#if canImport(Glibc)
    import Glibc
#endif

/// The jq programs of a configuration (SPEC §11) for callers on any thread (the intake's
/// replies, `waypost transform`): one thread of its own drives ``TransformWorkers`` and hands
/// each answer to the request's callback on that thread.
///
/// A program that loops, eats memory or crashes costs its own request, within
/// `transform_timeout`: its worker is killed and the next request starts a new one. Callers
/// never wait for a program; they hand it a request and go on.
public final class TransformPool: Sendable {
    public typealias Completion = @Sendable (Result<TransformAnswer, TransformFailure>) -> Void

    private struct Job {
        /// Made on the pool's thread: building a program's input costs the caller nothing.
        let request: @Sendable () -> TransformRequest
        let done: Completion
    }

    private struct State {
        var jobs: [Job] = []
        var stopping = false
    }

    private let state = Mutex(State())
    /// A byte is written here when a request comes (or the pool stops): it wakes the thread.
    private let wake: (read: Int32, write: Int32)

    /// Starts the thread (its workers start with the first requests).
    ///
    /// - Throws: ``TransformPoolError/start(_:)`` when it cannot make its wake-up pipe.
    public init(_ setup: TransformSetup) throws(TransformPoolError) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw .start("cannot make a pipe: \(String(cString: strerror(errno)))") }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        wake = (ends[0], ends[1])
        let machine = UncheckedWorkers(TransformWorkers(setup))
        startDedicatedThread(named: "wp-transform") { [self] in serve(machine.workers) }
    }

    /// Compiles the programs of `setup` in a worker, which is then stopped.
    ///
    /// - Throws: ``TransformPoolError`` naming the programs that do not compile (by index), or
    ///   why no worker starts.
    public static func compile(_ setup: TransformSetup) throws(TransformPoolError) {
        let started: (process: TransformProcess, errors: [String?])
        do {
            started = try TransformProcess.start(
                executable: setup.executable, programs: setup.programs, memoryLimit: setup.memoryLimit, timeout: setup.timeout)
        } catch {
            throw .start(error.description)
        }
        started.process.kill()
        let failed = started.errors.enumerated().compactMap { index, error in error.map { (index, $0) } }
        guard failed.isEmpty else { throw .compile(failed) }
    }

    /// Runs `request` (made on the pool's thread); `done` is called on that thread. After
    /// ``shutdown()``, `done` is called at once with a failure.
    public func submit(_ request: @autoclosure @escaping @Sendable () -> TransformRequest, done: @escaping Completion) {
        let accepted = state.withLock { state in
            guard !state.stopping else { return false }
            state.jobs.append(Job(request: request, done: done))
            return true
        }
        guard accepted else { return done(.failure(.start("the server is stopping"))) }
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)  // a full pipe wakes the thread as well
    }

    /// Runs `request` and waits for its answer (for `waypost transform` and tests).
    public func run(_ request: TransformRequest) -> Result<TransformAnswer, TransformFailure> {
        let answer = Mutex<Result<TransformAnswer, TransformFailure>?>(nil)
        let done = DispatchSemaphore(value: 0)
        submit(request) { result in
            answer.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return answer.withLock { $0! }
    }

    /// Stops the thread and its workers; requests not answered yet fail.
    public func shutdown() {
        state.withLock { $0.stopping = true }
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    private func serve(_ workers: TransformWorkers) {
        workers.warmUp()
        var callbacks: [Int64: Completion] = [:]
        var nextTag: Int64 = 0
        while true {
            let (jobs, stopping) = state.withLock { state in
                defer { state.jobs = [] }
                return (state.jobs, state.stopping)
            }
            if stopping {
                for (tag, result) in workers.stop(failing: .start("the server is stopping")) { callbacks[tag]?(result) }
                for job in jobs { job.done(.failure(.start("the server is stopping"))) }
                break
            }
            for job in jobs {
                nextTag += 1
                callbacks[nextTag] = job.done
                workers.submit(tag: nextTag, job.request())
            }
            var pollers = ([wake.read] + workers.descriptors).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let timeout = workers.nextDeadline.map { Int32(clamping: max(0, ($0 - .now).milliseconds + 1)) } ?? -1
            _ = poll(&pollers, nfds_t(pollers.count), timeout)
            var drain = [UInt8](repeating: 0, count: 64)
            while read(wake.read, &drain, drain.count) > 0 {}
            for (tag, result) in workers.collect() { callbacks.removeValue(forKey: tag)?(result) }
        }
        // The wake pipe stays open: a late shutdown() must not write to a descriptor reused since.
    }
}

/// The workers, handed to the thread that alone drives them.
private struct UncheckedWorkers: @unchecked Sendable {
    let workers: TransformWorkers
    init(_ workers: TransformWorkers) { self.workers = workers }
}

/// The programs cannot be compiled, or no worker starts.
public enum TransformPoolError: Error, Sendable, Equatable {
    /// The programs, by index, that do not compile, with jq's message.
    case compile([(Int, String)])
    case start(String)

    public static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.compile(let a), .compile(let b)): a.map(\.0) == b.map(\.0) && a.map(\.1) == b.map(\.1)
        case (.start(let a), .start(let b)): a == b
        default: false
        }
    }
}

/// How to run a configuration's programs: in worker processes of `executable` (this binary, whose
/// hidden subcommand `transform-worker` is the worker), each with a data-segment cap of
/// `memoryLimit` bytes above its own, `timeout` per request, `workers` processes at once.
public struct TransformSetup: Sendable {
    public var executable: String
    public var programs: [String]
    public var memoryLimit: Int
    public var timeout: Duration
    public var workers: Int

    public init(executable: String = "/proc/self/exe", programs: [String], memoryLimit: Int, timeout: Duration, workers: Int = 2) {
        self.executable = executable
        self.programs = programs
        self.memoryLimit = memoryLimit
        self.timeout = timeout
        self.workers = workers
    }
}
