import Foundation
import WaypostCore

#if canImport(Glibc)
    import Glibc
#endif

/// One transform worker process (``TransformWorker``) seen from the server: started with an
/// empty environment, fed requests over a pipe (written ahead of their answers, which come back
/// in order on another), killed when a program runs past its time or its answer past
/// ``maximumAnswerBytes``. Used by one thread at a time (``TransformWorkers``).
final class TransformProcess {
    /// The largest answer read from a worker: a program printing more fails its delivery.
    static let maximumAnswerBytes = 64 << 20

    private let pid: pid_t
    /// Requests go out on this descriptor (the worker's standard input)...
    private let requestPipe: Int32
    /// ...and answers come back on this one (its standard output), non-blocking.
    private let answerPipe: Int32
    private(set) var isAlive = true
    /// Bytes read past the last whole answer.
    private var received: [UInt8] = []
    /// Where the first frame not taken yet starts in ``received``.
    private var taken = 0
    private var readBuffer = [UInt8](repeating: 0, count: 64 << 10)
    /// Per program, jq's compile error or nil, once the worker reported its set-up (the first
    /// frame it sends); nil before.
    private(set) var compileErrors: [String?]?
    private let programCount: Int

    /// How long a worker may take to start and compile its programs.
    static func setUpTime(programs: Int, timeout: Duration) -> Duration {
        max(timeout, .seconds(10)) + .milliseconds(50 * programs)
    }

    /// Starts a worker of `executable` (this binary: `transform-worker` is its hidden
    /// subcommand) and waits until it compiled `programs` under a data-segment cap of
    /// `memoryLimit` bytes.
    ///
    /// - Returns: the process and, per program, jq's compile error or nil.
    static func start(
        executable: String, programs: [String], memoryLimit: Int, timeout: Duration
    ) throws(TransformFailure) -> (TransformProcess, [String?]) {
        let process = try spawn(executable: executable, programs: programs, memoryLimit: memoryLimit)
        // A worker that cannot start its binary at all (a wrong path, a missing library) says
        // nothing: the set-up has its own generous time.
        let deadline = ContinuousClock.now + setUpTime(programs: programs.count, timeout: timeout)
        while process.compileErrors == nil {
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                process.kill()
                throw .start("the transform worker did not report its set-up in time")
            }
            var poller = pollfd(fd: process.answerPipe, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, Int32(clamping: max(1, left.milliseconds)))
            let (_, failure) = process.readAnswers()
            if let failure { throw .start("the transform worker failed to start: \(failure)") }
        }
        return (process, process.compileErrors ?? [])
    }

    /// Starts a worker and sends it its set-up, without waiting: requests may follow at once
    /// (the worker reads them once its programs are compiled). Its report is the first frame it
    /// answers (``compileErrors``).
    static func spawn(executable: String, programs: [String], memoryLimit: Int) throws(TransformFailure) -> TransformProcess {
        var toWorker: [Int32] = [0, 0]
        var fromWorker: [Int32] = [0, 0]
        guard pipe(&toWorker) == 0 else { throw .start("cannot make a pipe: \(String(cString: strerror(errno)))") }
        guard pipe(&fromWorker) == 0 else {
            close(toWorker[0])
            close(toWorker[1])
            throw .start("cannot make a pipe: \(String(cString: strerror(errno)))")
        }
        // Not inherited by anything else this process starts (a worker closes what it inherits).
        for descriptor in toWorker + fromWorker { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toWorker[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromWorker[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let arguments = [executable, "transform-worker"]
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var environment: [UnsafeMutablePointer<CChar>?] = [nil]
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, &argv, &environment)
        close(toWorker[0])
        close(fromWorker[1])
        guard spawned == 0 else {
            close(toWorker[1])
            close(fromWorker[0])
            throw .start("cannot start \(executable) transform-worker: \(String(cString: strerror(spawned)))")
        }
        _ = fcntl(fromWorker[0], F_SETFL, fcntl(fromWorker[0], F_GETFL) | O_NONBLOCK)
        let process = TransformProcess(pid: pid, requestPipe: toWorker[1], answerPipe: fromWorker[0], programs: programs.count)
        let programList = "[" + programs.map(JSON.quote).joined(separator: ",") + "]"
        guard writeFrame(bigEndian(UInt64(memoryLimit)) + Array(programList.utf8), to: process.requestPipe) else {
            throw process.died()
        }
        return process
    }

    private init(pid: pid_t, requestPipe: Int32, answerPipe: Int32, programs: Int) {
        self.pid = pid
        self.requestPipe = requestPipe
        self.answerPipe = answerPipe
        self.programCount = programs
    }

    deinit { kill() }

    /// The descriptor answers arrive on (for `poll`).
    var answerDescriptor: Int32 { answerPipe }

    /// Writes `requests`, in order. Their answers come in the same order (``readAnswers()``).
    ///
    /// Unless the worker has nothing outstanding, the requests written and not answered must
    /// fit in a pipe (``batchBytes``): a write then never waits for a worker that is itself
    /// waiting for its answers to be read.
    func send(_ requests: some Sequence<TransformRequest>) throws(TransformFailure) {
        guard isAlive else { throw .crashed("the transform worker is gone") }
        var frames: [UInt8] = []
        for request in requests { request.appendFrame(to: &frames) }
        // A worker that ended is collected by readAnswers, once what it answered is read.
        guard writeAll(frames, to: requestPipe) else { throw .crashed("the transform worker ended") }
    }

    /// The answers that have arrived, without waiting, in order; then, when the worker ended
    /// (how), answered more than ``maximumAnswerBytes`` or something that is not an answer
    /// (it is then killed), the failure of the request after them.
    func readAnswers() -> (answers: [TransformAnswer], failure: TransformFailure?) {
        var ended = false
        while true {
            let count = readBuffer.withUnsafeMutableBytes { read(answerPipe, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && errno == EAGAIN { break }
            guard count > 0 else {
                ended = true
                break
            }
            if taken > 0 {
                received.removeFirst(taken)
                taken = 0
            }
            received += readBuffer[..<count]
        }
        var answers: [TransformAnswer] = []
        do {
            while let frame = try takeFrame() {
                guard compileErrors != nil else {
                    guard case .array(let reports) = JSONValue.parse(frame), reports.count == programCount else {
                        kill()
                        return (answers, .crashed("the transform worker answered its set-up with something else than its report"))
                    }
                    compileErrors = reports.map { report in if case .string(let message) = report { message } else { nil } }
                    continue
                }
                guard let answer = TransformAnswer(frame: frame) else {
                    kill()
                    return (answers, .crashed("the transform worker answered with something it should not"))
                }
                answers.append(answer)
            }
        } catch {
            return (answers, error)
        }
        return (answers, ended ? died() : nil)
    }

    /// The next whole frame of ``received``, if there is one.
    private func takeFrame() throws(TransformFailure) -> [UInt8]? {
        guard received.count - taken >= 4 else { return nil }
        let length = readBigEndian(received[taken..<(taken + 4)])
        guard length <= Self.maximumAnswerBytes else {
            kill()
            throw .tooLarge(Self.maximumAnswerBytes)
        }
        guard received.count - taken >= 4 + length else { return nil }
        defer { taken += 4 + length }
        return Array(received[(taken + 4)..<(taken + 4 + length)])
    }

    /// How many bytes of requests may be outstanding on a worker (a pipe holds 64 KiB).
    static let batchBytes = 48 << 10

    /// The worker ended: how (out of memory, a signal, an exit).
    private func died() -> TransformFailure {
        let status = reap()
        if status.exited && status.code == TransformWorker.outOfMemoryStatus { return .outOfMemory }
        return .crashed(
            status.exited
                ? "the transform worker exited with status \(status.code)" : "the transform worker was killed by signal \(status.code)")
    }

    /// Kills the worker (if it still runs) and collects it.
    func kill() {
        guard isAlive else { return }
        _ = Glibc.kill(pid, SIGKILL)
        received = []
        taken = 0
        _ = reap()
    }

    private func reap() -> (exited: Bool, code: Int32) {
        var status: Int32 = 0
        if isAlive {
            isAlive = false
            close(requestPipe)
            close(answerPipe)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        // WIFEXITED and friends are macros Swift does not import.
        let signal = status & 0x7F
        return signal == 0 ? (true, (status >> 8) & 0xFF) : (false, signal)
    }
}

/// Why a transform or reply program produced nothing (SPEC §11): these fail the delivery, never
/// the server.
public enum TransformFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The worker could not start.
    case start(String)
    /// The program ran past `transform_timeout`.
    case timedOut(Duration)
    /// The program ran past the memory cap.
    case outOfMemory
    /// The program's output is larger than the worker may answer.
    case tooLarge(Int)
    /// The worker died for another reason.
    case crashed(String)

    public var description: String {
        switch self {
        case .start(let message): message
        case .timedOut(let timeout): "the program ran past transform_timeout (\(timeout)) and was stopped"
        case .outOfMemory: "the program ran past its memory cap (transform_memory) and was stopped"
        case .tooLarge(let limit): "the program's output is larger than \(limit) bytes"
        case .crashed(let message): message
        }
    }
}
