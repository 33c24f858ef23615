/// The items of a request target's query (`state=failed&since=2h`), as the admin and status
/// APIs read them: split on `&`, each item on its first `=`, `+` read as a space and `%XX`
/// escapes decoded. Total on any input: a malformed item is an error, never a trap.
public enum QueryString {
    /// A query item that cannot be read.
    public struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// The query part of a request target (after the first `?`), or `""`.
    public static func query(ofTarget target: String) -> Substring {
        guard let mark = target.firstIndex(of: "?") else { return "" }
        return target[target.index(after: mark)...]
    }

    /// The items in order; an item without `=` has the value `""`, empty items (`a=1&&b=2`)
    /// are skipped.
    ///
    /// - Throws: ``Malformed`` for an empty name, a `%` not followed by two hex digits, or an
    ///   item that does not decode to UTF-8.
    public static func items(_ query: Substring) throws(Malformed) -> [(name: String, value: String)] {
        var items: [(name: String, value: String)] = []
        for item in query.split(separator: "&", omittingEmptySubsequences: true) {
            let equals = item.firstIndex(of: "=")
            let name = try decode(item[..<(equals ?? item.endIndex)])
            let value = try equals.map { equals throws(Malformed) in try decode(item[item.index(after: equals)...]) } ?? ""
            guard !name.isEmpty else { throw Malformed(message: "a query item has no name: \(item.prefix(40))") }
            items.append((name, value))
        }
        return items
    }

    /// The items as a dictionary of the names in `allowed`.
    ///
    /// - Throws: ``Malformed`` for an item ``items(_:)`` refuses, a name not in `allowed`, or a
    ///   name given twice.
    public static func dictionary(_ query: Substring, allowed: [String]) throws(Malformed) -> [String: String] {
        var result: [String: String] = [:]
        for (name, value) in try items(query) {
            guard allowed.contains(name) else {
                throw Malformed(message: "unknown query item \(name.prefix(40)); the items are \(allowed.joined(separator: ", "))")
            }
            guard result.updateValue(value, forKey: name) == nil else {
                throw Malformed(message: "the query item \(name) is given twice")
            }
        }
        return result
    }

    /// Percent-decodes `text` (and `+` as a space) into UTF-8.
    static func decode(_ text: Substring) throws(Malformed) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    throw Malformed(message: "a % in the query is not followed by two hex digits: \(text.prefix(40))")
                }
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw Malformed(message: "a query item does not decode to UTF-8: \(text.prefix(40))")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
