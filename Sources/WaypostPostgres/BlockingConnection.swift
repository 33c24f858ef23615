import Dispatch
import Logging
import PostgresNIO
import Synchronization
import WaypostJournal

/// One PostgreSQL connection used synchronously: by the journal's readers and operator actions,
/// which run on threads of their own (the forwarder's, the status API's pool, a CLI command's
/// main thread) and block them while a statement runs, as the SQLite journal's do. Each call
/// has `timeout`; after a failure the connection is dropped, and the next call opens another.
/// Confined to one thread at a time.
final class BlockingConnection {
    private let connect: @Sendable () async throws -> PostgresConnection
    private let timeout: Duration
    let logger: Logger
    private var connection: PostgresConnection?

    init(connect: @escaping @Sendable () async throws -> PostgresConnection, timeout: Duration, logger: Logger) {
        self.connect = connect
        self.timeout = timeout
        self.logger = logger
    }

    deinit {
        if let connection { Task { try? await connection.close() } }
    }

    /// Runs `body` on the connection (opened first if there is none), blocking this thread.
    func run<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws(JournalError) -> T {
        let (connect, timeout, current) = (connect, timeout, connection)
        do {
            // A connection that answers only after the timeout is closed then.
            let (open, result) = try blocking {
                try await withTimeout(timeout, late: { try? await $0.0.close() }) { () async throws -> (PostgresConnection, T) in
                    let open: PostgresConnection
                    if let current, !current.isClosed { open = current } else { open = try await connect() }
                    do {
                        return (open, try await body(open))
                    } catch {
                        if open !== current { try? await open.close() }
                        throw error
                    }
                }
            }
            connection = open
            return result
        } catch {
            if let current { Task { try? await current.close() } }
            connection = nil
            throw JournalError(.database, PostgresJournalError(error).description)
        }
    }

    /// Every row of `query`, decoded.
    func rows<Row: Sendable>(
        _ query: PostgresQuery, _ decode: @escaping @Sendable (PostgresRow) throws -> Row
    ) throws(JournalError) -> [Row] {
        let logger = logger
        return try run { connection in
            var rows: [Row] = []
            for try await row in try await connection.query(query, logger: logger) { rows.append(try decode(row)) }
            return rows
        }
    }

    /// Runs `body` in one transaction on the connection.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws(JournalError) -> T {
        let logger = logger
        return try run { connection in
            do {
                return try await connection.withTransaction(logger: logger) { try await body($0) }
            } catch let error as PostgresTransactionError {
                throw error.closureError ?? error.commitError ?? error.beginError ?? error
            }
        }
    }
}

extension PostgresRandomAccessRow {
    /// Column `index` as `T`.
    func at<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws -> T {
        try self[index].decode(T.self)
    }
}

/// Runs `body` on Swift's concurrency pool and blocks the calling thread until it returns: for
/// the journal's synchronous readers, which run on threads of their own, never on the pool.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let result = Slot<Result<T, any Error>>()
    Task {
        let outcome: Result<T, any Error>
        do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        result.value.withLock { $0 = outcome }
        done.signal()
    }
    done.wait()
    return try result.value.withLock { $0! }.get()
}

/// A value handed from one task or thread to another.
private final class Slot<Value: Sendable>: Sendable {
    let value = Mutex<Value?>(nil)
}
