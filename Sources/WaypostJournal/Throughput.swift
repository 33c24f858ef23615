import Synchronization

/// Messages accepted per route, and deliveries that ended `delivered` or `failed` per
/// destination, minute by minute over the last hour, in memory (the console's chart and rates,
/// SPEC §13). A restart starts it empty; the journal keeps the history.
public final class Throughput: Sendable {
    /// What is counted.
    public enum Event: Int, Sendable, CaseIterable {
        case accepted, delivered, failed
    }

    /// One minute's counts of every ``Event``.
    public struct Minute: Sendable, Equatable {
        /// Minutes since the Unix epoch.
        public var minute: Int64
        public var counts: [Int] = [0, 0, 0]

        public subscript(event: Event) -> Int { counts[event.rawValue] }
    }

    /// How many minutes are kept.
    public static let window = 60

    /// Per key (a route's name for `accepted`, ROUTE/DESTINATION for the others), a ring of
    /// minutes indexed by minute modulo ``window``.
    private let rings = Mutex<[String: [Minute]]>([:])

    public init() {}

    /// Counts one `event` of `key` at `milliseconds` since the Unix epoch.
    public func record(_ event: Event, key: String, atMilliseconds milliseconds: Int64) {
        let minute = milliseconds / 60_000
        let slot = Int(minute % Int64(Self.window))
        rings.withLock { rings in
            var ring = rings.removeValue(forKey: key) ?? (0..<Self.window).map { _ in Minute(minute: -1) }
            if ring[slot].minute != minute { ring[slot] = Minute(minute: minute) }
            ring[slot].counts[event.rawValue] += 1
            rings[key] = ring
        }
    }

    /// The last ``window`` minutes up to the one holding `milliseconds`, oldest first, summed
    /// over the keys `keys` selects (every key when nil).
    public func minutes(endingAtMilliseconds milliseconds: Int64, keys: ((String) -> Bool)? = nil) -> [Minute] {
        let last = milliseconds / 60_000
        var result = (0..<Self.window).map { Minute(minute: last - Int64(Self.window - 1) + Int64($0)) }
        rings.withLock { rings in
            for (key, ring) in rings where keys?(key) ?? true {
                for stored in ring where stored.minute > last - Int64(Self.window) && stored.minute <= last {
                    let index = Int(stored.minute - result[0].minute)
                    for event in Event.allCases { result[index].counts[event.rawValue] += stored[event] }
                }
            }
        }
        return result
    }
}
