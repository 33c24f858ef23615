import Synchronization
import Testing
import WaypostCore
import WaypostJournal

@Suite("OutcomeBoard: an outcome is published before its commit, and journal reads wait for the commit")
struct OutcomeBoardTests {
    let delivered = FinalOutcome(
        state: .delivered, response: StoredResponse(status: 200, headers: [], body: Array("ok".utf8)), lastError: nil)

    @Test("watchers are called once when the outcome is published, not for other messages, not after cancel")
    func watchersCalledOnPublish() {
        let board = OutcomeBoard()
        let seen = Mutex<[String]>([])
        _ = board.watch("a") { outcome in seen.withLock { $0.append("a:\(outcome.state)") } }
        _ = board.watch("b") { _ in seen.withLock { $0.append("b") } }
        let cancelled = board.watch("a") { _ in seen.withLock { $0.append("cancelled") } }
        board.cancel("a", cancelled)
        #expect(board.watcherCount == 2)
        board.publish("a", delivered)
        board.publish("a", delivered)  // no watchers left for a
        #expect(seen.withLock { $0 } == ["a:delivered"])
        #expect(board.watcherCount == 1)
    }

    @Test("between publish and recorded, reads wait and new watchers get the outcome at once; after it, reads run at once")
    func readsWaitForTheCommit() {
        let board = OutcomeBoard()
        let events = Mutex<[String]>([])
        board.afterRecorded("a") { events.withLock { $0.append("read before publish") } }
        board.publish("a", delivered)
        board.afterRecorded("a") { events.withLock { $0.append("read 1") } }
        board.afterRecorded("a") { events.withLock { $0.append("read 2") } }
        board.afterRecorded("b") { events.withLock { $0.append("read of b") } }
        _ = board.watch("a") { outcome in events.withLock { $0.append("late watcher: \(outcome.state)") } }
        #expect(events.withLock { $0 } == ["read before publish", "read of b", "late watcher: delivered"])
        #expect(board.watcherCount == 0)
        board.recorded("a")
        #expect(events.withLock { $0 }.suffix(2) == ["read 1", "read 2"])
        board.afterRecorded("a") { events.withLock { $0.append("read after") } }
        #expect(events.withLock { $0 }.last == "read after")
        board.recorded("a")  // a second report changes nothing
        #expect(events.withLock { $0 }.count == 6)
    }
}
