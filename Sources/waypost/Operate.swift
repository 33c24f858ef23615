import ArgumentParser
import Foundation
import WaypostCore
import WaypostJournal

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send messages again: by id, or every message in a state matching filters.",
        discussion: """
            Replayed messages are queued again with a fresh retry budget; a running server picks
            them up within a second. Only messages in a final state (failed, delivered, skipped)
            are replayed.
            """)

    @OptionGroup var journal: JournalOptions

    @Argument(help: "Correlation ids of the messages to replay.")
    var ids: [String] = []

    @Option(help: "Replay every message in this state (failed, delivered or skipped).")
    var state: String?

    @Option(help: "Only messages of this route.")
    var route: String?

    @Option(help: "Replay the delivery to this destination only (with --state, messages whose delivery to it is in that state).")
    var destination: String?

    @Option(parsing: .unconditional, help: "Only messages received since: a duration ago (2h, 7d) or an RFC 3339 time.")
    var since: String?

    @Option(parsing: .unconditional, help: "Only messages received before: a duration ago or an RFC 3339 time.")
    var until: String?

    @Flag(help: "Print what would be replayed, change nothing.")
    var dryRun = false

    func validate() throws {
        if ids.isEmpty == (state == nil) {
            throw ValidationError("give either message ids or --state (with optional --route, --since, --until)")
        }
        if !ids.isEmpty && (route != nil || since != nil || until != nil) {
            throw ValidationError("--route, --since and --until filter --state; they cannot be combined with ids")
        }
        _ = try filter()
    }

    func filter() throws -> MessageFilter {
        try messageFilter(
            [("state", state), ("route", route), ("destination", destination), ("since", since), ("until", until)],
            states: MessageState.replayable)
    }

    func run() throws {
        let filter = try filter()
        try reportingFailure {
            let operations = try journal.open().operations()
            if ids.isEmpty {
                let replayed = try operations.replay(filter, dryRun: dryRun)
                for id in replayed where dryRun { print(id) }
                print(dryRun ? "would replay \(replayed.count) message(s)" : "replayed \(replayed.count) message(s)")
                return
            }
            let replayed = try operations.replay(ids: ids, destination: destination, dryRun: dryRun)
            print(dryRun ? "would replay \(replayed.count) message(s)" : "replayed \(replayed.count) message(s)")
            let missed = ids.filter { !replayed.contains($0) }
            if !missed.isEmpty {
                throw Failure("not replayed (unknown id, or not in a final state): \(missed.joined(separator: " "))")
            }
        }
    }
}

struct Purge: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete delivered messages older than a duration.")

    @OptionGroup var journal: JournalOptions

    @Option(
        name: .customLong("delivered-older-than"), parsing: .unconditional,
        help: "Delete messages delivered longer ago than this (e.g. 7d, at most 36500d).")
    var deliveredOlderThan: String

    func validate() throws {
        guard parseDuration(deliveredOlderThan) != nil else {
            throw ValidationError(
                "--delivered-older-than must be a duration such as 7d or 12h (at most 36500d, no sign); got '\(deliveredOlderThan)'")
        }
    }

    func run() throws {
        try reportingFailure {
            let operations = try journal.open().operations()
            let purged = try operations.purgeDelivered(before: Timestamp.filterBound(deliveredOlderThan)!)
            print("purged \(purged) delivered message(s)")
        }
    }
}
