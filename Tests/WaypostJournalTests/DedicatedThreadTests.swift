import Foundation
import Synchronization
import Testing
import WaypostJournal

@Suite("Dedicated threads")
struct DedicatedThreadTests {
    @Test("a dedicated thread runs its body under its own name, as /proc shows it")
    func namedAsTheOSShowsIt() async throws {
        let release = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let ran = Mutex(false)
        startDedicatedThread(named: "wp-test-thread") {
            ran.withLock { $0 = true }
            release.wait()
            finished.signal()
        }
        // The body runs after the thread named itself; on a machine loaded by the rest of the
        // suite the thread may take a while to be scheduled at all.
        let deadline = ContinuousClock.now + .seconds(60)
        while !ran.withLock({ $0 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        let names = tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        release.signal()
        finished.wait()
        #expect(ran.withLock { $0 })
        #expect(names.contains("wp-test-thread"), "threads: \(names)")
    }
}
