import DequeModule
import Foundation
import Synchronization
import WaypostCore
import WaypostJournal

#if canImport(Glibc)
    import Glibc
#endif

/// The jq programs of a configuration (SPEC §11), run in worker processes beside the server's
/// threads: a few threads, each with its worker (``TransformProcess``), take requests in the
/// order they came and hand each answer to the request's callback on that thread.
///
/// A program that loops, eats memory or crashes costs its own request, within
/// `transform_timeout`: its worker is killed and the next request starts a new one. The
/// forwarder and the intake never wait for a program; they hand it a request and go on.
public final class TransformPool: Sendable {
    public typealias Completion = @Sendable (Result<TransformAnswer, TransformFailure>) -> Void

    private struct Job {
        let request: TransformRequest
        let done: Completion
    }

    private struct State {
        var jobs: Deque<Job> = []
        var stopping = false
    }

    private let state = Mutex(State())
    private let ready = DispatchSemaphore(value: 0)
    private let executable: String
    private let programs: [String]
    private let memoryLimit: Int
    private let timeout: Duration
    private let threads: Int

    /// Compiles `programs` in a first worker and keeps it for the first thread.
    ///
    /// - Parameters:
    ///   - executable: this binary (its hidden subcommand `transform-worker` runs the worker).
    ///   - memoryLimit: each worker's data-segment cap, bytes.
    ///   - timeout: how long one request may run (`transform_timeout`).
    ///   - threads: how many requests run at once.
    /// - Throws: ``TransformPoolError`` naming the programs that do not compile (by index), or
    ///   why no worker starts.
    public init(executable: String, programs: [String], memoryLimit: Int, timeout: Duration, threads: Int) throws(TransformPoolError) {
        self.executable = executable
        self.programs = programs
        self.memoryLimit = memoryLimit
        self.timeout = timeout
        self.threads = max(1, threads)
        // A worker that died makes the next write to it fail, not the server.
        signal(SIGPIPE, SIG_IGN)
        let started: (process: TransformProcess, errors: [String?])
        do {
            started = try TransformProcess.start(executable: executable, programs: programs, memoryLimit: memoryLimit, timeout: timeout)
        } catch {
            throw .start(error.description)
        }
        let failed = started.errors.enumerated().compactMap { index, error in error.map { (index, $0) } }
        guard failed.isEmpty else {
            started.process.kill()
            throw .compile(failed)
        }
        for index in 0..<self.threads {
            let process = UncheckedBox(index == 0 ? started.process : nil)
            startDedicatedThread(named: "wp-transform-\(index)") { [self] in serve(process.value) }
        }
    }

    /// Runs `request` on a worker when one is free; `done` is called on that worker's thread.
    /// After ``shutdown()``, `done` is called at once with a failure.
    public func submit(_ request: TransformRequest, done: @escaping Completion) {
        let accepted = state.withLock { state in
            guard !state.stopping else { return false }
            state.jobs.append(Job(request: request, done: done))
            return true
        }
        if accepted { ready.signal() } else { done(.failure(.start("the server is stopping"))) }
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

    /// Stops the threads once the requests taken have ended; requests waiting fail.
    public func shutdown() {
        let dropped = state.withLock { state in
            state.stopping = true
            defer { state.jobs.removeAll() }
            return Array(state.jobs)
        }
        for job in dropped { job.done(.failure(.start("the server is stopping"))) }
        for _ in 0..<threads { ready.signal() }
    }

    private func serve(_ first: TransformProcess?) {
        var process = first
        while true {
            ready.wait()
            // One signal per job, and one per thread to stop: no job means stopping.
            guard let job = state.withLock({ $0.stopping ? nil : $0.jobs.popFirst() }) else { break }
            let result: Result<TransformAnswer, TransformFailure>
            do {
                if process == nil || process?.isAlive == false {
                    process = try TransformProcess.start(
                        executable: executable, programs: programs, memoryLimit: memoryLimit, timeout: timeout
                    ).0
                }
                result = .success(try process!.run(job.request, timeout: timeout))
            } catch {
                result = .failure(error)
            }
            job.done(result)
        }
        process?.kill()
    }
}

/// A value handed to a thread that alone uses it.
private struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
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
