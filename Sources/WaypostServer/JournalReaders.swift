import NIOCore
import NIOPosix
import Synchronization
import WaypostJournal

/// Journal reads for the status API, off the event loops: the journal's readers block, so reads
/// run on a small thread pool, each on a reading connection taken from a free list (connections
/// are reused; each is used by one thread at a time).
final class JournalReaders: Sendable {
    /// A reader moved between threads; the free list's lock hands it to one thread at a time.
    private final class Box: @unchecked Sendable {
        let reader: any JournalReading
        init(_ reader: any JournalReading) { self.reader = reader }
    }

    private let journal: any Journal
    private let pool: NIOThreadPool
    private let free = Mutex<[Box]>([])

    init(journal: any Journal, threads: Int = 2) {
        self.journal = journal
        self.pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
    }

    /// Runs `body` with a reader on the pool and completes on `eventLoop`.
    func read<T: Sendable>(on eventLoop: any EventLoop, _ body: @escaping @Sendable (any JournalReading) throws -> T) -> EventLoopFuture<T>
    {
        perform(on: eventLoop) { [self] in
            let box = try free.withLock { $0.popLast() } ?? Box(journal.reader())
            defer { free.withLock { $0.append(box) } }
            return try body(box.reader)
        }
    }

    /// Runs `body` as ``read(on:_:)`` does, once a final outcome of message `correlationID`
    /// that the forwarder published on `board` is also recorded: a read never shows an older
    /// state than a waiting source was told.
    func read<T: Sendable>(
        message correlationID: String, after board: OutcomeBoard?, on eventLoop: any EventLoop,
        _ body: @escaping @Sendable (any JournalReading) throws -> T
    ) -> EventLoopFuture<T> {
        guard let board else { return read(on: eventLoop, body) }
        let promise = eventLoop.makePromise(of: T.self)
        board.afterRecorded(correlationID) { [self] in read(on: eventLoop, body).cascade(to: promise) }
        return promise.futureResult
    }

    /// Runs blocking journal work (an operator action) on the pool; completes on `eventLoop`.
    func perform<T: Sendable>(on eventLoop: any EventLoop, _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        pool.runIfActive(eventLoop: eventLoop, body)
    }

    func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}
