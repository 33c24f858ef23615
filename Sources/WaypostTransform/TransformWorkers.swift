import DequeModule
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A few transform worker processes (``TransformProcess``) and the requests on their way through
/// them, driven by one thread that polls ``descriptors`` beside its own (the forwarder's libcurl
/// loop, or a ``TransformPool``'s thread) and calls ``collect()`` when one is ready or
/// ``nextDeadline`` has come.
///
/// A request goes to the worker with the fewest outstanding, at once, as long as what that
/// worker has unanswered fits in a pipe (``TransformProcess/batchBytes``); the answers come back
/// in order. Each request has `timeout` from the moment its worker can start it (written to an
/// idle worker, or the answer before it arrived). A worker that fails (past its time, out of
/// memory, crashed) fails the request it was running, and the requests behind it go to a new
/// worker. Starting a worker waits for nothing: its set-up report is the first frame it
/// answers. Not thread-safe: one thread owns it.
public final class TransformWorkers {
    public typealias Result = Swift.Result<TransformAnswer, TransformFailure>

    private struct Request {
        let tag: Int64
        let request: TransformRequest
        /// Written to its worker (a write can fail when the worker just ended).
        var written = false
    }

    private final class Slot {
        var process: TransformProcess?
        var outstanding: Deque<Request> = []
        var bytes = 0
        /// When the first outstanding request could start (or the worker was started).
        var headSince = ContinuousClock.now
    }

    private let executable: String
    private let programs: [String]
    private let memoryLimit: Int
    private let timeout: Duration
    private let slots: [Slot]
    private var waiting: Deque<Request> = []
    /// Ends decided without a worker's answer (a worker that could not start), for ``collect()``.
    private var decided: [(tag: Int64, result: Result)] = []

    public init(_ setup: TransformSetup) {
        executable = setup.executable
        programs = setup.programs
        memoryLimit = setup.memoryLimit
        timeout = setup.timeout
        slots = (0..<max(1, setup.workers)).map { _ in Slot() }
        // A worker that died makes the next write to it fail, not the server.
        signal(SIGPIPE, SIG_IGN)
    }

    deinit { for slot in slots { slot.process?.kill() } }

    /// Starts every worker now, so that the first requests find them compiled (a worker's
    /// start takes a process's start and its programs' compilation). Call it on the owning
    /// thread: a worker dies with the thread that started it. A worker that cannot start is
    /// started again by the first request.
    public func warmUp() {
        for slot in slots where slot.process == nil { try? start(slot) }
    }

    /// Starts `slot`'s worker; its set-up has its time from now.
    private func start(_ slot: Slot) throws(TransformFailure) {
        slot.process = try TransformProcess.spawn(executable: executable, programs: programs, memoryLimit: memoryLimit)
        slot.headSince = .now
    }

    /// Runs `request`; its end comes from ``collect()`` with `tag`.
    public func submit(tag: Int64, _ request: TransformRequest) {
        waiting.append(Request(tag: tag, request: request))
        dispatch()
    }

    /// The descriptors the answers arrive on, to poll for reading.
    public var descriptors: [Int32] {
        slots.compactMap { $0.process?.answerDescriptor }
    }

    /// When ``collect()`` must run even if no descriptor is ready: the first request's time
    /// running out, or now when ends are waiting to be collected; nil when nothing is on its way.
    public var nextDeadline: ContinuousClock.Instant? {
        decided.isEmpty ? slots.compactMap(deadline(of:)).min() : .now
    }

    /// The requests that ended since the last call, in the order each worker answered them:
    /// reads what the workers answered, fails the requests past their time, and sends what is
    /// waiting to the workers that have room.
    public func collect() -> [(tag: Int64, result: Result)] {
        var ended = decided
        decided = []
        let now = ContinuousClock.now
        for slot in slots {
            guard let process = slot.process else { continue }
            let starting = process.compileErrors == nil
            let (answers, failure) = process.readAnswers()
            // The worker just reported its set-up: the request at the head starts now.
            if starting && process.compileErrors != nil { slot.headSince = now }
            for answer in answers {
                guard let request = slot.outstanding.popFirst() else { break }
                slot.bytes -= request.request.input.count
                ended.append((request.tag, .success(answer)))
                slot.headSince = now
            }
            if let failure {
                fail(slot, failure, into: &ended)
            } else if let deadline = deadline(of: slot), deadline <= now {
                process.kill()
                fail(
                    slot, process.compileErrors == nil ? .start("the transform worker did not start in time") : .timedOut(timeout),
                    into: &ended)
            }
        }
        dispatch()
        ended += decided
        decided = []
        return ended
    }

    /// Kills the workers; the requests on their way end with `failure`.
    public func stop(failing failure: TransformFailure) -> [(tag: Int64, result: Result)] {
        var ended = decided
        decided = []
        for slot in slots {
            slot.process?.kill()
            slot.process = nil
            ended += slot.outstanding.map { ($0.tag, .failure(failure)) }
            slot.outstanding = []
            slot.bytes = 0
        }
        ended += waiting.map { ($0.tag, .failure(failure)) }
        waiting = []
        return ended
    }

    /// When the slot's first outstanding request (or its worker's set-up) is out of time.
    private func deadline(of slot: Slot) -> ContinuousClock.Instant? {
        guard let process = slot.process else { return nil }
        if process.compileErrors == nil {
            return slot.headSince + TransformProcess.setUpTime(programs: programs.count, timeout: timeout)
        }
        return slot.outstanding.isEmpty ? nil : slot.headSince + timeout
    }

    /// The worker failed: the request it was running fails, and those behind it wait for
    /// another worker. A worker that failed before it reported its set-up fails them all: the
    /// next would fail the same way.
    private func fail(_ slot: Slot, _ failure: TransformFailure, into ended: inout [(tag: Int64, result: Result)]) {
        if slot.process?.compileErrors == nil {
            ended += slot.outstanding.map { ($0.tag, .failure(failure)) }
            slot.outstanding = []
        } else if let head = slot.outstanding.first, head.written {
            slot.outstanding.removeFirst()
            ended.append((head.tag, .failure(failure)))
        }
        waiting.insert(contentsOf: slot.outstanding.map { Request(tag: $0.tag, request: $0.request) }, at: 0)
        slot.outstanding = []
        slot.bytes = 0
        slot.process = nil
    }

    /// Sends the waiting requests, in order, to the workers with room, the least busy first:
    /// one write per worker.
    private func dispatch() {
        var batches = [[TransformRequest]](repeating: [], count: slots.count)
        while let next = waiting.first {
            let index = slots.indices.min { slots[$0].outstanding.count < slots[$1].outstanding.count }!
            let slot = slots[index]
            guard slot.outstanding.isEmpty || slot.bytes + next.request.input.count <= TransformProcess.batchBytes else { break }
            if slot.process == nil {
                do {
                    try start(slot)
                } catch {
                    // No worker starts: what waits fails now rather than waiting for ever.
                    decided += waiting.map { ($0.tag, .failure(error)) }
                    waiting = []
                    break
                }
            }
            waiting.removeFirst()
            if slot.outstanding.isEmpty && slot.process?.compileErrors != nil { slot.headSince = .now }
            slot.outstanding.append(Request(tag: next.tag, request: next.request, written: true))
            slot.bytes += next.request.input.count
            batches[index].append(next.request)
        }
        for (slot, batch) in zip(slots, batches) where !batch.isEmpty {
            do {
                try slot.process?.send(batch)
            } catch {
                // The worker ended: ``collect()`` reads what it answered, sees the end, and sends
                // these again to another worker.
                for index in slot.outstanding.indices.suffix(batch.count) { slot.outstanding[index].written = false }
            }
        }
    }
}
