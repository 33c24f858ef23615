import Foundation
import Logging
import Synchronization

/// Copies the WAL back into the database file on a thread of its own, so the writer thread
/// (which runs with `wal_autocheckpoint = 0`) never stops committing to do it. `PASSIVE`
/// checkpoints never block the writer or the readers.
///
/// The WAL starts over from its beginning only when a write transaction begins with all of
/// it copied, which a writer that keeps committing during the copy never sees: under steady
/// load the WAL grew for as long as the load lasted (hundreds of MB in a benchmark run). So
/// after each round of passes the writer takes a cue (``takeCatchUpCue()``) to copy the few
/// frames it committed meanwhile itself, between two of its transactions. The WAL then stays
/// small, and its writes go to blocks the file already has, which `fdatasync` flushes faster
/// than appended ones (the benchmarks' probe: 0.07 against 0.12-0.16 ms).
final class Checkpointer: @unchecked Sendable {
    // @unchecked Sendable: `stopping` and `exited` are guarded by `condition`; `db` is touched
    // only by the checkpointer thread.
    private let condition = NSCondition()
    private var started = false
    private var stopping = false
    private var exited = false
    private let db: SQLiteConnection
    private let interval: TimeInterval
    private let logger: Logger
    private let passDone = Atomic<Bool>(false)
    /// A pass this quick, that left no more frames than `fewFrames` behind (frames a reader's
    /// snapshot still needed), ends a round.
    static let shortPass = Duration.milliseconds(3)
    static let fewFrames: Int64 = 100
    static let maxPasses = 8

    init(path: String, interval: TimeInterval = 0.5, logger: Logger) throws(JournalError) {
        db = try SQLiteConnection(path: path, create: false)
        try db.execute("PRAGMA busy_timeout = 5000")
        self.interval = interval
        self.logger = logger
    }

    /// Starts the checkpoint thread.
    func start() {
        condition.lock()
        defer { condition.unlock() }
        guard !started, !stopping else { return }
        started = true
        startDedicatedThread(named: "wp-checkpoint") { [self] in loop() }
    }

    private func loop() {
        while true {
            condition.lock()
            let deadline = Date().addingTimeInterval(interval)
            while !stopping && Date() < deadline { _ = condition.wait(until: deadline) }
            let stop = stopping
            condition.unlock()
            do {
                try round(stopping: stop)
                passDone.store(true, ordering: .releasing)
            } catch {
                logger.warning("journal checkpoint failed", metadata: ["error": "\(error)"])
            }
            if stop { break }
        }
        condition.lock()
        exited = true
        condition.broadcast()
        condition.unlock()
    }

    /// Passes until one is quick and leaves few frames behind, at most `maxPasses`: each
    /// copies what was committed during the one before, so they get shorter, and the writer's
    /// catch-up has only a millisecond or so of frames left to copy. One pass when stopping.
    private func round(stopping: Bool) throws(JournalError) {
        for _ in 0..<(stopping ? 1 : Self.maxPasses) {
            let started = ContinuousClock.now
            // nil: the writer's catch-up is running.
            guard let pass = try db.checkpointPassive() else { return }
            if ContinuousClock.now - started <= Self.shortPass && pass.frames - pass.copied <= Self.fewFrames { return }
        }
    }

    /// Whether a round has ended since the last call: the writer's cue to catch up.
    func takeCatchUpCue() -> Bool {
        passDone.exchange(false, ordering: .acquiring)
    }

    /// Runs a last pass and waits for the thread to end.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while started && !exited { condition.wait() }
        condition.unlock()
    }
}
