import Foundation
import WaypostCore
import WaypostJournal

/// The console's pages, rendered from what the journal and the throughput counters hold. Pure:
/// no I/O; every value from outside is escaped by ``HTML``.
struct ConsolePages {
    /// The session's CSRF token, put into every form that changes something.
    let csrf: String
    /// Whether a sign-out button is shown (an admin token is set).
    let signOut: Bool
    /// Milliseconds since the Unix epoch, for ages.
    let now: Int64

    // MARK: - Layout

    static func layout(title: String, csrf: String, signOut: Bool, body: HTML) -> HTML {
        let out: HTML =
            signOut
            ? """
            <form class="inline" method="post" action="/console/sign-out"><input type="hidden" name="csrf" value="\(csrf)"><button>Sign out</button></form>
            """ : ""
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(title) · Waypost</title><link rel="stylesheet" href="/console/console.css"><script src="/console/console.js" defer></script></head>
            <body><a class="skip" href="#main">Skip to content</a>
            <header><nav aria-label="Console">
            <a class="brand" href="/">Waypost</a>
            <a href="/" accesskey="o">Overview</a>
            <a href="/console/messages?state=failed" accesskey="f">Failed</a>
            <a href="/console/messages?state=queued" accesskey="w">Waiting</a>
            <a href="/console/messages" accesskey="r">Recent</a>
            <a href="/console/replay" accesskey="b">Bulk replay</a>
            <form class="search" role="search" method="get" action="/console/messages"><label for="find">Correlation id</label> <input id="find" name="id" placeholder="Find a message (/)" autocomplete="off"> <button>Find</button></form>
            \(out)
            </nav></header>
            <main id="main" tabindex="-1">\(body)</main>
            </body></html>
            """
    }

    func layout(_ title: String, _ body: HTML) -> HTML {
        Self.layout(title: title, csrf: csrf, signOut: signOut, body: body)
    }

    static func notice(_ text: String) -> HTML {
        "<p class=\"notice\" role=\"status\">\(text)</p>"
    }

    /// A page that only says something (a refusal, an error).
    static func message(title: String, text: String) -> HTML {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(title) · Waypost</title><link rel="stylesheet" href="/console/console.css"></head>
        <body><main id="main"><h1>\(title)</h1><p>\(text)</p><p><a href="/">Back to the console</a></p></main></body></html>
        """
    }

    /// A hidden CSRF field.
    private var csrfField: HTML { "<input type=\"hidden\" name=\"csrf\" value=\"\(csrf)\">" }

    // MARK: - Sign-in

    func signIn(failed: Bool) -> HTML {
        let error: HTML = failed ? "<p class=\"error\" role=\"alert\">That is not the admin token.</p>" : ""
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Sign in · Waypost</title><link rel="stylesheet" href="/console/console.css"></head>
            <body><main id="main" class="narrow"><h1>Waypost console</h1>
            \(error)
            <form method="post" action="/console/sign-in">
            <label for="token">Admin token</label>
            <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
            <button>Sign in</button>
            </form>
            <p class="hint">The token of the admin API (the variable <code>admin.token_env</code> names, WAYPOST_ADMIN_TOKEN by default).</p>
            </main></body></html>
            """
    }

    // MARK: - Overview

    func overview(
        _ states: [DestinationState], chart: [Throughput.Minute], rates: [String: ArraySlice<Throughput.Minute>], blocking: Set<String>,
        done: String?
    )
        -> HTML
    {
        let rows: [HTML] = states.map { state in
            let key = RouteConfig.destinationKey(route: state.route, destination: state.destination)
            let recent = rates[key] ?? []
            let perMinute = { (event: Throughput.Event) -> String in
                let total = recent.reduce(0) { $0 + $1[event] }
                return recent.isEmpty ? "–" : String(format: "%.1f", Double(total) / Double(recent.count))
            }
            let filter = "route=\(HTML.urlEncode(state.route))&destination=\(HTML.urlEncode(state.destination))"
            let age = state.oldestQueuedAt.flatMap(Timestamp.parse).map { ConsolePages.duration(max(0, now - $0)) } ?? "–"
            var status: [HTML] = []
            if state.paused { status.append("<span class=\"badge paused\">paused</span>") }
            if let since = state.trippedSince {
                status.append(
                    "<span class=\"badge tripped\" title=\"since \(Timestamp.format(millisecondsSince1970: since))\">tripped</span>")
            }
            if blocking.contains(key) && state.failed > 0 && state.queued > 0 {
                // on_exhausted: block: the failed deliveries hold up those behind them (their
                // queue, or with ordering: key their key's) until replayed or skipped.
                status.append(
                    "<a class=\"badge blocked\" href=\"/console/messages?state=failed&amp;\(filter)\" title=\"on_exhausted: block: replay or skip the failed to let the rest go\">blocked by \(state.failed) failed</a>"
                )
            }
            if status.isEmpty { status.append("<span class=\"badge ok\">delivering</span>") }
            let action = state.paused ? "resume" : "pause"
            return """
                <tr data-key="\(key)"><th scope="row">\(state.route)</th><td>\(state.destination)</td>
                <td class="num"><a class="depth" href="/console/messages?state=queued&amp;\(filter)">\(state.queued)</a></td>
                <td class="num">\(state.inFlight)</td><td class="num">\(age)</td>
                <td class="num">\(perMinute(.delivered))</td><td class="num">\(perMinute(.failed))</td>
                <td class="num"><a href="/console/messages?state=failed&amp;\(filter)">\(state.failed)</a></td>
                <td>\(status)</td>
                <td><form class="inline" method="post" action="/console/\(action)">\(csrfField)<input type="hidden" name="route" value="\(state.route)"><input type="hidden" name="destination" value="\(state.destination)"><button>\(action == "pause" ? "Pause" : "Resume")</button></form></td></tr>
                """
        }
        return layout(
            "Overview",
            """
            <h1>Overview</h1>
            \(done.map(Self.notice) ?? "")
            <section id="live" data-refresh="3" aria-live="polite">
            <p class="updated">As of <time datetime="\(Timestamp.format(millisecondsSince1970: now))">\(Timestamp.format(millisecondsSince1970: now))</time>; updates by itself.</p>
            <h2>Accepted, delivered and failed per minute, last hour</h2>
            \(Self.chart(chart))
            <h2>Destinations</h2>
            <div class="scroll"><table>
            <thead><tr><th scope="col">Route</th><th scope="col">Destination</th><th scope="col">Queued</th><th scope="col">In flight</th><th scope="col">Oldest queued</th><th scope="col">Delivered /min</th><th scope="col">Failed /min</th><th scope="col">Failed</th><th scope="col">State</th><th scope="col">Action</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            <p class="hint">Per minute: the average of the last five minutes. Queued and failed link to those messages.</p>
            </section>
            """)
    }

    /// The last hour as an SVG chart: one line per event, drawn here (no script, no library).
    static func chart(_ minutes: [Throughput.Minute]) -> HTML {
        let width = 600
        let height = 150
        let peak = max(1, minutes.flatMap(\.counts).max() ?? 1)
        let lines: [HTML] = Throughput.Event.allCases.map { event in
            let points = minutes.enumerated().map { index, minute in
                let x = minutes.count > 1 ? index * width / (minutes.count - 1) : 0
                let y = height - minute[event] * height / peak
                return "\(x),\(y)"
            }.joined(separator: " ")
            return "<polyline class=\"line \(HTML(raw: "\(event)"))\" points=\"\(points)\"/>"
        }
        let totals = Throughput.Event.allCases.map { event in minutes.reduce(0) { $0 + $1[event] } }
        let label = "Last hour: \(totals[0]) accepted, \(totals[1]) delivered, \(totals[2]) failed; at most \(peak) a minute."
        return """
            <figure class="chart"><svg viewBox="-40 -10 \(width + 50) \(height + 30)" role="img" aria-label="\(label)">
            <title>\(label)</title>
            <line class="axis" x1="0" y1="\(height)" x2="\(width)" y2="\(height)"/><line class="axis" x1="0" y1="0" x2="0" y2="\(height)"/>
            <text class="tick" x="-6" y="6" text-anchor="end">\(peak)</text><text class="tick" x="-6" y="\(height)" text-anchor="end">0</text>
            <text class="tick" x="0" y="\(height + 18)">60 min ago</text><text class="tick" x="\(width)" y="\(height + 18)" text-anchor="end">now</text>
            \(lines)
            </svg>
            <figcaption><span class="key accepted">accepted \(totals[0])</span> <span class="key delivered">delivered \(totals[1])</span> <span class="key failed">failed \(totals[2])</span></figcaption></figure>
            """
    }

    // MARK: - Messages

    func messages(
        _ records: [MessageRecord], filter: MessageFilter, query: [String: String], routes: [String], destinations: [String]
    ) -> HTML {
        let rows: [HTML] = records.map { record in
            """
            <tr><th scope="row"><a href="/console/messages/\(HTML.urlEncode(record.correlationID))">\(record.correlationID)</a></th>
            <td>\(record.route)</td><td><span class="badge \(record.state.rawValue)">\(record.state.rawValue)</span></td>
            <td class="num">\(record.attempts)</td><td>\(time(record.receivedAt))</td>
            <td class="num">\(record.responseStatus.map(String.init) ?? "–")</td><td class="error-text">\(String((record.lastError ?? "").prefix(160)))</td></tr>
            """
        }
        var next: HTML = ""
        if records.count == filter.limit, let last = records.last {
            var items = query.filter { $0.key != "cursor" && $0.key != "done" && $0.key != "id" }
            items["cursor"] = String(last.id)
            next = "<a class=\"next\" rel=\"next\" href=\"/console/messages?\(Self.queryString(items))\">Next page</a>"
        }
        let title = filter.state.map { "Messages: \($0.rawValue)" } ?? "Recent messages"
        return layout(
            title,
            """
            <h1>\(title)</h1>
            \(Self.done(query["done"]))
            <form class="filters" method="get" action="/console/messages">
            \(Self.select("state", ["", "queued", "in_flight", "delivered", "failed", "skipped", "filtered"], selected: query["state"]))
            \(Self.select("route", [""] + routes, selected: query["route"]))
            \(Self.select("destination", [""] + destinations, selected: query["destination"]))
            <label>Since <input name="since" value="\(query["since"] ?? "")" placeholder="2h, or 2026-12-01T08:00:00Z" size="14"></label>
            <button>Show</button></form>
            <section id="live" data-refresh="5" aria-live="polite">
            <div class="scroll"><table>
            <thead><tr><th scope="col">Correlation id</th><th scope="col">Route</th><th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Received</th><th scope="col">Answer</th><th scope="col">Last error</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            \(records.isEmpty ? "<p>No message matches.</p>" : "")
            </section>
            \(next)
            """)
    }

    // MARK: - One message

    func message(_ record: MessageRecord, attempts: [Int64: [AttemptRecord]], done: String?) -> HTML {
        let headers = JSON.decodeHeaders(record.headersJSON) ?? []
        let deliveries: [HTML] = record.deliveries.map { delivery in
            let log = attempts[delivery.id] ?? []
            let timeline: [HTML] = log.map { attempt in
                let outcome: HTML =
                    if let status = attempt.status {
                        "<span class=\"status s\(status / 100)xx\">\(status)</span>"
                    } else if let error = attempt.error {
                        "<span class=\"error-text\">\(error)</span>"
                    } else {
                        "<span>in progress</span>"
                    }
                let sent = attempt.sentBody.map { "sent \($0.bytes) bytes, SHA-256 \($0.sha256.prefix(12))…" } ?? ""
                let duration = attempt.durationMilliseconds.map { " in \($0) ms" } ?? ""
                return
                    "<li><span class=\"attempt\">#\(attempt.attempt)</span> \(time(attempt.startedAt)) \(outcome)\(duration) <span class=\"hint\">\(sent)</span></li>"
            }
            let response: HTML =
                delivery.storedResponse.map { answer in
                    """
                    <h4>The upstream's last answer: \(answer.status)</h4>
                    \(Self.headerTable(answer.headers))
                    \(Self.body(answer.body, contentType: answer.headers.first { $0.name.caseInsensitiveEquals("content-type") }?.value))
                    """
                } ?? ""
            return """
                <section class="delivery"><h3>\(delivery.destination) <span class="badge \(delivery.state.rawValue)">\(delivery.state.rawValue)</span></h3>
                <p>\(delivery.attempts) attempt\(delivery.attempts == 1 ? "" : "s")\(delivery.nextAttemptAt.map { "; next " + $0 } ?? "")\(delivery.deliveredAt.map { "; delivered " + $0 } ?? "")</p>
                \(delivery.lastError.map { "<p class=\"error-text\">Last error: \($0)</p>" as HTML } ?? "")
                <ol class="timeline">\(timeline)</ol>
                \(actions(record.correlationID, destination: delivery.destination, state: delivery.state))
                \(response)
                </section>
                """
        }
        return layout(
            record.correlationID,
            """
            <h1>Message <code>\(record.correlationID)</code></h1>
            \(done.map(Self.notice) ?? "")
            <section id="live" data-refresh="3" aria-live="polite">
            <p><span class="badge \(record.state.rawValue)">\(record.state.rawValue)</span> route <strong>\(record.route)</strong>, received \(time(record.receivedAt))</p>
            \(actions(record.correlationID, destination: nil, state: record.state))
            <h2>Deliveries</h2>
            \(deliveries)
            </section>
            <section id="request"><h2>The request as received</h2>
            <p><code>\(record.method) \(record.path)</code></p>
            \(Self.headerTable(headers))
            \(Self.body(record.body, contentType: headers.first { $0.name.caseInsensitiveEquals("content-type") }?.value))
            </section>
            """)
    }

    /// Replay (a final delivery) and skip (a waiting or failed one: a failed delivery that
    /// blocks its queue is let go) buttons, for one destination or all.
    private func actions(_ id: String, destination: String?, state: MessageState) -> HTML {
        let target: HTML = destination.map { "<input type=\"hidden\" name=\"destination\" value=\"\($0)\">" } ?? ""
        let path = HTML.urlEncode(id)
        let what = destination.map { " to \($0)" } ?? ""
        let replay: HTML =
            state.isFinal
            ? "<form class=\"inline\" method=\"post\" action=\"/console/messages/\(path)/replay\">\(csrfField)\(target)<button>Replay\(what)</button></form> "
            : ""
        let skip: HTML =
            !state.isFinal || state == .failed
            ? "<form class=\"inline\" method=\"post\" action=\"/console/messages/\(path)/skip\">\(csrfField)\(target)<button>Skip\(what)</button></form>"
            : ""
        return "<p class=\"actions\">\(replay)\(skip)</p>"
    }

    // MARK: - Bulk replay

    func bulkReplay(fields: [String: String], count: Int?, routes: [String], destinations: [String]) -> HTML {
        let hidden: [HTML] = fields.sorted { $0.key < $1.key }.map { "<input type=\"hidden\" name=\"\($0.key)\" value=\"\($0.value)\">" }
        let confirm: HTML =
            count.map { count in
                count == 0
                    ? "<p class=\"notice\" role=\"status\">No message matches: nothing to replay.</p>"
                    : """
                    <form method="post" action="/console/replay">\(csrfField)\(hidden)
                    <p class="notice" role="status">This replays <strong class="count">\(count)</strong> message\(count == 1 ? "" : "s"): their deliveries in that state are queued again.</p>
                    <button class="danger">Replay \(count)</button></form>
                    """
            } ?? ""
        return layout(
            "Bulk replay",
            """
            <h1>Bulk replay</h1>
            <p>Choose which messages to send again; the next step shows how many that is before anything changes.</p>
            <form class="filters" method="get" action="/console/replay">
            \(Self.select("state", ["failed", "skipped", "delivered", "filtered"], selected: fields["state"]))
            \(Self.select("route", [""] + routes, selected: fields["route"]))
            \(Self.select("destination", [""] + destinations, selected: fields["destination"]))
            <label>Since <input name="since" value="\(fields["since"] ?? "")" placeholder="2h" size="10"></label>
            <label>Until <input name="until" value="\(fields["until"] ?? "")" placeholder="10m" size="10"></label>
            <button>Count</button></form>
            \(confirm)
            """)
    }

    // MARK: - Pieces

    static func select(_ name: String, _ options: [String], selected: String?) -> HTML {
        let items: [HTML] = options.map { option in
            "<option value=\"\(option)\"\(HTML(raw: option == (selected ?? "") ? " selected" : ""))>\(option.isEmpty ? "any" : option)</option>"
        }
        return "<label>\(name.capitalized) <select name=\"\(name)\">\(items)</select></label>"
    }

    static func headerTable(_ headers: [HeaderField]) -> HTML {
        guard !headers.isEmpty else { return "<p class=\"hint\">No header fields.</p>" }
        let rows: [HTML] = headers.map { "<tr><th scope=\"row\">\($0.name)</th><td>\($0.value)</td></tr>" }
        return "<div class=\"scroll\"><table class=\"headers\"><tbody>\(rows)</tbody></table></div>"
    }

    /// A body: pretty-printed when it is JSON, as text when it is UTF-8, else a hex view.
    static func body(_ bytes: [UInt8], contentType: String?) -> HTML {
        guard !bytes.isEmpty else { return "<p class=\"hint\">Empty body.</p>" }
        if JSONValidator.isValid(bytes), let object = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]),
            let pretty = try? JSONSerialization.data(
                withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
        {
            return "<p class=\"hint\">\(bytes.count) bytes, JSON</p><pre class=\"body\">\(String(decoding: pretty, as: UTF8.self))</pre>"
        }
        if let text = String(validating: bytes, as: UTF8.self) {
            return "<p class=\"hint\">\(bytes.count) bytes\(contentType.map { ", " + $0 } ?? "")</p><pre class=\"body\">\(text)</pre>"
        }
        let shown = bytes.prefix(4096)
        var lines: [String] = []
        for offset in stride(from: 0, to: shown.count, by: 16) {
            let row = shown.dropFirst(offset).prefix(16)
            let hex = row.map { String(format: "%02x", $0) }.joined(separator: " ")
            let ascii = String(row.map { (0x20..<0x7f).contains($0) ? Character(Unicode.Scalar($0)) : "." })
            lines.append(String(format: "%08x  ", offset) + hex.padding(toLength: 48, withPad: " ", startingAt: 0) + "  " + ascii)
        }
        let more = bytes.count > shown.count ? " (the first 4096 shown)" : ""
        return "<p class=\"hint\">\(bytes.count) bytes, binary\(more)</p><pre class=\"body hex\">\(lines.joined(separator: "\n"))</pre>"
    }

    /// A stored time (RFC 3339) as relative and absolute.
    func time(_ stored: String) -> HTML {
        guard let milliseconds = Timestamp.parse(stored) else { return "\(stored)" }
        return Self.time(milliseconds, now: now)
    }

    static func time(_ milliseconds: Int64, now: Int64) -> HTML {
        let text = Timestamp.format(millisecondsSince1970: milliseconds)
        let delta = now - milliseconds
        let relative = delta >= 0 ? duration(delta) + " ago" : "in " + duration(-delta)
        return "<time datetime=\"\(text)\" title=\"\(text)\">\(relative)</time> <span class=\"absolute\">\(text)</span>"
    }

    /// `12s`, `4m 3s`, `2h 5m`, `3d 4h`.
    static func duration(_ milliseconds: Int64) -> String {
        let seconds = milliseconds / 1000
        switch seconds {
        case ..<60: return "\(seconds)s"
        case ..<3600: return "\(seconds / 60)m \(seconds % 60)s"
        case ..<86400: return "\(seconds / 3600)h \(seconds / 60 % 60)m"
        default: return "\(seconds / 86400)d \(seconds / 3600 % 24)h"
        }
    }

    static func done(_ value: String?) -> HTML {
        guard let value, let text = Console.done(Substring("done=" + HTML.urlEncode(value))) else { return "" }
        return notice(text)
    }

    static func queryString(_ items: [String: String]) -> String {
        items.sorted { $0.key < $1.key }.map { "\(HTML.urlEncode($0.key))=\(HTML.urlEncode($0.value))" }.joined(separator: "&")
    }
}
