import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The kernel's cryptographic random numbers without a system call for each: a 4 KiB read
/// of `/dev/urandom` fills a pool, and every number is taken from it once. Correlation ids
/// and retry jitter need two numbers and one per message; `SystemRandomNumberGenerator`
/// costs a `getrandom` call per number.
public struct SecureRandom: RandomNumberGenerator, Sendable {
    private struct Pool {
        var numbers = [UInt64](repeating: 0, count: 512)
        var next = 512
        /// Kept open; -1 when it cannot be opened (then the standard generator fills the pool).
        let urandom = open("/dev/urandom", O_RDONLY | O_CLOEXEC)

        mutating func take() -> UInt64 {
            if next == numbers.count {
                refill()
                next = 0
            }
            defer { next += 1 }
            return numbers[next]
        }

        private mutating func refill() {
            let urandom = self.urandom
            let filled = numbers.withUnsafeMutableBytes { buffer in
                var filled = 0
                while urandom >= 0 && filled < buffer.count {
                    let count = read(urandom, buffer.baseAddress! + filled, buffer.count - filled)
                    if count > 0 {
                        filled += count
                    } else if count == 0 || errno != EINTR {
                        break
                    }
                }
                return filled
            }
            guard filled < numbers.count * 8 else { return }
            var system = SystemRandomNumberGenerator()
            for index in numbers.indices { numbers[index] = system.next() }
        }
    }

    private static let pool = Mutex(Pool())

    public init() {}

    public mutating func next() -> UInt64 {
        Self.pool.withLock { $0.take() }
    }
}
