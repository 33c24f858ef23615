import Foundation
import Testing
import WaypostTestSupport

@testable import WaypostPostgres

@Suite("journal.url: a PostgreSQL journal's location and password, as libpq finds them")
struct PostgresLocationTests {
    @Test("URLs that name a server, a user and a database")
    func accepted() throws {
        let table: [(String, String)] = [
            ("postgres://waypost@db.example/journal", "postgres://waypost@db.example:5432/journal?sslmode=prefer"),
            (
                "postgresql://waypost@10.0.0.7:6432/journal?sslmode=verify-full",
                "postgres://waypost@10.0.0.7:6432/journal?sslmode=verify-full"
            ),
            ("postgres://way%40post@[::1]:5433/j%2Dx?sslmode=disable", "postgres://way@post@[::1]:5433/j-x?sslmode=disable"),
            ("postgres://w@h/d?application_name=x&connect_timeout=5", "postgres://w@h:5432/d?sslmode=prefer"),
        ]
        for (url, described) in table {
            let location = try PostgresLocation(url: url, environment: [:])
            #expect(location.description == described, "\(url)")
        }
        let location = try PostgresLocation(url: "postgres://u:s%3Acret@h/d", environment: [:])
        #expect(location.password == "s:cret")
        #expect(!location.description.contains("cret"))
    }

    @Test("bad URLs are refused, saying what is wrong and never echoing a password")
    func refused() {
        let table: [(String, String)] = [
            ("mysql://u@h/d", "is not a URL of the form postgres://USER@HOST:PORT/DATABASE"),
            ("postgres://u@h/d#x", "is not a URL of the form postgres://USER@HOST:PORT/DATABASE"),
            ("postgres:///d", "names no host"),
            ("postgres://h/d", "names no user (postgres://USER@HOST/DATABASE)"),
            ("postgres://u@h", "names no database (postgres://USER@HOST/DATABASE)"),
            ("postgres://u@h/", "names no database (postgres://USER@HOST/DATABASE)"),
            ("postgres://u@h/d/e", "names no database (postgres://USER@HOST/DATABASE)"),
            ("postgres://u@h:0/d", "has port 0, not 1–65535"),
            (
                "postgres://u:secret@h/d?sslmode=always",
                "has sslmode 'always'; it must be one of disable, allow, prefer, require, verify-ca, verify-full"
            ),
            ("postgres://u@h/d?sslrootcert=/x", "has the parameter 'sslrootcert', which Waypost does not know (it knows sslmode)"),
        ]
        for (url, problem) in table {
            #expect(throws: PostgresLocationError(problem), "\(url)") { try PostgresLocation(url: url, environment: [:]) }
        }
    }

    @Test("the password: the URL's, then password_env (which must be set), then PGPASSWORD, then ~/.pgpass")
    func password() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let pass = try dir.write(
            "pgpass",
            """
            # comment
            other:5432:journal:waypost:wrong
            db.example:5432:journal:nobody:wrong
            db.example:*:journal:waypost:from\\:pgpass\\\\
            *:*:*:*:anything
            """)
        let url = "postgres://waypost@db.example/journal"
        let everything = ["WAYPOST_PG": "from-env", "PGPASSWORD": "from-pgpassword", "PGPASSFILE": pass]
        #expect(
            try PostgresLocation(url: "postgres://waypost:inline@db.example/journal", passwordEnv: "WAYPOST_PG", environment: everything)
                .password == "inline")
        #expect(try PostgresLocation(url: url, passwordEnv: "WAYPOST_PG", environment: everything).password == "from-env")
        #expect(try PostgresLocation(url: url, environment: everything).password == "from-pgpassword")
        #expect(try PostgresLocation(url: url, environment: ["PGPASSFILE": pass]).password == "from:pgpass\\")
        #expect(try PostgresLocation(url: "postgres://x@y/z", environment: ["PGPASSFILE": pass]).password == "anything")
        #expect(try PostgresLocation(url: url, environment: ["PGPASSFILE": dir.file("none")]).password == nil)
        let missing = PostgresLocationError("takes its password from $WAYPOST_PG, which is not set", isMissingSecret: true)
        #expect(throws: missing) { try PostgresLocation(url: url, passwordEnv: "WAYPOST_PG", environment: ["PGPASSWORD": "x"]) }
    }
}
