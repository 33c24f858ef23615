import Testing
import WaypostCore

@Suite("SecureRandom")
struct SecureRandomTests {
    @Test("numbers are never handed out twice, across refills of the pool and between generators")
    func noRepeats() {
        var first = SecureRandom()
        var second = SecureRandom()
        // 3,000 draws: several refills of the 512-number pool.
        var seen = Set<UInt64>()
        for _ in 0..<1500 {
            seen.insert(first.next())
            seen.insert(second.next())
        }
        #expect(seen.count == 3000)
    }

    @Test("every bit is set about half the time")
    func bitsBalanced() {
        var random = SecureRandom()
        let draws = 4096
        var ones = [Int](repeating: 0, count: 64)
        for _ in 0..<draws {
            let value = random.next()
            for bit in 0..<64 where value & (1 << UInt64(bit)) != 0 { ones[bit] += 1 }
        }
        // Binomial(4096, 0.5): standard deviation 32; 8 of them either way is never reached by chance.
        for (bit, count) in ones.enumerated() {
            #expect(abs(count - draws / 2) < 256, "bit \(bit) set \(count) times of \(draws)")
        }
    }
}
