import ArgumentParser
import Foundation
import WaypostCore
import WaypostJournal
import WaypostTransform

private let states = MessageState.allCases

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Message counts per route and state, and the age of the oldest queued message.")

    @OptionGroup var journal: JournalOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try reportingFailure {
            let reader = try journal.openReader()
            let counts = try reader.counts()
            let oldest = try reader.oldestQueued()
            let deliveries = try reader.deliveryCounts()
            // Paused and tripped destinations (the journal's control rows).
            let flows = try reader.destinationStates([]).filter { $0.paused || $0.trippedSince != nil }
            let nodes = try reader.clusterNodes()
            func flow(_ route: String, _ destination: String) -> DestinationState? {
                flows.first { $0.route == route && $0.destination == destination }
            }
            let now = Date()
            let routes = Array(Set(counts.map(\.route))).sorted()
            func count(_ route: String, _ state: MessageState) -> Int {
                counts.first { $0.route == route && $0.state == state }?.count ?? 0
            }
            func destinationNames(_ route: String) -> [String] {
                Array(Set(deliveries.filter { $0.route == route }.map(\.destination))).sorted()
            }
            func deliveryCount(_ route: String, _ destination: String, _ state: MessageState) -> Int {
                deliveries.first { $0.route == route && $0.destination == destination && $0.state == state }?.count ?? 0
            }
            func age(_ route: String) -> Int? {
                oldest[route].flatMap(Timestamp.parse).map { Int((Int64(now.timeIntervalSince1970 * 1000) - $0) / 1000) }
            }
            if json {
                let entries = routes.map { route in
                    let fields = states.map { "\(JSON.quote($0.rawValue)):\(count(route, $0))" }.joined(separator: ",")
                    let oldestFields =
                        oldest[route].map { "\"oldest_queued_at\":\(JSON.quote($0)),\"oldest_queued_age_seconds\":\(age(route) ?? 0)" }
                        ?? "\"oldest_queued_at\":null,\"oldest_queued_age_seconds\":null"
                    let destinations = destinationNames(route).map { destination in
                        let fields = states.map { "\(JSON.quote($0.rawValue)):\(deliveryCount(route, destination, $0))" }
                        let state = flow(route, destination)
                        return "{\"destination\":\(JSON.quote(destination)),\(fields.joined(separator: ",")),"
                            + "\"paused\":\(state?.paused ?? false),\"tripped\":\(state?.trippedSince != nil)}"
                    }
                    return
                        "{\"route\":\(JSON.quote(route)),\(fields),\(oldestFields),\"destinations\":[\(destinations.joined(separator: ","))]}"
                }
                // A cluster's nodes (SPEC §12), with a PostgreSQL journal only.
                let nodeEntries = nodes.map { node in
                    "{\"node\":\(JSON.quote(node.name)),\"address\":\(node.address.map(JSON.quote) ?? "null"),"
                        + "\"partitions\":\(node.partitions),\"heartbeat_at\":\(JSON.quote(Timestamp.format(millisecondsSince1970: node.heartbeatAt))),"
                        + "\"heartbeat_age_seconds\":\(max(0, node.now - node.heartbeatAt) / 1000),"
                        + "\"started_at\":\(JSON.quote(Timestamp.format(millisecondsSince1970: node.startedAt)))}"
                }
                let nodesField = nodes.isEmpty ? "" : ",\"nodes\":[\(nodeEntries.joined(separator: ","))]"
                print("{\"routes\":[\(entries.joined(separator: ","))]\(nodesField)}")
                return
            }
            defer {
                if !nodes.isEmpty {
                    var nodeRows = [["NODE", "ADDRESS", "PARTITIONS", "LAST HEARTBEAT", "STARTED"]]
                    for node in nodes {
                        nodeRows.append([
                            node.name, node.address ?? "-", String(node.partitions),
                            formatAge(Int(max(0, node.now - node.heartbeatAt) / 1000)) + " ago",
                            Timestamp.format(millisecondsSince1970: node.startedAt),
                        ])
                    }
                    print("")
                    printTable(nodeRows)
                }
            }
            var rows = [["ROUTE"] + states.map { $0.rawValue.uppercased() } + ["OLDEST QUEUED"]]
            for route in routes {
                rows.append([route] + states.map { String(count(route, $0)) } + [age(route).map(formatAge) ?? "-"])
            }
            if routes.isEmpty { print("The journal holds no messages.") } else { printTable(rows) }
            // Routes with destinations of their own (SPEC §11), or a destination paused or
            // tripped: each destination's deliveries.
            let split = routes.filter { route in destinationNames(route) != [route] || flows.contains { $0.route == route } }
            guard !split.isEmpty else { return }
            var destinationRows = [["ROUTE", "DESTINATION"] + states.map { $0.rawValue.uppercased() } + ["PAUSED", "TRIPPED SINCE"]]
            for route in split {
                for destination in destinationNames(route) {
                    let state = flow(route, destination)
                    destinationRows.append(
                        [route, destination] + states.map { String(deliveryCount(route, destination, $0)) }
                            + [
                                state?.paused == true ? "yes" : "-",
                                state?.trippedSince.map { Timestamp.format(millisecondsSince1970: $0) } ?? "-",
                            ])
                }
            }
            print("")
            printTable(destinationRows)
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List messages, oldest first.")

    @OptionGroup var journal: JournalOptions

    @Option(help: "Only messages in this state (\(MessageState.names)).")
    var state: String?

    @Option(help: "Only messages of this route.")
    var route: String?

    @Option(help: "Only messages with a delivery to this destination; --state is then that delivery's.")
    var destination: String?

    @Option(parsing: .unconditional, help: "Only messages received since: a duration ago (2h, 30m, 7d) or an RFC 3339 time.")
    var since: String?

    @Option(help: "At most this many messages (\(MessageFilter.limits.lowerBound) to \(MessageFilter.limits.upperBound)).")
    var limit = 100

    @Flag(help: "Print JSON.")
    var json = false

    func filter() throws -> MessageFilter {
        try messageFilter([("state", state), ("route", route), ("destination", destination), ("since", since), ("limit", String(limit))])
    }

    func validate() throws { _ = try filter() }

    func run() throws {
        let filter = try filter()
        try reportingFailure {
            let reader = try journal.openReader()
            let messages = try reader.list(filter)
            if json {
                print("{\"messages\":[\(messages.map(\.summaryJSON).joined(separator: ","))]}")
                return
            }
            var rows = [["ID", "ROUTE", "STATE", "ATTEMPTS", "RECEIVED", "REQUEST", "BYTES", "LAST ERROR", "DESTINATIONS"]]
            for m in messages {
                // Each destination's delivery state, when the route has more than one.
                let destinations = m.deliveries.count > 1 ? m.deliveries.map { "\($0.destination):\($0.state)" }.joined(separator: ",") : ""
                rows.append([
                    m.correlationID, m.route, m.state.rawValue, String(m.attempts), m.receivedAt, "\(m.method) \(m.path.prefix(60))",
                    String(m.body.count), m.lastError.map { String($0.prefix(60)) } ?? "", destinations,
                ])
            }
            if messages.isEmpty { print("No messages match.") } else { printTable(rows) }
        }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one message, its attempts and its response.")

    @OptionGroup var journal: JournalOptions

    @Argument(help: "The message's correlation id.")
    var id: String

    func run() throws {
        try reportingFailure {
            let reader = try journal.openReader()
            guard let m = try reader.message(correlationID: id) else { throw Failure("no message with id \(id)") }
            let attempts = try reader.attempts(deliveryID: m.replyDeliveryID)
            let deliveries = try reader.deliveries(messageID: m.id)
            var lines = [
                "id:              \(m.correlationID)",
                "journal row:     \(m.id)",
                "route:           \(m.route)",
                "state:           \(m.state)",
                "attempts:        \(m.attempts)",
                "received at:     \(m.receivedAt)",
                "next attempt at: \(m.nextAttemptAt ?? "-")",
                "delivered at:    \(m.deliveredAt ?? "-")",
                "last error:      \(m.lastError ?? "-")",
                "ordering key:    \(m.orderingKey ?? "-")",
                "idempotency key: \(m.idempotencyKey ?? "-")",
                "",
                "\(m.method) \(m.path)",
            ]
            lines += headerLines(m.headersJSON)
            lines += ["", describeBody(m.body)]
            if deliveries.count > 1 {
                lines += ["", "deliveries (the first answers waiting sources; its attempts and response follow):"]
                for d in deliveries {
                    let answer = d.responseStatus.map { "HTTP \($0)" } ?? "-"
                    lines.append(
                        "  \(d.destination): \(d.state), \(d.attempts) attempts, last answer \(answer), last error \(d.lastError ?? "-")")
                }
            }
            if !attempts.isEmpty {
                lines += ["", "attempts:"]
                for a in attempts {
                    let outcome = a.status.map { "HTTP \($0)" } ?? a.error ?? "in progress"
                    let sent = a.sentBody.map { "  sent \($0.bytes) bytes, sha256 \($0.sha256)" } ?? ""
                    lines.append(
                        "  #\(a.attempt) at \(a.startedAt)  \(a.durationMilliseconds.map { "\($0) ms" } ?? "-")  \(outcome)\(sent)")
                }
            }
            if let status = m.responseStatus {
                lines += ["", "response: HTTP \(status)"]
                lines += headerLines(m.responseHeadersJSON ?? "[]")
                lines += ["", describeBody(m.responseBody ?? [])]
            }
            print(lines.joined(separator: "\n"))
        }
    }

    private func headerLines(_ json: String) -> [String] {
        guard let fields = JSON.decodeHeaders(json) else { return [json] }
        return fields.map { "\($0.name): \($0.value)" }
    }

    private func describeBody(_ body: [UInt8]) -> String {
        if body.isEmpty { return "(empty body)" }
        if let text = String(validating: body, as: UTF8.self) { return text }
        return "(\(body.count) bytes, not UTF-8; base64:)\n" + Data(body).base64EncodedString()
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a configuration file (exit 78 when it is invalid).")

    @Option(help: "The YAML configuration file.")
    var config: String

    func run() throws {
        let settings = try loadConfig(config)
        _ = try Startup.check(settings, environment: ProcessInfo.processInfo.environment)
        print("\(config): valid, \(settings.routes.count) route\(settings.routes.count == 1 ? "" : "s")")
        for route in settings.routes {
            for destination in route.destinations {
                // A route without destinations has one, named like it: one line, as before.
                let name = destination.name == route.name ? route.name : route.key(of: destination)
                print(
                    "  \(name): \(route.path) -> \(destination.upstream) (\(route.mode.rawValue), ordering \(destination.ordering.rawValue))"
                )
            }
        }
    }
}

func formatAge(_ seconds: Int) -> String {
    switch seconds {
    case ..<60: "\(seconds)s"
    case ..<3600: "\(seconds / 60)m\(seconds % 60)s"
    case ..<86400: "\(seconds / 3600)h\(seconds / 60 % 60)m"
    default: "\(seconds / 86400)d\(seconds / 3600 % 24)h"
    }
}

func printTable(_ rows: [[String]]) {
    let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let cells = row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }
        print(cells.joined(separator: "  "))
    }
}
