import Testing
import WaypostCore

@testable import WaypostTransform

@Suite("jq programs in process: types, errors, unicode, numbers, transform outputs")
struct JQProgramTests {
    private func run(_ program: String, _ input: String) throws -> JQProgram.Output<String> {
        try JQProgram(program).run(Array(input.utf8))
    }

    @Test("every JSON type goes in and comes out as jq prints it")
    func types() throws {
        #expect(try run(".", #"{"a":[1,2.5,"x",true,false,null,{}]}"#) == .value(#"{"a":[1,2.5,"x",true,false,null,{}]}"#))
        #expect(try run(".a | length", #"{"a":[1,2,3]}"#) == .value("3"))
        #expect(
            try run("{id: .order.id, total: (.order.total_cents / 100)}", #"{"order":{"id":"A1","total_cents":1250}}"#)
                == .value(#"{"id":"A1","total":12.5}"#))
        #expect(try run(".n | type", #"{"n":"7"}"#) == .value(#""string""#))
    }

    @Test("null and no output are none; a second output and runtime errors are errors with jq's message")
    func noneAndErrors() throws {
        #expect(try run("null", "{}") == .none)
        #expect(try run("empty", "{}") == .none)
        #expect(try run(".missing", "{}") == .none)
        #expect(try run(".[]", "[1,2]") == .error("the program produced more than one output; a transform or a reply produces one"))
        #expect(try run("range(1e12)", "null") == .error("the program produced more than one output; a transform or a reply produces one"))
        #expect(try run(#"error("boom")"#, "{}") == .error("boom"))
        #expect(try run("error({code: 1})", "{}") == .error(#"{"code":1} (not a string)"#))
        #expect(try run(".a + 1", #"{"a":"x"}"#) == .error(#"string ("x") and number (1) cannot be added"#))
        #expect(try run("halt_error", #""bye""#) == .error("the program halted (halt and halt_error end jq, not a transform)"))
        // The builtins that call back into the host: no input to read, debug output dropped.
        #expect(try run("input", "{}") == .error("No more inputs"))
        #expect(try run("[inputs]", "{}") == .error("No more inputs"))
        #expect(try run("debug | .a", #"{"a":1}"#) == .value("1"))
        // Runs again after an error: the state is reset by the next start.
        let program = try JQProgram(".a / .b")
        #expect(
            program.run(Array(#"{"a":1,"b":0}"#.utf8)) == .error("number (1) and number (0) cannot be divided because the divisor is zero"))
        #expect(program.run(Array(#"{"a":6,"b":3}"#.utf8)) == .value("2"))
    }

    @Test("a program that does not compile throws jq's message; import and include find no file")
    func compileErrors() {
        #expect(throws: JQError.self) { try JQProgram(".a |") }
        do {
            _ = try JQProgram("{a: .b")
            Issue.record("compiled")
        } catch {
            #expect(error.message.contains("syntax error"), "\(error.message)")
        }
        #expect(throws: JQError.self) { try JQProgram(#"include "/etc/passwd"; ."#) }
        #expect(throws: JQError.self) { try JQProgram(#"import "/etc/os-release" as $x; $x"#) }
    }

    @Test("unicode passes through as UTF-8, escapes are decoded, and string functions count code points")
    func unicode() throws {
        #expect(try run(".s", #"{"s":"héllo wörld 🚀"}"#) == .value(#""héllo wörld 🚀""#))
        #expect(try run(".s | length", #"{"s":"🚀é"}"#) == .value("2"))
        #expect(try run(".s", #"{"s":"\u00e9\ud83d\ude80"}"#) == .value(#""é🚀""#))
        #expect(try run(".s | ascii_downcase", #"{"s":"ÀB"}"#) == .value(#""Àb""#))
    }

    @Test("numbers are doubles in jq 1.6: integers past 2^53 lose digits, which is why an untouched body is sent as received")
    func bigNumbers() throws {
        #expect(try run(".n", #"{"n":9007199254740993}"#) == .value("9007199254740992"))
        #expect(try run(".n", #"{"n":12345678901234567890}"#) == .value("12345678901234567000"))
        #expect(try run(".n + 1", #"{"n":1.5}"#) == .value("2.5"))
        let untouched = TransformWorker.run(
            try JQProgram(#".headers["x-seen"] = "yes""#),
            TransformRequest(program: 0, mode: .transform, input: Array(#"{"headers":{},"body":{"n":12345678901234567890}}"#.utf8)))
        #expect(untouched == .shaped(ShapedOutput(rest: #"{"headers":{"x-seen":"yes"}}"#, body: .unchanged)))
    }

    @Test("transform outputs: a changed body is JSON, or the text of a string when the stored body was not JSON; non-objects are errors")
    func shapes() throws {
        func shaped(_ program: String, _ input: String, bodyIsJSON: Bool = true) throws -> TransformAnswer {
            TransformWorker.run(
                try JQProgram(program), TransformRequest(program: 0, mode: .transform, bodyIsJSON: bodyIsJSON, input: Array(input.utf8)))
        }
        let input = #"{"method":"POST","path":"/x","query":"","headers":{"a":"1"},"body":{"order":{"id":7}}}"#
        #expect(
            try shaped(".body |= {id: .order.id}", input)
                == .shaped(
                    ShapedOutput(
                        rest: #"{"method":"POST","path":"/x","query":"","headers":{"a":"1"}}"#, body: .replaced(Array(#"{"id":7}"#.utf8)))))
        #expect(try shaped("{body: \"plain\"}", input) == .shaped(ShapedOutput(rest: "{}", body: .replaced(Array(#""plain""#.utf8)))))
        #expect(
            try shaped("{body: (.body + \"!\")}", #"{"body":"not json"}"#, bodyIsJSON: false)
                == .shaped(ShapedOutput(rest: "{}", body: .replaced(Array("not json!".utf8)))))
        #expect(try shaped("{path: \"/y\"}", input) == .shaped(ShapedOutput(rest: #"{"path":"/y"}"#, body: .unchanged)))
        #expect(try shaped("null", input) == .none)
        #expect(try shaped("[1]", input) == .error("the output is array, not an object or null"))
        #expect(try shaped(".body.order.id", input) == .error("the output is number, not an object or null"))
        // The document mode, for replies and `waypost transform`, is the output as JSON.
        let document = TransformWorker.run(
            try JQProgram("{status: 200, body: {ok: true}}"), TransformRequest(program: 0, mode: .document, input: Array("{}".utf8)))
        #expect(document == .document(#"{"status":200,"body":{"ok":true}}"#))
    }

    @Test("requests and answers survive their encoding")
    func encoding() {
        let request = TransformRequest(program: 70_000, mode: .transform, bodyIsJSON: false, input: Array("{\"a\":1}".utf8))
        #expect(TransformRequest(request.encoded) == request)
        for answer: TransformAnswer in [
            .document("{}"), .none, .error("boom"), .shaped(ShapedOutput(rest: "{}", body: .unchanged)),
            .shaped(ShapedOutput(rest: #"{"path":"/a"}"#, body: .replaced([0, 1, 0xFF]))),
        ] {
            #expect(TransformAnswer(frame: answer.encoded) == answer)
        }
        #expect(TransformAnswer(frame: []) == nil)
        #expect(TransformAnswer(frame: [1, 0, 0, 0, 9, 1]) == nil)
        #expect(TransformRequest([0, 0]) == nil)
    }
}
