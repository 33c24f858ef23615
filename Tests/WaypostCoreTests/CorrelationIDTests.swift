import Testing
import WaypostCore
import WaypostTestSupport

// MARK: Helpers, written independently of the code under test

/// Crockford's base32 alphabet, as the ULID spec writes it: no I, L, O or U.
private let crockford = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

/// `value` as `count` characters of Crockford base32, most significant first.
private func encodeCrockford(_ value: UInt128, count: Int) -> String {
    var chars: [Character] = []
    for index in 0..<count {
        let shift = UInt128(5 * (count - 1 - index))
        chars.append(crockford[Int((value >> shift) & 0x1F)])
    }
    return String(chars)
}

/// The number written by `text` in Crockford base32, or nil for a character outside the alphabet.
private func decodeCrockford(_ text: some StringProtocol) -> UInt128? {
    var value: UInt128 = 0
    for character in text {
        guard let digit = crockford.firstIndex(of: character) else { return nil }
        value = value << 5 | UInt128(digit)
    }
    return value
}

/// The ULID a generator must produce for this time and these 80 random bits.
private func expectedULID(ms: UInt64, random80: UInt128) -> String {
    encodeCrockford(UInt128(ms) << 80 | (random80 & (UInt128(1) << 80 - 1)), count: 26)
}

/// A generator that always returns the same word.
private struct ConstantGenerator: RandomNumberGenerator {
    var word: UInt64
    mutating func next() -> UInt64 { word }
}

private let maxULIDTime: UInt64 = 1 << 48 - 1

@Suite struct CorrelationIDTests {

    // MARK: Generated ids

    @Test(
        "generated ids are 26 Crockford base32 characters that decode to their millisecond",
        arguments: [0, 1, 31, 32, 1_469_918_176_385, 1_795_996_416_123, maxULIDTime - 1, maxULIDTime] as [UInt64]
    )
    func generatedShape(ms: UInt64) throws {
        for _ in 0..<200 {
            let id = CorrelationID.generate(millisecondsSince1970: ms)
            #expect(id.count == 26)
            #expect(id.utf8.count == 26)
            #expect(id.allSatisfy { crockford.contains($0) }, "\(id) has a character outside Crockford base32")
            #expect(!id.contains { "ILOUilou".contains($0) }, "\(id)")
            let time = try #require(decodeCrockford(id.prefix(10)))
            #expect(time == UInt128(ms), "\(id) decodes to \(time), not \(ms)")
            // A ULID's first character carries only the top 3 of 130 bits: never above 7.
            #expect("01234567".contains(id.first!), "\(id)")
            #expect(CorrelationID.isValidSupplied(id))
        }
    }

    /// Known ids from a generator whose every word is the same, computed here bit by bit.
    @Test(
        "known ids for fixed randomness",
        arguments: [
            (0, 0, "00000000000000000000000000"),
            (0, UInt64.max, "0000000000ZZZZZZZZZZZZZZZZ"),
            (maxULIDTime, 0, "7ZZZZZZZZZ0000000000000000"),
            (maxULIDTime, UInt64.max, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"),
            // The time part of the ULID spec's example, `ulid(1469918176385)`.
            (1_469_918_176_385, 0, "01ARYZ6S410000000000000000"),
            (1_469_918_176_385, 0x5555_5555_5555_5555, "01ARYZ6S41ANANANANANANANAN"),
            (1, 0xAAAA_AAAA_AAAA_AAAA, "0000000001NANANANANANANANA"),
        ] as [(UInt64, UInt64, String)]
    )
    func knownIDs(ms: UInt64, word: UInt64, expected: String) {
        var rng = ConstantGenerator(word: word)
        let id = CorrelationID.generate(millisecondsSince1970: ms, using: &rng)
        #expect(id == expected)
        // The same, computed from the 128-bit layout: 48 bits of time, then 80 bits of randomness.
        let pattern = UInt128(word & 0xFFFF) << 64 | UInt128(word)
        #expect(id == expectedULID(ms: ms, random80: pattern))
    }

    @Test("ids sort by time, as strings", arguments: [1, 2, 3] as [UInt64])
    func sortByTime(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        // Instants across character boundaries (every 5 bits) and up to the largest time.
        var instants: [UInt64] = [0, 1, 2, 30, 31, 32, 33, 1023, 1024, 1025, 1 << 40 - 1, 1 << 40, maxULIDTime]
        for bits in stride(from: 5, to: 48, by: 5) {
            instants += [1 << UInt64(bits) - 1, 1 << UInt64(bits)]
        }
        for _ in 0..<500 { instants.append(rng.next() >> 16) }
        instants = Array(Set(instants)).sorted()
        let ids = instants.map { CorrelationID.generate(millisecondsSince1970: $0, using: &rng) }
        for (earlier, later) in zip(ids, ids.dropFirst()) {
            #expect(earlier < later, "\(earlier) should sort before \(later)")
        }
        // Sorting shuffled ids restores time order.
        let shuffled = ids.shuffled(using: &rng)
        #expect(shuffled.sorted() == ids)
    }

    @Test func consecutiveMillisecondsSortWithSystemRandomness() {
        let start: UInt64 = 1_795_996_416_123
        var previous = CorrelationID.generate(millisecondsSince1970: start)
        for ms in start + 1...start + 2000 {
            let id = CorrelationID.generate(millisecondsSince1970: ms)
            #expect(previous < id)
            previous = id
        }
    }

    @Test func idsForTheSameMillisecondDiffer() {
        let ms: UInt64 = 1_795_996_416_123
        let ids = (0..<10_000).map { _ in CorrelationID.generate(millisecondsSince1970: ms) }
        #expect(Set(ids).count == ids.count)
        #expect(Set(ids.map { $0.prefix(10) }).count == 1)
    }

    /// All 80 random bits vary: every random character position takes many values.
    @Test(arguments: [nil, 42] as [UInt64?])
    func everyRandomCharacterVaries(seed: UInt64?) {
        var seeded = SplitMix(seed: seed ?? 0)
        var seen = Array(repeating: Set<Character>(), count: 26)
        for _ in 0..<4000 {
            let id =
                seed == nil
                ? CorrelationID.generate(millisecondsSince1970: 7)
                : CorrelationID.generate(millisecondsSince1970: 7, using: &seeded)
            for (index, character) in id.enumerated() { seen[index].insert(character) }
        }
        for index in 0..<10 {
            #expect(seen[index].count == 1, "time character \(index) varies")
        }
        for index in 10..<26 {
            // 4000 draws of a uniform 5-bit value miss one of 32 with probability ~32·(31/32)^4000.
            #expect(seen[index].count == 32, "random character \(index) took only \(seen[index].count) values")
        }
    }

    @Test func seededGeneratorIsDeterministic() {
        var first = SplitMix(seed: 2024)
        var second = SplitMix(seed: 2024)
        var other = SplitMix(seed: 2025)
        let a = (0..<50).map { CorrelationID.generate(millisecondsSince1970: UInt64($0), using: &first) }
        let b = (0..<50).map { CorrelationID.generate(millisecondsSince1970: UInt64($0), using: &second) }
        let c = (0..<50).map { CorrelationID.generate(millisecondsSince1970: UInt64($0), using: &other) }
        #expect(a == b)
        #expect(zip(a, c).allSatisfy { $0.prefix(10) == $1.prefix(10) && $0.suffix(16) != $1.suffix(16) })
        #expect(Set(a.map { $0.suffix(16) }).count == 50)
    }

    // MARK: Supplied ids

    @Test(
        "supplied ids of 1–128 characters of [A-Za-z0-9._:-] are accepted",
        arguments: [
            "a", "Z", "0", "...", "_", ":", "-",
            "01JD7Z8W1V3K4M5N6P7Q8R9S0T",
            "550e8400-e29b-41d4-a716-446655440000",
            "order:123.v2_retry-1",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-",
            String(repeating: "x", count: 127),
            String(repeating: "9", count: 128),
        ]
    )
    func acceptsSupplied(id: String) {
        #expect(CorrelationID.isValidSupplied(id))
    }

    @Test(
        "other supplied ids are refused (. and .. too: no status URL can name them)",
        arguments: [
            "", ".", "..",
            String(repeating: "x", count: 129),
            String(repeating: "x", count: 1000),
            "a b", " a", "a ", "a/b", "/", "a\\b", "%41", "a%2Fb", "a+b", "a,b", "a;b", "a=b", "a?b", "a#b",
            "a\"b", "a'b", "a<b>", "a@b", "a~b", "a*b", "(a)", "[a]", "{a}", "a|b", "a!b", "a$b", "a&b", "a^b", "`a`",
            "a\nb", "a\r\n", "a\tb", "\0", "a\u{7F}",
            "é", "café", "naïve", "ａ", "Ω", "ß", "🚀", "id\u{301}", "\u{200B}",
            // 128 characters but more than 128 bytes, and not ASCII anyway.
            String(repeating: "x", count: 127) + "é",
        ]
    )
    func refusesSupplied(id: String) {
        #expect(!CorrelationID.isValidSupplied(id))
    }
}
