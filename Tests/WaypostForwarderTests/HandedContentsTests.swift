import Testing

@testable import WaypostForwarder
@testable import WaypostJournal

@Suite("HandedContents: first-attempt contents kept in memory")
struct HandedContentsTests {
    private func content(id: Int64, bytes: Int) -> MessageForDelivery {
        MessageForDelivery(
            id: id, correlationID: "c\(id)", idempotencyKey: nil, method: "POST", path: "/", headers: [],
            body: [UInt8](repeating: 0x61, count: bytes), attempts: 0, cycleAttempts: 0, cycleStart: 0, clientAddress: nil)
    }

    @Test("bodies beyond the byte limit are not kept (the journal has them); taking one frees its room")
    func byteLimit() {
        var handed = HandedContents()
        let half = Forwarder.handedBytesLimit / 2
        handed.keep(content(id: 1, bytes: half))
        handed.keep(content(id: 2, bytes: half))
        handed.keep(content(id: 3, bytes: 1))  // over the limit by one byte
        #expect(handed.take(3) == nil)
        #expect(handed.take(1)?.body.count == half)
        #expect(handed.take(1) == nil, "taken once")
        handed.keep(content(id: 4, bytes: half))  // fits again
        #expect(handed.take(4)?.id == 4)
        #expect(handed.take(2)?.id == 2)
    }

    @Test("a reload drops every kept content")
    func removeAll() {
        var handed = HandedContents()
        handed.keep(content(id: 1, bytes: Forwarder.handedBytesLimit))
        handed.removeAll()
        #expect(handed.take(1) == nil)
        handed.keep(content(id: 2, bytes: Forwarder.handedBytesLimit))
        #expect(handed.take(2) != nil, "the room came back with the reload")
    }
}
