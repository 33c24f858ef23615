import Testing
import WaypostCore
import WaypostJournal

@Suite("MessageFilter.set: one validation for the admin API and the CLI")
struct MessageFilterTests {
    @Test(
        "out-of-range and malformed values are errors naming the key",
        arguments: [
            ("state", "banana"), ("since", "2026-13-45T99:99:99Z"), ("since", "99999999999999999d"), ("since", "-2h"),
            ("until", "36501d"), ("limit", "0"), ("limit", "1001"), ("limit", "99999999999999999999"), ("limit", "-1"),
            ("limit", "ten"), ("cursor", "99999999999999999999999"), ("cursor", "-5"), ("cursor", "abc"), ("bogus", "1"),
        ])
    func refused(key: String, value: String) {
        var filter = MessageFilter()
        let error = #expect(throws: FilterError.self) { try filter.set(key, value) }
        #expect(error?.key == key)
        #expect(error?.message.isEmpty == false)
    }

    @Test("valid values set the filter; an empty value leaves the key unset")
    func accepted() throws {
        var filter = MessageFilter()
        try filter.set("state", "failed")
        try filter.set("route", "github")
        try filter.set("since", "2h", now: 7_200_000)
        try filter.set("until", "2026-11-30T08:00:00Z")
        try filter.set("limit", "1000")
        try filter.set("cursor", "42")
        try filter.set("state", "")
        #expect(filter.state == .failed && filter.route == "github" && filter.limit == 1000 && filter.afterID == 42)
        #expect(filter.since == "1970-01-01T00:00:00.000Z" && filter.until == "2026-11-30T08:00:00.000Z")
        #expect(throws: FilterError.self) { try filter.set("state", "queued", states: MessageState.replayable) }
    }
}
