// The operator console (SPEC §13) over HTTP, as a browser would use it but with curl: the
// session cookie and its sign-in, the CSRF token every form carries, the security headers, and
// what the pages show (escaped). `scripts/console-check.py` drives a real browser.

import Foundation
import Testing
import WaypostTestSupport

/// A browser's view of the console: its cookie, and the CSRF token of the last page.
private struct ConsoleClient {
    let server: AdminTestServer
    var cookie: String?

    func get(_ path: String) async throws -> HTTPAnswer {
        try await httpRequest(
            "GET", "http://127.0.0.1:\(server.adminPort)\(path)", headers: cookie.map { ["Cookie: \($0)"] } ?? [])
    }

    func post(_ path: String, _ form: [String: String], headers: [String] = []) async throws -> HTTPAnswer {
        let body = form.sorted { $0.key < $1.key }.map { "\($0.key)=\(percentEncoded($0.value))" }.joined(separator: "&")
        return try await httpRequest(
            "POST", "http://127.0.0.1:\(server.adminPort)\(path)", body: body,
            headers: ["Content-Type: application/x-www-form-urlencoded"] + (cookie.map { ["Cookie: \($0)"] } ?? []) + headers)
    }

    /// The cookie a `Set-Cookie` of `answer` gives, as a `Cookie` header's value.
    static func cookie(of answer: HTTPAnswer) -> String? {
        answer.header("Set-Cookie")?.split(separator: ";").first.map(String.init)
    }

    /// The CSRF token in a page's forms.
    static func csrf(in page: String) -> String? {
        guard let range = page.range(of: #"name="csrf" value=""#) else { return nil }
        return String(page[range.upperBound...].prefix { $0 != "\"" })
    }
}

private func percentEncoded(_ value: String) -> String {
    value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? value
}

@Suite("the operator console: sessions, CSRF, escaping, actions (SPEC §13)")
struct ConsoleTests {
    @Test("with a token: pages send to the sign-in; a wrong token is 401; the right one gives an HttpOnly, SameSite=Strict session")
    func signIn() async throws {
        let upstream = try await SettableUpstream.start()
        let config = "routes:\n  - { name: hooks, path: /hooks, upstream: \"\(upstream.url)\" }\n"
        try await withServer(config: config, upstreams: [upstream]) { server, _ in
            var browser = ConsoleClient(server: server)
            let first = try await browser.get("/")
            #expect(first.status == 303 && first.header("Location") == "/console/sign-in", "\(first.status) \(first.headers)")
            let form = try await browser.get("/console/sign-in")
            #expect(form.status == 200 && form.body.contains(#"name="token""#))
            #expect(form.header("Content-Security-Policy")?.contains("default-src 'self'") == true)

            let wrong = try await browser.post("/console/sign-in", ["token": "not-it"])
            #expect(wrong.status == 401 && wrong.body.contains("not the admin token") && wrong.header("Set-Cookie") == nil)
            let right = try await browser.post("/console/sign-in", ["token": adminTestToken])
            #expect(right.status == 303 && right.header("Location") == "/")
            let setCookie = try #require(right.header("Set-Cookie"))
            #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && setCookie.contains("Path=/"), "\(setCookie)")
            browser.cookie = ConsoleClient.cookie(of: right)

            let overview = try await browser.get("/")
            #expect(overview.status == 200 && overview.body.contains("<h1>Overview</h1>") && overview.body.contains("hooks"))
            for (name, value) in [
                ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Cache-Control", "no-store"),
                ("Referrer-Policy", "no-referrer"),
            ] {
                #expect(overview.header(name) == value, "\(name): \(overview.headers)")
            }
            // A cookie this server did not sign, or one of another session's shape, is no session.
            let signed = try #require(browser.cookie)
            for forged in [signed.dropLast(2) + "xx", "waypost_console=4102444800.abc.def", "waypost_console=1.2.3"] {
                let answer = try await ConsoleClient(server: server, cookie: String(forged)).get("/console/messages")
                #expect(answer.status == 303, "\(forged): \(answer.status)")
            }
            // The API's bearer token is not a console session, and the console's cookie is not the API's token.
            #expect(try await server.admin("GET", "/", token: adminTestToken).status == 303)
            #expect(
                try await httpRequest("GET", "http://127.0.0.1:\(server.adminPort)/messages", headers: ["Cookie: \(signed)"]).status == 401)

            let signOutPage = try #require(ConsoleClient.csrf(in: overview.body))
            let out = try await browser.post("/console/sign-out", ["csrf": signOutPage])
            #expect(out.status == 303 && out.header("Set-Cookie")?.contains("Max-Age=0") == true)
        }
    }

    @Test("every state-changing request needs its session's CSRF token and no cross-site origin; pause and resume a destination")
    func csrfAndPause() async throws {
        let upstream = try await SettableUpstream.start()
        let config = """
            routes:
              - name: shop
                path: /shop
                destinations:
                  - { name: erp, upstream: "\(upstream.url)" }
                  - { name: audit, upstream: "\(upstream.url)" }
            """
        // No token: the admin listener is on loopback, and the first page gives a session.
        try await withServer(config: config, upstreams: [upstream], environment: ["WAYPOST_ADMIN_TOKEN": ""]) { server, _ in
            var browser = ConsoleClient(server: server)
            let first = try await browser.get("/")
            #expect(first.status == 200, "\(first.status)")
            let cookie = try #require(ConsoleClient.cookie(of: first))
            browser.cookie = cookie
            let csrf = try #require(ConsoleClient.csrf(in: first.body))

            let pause = ["route": "shop", "destination": "erp"]
            #expect(try await browser.post("/console/pause", pause).status == 403, "no CSRF token")
            #expect(try await browser.post("/console/pause", pause.merging(["csrf": "forged"]) { $1 }).status == 403)
            let crossSite = try await browser.post(
                "/console/pause", pause.merging(["csrf": csrf]) { $1 }, headers: ["Sec-Fetch-Site: cross-site"])
            #expect(crossSite.status == 403, "a request from another site")
            let anonymous = ConsoleClient(server: server)
            #expect(try await anonymous.post("/console/pause", pause.merging(["csrf": csrf]) { $1 }).status == 403, "no session")
            let states = try await server.admin("GET", "/destinations", token: nil)
            #expect(!states.body.contains(#""paused":true"#), "nothing refused changed anything: \(states.body)")

            let paused = try await browser.post("/console/pause", pause.merging(["csrf": csrf]) { $1 })
            #expect(paused.status == 303 && paused.header("Location") == "/?done=paused")
            let after = try await browser.get("/?done=paused")
            #expect(after.body.contains("Paused.") && after.body.contains(#"<span class="badge paused">paused</span>"#))
            let destinations = try await server.admin("GET", "/destinations", token: nil).body
            #expect(
                destinations.contains(
                    #""destination":"erp","queued":0,"in_flight":0,"failed":0,"oldest_queued_at":null,"oldest_queued_age_seconds":null,"paused":true"#
                ), "\(destinations)")
            #expect(
                destinations.contains(
                    #""destination":"audit","queued":0,"in_flight":0,"failed":0,"oldest_queued_at":null,"oldest_queued_age_seconds":null,"paused":false"#
                ))

            // The queue depth shows what waits for the paused destination.
            let id = try await server.accept("/shop")
            try await server.waitForStates("audit done") { _ in true }
            let deadline = ContinuousClock.now + .seconds(10)
            var overview = ""
            repeat {
                overview = try await browser.get("/").body
                if overview.contains(#"<a class="depth" href="/console/messages?state=queued&amp;route=shop&amp;destination=erp">1</a>"#) {
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            } while ContinuousClock.now < deadline
            #expect(overview.contains(#"<a class="depth" href="/console/messages?state=queued&amp;route=shop&amp;destination=erp">1</a>"#))
            let resumed = try await browser.post("/console/resume", pause.merging(["csrf": csrf]) { $1 })
            #expect(resumed.status == 303)
            try await server.waitForStates("delivered") { $0[id] == "delivered" }
            #expect(try await browser.post("/console/pause", ["route": "nope", "csrf": csrf]).status == 404)
        }
    }

    @Test(
        "a hostile body and headers are shown as text; a failed message's page has its attempts; replay through the console delivers it",
        arguments: JournalBackend.allCases)
    func messagePageAndReplay(backend: JournalBackend) async throws {
        let upstream = try await SettableUpstream.start(status: 500)
        let config = """
            routes:
              - { name: hooks, path: /hooks, upstream: "\(upstream.url)", retry: { max_attempts: 1 } }
            """
        try await withServer(config: config, backend: backend, upstreams: [upstream], environment: ["WAYPOST_ADMIN_TOKEN": ""]) {
            server, dir in
            let hostile = #"{"note":"<script>alert(1)</script>","x":"\"><img src=x onerror=alert(2)>"}"#
            let answer = try await server.intake(
                "POST", "/hooks", body: hostile, headers: ["Content-Type: application/json", #"X-Evil: "><script>alert(3)</script>"#])
            let id = try #require(answer.header("X-Correlation-ID"))
            let bytesFile = dir.file("binary.bin")
            try Data([0x63, 0x61, 0x66, 0xFF, 0x00, 0xFE]).write(to: URL(fileURLWithPath: bytesFile))
            let binary = try await curlExchange(
                "POST", "http://127.0.0.1:\(server.intakePort)/hooks",
                options: ["--data-binary", "@" + bytesFile, "-H", "Content-Type: application/octet-stream"])
            let binaryID = try #require(binary.header("X-Correlation-ID"))
            try await server.waitForStates("failed") { $0[id] == "failed" && $0[binaryID] == "failed" }

            var browser = ConsoleClient(server: server)
            let failed = try await browser.get("/console/messages?state=failed")
            browser.cookie = ConsoleClient.cookie(of: failed)
            #expect(failed.body.contains("/console/messages/\(id)") && failed.body.contains("/console/messages/\(binaryID)"))
            let page = try await browser.get("/console/messages/\(id)")
            #expect(page.status == 200)
            #expect(!page.body.contains("<script>alert") && !page.body.contains("<img src=x"), "nothing of the message is markup")
            #expect(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && page.body.contains("&lt;img src=x onerror=alert(2)&gt;"))
            #expect(page.body.contains("&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;"), "the header's value, escaped")
            #expect(page.body.contains(#"<span class="status s5xx">500</span>"#) && page.body.contains(#"<span class="attempt">#1</span>"#))
            #expect(page.body.contains("The upstream's last answer: 500"))
            // A body that is not UTF-8 is shown in hex.
            let binaryPage = try await browser.get("/console/messages/\(binaryID)")
            #expect(
                binaryPage.body.contains("6 bytes, binary") && binaryPage.body.contains("63 61 66 ff 00 fe"),
                "\(binaryPage.body.suffix(600))")

            // The correlation id box finds it; an unknown id is a 404 page.
            let found = try await browser.get("/console/messages?id=\(id)")
            #expect(found.status == 303 && found.header("Location") == "/console/messages/\(id)")
            #expect(try await browser.get("/console/messages/no-such-id").status == 404)
            #expect(try await browser.get("/console/messages?state=sideways").status == 400)

            upstream.answer(200)
            let csrf = try #require(ConsoleClient.csrf(in: page.body))
            let replayed = try await browser.post("/console/messages/\(id)/replay", ["csrf": csrf])
            #expect(replayed.status == 303 && replayed.header("Location") == "/console/messages/\(id)?done=replayed")
            try await server.waitForStates("delivered") { $0[id] == "delivered" }
            let after = try await browser.get("/console/messages/\(id)?done=replayed")
            #expect(
                after.body.contains("Replayed: the message is queued again.")
                    && after.body.contains(#"<span class="badge delivered">delivered</span>"#))

            // Bulk replay: the count first, then the replay.
            let preview = try await browser.get("/console/replay?state=failed&route=hooks")
            #expect(preview.body.contains(#"<strong class="count">1</strong>"#), "\(preview.body.suffix(800))")
            let bulk = try await browser.post("/console/replay", ["csrf": csrf, "state": "failed", "route": "hooks"])
            #expect(bulk.status == 303 && bulk.header("Location") == "/console/messages?state=queued&done=replayed-1")
            try await server.waitForStates("all delivered") { $0[binaryID] == "delivered" }
        }
    }

    @Test(
        "a destination with on_exhausted: block shows what holds it up; skipping the failed message lets the rest go",
        arguments: JournalBackend.allCases)
    func blocked(backend: JournalBackend) async throws {
        let upstream = try await SettableUpstream.start(status: 422)
        let config = """
            routes:
              - { name: ledger, path: /ledger, upstream: "\(upstream.url)", ordering: fifo, on_exhausted: block, retry: { max_attempts: 1 } }
            """
        try await withServer(config: config, backend: backend, upstreams: [upstream], environment: ["WAYPOST_ADMIN_TOKEN": ""]) {
            server, _ in
            let first = try await server.accept("/ledger")
            try await server.waitForStates("the first failed") { $0[first] == "failed" }
            upstream.answer(200)
            let second = try await server.accept("/ledger")
            var browser = ConsoleClient(server: server)
            let overview = try await browser.get("/")
            browser.cookie = ConsoleClient.cookie(of: overview)
            #expect(overview.body.contains("blocked by 1 failed"), "\(overview.body.suffix(1500))")
            #expect(try await server.states()[second] == "queued", "the second waits behind the first")

            let page = try await browser.get("/console/messages/\(first)")
            #expect(page.body.contains("<button>Replay</button>") && page.body.contains("<button>Skip</button>"), "a failed one: both")
            let csrf = try #require(ConsoleClient.csrf(in: page.body))
            let skipped = try await browser.post("/console/messages/\(first)/skip", ["csrf": csrf])
            #expect(skipped.status == 303 && skipped.header("Location") == "/console/messages/\(first)?done=skipped")
            try await server.waitForStates("the rest goes") { $0[first] == "skipped" && $0[second] == "delivered" }
            #expect(try await browser.get("/").body.contains("blocked by") == false)
        }
    }
}
