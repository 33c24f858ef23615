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
/// order they came and stream them to the worker (up to a pipe's worth outstanding, so that a
/// busy pool waits for no round trip per request), and hand each answer to the request's
/// callback on that thread as it arrives.
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

    /// This thread's share of the requests waiting, oldest first (the other threads take the
    /// rest), at most `limit`; when `wait`, at least one, waiting for it. Nil once stopping.
    private func take(limit: Int, wait: Bool) -> [Job]? {
        condition.lock()
        defer { condition.unlock() }
        while wait && state.jobs.isEmpty && !state.stopping { condition.wait() }
        guard !state.stopping else { return nil }
        let share = min(limit, (state.jobs.count + threads - 1) / threads)
        var jobs: [Job] = []
        while jobs.count < share, let job = state.jobs.popFirst() { jobs.append(job) }
        return jobs
    }

    /// Puts requests back at the head of the queue.
    private func requeue(_ jobs: some Collection<Pending>) {
        condition.lock()
        state.jobs.insert(contentsOf: jobs.map { job in Job(request: { [request = job.request] in request }, done: job.done) }, at: 0)
        condition.broadcast()
        condition.unlock()
    }

    private typealias Pending = (request: TransformRequest, done: Completion)

    /// A thread's life: answers go to their callbacks as they arrive, and after each arrival
    /// (or, idle, at once) the requests waiting go to the worker, at most ``maxOutstanding``
    /// and ``TransformProcess/batchBytes`` unanswered: a busy thread takes new requests when it
    /// wakes for answers anyway, not once more for each. Each request has `timeout` from the moment the worker can start it (written, or
    /// the answer before it arrived). A worker that fails fails the request it was running; the
    /// requests behind it go to a new worker.
    private func serve() {
        var process: TransformProcess?
        var outstanding: Deque<Pending> = []  // written, not answered, in order
        var outstandingBytes = 0
        var waiting: Deque<Pending> = []  // taken, not written
        var headSince = ContinuousClock.now
        func fail(_ failure: TransformFailure) {
            // The request the worker was running fails; those behind it are tried again.
            if let head = outstanding.popFirst() { head.done(.failure(failure)) }
            waiting.insert(contentsOf: outstanding, at: 0)
            outstanding.removeAll()
            outstandingBytes = 0
            process = nil
        }
        while true {
            let idle = outstanding.isEmpty && waiting.isEmpty
            guard let jobs = take(limit: Self.maxOutstanding - outstanding.count - waiting.count, wait: idle) else { break }
            waiting += jobs.map { ($0.request(), $0.done) }
            if process?.isAlive != true {
                process = nil
                do {
                    process = try TransformProcess.start(
                        executable: executable, programs: programs, memoryLimit: memoryLimit, timeout: timeout
                    ).0
                } catch {
                    for job in waiting { job.done(.failure(error)) }
                    waiting.removeAll()
                    continue
                }
            }
            guard let worker = process else { continue }
            var batch: [Pending] = []
            while let next = waiting.first,
                outstanding.isEmpty && batch.isEmpty || outstandingBytes + next.request.input.count <= TransformProcess.batchBytes
            {
                batch.append(waiting.removeFirst())
                outstandingBytes += next.request.input.count
            }
            if !batch.isEmpty {
                if outstanding.isEmpty { headSince = .now }
                outstanding += batch
                do {
                    try worker.send(batch.map(\.request))
                } catch {
                    fail(error)
                    continue
                }
            }
            guard !outstanding.isEmpty else { continue }
            // Wait for answers until the running request's time is up.
            let left = headSince + timeout - .now
            if left <= .zero {
                worker.kill()
                fail(.timedOut(timeout))
                continue
            }
            var poller = pollfd(fd: worker.answerDescriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(clamping: max(1, left.milliseconds))) > 0 else { continue }
            let (answers, failure) = worker.readAnswers()
            for answer in answers {
                guard let job = outstanding.popFirst() else { break }
                outstandingBytes -= job.request.input.count
                job.done(.success(answer))
                headSince = .now
            }
            if let failure { fail(failure) }
        }
        // Stopping: what this thread holds fails like what was still queued.
        for job in outstanding + waiting { job.done(.failure(.start("the server is stopping"))) }
        process?.kill()
    }

    /// The most requests one thread holds at once (written or about to be).
    private static let maxOutstanding = 32
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
