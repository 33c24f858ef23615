import CSQLite

/// Why the journal could not do what was asked: what kind of failure, in words a person can act
/// on, and the database's own error when it was the database that failed.
public struct JournalError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// There is no journal at the path.
        case notFound = "not_found"
        /// Another Waypost server holds the journal.
        case inUse = "in_use"
        /// The journal's schema is not one this Waypost reads.
        case incompatible
        /// The file system refused (the lock file, a journal file removed or replaced).
        case fileSystem = "file_system"
        /// The journal writer has stopped.
        case stopped
        /// The database failed; ``JournalError/cause`` says how.
        case database
    }

    public var code: Code
    public var message: String
    /// The database's error, for ``Code/database``.
    public var cause: SQLiteError?

    public init(_ code: Code, _ message: String, cause: SQLiteError? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// A failure of SQLite itself.
    init(_ cause: SQLiteError) {
        self.init(.database, cause.message, cause: cause)
    }

    public var description: String { cause?.description ?? message }
}

/// An error reported by SQLite: its (extended) result code, its message, and the SQL that
/// failed. See https://www.sqlite.org/rescode.html for the codes.
public struct SQLiteError: Sendable, CustomStringConvertible {
    /// The extended result code (`SQLITE_IOERR_FSYNC`, `SQLITE_FULL`, ...).
    public var extendedCode: Int32
    /// SQLite's message for the error.
    public var message: String
    /// The statement that failed, when there is one.
    public var sql: String?

    /// The primary result code (`SQLITE_FULL`, `SQLITE_BUSY`, `SQLITE_IOERR`, ...).
    public var code: Int32 { extendedCode & 0xFF }

    public var description: String {
        var text = "SQLite error \(extendedCode): \(message)"
        if let sql { text += " (in: \(sql.prefix(120)))" }
        return text
    }
}

/// One SQLite connection. Not thread-safe: each connection is confined to one thread
/// (the journal writer's, or a reader's).
final class SQLiteConnection {
    let handle: OpaquePointer

    /// Opens `path`. `readOnly` connections never create the file.
    init(path: String, readOnly: Bool = false, create: Bool = true) throws(JournalError) {
        var db: OpaquePointer?
        var flags = SQLITE_OPEN_NOMUTEX
        if readOnly {
            flags |= SQLITE_OPEN_READONLY
        } else {
            flags |= SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)
        }
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw JournalError(SQLiteError(extendedCode: rc, message: "cannot open \(path): \(message)", sql: nil))
        }
        sqlite3_extended_result_codes(db, 1)
        self.handle = db
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    func error(_ rc: Int32, sql: String?) -> JournalError {
        JournalError(
            SQLiteError(extendedCode: sqlite3_extended_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), sql: sql))
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` … `COMMIT` transaction, rolled back when it throws
    /// (or when the commit fails).
    func transaction<T>(_ body: () throws(JournalError) -> T) throws(JournalError) -> T {
        try execute("BEGIN IMMEDIATE")
        do throws(JournalError) {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            if sqlite3_get_autocommit(handle) == 0 { try? execute("ROLLBACK") }
            throw error
        }
    }

    /// Runs one or more statements that return no rows.
    func execute(_ sql: String) throws(JournalError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(errorMessage)
            throw JournalError(SQLiteError(extendedCode: sqlite3_extended_errcode(handle), message: message, sql: sql))
        }
    }

    /// Runs a `PASSIVE` checkpoint: copies what it can of the WAL into the database file
    /// without waiting for anyone (readers of older snapshots keep their frames). Returns the
    /// frames the WAL holds and those of them now copied; nil when another connection's
    /// checkpoint was running. With every frame copied, the next write transaction starts the
    /// WAL over from its beginning.
    func checkpointPassive() throws(JournalError) -> (frames: Int64, copied: Int64)? {
        // The PRAGMA rather than sqlite3_wal_checkpoint_v2, which does nothing on a connection
        // that has not read the database yet (it does not know the file is in WAL mode).
        let statement = try prepare("PRAGMA wal_checkpoint(PASSIVE)")
        // One row: busy (another checkpoint ran), frames in the WAL, frames copied.
        guard try statement.step(), statement.int64(0) == 0 else { return nil }
        return (statement.int64(1), statement.int64(2))
    }

    func prepare(_ sql: String) throws(JournalError) -> Statement {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc, sql: sql) }
        return Statement(connection: self, handle: statement, sql: sql)
    }

    /// The single integer a query returns (first column of the first row), or nil.
    func scalarInt(_ sql: String) throws(JournalError) -> Int64? {
        let statement = try prepare(sql)
        return try statement.step() ? statement.int64(0) : nil
    }

    var changes: Int { Int(sqlite3_changes(handle)) }
}

/// A prepared statement, confined to its connection's thread. Reset before each use.
final class Statement {
    private let connection: SQLiteConnection
    let handle: OpaquePointer
    let sql: String

    init(connection: SQLiteConnection, handle: OpaquePointer, sql: String) {
        self.connection = connection
        self.handle = handle
        self.sql = sql
    }

    deinit {
        sqlite3_finalize(handle)
    }

    /// Resets the statement and clears its bindings.
    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ index: Int32, _ value: String?) throws(JournalError) {
        let rc: Int32
        if var value {
            // By its length, not up to a NUL: a text with one is bound whole, as it is.
            if value.isEmpty {
                rc = sqlite3_bind_text(handle, index, "", 0, waypost_sqlite_transient())
            } else {
                rc = value.withUTF8 { utf8 in
                    utf8.withMemoryRebound(to: CChar.self) { text in
                        sqlite3_bind_text(handle, index, text.baseAddress, Int32(text.count), waypost_sqlite_transient())
                    }
                }
            }
        } else {
            rc = sqlite3_bind_null(handle, index)
        }
        guard rc == SQLITE_OK else { throw connection.error(rc, sql: sql) }
    }

    func bind(_ index: Int32, _ value: Int64?) throws(JournalError) {
        let rc = value.map { sqlite3_bind_int64(handle, index, $0) } ?? sqlite3_bind_null(handle, index)
        guard rc == SQLITE_OK else { throw connection.error(rc, sql: sql) }
    }

    func bind(_ index: Int32, blob: [UInt8]) throws(JournalError) {
        let rc = blob.withUnsafeBytes { bytes in
            // A zero-length blob must still be a blob, not NULL: pass a non-nil pointer.
            sqlite3_bind_blob64(
                handle, index, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1), UInt64(bytes.count), waypost_sqlite_transient())
        }
        guard rc == SQLITE_OK else { throw connection.error(rc, sql: sql) }
    }

    /// Advances to the next row; false when done.
    func step() throws(JournalError) -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.error(rc, sql: sql)
        }
    }

    /// Runs a statement that returns no rows, then resets it.
    func run() throws(JournalError) {
        defer { reset() }
        _ = try step()
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    func optionalInt64(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }

    func string(_ column: Int32) -> String? {
        guard let text = sqlite3_column_text(handle, column) else { return nil }
        return String(decoding: UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(handle, column))), as: UTF8.self)
    }

    func blob(_ column: Int32) -> [UInt8]? {
        if isNull(column) { return nil }
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let pointer = sqlite3_column_blob(handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}
