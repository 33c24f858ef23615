/// Correlation ids: the name of a message for its source, the status API and operators.
///
/// Waypost generates ULIDs (https://github.com/ulid/spec): 48 bits of milliseconds since the
/// Unix epoch followed by 80 random bits from the kernel's cryptographic generator (``SecureRandom``), written
/// as 26 characters of Crockford base32. They sort by time and cannot be guessed.
/// A source may supply its own id instead; ``CorrelationID/isValidSupplied(_:)`` states which.
public enum CorrelationID {
    private static let alphabet: [UInt8] = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    /// A new ULID for the given time (milliseconds since the Unix epoch).
    public static func generate(millisecondsSince1970 ms: UInt64) -> String {
        var rng = SecureRandom()
        return generate(millisecondsSince1970: ms, using: &rng)
    }

    /// A new ULID whose random part comes from `rng` (tests pass a seeded generator).
    public static func generate(millisecondsSince1970 ms: UInt64, using rng: inout some RandomNumberGenerator) -> String {
        // 128 bits: time in the high 48, randomness in the low 80.
        let random = rng.next() as UInt64
        let randomHigh = UInt64(rng.next() as UInt16)
        let high = (ms << 16) | randomHigh  // bits 127...64
        let low = random  // bits 63...0
        var chars = [UInt8](repeating: 0, count: 26)
        // 26 characters × 5 bits = 130 bits; the first character carries the top 3 bits.
        for index in 0..<26 {
            let shift = 125 - index * 5  // bit position of this character's lowest bit
            let value: UInt64
            if shift >= 64 {
                value = (high >> UInt64(shift - 64)) & 0x1F
            } else if shift + 5 <= 64 {
                value = (low >> UInt64(shift)) & 0x1F
            } else {
                // Straddles the two words: low bits from `low`, high bits from `high`.
                let lowBits = 64 - shift
                value = ((low >> UInt64(shift)) | (high << UInt64(lowBits))) & 0x1F
            }
            chars[index] = alphabet[Int(value)]
        }
        return String(decoding: chars, as: UTF8.self)
    }

    /// Whether a source-supplied `X-Correlation-ID` is acceptable: 1–128 characters of
    /// `[A-Za-z0-9._:-]` (SPEC §2), but not `.` or `..`, which no status URL can name (a path
    /// segment of dots is refused there). Anything else is answered with `400`.
    public static func isValidSupplied(_ id: String) -> Bool {
        let utf8 = id.utf8
        guard (1...128).contains(utf8.count), id != ".", id != ".." else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: ":"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }
}
