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
/// order they came, as many as are waiting (up to a pipe's worth, written to the worker
/// together, so that a busy pool costs no round trip per request), and hand each answer to
/// the request's callback on that thread.
///
/// A program that loops, eats memory or crashes costs its own request, within
/// `transform_timeout`: its worker is killed and the next request starts a new one. The
/// forwarder and the intake never wait for a program; they hand it a request and go on.
public final class TransformPool: @unchecked Sendable {
    // @unchecked Sendable: `state` is guarded by `condition`; the rest is immutable.
    public typealias Completion = @Sendable (Result<TransformAnswer, TransformFailure>) -> Void

    private struct Job {
        /// Made on the pool's thread: building a program's input costs the caller nothing.
        let request: @Sendable () -> TransformRequest
        let done: Completion
    }

    private struct State {
        var jobs: Deque<Job> = []
        var stopping = false
    }

    private var state = State()
    private let condition = NSCondition()
    private let executable: String
    private let programs: [String]
    private let memoryLimit: Int
    private let timeout: Duration
    private let threads: Int

    /// Compiles `programs` in a first worker, then starts the threads; each starts its own
    /// worker on its first request (a worker dies with the thread that started it).
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
        started.process.kill()
        let failed = started.errors.enumerated().compactMap { index, error in error.map { (index, $0) } }
        guard failed.isEmpty else { throw .compile(failed) }
        for index in 0..<self.threads {
            startDedicatedThread(named: "wp-transform-\(index)") { [self] in serve() }
        }
    }

    /// Runs `request` (made on the pool's thread) on a worker when one is free; `done` is
    /// called on that thread. After ``shutdown()``, `done` is called at once with a failure.
    public func submit(_ request: @autoclosure @escaping @Sendable () -> TransformRequest, done: @escaping Completion) {
        condition.lock()
        let accepted = !state.stopping
        if accepted {
            state.jobs.append(Job(request: request, done: done))
            condition.signal()
        }
        condition.unlock()
        if !accepted { done(.failure(.start("the server is stopping"))) }
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
        condition.lock()
        state.stopping = true
        let dropped = Array(state.jobs)
        state.jobs.removeAll()
        condition.broadcast()
        condition.unlock()
        for job in dropped { job.done(.failure(.start("the server is stopping"))) }
    }

    /// The requests waiting, oldest first: this thread's share of them (the others take the
    /// rest), at most 64, at least one; nil once stopping.
    private func nextBatch() -> [Job]? {
        condition.lock()
        defer { condition.unlock() }
        while state.jobs.isEmpty && !state.stopping { condition.wait() }
        guard !state.stopping else { return nil }
        let share = min(64, (state.jobs.count + threads - 1) / threads)
        var batch: [Job] = []
        while batch.count < share, let job = state.jobs.popFirst() { batch.append(job) }
        return batch
    }

    /// Puts requests a failed worker did not run back at the head of the queue.
    private func requeue(_ jobs: [(request: TransformRequest, done: Completion)]) {
        condition.lock()
        state.jobs.insert(contentsOf: jobs.map { job in Job(request: { [request = job.request] in request }, done: job.done) }, at: 0)
        condition.broadcast()
        condition.unlock()
    }

    private func serve() {
        var process: TransformProcess?
        while let jobs = nextBatch() {
            var pending = jobs.map { (request: $0.request(), done: $0.done) }
            // Written to the worker together, as much as a pipe holds (at least one request).
            while !pending.isEmpty {
                var count = 1
                var bytes = pending[0].request.input.count
                while count < pending.count, bytes + pending[count].request.input.count <= TransformProcess.batchBytes {
                    bytes += pending[count].request.input.count
                    count += 1
                }
                let batch = pending.prefix(count)
                pending.removeFirst(count)
                if process?.isAlive != true {
                    do {
                        process = try TransformProcess.start(
                            executable: executable, programs: programs, memoryLimit: memoryLimit, timeout: timeout
                        ).0
                    } catch {
                        process = nil
                        for job in batch { job.done(.failure(error)) }
                        continue
                    }
                }
                let results = process!.run(batch.map(\.request), timeout: timeout)
                var notRun: [(request: TransformRequest, done: Completion)] = []
                for (job, result) in zip(batch, results) {
                    if let result { job.done(result) } else { notRun.append(job) }
                }
                if !notRun.isEmpty {
                    requeue(notRun + pending)
                    pending = []
                }
            }
        }
        process?.kill()
    }
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
