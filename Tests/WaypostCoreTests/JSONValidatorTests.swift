import Testing
import WaypostCore

@Suite("Strict JSON validation (validate: json)")
struct JSONValidatorTests {
    @Test(arguments: [
        "{}", "[]", "0", "-0.5e+10", "\"x\"", "true", "false", "null", " \n\t{\"a\":[1,2,{\"b\":null}]}\r\n",
        #"{"s":"\u00e9\n\"\\\/"}"#, "[1E5, 2e-3, -0, 10.25]", #""é😀""#,
    ])
    func accepts(_ text: String) {
        #expect(JSONValidator.isValid(Array(text.utf8)), "\(text)")
    }

    @Test(arguments: [
        "", " ", "{", "[1,]", "{\"a\":1,}", "{a:1}", "'x'", "01", "1.", ".5", "-", "1e", "+1", "tru", "nul", "[1 2]",
        "{\"a\" 1}", "\"unterminated", "\"bad \\x escape\"", "\"\\u12G4\"", "\"raw\ncontrol\"", "{} {}", "NaN", "[Infinity]",
    ])
    func refuses(_ text: String) {
        #expect(!JSONValidator.isValid(Array(text.utf8)), "\(text)")
    }

    @Test func refusesInvalidUTF8() {
        #expect(!JSONValidator.isValid([UInt8(ascii: "\""), 0xC3, 0x28, UInt8(ascii: "\"")]))
    }

    @Test func boundsNesting() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(!JSONValidator.isValid(Array(deep.utf8)))
        let fine = String(repeating: "[", count: 500) + String(repeating: "]", count: 500)
        #expect(JSONValidator.isValid(Array(fine.utf8)))
    }
}
