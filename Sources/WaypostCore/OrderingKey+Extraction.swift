import Foundation

extension OrderingKey {
    /// The ordering key of a request: the named header's first value, or the JSON value at
    /// the pointer (strings as they are, numbers and booleans as JSON text). Nil when the
    /// request has no such value; such messages share one queue (SPEC §3). A NUL in a JSON
    /// string is kept as U+FFFD: no journal's text holds NUL (PostgreSQL refuses it), and keys
    /// that differ only there share a queue, which keeps each one's order.
    public func value(headers: [HeaderField], body: [UInt8]) -> String? {
        switch self {
        case .header(let name):
            return headers.first { $0.name.caseInsensitiveEquals(name) }?.value
        case .jsonPointer(let pointer):
            // The validator bounds the nesting depth before Foundation recurses into it.
            guard JSONValidator.isValid(body),
                let document = try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]),
                let value = JSONPointer.resolve(pointer, in: document)
            else { return nil }
            switch value {
            case let string as String: return string.utf8.contains(0) ? string.replacingOccurrences(of: "\0", with: "\u{FFFD}") : string
            // Booleans are NSNumbers too; tell them apart so `true` and `1` are different keys.
            case let number as NSNumber where String(cString: number.objCType) == "c": return number.boolValue ? "true" : "false"
            case let number as NSNumber: return number.stringValue
            default: return nil
            }
        }
    }
}

/// RFC 6901 JSON pointers over Foundation's JSON objects.
public enum JSONPointer {
    /// The value at `pointer` in `document`, or nil when the pointer names nothing.
    public static func resolve(_ pointer: String, in document: Any) -> Any? {
        if pointer.isEmpty { return document }
        guard pointer.hasPrefix("/") else { return nil }
        var current: Any = document
        for rawToken in pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            let token = rawToken.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            if let object = current as? [String: Any] {
                guard let next = object[token] else { return nil }
                current = next
            } else if let array = current as? [Any] {
                guard let index = Int(token), index >= 0, index < array.count, String(index) == token else { return nil }
                current = array[index]
            } else {
                return nil
            }
        }
        return current
    }
}

extension String {
    /// ASCII case-insensitive equality, as HTTP field names compare.
    public func caseInsensitiveEquals(_ other: String) -> Bool {
        let a = utf8
        let b = other.utf8
        guard a.count == b.count else { return false }
        // Native strings are contiguous: compare the bytes in place, without iterators.
        let inPlace = a.withContiguousStorageIfAvailable { a in
            b.withContiguousStorageIfAvailable { b in
                for index in 0..<a.count where !Self.sameLetter(a[index], b[index]) { return false }
                return true
            }
        }
        if let inPlace = inPlace ?? nil { return inPlace }
        return zip(a, b).allSatisfy(Self.sameLetter)
    }

    private static func sameLetter(_ x: UInt8, _ y: UInt8) -> Bool {
        x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7A)
    }
}
