import Foundation
import Testing
import WaypostCore
import WaypostJournal

/// A failed commit acknowledges nothing: the journal lives on a small tmpfs that the test
/// fills, so SQLite's writes fail for real with SQLITE_FULL.
@Suite("Journal on a full disk")
struct DiskFullTests {
    static let canMount: Bool = {
        guard getuid() == 0 else { return false }
        guard let dir = try? ScratchDirectory() else { return false }
        defer { dir.remove() }
        guard (runSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir.path])) == 0 else { return false }
        _ = runSync(["umount", dir.path])
        return true
    }()

    @Test(
        "when the disk is full every request of the batch fails, nothing is stored, and storing resumes when space returns",
        .enabled(if: canMount, "needs root and tmpfs to fill a file system (run as root, as CI does)"))
    func diskFull() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        #expect(runSync(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir.path]) == 0)
        defer { _ = runSync(["umount", "-l", dir.path]) }
        let journal = dir.file("j.db")
        let writer = try JournalWriter.open(journal)
        let before = makeMessage()
        #expect(await writer.store(before).isStored)

        // Fill the file system to the last byte.
        _ = runSync(["dd", "if=/dev/zero", "of=\(dir.file("filler"))", "bs=4096"])
        var acknowledged: [String] = []
        var refused = 0
        for _ in 0..<20 {
            let message = makeMessage(body: Array(repeating: 0x41, count: 16_384))
            switch await writer.store(message) {
            case .success(.stored(let id)): acknowledged.append(id)
            case .failure(.storage(let error)):
                refused += 1
                #expect(error.cause?.code == 13 || error.cause?.code == 10, "expected SQLITE_FULL or SQLITE_IOERR, got \(error)")
            default: Issue.record("unexpected outcome")
            }
        }
        #expect(refused > 0, "the full disk refused nothing")

        // Space returns: the writer stores again without a restart.
        try FileManager.default.removeItem(atPath: dir.file("filler"))
        let after = makeMessage()
        #expect(await writer.store(after).isStored)
        await writer.shutdown()

        // Exactly the acknowledged messages are in the journal.
        let ids = try sqlite3(journal, "SELECT correlation_id FROM messages ORDER BY id").split(separator: "\n").map(String.init)
        #expect(ids == [before.correlationID] + acknowledged + [after.correlationID])
        #expect(try sqlite3(journal, "PRAGMA integrity_check") == "ok")
    }
}
