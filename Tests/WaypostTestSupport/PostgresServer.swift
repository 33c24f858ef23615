import Foundation
import Synchronization
import Testing

/// A PostgreSQL server of a test's own (SPEC §12): Debian's `postgresql` binaries, `initdb` in a
/// scratch directory and `pg_ctl start` on a free loopback port, run as the `postgres` user when
/// the tests run as root (PostgreSQL refuses to run as root). `stop()` ends it and removes its
/// files.
///
/// Where it cannot start (no binaries, not root and not `postgres`), ``start()`` cancels the
/// calling test, saying why, unless `POSTGRES_REQUIRED` is set (CI sets it): then it fails.
public final class PostgresServer: Sendable {
    public let port: Int
    public let directory: ScratchDirectory
    private let binaries: String
    private let owner: String?

    /// The database the tests use, owned by `waypost` (password `waypost`; the server trusts
    /// loopback only for `postgres`).
    public var url: String { "postgres://waypost@127.0.0.1:\(port)/waypost" }
    public static let password = "waypost"

    private init(port: Int, directory: ScratchDirectory, binaries: String, owner: String?) {
        self.port = port
        self.directory = directory
        self.binaries = binaries
        self.owner = owner
    }

    /// A database of its own for the caller, owned by `waypost`, on one server that the whole
    /// test run shares (started on first use, stopped when the test process exits): for tests
    /// that need a journal, not a server they can stop. Tests that do start servers of their
    /// own (``start()``) each add a second or so of CPU; on two cores, dozens of them at once
    /// made other tests' timings fail.
    public static func database() async throws -> PostgresDatabase {
        _ = try requirements()
        let starting = sharedServer.withLock { shared in
            if let shared { return shared }
            let task = Task { try await start() }
            shared = task
            return task
        }
        let server = try await starting.value
        runningShared.withLock { $0 = server }
        let name = "journal_\(nextDatabase.add(1, ordering: .relaxed).newValue)"
        try server.psql("CREATE DATABASE \(name) OWNER waypost", database: "postgres")
        return PostgresDatabase(server: server, name: name)
    }

    /// The server ``database()`` shares, once started.
    private static let sharedServer = Mutex<Task<PostgresServer, any Error>?>(nil)
    private static let nextDatabase = Atomic<Int>(0)

    /// The shared server once it runs, for ``stopSharedAtExit``.
    private static let runningShared = Mutex<PostgresServer?>(nil)

    /// Stops the shared server when the test process exits.
    private static let stopSharedAtExit: Void = {
        atexit { PostgresServer.runningShared.withLock { $0 }?.stop() }
    }()

    /// PostgreSQL's binaries, and the user to run them as (nil: this one); cancels the calling
    /// test, saying why, where there is none (fails it with `POSTGRES_REQUIRED`).
    private static func requirements() throws -> (binaries: String, owner: String?) {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let version = versions.compactMap(Int.init).max() else {
            try unavailable("PostgreSQL is not installed (apt-get install postgresql)")
        }
        switch geteuid() {
        case 0: return ("/usr/lib/postgresql/\(version)/bin", "postgres")
        case getpwnam("postgres")?.pointee.pw_uid: return ("/usr/lib/postgresql/\(version)/bin", nil)
        default: try unavailable("PostgreSQL must run as the postgres user, and the tests run neither as root nor as postgres")
        }
    }

    /// Starts a new server and creates the `waypost` role and database.
    public static func start() async throws -> PostgresServer {
        let (binaries, owner) = try requirements()
        let directory = try scratch(owner: owner)
        // A copy of one cluster made by initdb for the whole test run: initdb costs a second
        // of CPU, a copy next to nothing.
        let template = try template.withLock { made in
            if let made { return made }
            stopAbandoned(binaries: binaries, owner: owner)
            let template = try scratch(owner: owner)
            let password = try template.write("password", password + "\n")
            if let owner, let user = getpwnam(owner)?.pointee { _ = chown(password, user.pw_uid, user.pw_gid) }
            try run(
                owner, binaries + "/initdb",
                [
                    "-D", template.file("data"), "-U", "postgres", "-A", "scram-sha-256", "--pwfile", password, "-E", "UTF8", "--locale",
                    "C.UTF-8",
                ])
            made = template.path
            return template.path
        }
        try run(nil, "/bin/cp", ["-a", template + "/data", directory.file("data")])
        var lastError = ""
        for _ in 0..<5 {
            let server = PostgresServer(port: try freePort(), directory: directory, binaries: binaries, owner: owner)
            do {
                try server.resume()
            } catch {
                lastError = "\(error)"
                server.halt()
                continue
            }
            do {
                _ = Self.stopSharedAtExit
                try server.psql("CREATE ROLE waypost LOGIN PASSWORD '\(Self.password)'", database: "postgres")
                try server.psql("CREATE DATABASE waypost OWNER waypost", database: "postgres")
                return server
            } catch {
                server.stop()
                throw error
            }
        }
        directory.remove()
        throw CommandFailed(description: "PostgreSQL did not start: \(lastError)")
    }

    /// Starts the server (again, after ``halt()``) on its port, and waits until it takes connections.
    public func resume() throws {
        try Self.run(
            owner, binaries + "/pg_ctl",
            [
                "-D", directory.file("data"), "-l", directory.file("server.log"), "-w", "-t", "30", "start", "-o",
                "-c listen_addresses=127.0.0.1 -c port=\(port) -c unix_socket_directories='\(directory.path)' -c fsync=on -c max_connections=300",
            ])
    }

    /// Stops the server (fast shutdown: connections are closed), keeping its files.
    public func halt() {
        _ = try? Self.run(owner, binaries + "/pg_ctl", ["-D", directory.file("data"), "-m", "fast", "-w", "stop"])
    }

    /// Runs `sql` through `psql` as the superuser, over the server's socket; returns its output
    /// (unaligned, tuples only).
    @discardableResult
    public func psql(_ sql: String, database: String = "waypost") throws -> String {
        try Self.run(
            owner, binaries + "/psql",
            ["-h", directory.path, "-p", "\(port)", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
            environment: ["PGPASSWORD": Self.password])
    }

    /// Stops the server and removes its files.
    public func stop() {
        halt()
        directory.remove()
    }

    /// The cluster directory initdb made for this test run, copied for each server.
    private static let template = Mutex<String?>(nil)

    /// A scratch directory for `owner`, marked with this test run's pid (see ``stopAbandoned``).
    private static func scratch(owner: String?) throws -> ScratchDirectory {
        let directory = try ScratchDirectory()
        if let owner, let user = getpwnam(owner)?.pointee { _ = chown(directory.path, user.pw_uid, user.pw_gid) }
        _ = try directory.write("tests.pid", "\(getpid())")
        return directory
    }

    /// Stops and removes the servers (and the template) of test runs that ended or were killed
    /// (their `tests.pid` names a process that is gone): nothing else would ever stop them.
    private static func stopAbandoned(binaries: String, owner: String?) {
        let temporary = FileManager.default.temporaryDirectory.path
        for name in (try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? [] where name.hasPrefix("waypost-tests-") {
            let directory = temporary + "/" + name
            guard let text = try? String(contentsOfFile: directory + "/tests.pid", encoding: .utf8),
                let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                kill(pid, 0) != 0 && errno == ESRCH
            else { continue }
            _ = try? run(owner, binaries + "/pg_ctl", ["-D", directory + "/data", "-m", "immediate", "-w", "stop"])
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    private static func unavailable(_ reason: String) throws -> Never {
        if ProcessInfo.processInfo.environment["POSTGRES_REQUIRED"] != nil {
            throw CommandFailed(description: "POSTGRES_REQUIRED is set, but \(reason)")
        }
        try Test.cancel("skipped: \(reason)")
    }

    /// Runs `executable` (as `owner` when given), waits, and returns its standard output.
    @discardableResult
    private static func run(
        _ owner: String?, _ executable: String, _ arguments: [String], environment: [String: String] = [:]
    ) throws -> String {
        var settings = ProcessInfo.processInfo.environment
        settings.merge(environment) { $1 }
        let (path, argv) = owner.map { ("/usr/sbin/runuser", ["-u", $0, "--", executable] + arguments) } ?? (executable, arguments)
        let child = try ChildProcess(path, argv, environment: settings, directory: "/")
        let status = child.waitUntilExit()
        child.stdout?.waitForEndBlocking()
        child.stderr?.waitForEndBlocking()
        guard status == 0 else {
            throw CommandFailed(
                description: "\(executable) \(arguments.joined(separator: " ")) exited \(status): \(child.stderr?.text ?? "")")
        }
        return (child.stdout?.text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A loopback port nothing listened on a moment ago.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CommandFailed(description: "socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw CommandFailed(description: "bind: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A database of a test's own on the shared server (``PostgresServer/database()``).
public struct PostgresDatabase: Sendable {
    public let server: PostgresServer
    public let name: String

    /// Its URL with the password: what `--journal` takes.
    public var url: String {
        "postgres://waypost:\(PostgresServer.password)@127.0.0.1:\(server.port)/\(name)"
    }

    /// Runs `sql` in this database through `psql`; its output (unaligned, tuples only).
    @discardableResult
    public func psql(_ sql: String) throws -> String {
        try server.psql(sql, database: name)
    }

    /// Removes the database, closing its connections.
    public func drop() {
        _ = try? server.psql("DROP DATABASE IF EXISTS \(name) WITH (FORCE)", database: "postgres")
    }
}
