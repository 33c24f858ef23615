// The journal writers' benchmark (issue 18): CLIENTS concurrent submitters, each storing a
// message and waiting for its durable acknowledgement before the next, for SECONDS, against the
// SQLite journal or a PostgreSQL one. No HTTP: this measures what a journal can commit, and
// how much group commit gathers. `scripts/bench/journal.sh` runs it against both, in one run.
//
//     waypost-journal-bench sqlite PATH CLIENTS SECONDS
//     waypost-journal-bench postgres URL CLIENTS SECONDS      (password from the URL or PGPASSWORD)
//
// It prints one line of figures; it judges nothing.

import Foundation
import Logging
import PostgresNIO
import Synchronization
import WaypostCore
import WaypostJournal
import WaypostPostgres

/// The messages' body: 1 KiB of JSON.
let body = Array(("{\"order\":1,\"note\":\"" + String(repeating: "x", count: 1024 - 22) + "\"}").utf8)

/// The acknowledgement times and what the writer reports at the end.
final class Results: Sendable {
    let latencies = Mutex<[Double]>([])
}

func message(_ client: Int, _ sequence: Int) -> IncomingMessage {
    IncomingMessage(
        correlationID: "b\(getpid())-\(client)-\(sequence)", correlationIDWasSupplied: false, route: "bench", idempotencyKey: nil,
        dedupWindowMilliseconds: 0, method: "POST", path: "/", headers: [HeaderField(name: "Content-Type", value: "application/json")],
        body: body, receivedAt: Int64(Date().timeIntervalSince1970 * 1000))
}

/// Runs CLIENTS loops of submit-and-wait for `seconds`; the acknowledgement latencies in ms.
func load(
    clients: Int, seconds: Double, submit: @escaping @Sendable (IncomingMessage, @escaping @Sendable (Bool) -> Void) -> Void
) async -> [Double] {
    let results = Results()
    let end = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    await withTaskGroup(of: Void.self) { group in
        for client in 0..<clients {
            group.addTask {
                var sequence = 0
                var mine: [Double] = []
                while ContinuousClock.now < end {
                    let started = ContinuousClock.now
                    let stored = await withCheckedContinuation { continuation in
                        submit(message(client, sequence)) { continuation.resume(returning: $0) }
                    }
                    guard stored else { break }
                    let elapsed = ContinuousClock.now - started
                    mine.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                    sequence += 1
                }
                results.latencies.withLock { $0 += mine }
            }
        }
    }
    return results.latencies.withLock { $0 }
}

func report(_ backend: String, clients: Int, seconds: Double, latencies: [Double], commits: Int, failed: Int) {
    let sorted = latencies.sorted()
    func percentile(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let peak =
        status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }.map { $0.dropFirst(6).trimmingCharacters(in: .whitespaces) } ?? "?"
    let figures = String(
        format: "clients %4d  acks/s %8.0f  p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  commits %7d  batch %6.1f  failed %d",
        clients, Double(sorted.count) / seconds, percentile(0.5), percentile(0.9), percentile(0.99), commits,
        commits == 0 ? 0 : Double(sorted.count) / Double(commits), failed)
    print(backend.padding(toLength: 9, withPad: " ", startingAt: 0) + figures + "  peak RSS " + peak)
}

@main
struct Entry {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard arguments.count == 5, let clients = Int(arguments[3]), (1...4096).contains(clients), let seconds = Double(arguments[4]),
            seconds > 0 && seconds <= 3600
        else {
            FileHandle.standardError.write(Data("usage: waypost-journal-bench sqlite PATH|postgres URL CLIENTS(1-4096) SECONDS\n".utf8))
            exit(64)
        }
        let logger = {
            var logger = Logger(label: "bench")
            logger.logLevel = .warning
            return logger
        }()
        switch arguments[1] {
        case "sqlite":
            let writer = try JournalWriter(path: arguments[2], durability: .full, maxBacklog: .max, logger: logger)
            writer.start()
            let latencies = await load(clients: clients, seconds: seconds) { message, done in
                writer.submit(message) { done((try? $0.get()) != nil) }
            }
            let statistics = writer.statistics
            await writer.shutdown()
            report("sqlite", clients: clients, seconds: seconds, latencies: latencies, commits: statistics.intakeCommits, failed: 0)
        case "postgres":
            let location = try PostgresLocation(url: arguments[2])
            let configuration = PostgresConnection.Configuration(
                host: location.host, port: location.port, username: location.user, password: location.password,
                database: location.database, tls: .disable)
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
            try await PostgresSchema.migrate(connection, logger: logger)
            try await connection.close()
            let writer = PostgresJournalWriter(
                connect: { try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger) },
                maxBacklog: .max, logger: logger)
            let running = Task { await writer.run() }
            let latencies = await load(clients: clients, seconds: seconds) { message, done in
                writer.submit(message) { done((try? $0.get()) != nil) }
            }
            writer.shutdown()
            await running.value
            let statistics = writer.statistics
            report(
                "postgres", clients: clients, seconds: seconds, latencies: latencies, commits: statistics.commits,
                failed: statistics.failedCommits)
        default:
            FileHandle.standardError.write(Data("the backend is sqlite or postgres, not \(arguments[1])\n".utf8))
            exit(64)
        }
    }
}
