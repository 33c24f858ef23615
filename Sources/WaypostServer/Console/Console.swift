import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import WaypostCore
import WaypostJournal

/// The operator console (SPEC §13), served by the admin listener at `/` and under `/console/`:
/// server-rendered pages over the admin API's journal queries, a session cookie from the admin
/// token, a CSRF token on every form that changes something, and every asset embedded.
final class Console: Sendable {
    /// An answer of the console: a page, an asset or a redirect.
    struct Answer: Sendable {
        var status: Int
        var headers: [(String, String)] = []
        var body: [UInt8] = []

        static func page(_ html: HTML, status: Int = 200, headers: [(String, String)] = []) -> Answer {
            Answer(status: status, headers: [("Content-Type", "text/html; charset=utf-8")] + headers, body: Array(html.text.utf8))
        }

        static func redirect(_ location: String, headers: [(String, String)] = []) -> Answer {
            Answer(status: 303, headers: [("Location", location)] + headers)
        }

        /// The headers every console answer carries: nothing from anywhere else may run or
        /// frame it, nothing of it is cached.
        static let securityHeaders: [(String, String)] = [
            (
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
            ),
            ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-store"),
        ]
    }

    /// What one request to the console is, once its session is known.
    struct Request {
        var method: HTTPMethod
        var path: String
        var query: Substring
        var form: [String: String]
        /// The session's nonce; its CSRF token goes into every form.
        var session: String
        var csrf: String
    }

    private let context: AdminContext
    private let readers: JournalReaders
    private let sessions: ConsoleSessions

    init(context: AdminContext, readers: JournalReaders, sessions: ConsoleSessions = ConsoleSessions()) {
        self.context = context
        self.readers = readers
        self.sessions = sessions
    }

    /// Whether `path` is the console's.
    static func serves(_ path: Substring) -> Bool { path == "/" || path.hasPrefix("/console/") }

    func respond(_ head: HTTPRequestHead, body: [UInt8], eventLoop: any EventLoop) -> EventLoopFuture<Answer> {
        let target = head.uri
        let path = String(target[..<(target.firstIndex(of: "?") ?? target.endIndex)])
        let method = head.method == .HEAD ? .GET : head.method
        let now = Timestamp.now()
        switch (method, path) {
        case (.GET, "/console/console.css"):
            return eventLoop.makeSucceededFuture(
                Answer(status: 200, headers: [("Content-Type", "text/css; charset=utf-8")], body: Array(ConsoleAssets.css.utf8)))
        case (.GET, "/console/console.js"):
            return eventLoop.makeSucceededFuture(
                Answer(
                    status: 200, headers: [("Content-Type", "text/javascript; charset=utf-8")], body: Array(ConsoleAssets.javaScript.utf8)))
        case (.GET, "/console/sign-in"), (.POST, "/console/sign-in"):
            return eventLoop.makeSucceededFuture(signIn(method: method, body: body, head: head, now: now))
        default:
            break
        }
        guard method == .GET || method == .POST else {
            return eventLoop.makeSucceededFuture(
                .page(
                    ConsolePages.message(title: "Method not allowed", text: "The console answers GET and POST."), status: 405,
                    headers: [("Allow", "GET, HEAD, POST")]))
        }
        // A session: signed in with the token, or, without a token (loopback only), one given
        // on the first page; state-changing requests need one already, and its CSRF token.
        var newCookie: [(String, String)] = []
        let session: String
        if let existing = sessions.session(cookieHeader: head.headers[canonicalForm: "cookie"].joined(separator: "; "), now: now / 1000) {
            session = existing
        } else if context.token == nil && method == .GET {
            let issued = sessions.issue(now: now / 1000)
            newCookie = [("Set-Cookie", ConsoleSessions.setCookie(issued.cookie))]
            session = issued.session
        } else if method == .GET {
            return eventLoop.makeSucceededFuture(.redirect("/console/sign-in"))
        } else {
            return eventLoop.makeSucceededFuture(
                .page(ConsolePages.message(title: "Sign in first", text: "Your session has ended: sign in again."), status: 403))
        }
        let form = method == .POST ? ((try? QueryString.items(Substring(decoding: body, as: UTF8.self))) ?? []) : []
        let fields = Dictionary(form, uniquingKeysWith: { first, _ in first })
        if method == .POST {
            // A form of this console, from this console: its session's CSRF token, and no
            // cross-site request (browsers say where a request comes from).
            let crossSite = head.headers.first(name: "sec-fetch-site").map { $0 != "same-origin" && $0 != "none" } ?? false
            guard !crossSite, sessions.checkCSRF(fields["csrf"], session: session) else {
                return eventLoop.makeSucceededFuture(
                    .page(
                        ConsolePages.message(
                            title: "Refused", text: "The form's CSRF token is missing or not this session's: reload the page and try again."
                        ),
                        status: 403))
            }
        }
        let setCookie = newCookie
        let request = Request(
            method: method, path: path, query: QueryString.query(ofTarget: target), form: fields, session: session,
            csrf: sessions.csrfToken(session: session))
        return route(request, now: now, eventLoop: eventLoop).map { answer in
            var answer = answer
            answer.headers += setCookie
            return answer
        }.flatMapErrorThrowing { error in
            let problem = error as? Problem
            return .page(
                ConsolePages.layout(
                    title: problem?.title ?? "Error", csrf: request.csrf, signOut: self.context.token != nil,
                    body: ConsolePages.notice(problem?.detail ?? "\(error)")),
                status: problem?.status ?? 500, headers: setCookie)
        }
    }

    // MARK: - Pages and actions

    private func route(_ request: Request, now: Int64, eventLoop: any EventLoop) -> EventLoopFuture<Answer> {
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        let page = ConsolePages(csrf: request.csrf, signOut: context.token != nil, now: now)
        let journal = context.journal
        let changed = context.journalChanged
        switch (request.method, parts.count) {
        case (.GET, 1) where request.path == "/":
            let names = context.routeNames.flatMap { route in (context.destinationNames[route] ?? [route]).map { (route, $0) } }
            let throughput = context.throughput
            let blocking = context.blocking
            return readers.read(on: eventLoop) { reader in
                let states = try reader.destinationStates(names)
                let chart = throughput?.minutes(endingAtMilliseconds: now) ?? []
                let rates = Dictionary(
                    uniqueKeysWithValues: names.map { route, destination in
                        let key = RouteConfig.destinationKey(route: route, destination: destination)
                        return (key, throughput?.minutes(endingAtMilliseconds: now) { $0 == key }.suffix(5) ?? ArraySlice())
                    })
                return .page(page.overview(states, chart: chart, rates: rates, blocking: blocking, done: Self.done(request.query)))
            }
        case (.GET, 2) where parts[1] == "messages":
            let query = (try? QueryString.dictionary(request.query, allowed: Self.listItems)) ?? [:]
            if let id = query["id"]?.trimmingCharacters(in: .whitespaces), !id.isEmpty {
                return eventLoop.makeSucceededFuture(.redirect("/console/messages/" + HTML.urlEncode(id)))
            }
            let filter: MessageFilter
            do { filter = try Self.filter(request.query) } catch { return eventLoop.makeFailedFuture(error) }
            let routes = context.routeNames
            let destinations = Array(Set(context.destinationNames.values.joined())).sorted()
            return readers.read(on: eventLoop) { reader in
                let messages = try reader.list(filter)
                return .page(page.messages(messages, filter: filter, query: query, routes: routes, destinations: destinations))
            }
        case (.GET, 3) where parts[1] == "messages":
            let id = parts[2].removingPercentEncoding ?? parts[2]
            return readers.read(on: eventLoop) { reader in
                guard let record = try reader.message(correlationID: id) else { throw Problem.unknownMessage(id) }
                var logs: [Int64: [AttemptRecord]] = [:]
                for delivery in record.deliveries { logs[delivery.id] = try reader.attempts(deliveryID: delivery.id) }
                return .page(page.message(record, attempts: logs, done: Self.done(request.query)))
            }
        case (.POST, 4) where parts[1] == "messages" && (parts[3] == "replay" || parts[3] == "skip"):
            let id = parts[2].removingPercentEncoding ?? parts[2]
            let destination = request.form["destination"].flatMap { $0.isEmpty ? nil : $0 }
            let replay = parts[3] == "replay"
            return readers.perform(on: eventLoop) {
                let operations = try journal.operations()
                let done =
                    replay
                    ? !(try operations.replay(ids: [id], destination: destination)).isEmpty
                    : try operations.skip(id: id, destination: destination)
                guard done else { throw try AdminHandler.notChanged(id, journal: journal, action: replay ? "replayed" : "skipped") }
                changed()
                if replay { Counter(label: "waypost_replayed_total").increment() }
                return .redirect("/console/messages/\(HTML.urlEncode(id))?done=\(replay ? "replayed" : "skipped")")
            }
        case (_, 2) where parts[1] == "replay":
            return bulkReplay(request, page: page, eventLoop: eventLoop)
        case (.POST, 2) where parts[1] == "pause" || parts[1] == "resume":
            let pause = parts[1] == "pause"
            let route = request.form["route"] ?? ""
            let destination = request.form["destination"].flatMap { $0.isEmpty ? nil : $0 }
            do { try context.check(route: route, destination: destination) } catch { return eventLoop.makeFailedFuture(error) }
            return readers.perform(on: eventLoop) {
                try journal.operations().setPaused(route: route, destination: destination, pause)
                changed()
                return .redirect("/?done=\(pause ? "paused" : "resumed")")
            }
        case (.POST, 2) where parts[1] == "sign-out":
            return eventLoop.makeSucceededFuture(.redirect("/console/sign-in", headers: [("Set-Cookie", ConsoleSessions.clearCookie)]))
        default:
            return eventLoop.makeFailedFuture(
                Problem(status: 404, slug: "not-found", title: "Not found", detail: "The console has no page \(request.path.prefix(200))."))
        }
    }

    /// `GET /console/replay`: the filter, and how many messages it would replay; `POST`: replays them.
    private func bulkReplay(_ request: Request, page: ConsolePages, eventLoop: any EventLoop) -> EventLoopFuture<Answer> {
        let journal = context.journal
        let changed = context.journalChanged
        let fields: [String: String]
        if request.method == .POST {
            fields = request.form.filter { Self.replayItems.contains($0.key) }
        } else {
            do {
                fields = try QueryString.dictionary(request.query, allowed: Self.replayItems)
            } catch {
                return eventLoop.makeFailedFuture(AdminHandler.badFilter(error.message))
            }
        }
        var parsed = MessageFilter(state: .failed)
        do {
            for (key, value) in fields { try parsed.set(key, value, states: MessageState.allCases.filter(\.isFinal)) }
        } catch {
            return eventLoop.makeFailedFuture(AdminHandler.badFilter(error.description))
        }
        let filter = parsed
        let routes = context.routeNames
        let destinations = Array(Set(context.destinationNames.values.joined())).sorted()
        guard request.method == .POST else {
            return readers.read(on: eventLoop) { reader in
                let count = fields.isEmpty ? nil : try reader.replayCount(filter)
                return .page(page.bulkReplay(fields: fields, count: count, routes: routes, destinations: destinations))
            }
        }
        return readers.perform(on: eventLoop) {
            let replayed = try journal.operations().replay(filter)
            changed()
            Counter(label: "waypost_replayed_total").increment(by: replayed.count)
            return .redirect("/console/messages?state=queued&done=replayed-\(replayed.count)")
        }
    }

    private func signIn(method: HTTPMethod, body: [UInt8], head: HTTPRequestHead, now: Int64) -> Answer {
        let page = ConsolePages(csrf: "", signOut: false, now: now)
        guard let token = context.token else { return .redirect("/") }
        guard method == .POST else { return .page(page.signIn(failed: false)) }
        let fields = (try? QueryString.items(Substring(decoding: body, as: UTF8.self))) ?? []
        let given = fields.first { $0.name == "token" }?.value ?? ""
        guard AdminHandler.constantTimeEquals(Array(given.utf8), Array(token.utf8)) else {
            context.logger.notice(
                "console sign-in refused: not the admin token", metadata: ["client": "\(head.headers.first(name: "host") ?? "-")"])
            return .page(page.signIn(failed: true), status: 401)
        }
        return .redirect("/", headers: [("Set-Cookie", ConsoleSessions.setCookie(sessions.issue(now: now / 1000).cookie))])
    }

    // MARK: - Query items

    static let listItems = ["state", "route", "destination", "since", "until", "cursor", "id", "done"]
    static let replayItems = ["state", "route", "destination", "since", "until"]

    /// The list's filter: the admin API's, newest first, 50 a page.
    static func filter(_ query: Substring) throws(Problem) -> MessageFilter {
        var base = MessageFilter(limit: 50)
        base.newestFirst = true
        return try AdminHandler.filter(query, base: base, allowed: listItems, ignoring: ["id", "done"])
    }

    /// What the last action did (`?done=`), for a notice: one of a few fixed texts.
    static func done(_ query: Substring) -> String? {
        guard let value = (try? QueryString.items(query))?.first(where: { $0.name == "done" })?.value else { return nil }
        switch value {
        case "replayed": return "Replayed: the message is queued again."
        case "skipped": return "Skipped: its waiting deliveries will not be sent."
        case "paused": return "Paused."
        case "resumed": return "Resumed."
        default:
            if value.hasPrefix("replayed-"), let count = Int(value.dropFirst(9)), count >= 0 {
                return "Replayed \(count) message\(count == 1 ? "" : "s"): they are queued again."
            }
            return nil
        }
    }
}
