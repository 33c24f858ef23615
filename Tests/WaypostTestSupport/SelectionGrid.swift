import Testing
import WaypostCore
import WaypostJournal

/// Every pair of delivery states on two destinations, and each state alone, on two routes (with
/// `fillers` delivered messages of a third route before and after them): the journal's lists,
/// a replay's dry run and the replay count must select from it what the states' rules (SPEC
/// §11) select. Each journal's test writes these messages in its own SQL, then calls
/// ``check(reader:operations:)``.
public struct SelectionGrid: Sendable {
    /// A message as the test writes it: its route, when it came, and each delivery's state.
    public struct Message: Sendable {
        public var id: Int
        public var route: String
        public var receivedAt: String
        public var deliveries: [(destination: String, state: MessageState)]

        /// The message's state from its deliveries', as SPEC §11 says.
        public var state: MessageState {
            let states = deliveries.map(\.state)
            if states.contains(.inFlight) { return .inFlight }
            if states.contains(.queued) { return .queued }
            if states.contains(.delivered) && states.allSatisfy({ $0 == .delivered || $0 == .filtered }) { return .delivered }
            if states.allSatisfy({ $0 == .filtered }) { return .filtered }
            if states.contains(.failed) { return .failed }
            return .skipped
        }

        /// Whether the message is the filter's, in `wanted` (with a destination, that delivery's).
        func matches(_ filter: MessageFilter, state wanted: MessageState?) -> Bool {
            if let route = filter.route, route != self.route { return false }
            if let since = filter.since, receivedAt < since { return false }
            if let until = filter.until, receivedAt >= until { return false }
            if let destination = filter.destination {
                guard let delivery = deliveries.first(where: { $0.destination == destination }) else { return false }
                return wanted.map { delivery.state == $0 } ?? true
            }
            return wanted.map { state == $0 } ?? true
        }
    }

    /// The messages in id order (1, 2, …), one a second from `start`.
    public private(set) var messages: [Message] = []
    public let fillers: Int
    public let start: Int64

    public init(fillers: Int = 0, start: Int64 = 1_790_000_000_000) {
        self.fillers = fillers
        self.start = start
        let filler = Message(id: 0, route: "r3", receivedAt: "", deliveries: [("z", .delivered)])
        var messages = Array(repeating: filler, count: fillers)
        for route in ["r1", "r2"] {
            for first in MessageState.allCases {
                messages.append(Message(id: 0, route: route, receivedAt: "", deliveries: [("a", first)]))
                for second in MessageState.allCases {
                    messages.append(Message(id: 0, route: route, receivedAt: "", deliveries: [("a", first), ("b", second)]))
                }
            }
        }
        messages += Array(repeating: filler, count: fillers)
        for index in messages.indices {
            messages[index].id = index + 1
            messages[index].receivedAt = Timestamp.format(millisecondsSince1970: start + Int64(index) * 1000)
        }
        self.messages = messages
    }

    /// The messages of the grid itself, without the fillers.
    public var gridMessages: ArraySlice<Message> { messages[fillers..<(messages.count - fillers)] }

    /// Expects every filter of the grid (state, route, destination, time) to list, list newest
    /// first, count and dry-run replay exactly the messages the rules select, and the counts of
    /// waiting messages (the gauges') to be those of every state's.
    public func check(reader: any JournalReading, operations: any JournalOperating) throws {
        #expect(try reader.waitingCounts() == reader.counts().filter { !$0.state.isFinal })
        let middle = messages[messages.count / 2].receivedAt
        let limit = 1000
        var checked = 0
        for state in [nil] + MessageState.allCases {
            for route in [nil, "r1", "r2"] {
                for destination in [nil, "a", "b", "c"] {
                    for (since, until) in [(nil, nil), (middle, nil), (nil, middle)] as [(String?, String?)] {
                        let filter = MessageFilter(
                            state: state, route: route, destination: destination, since: since, until: until, limit: limit)
                        let expected = messages.filter { $0.matches(filter, state: state) }.map { "m\($0.id)" }
                        let what =
                            "state \(state?.rawValue ?? "any") route \(route ?? "any") destination \(destination ?? "any") since \(since ?? "-") until \(until ?? "-")"
                        #expect(try reader.list(filter).map(\.correlationID) == Array(expected.prefix(limit)), "list, \(what)")
                        var newest = filter
                        newest.newestFirst = true
                        #expect(
                            try reader.list(newest).map(\.correlationID) == Array(expected.reversed().prefix(limit)),
                            "newest first, \(what)")
                        if let state, state.isFinal {
                            #expect(try operations.replay(filter, dryRun: true) == expected, "dry run, \(what)")
                            #expect(try reader.replayCount(filter) == expected.count, "count, \(what)")
                        }
                        checked += 1
                    }
                }
            }
        }
        #expect(checked == 7 * 3 * 4 * 3)

        // A list carries each message's deliveries, as the message alone has them.
        for record in try reader.list(MessageFilter(route: "r1", limit: 1000)) {
            #expect(record.deliveries == (try reader.deliveries(messageID: record.id)), "deliveries of \(record.correlationID)")
            #expect(record.deliveries.count == messages[Int(record.id) - 1].deliveries.count)
        }

        // The ends of RFC 3339's years (PostgreSQL's own parsing refuses the year 0000).
        #expect(try reader.list(MessageFilter(until: "0000-02-29T00:01:13.663Z", limit: 10)).isEmpty)
        #expect(try reader.list(MessageFilter(since: "0000-02-29T00:01:13.663Z", limit: 10)).count == 10)
        #expect(try reader.list(MessageFilter(state: .failed, since: "0000-01-01T00:00:00Z", limit: 10)).count == 10)
        #expect(try reader.list(MessageFilter(since: "9999-12-31T23:59:59.999Z", limit: 10)).isEmpty)

        // Names with a NUL (from a query's %00) name nothing stored, and fail nothing.
        let nul = "m1\0"
        #expect(try reader.message(correlationID: nul) == nil)
        #expect(try reader.list(MessageFilter(route: "r1\0", limit: 10)).isEmpty)
        #expect(try reader.list(MessageFilter(destination: "a\0", limit: 10)).isEmpty)
        #expect(try reader.replayCount(MessageFilter(state: .failed, route: "r1\0", limit: 10)) == 0)
        #expect(try operations.replay(ids: [nul], destination: nil, dryRun: true).isEmpty)
        #expect(try operations.replay(ids: ["m1"], destination: "a\0", dryRun: true).isEmpty)
        #expect(try operations.skip(id: nul, destination: nil) == false)
    }
}
