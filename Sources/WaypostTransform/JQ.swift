import CJQ

#if canImport(Glibc)
    import Glibc
#endif

/// One compiled jq 1.6 program (SPEC §11), run over JSON documents.
///
/// A program and every value it touches belong to the thread that made it: jq 1.6 counts
/// references without atomics. Compiling is slow (milliseconds), so a program is compiled once
/// and run many times. It cannot be interrupted and has no memory limit of its own: Waypost
/// runs programs only in a worker process (``TransformWorker``) that can be killed.
///
///     let program = try JQProgram("{id: .order.id}")
///     program.run(Array(#"{"order":{"id":7}}"#.utf8))  // .value("{\"id\":7}")
public final class JQProgram {
    /// The exit status of a process whose jq ran out of memory.
    public static let outOfMemoryStatus: Int32 = 86

    private var state: OpaquePointer?

    /// What one run produced.
    public enum Output<Value> {
        /// The output, as the caller shaped it (by default compact JSON).
        case value(Value)
        /// No output, or `null`.
        case none
        /// A runtime error, with jq's message, or the caller's objection to the output.
        case error(String)
    }

    /// Compiles `text` with no library path (`import` and `include` find nothing) and the
    /// environment of this process (a worker's is empty, so `$ENV` is `{}`).
    ///
    /// - Throws: ``JQError`` with jq's messages when the program does not compile.
    public init(_ text: String) throws(JQError) {
        guard let state = jq_init() else { throw JQError(message: "jq cannot start (out of memory)") }
        self.state = state
        let messages = MessageSink()
        let context = Unmanaged.passUnretained(messages).toOpaque()
        jq_set_error_cb(
            state,
            { context, message in
                guard let context else { return jv_free(message) }
                Unmanaged<MessageSink>.fromOpaque(context).takeUnretainedValue().take(message)
            }, context)
        jq_set_attr(state, jv_string("JQ_LIBRARY_PATH"), jv_array())
        // `input`, `inputs` and `debug` call back into the host (jq 1.6 crashes without the
        // callbacks): there is no more input, and debug messages go nowhere.
        jq_set_input_cb(state, { _, _ in jv_invalid_with_msg(jv_string("No more inputs")) }, nil)
        jq_set_debug_cb(state, { _, message in jv_free(message) }, nil)
        // Out of memory, jq would print and abort(); a worker exits with a status that says so.
        jq_set_nomem_handler(state, { _ in _exit(JQProgram.outOfMemoryStatus) }, nil)
        let compiled = withExtendedLifetime(messages) { jq_compile(state, text) != 0 }
        jq_set_error_cb(state, nil, nil)
        guard compiled else {
            throw JQError(
                message: messages.lines.filter { !$0.hasSuffix("compile error") && !$0.hasSuffix("compile errors") }
                    .joined(separator: "; "))
        }
    }

    deinit { jq_teardown(&state) }

    /// Runs the program over the JSON text `input`: its first output, or why there is none.
    /// A second output is an error: a transform or a reply produces one document.
    public func run(_ input: [UInt8]) -> Output<String> {
        run(input) { output, _ in .value(Self.dump(output)) }
    }

    /// Runs the program over `input` and hands its one output (never `null`) and the parsed
    /// input to `shape`, which owns neither (both are freed after it returns).
    public func run<Value>(_ input: [UInt8], shape: (_ output: jv, _ input: jv) -> Output<Value>) -> Output<Value> {
        let parsed = input.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { jv_parse_sized($0.baseAddress, Int32(clamping: $0.count)) }
        }
        guard jv_is_valid(parsed) != 0 else {
            return .error("the input is not JSON: " + Self.message(of: parsed))
        }
        jq_start(state, jv_copy(parsed), 0)
        defer { jv_free(parsed) }
        let first = jq_next(state)
        guard jv_is_valid(first) != 0 else {
            if jq_halted(state) != 0 {
                jv_free(first)
                return .error("the program halted (halt and halt_error end jq, not a transform)")
            }
            guard jv_invalid_has_msg(jv_copy(first)) == 0 else { return .error(Self.message(of: first)) }
            jv_free(first)
            return .none
        }
        defer { jv_free(first) }
        let second = jq_next(state)
        guard jv_is_valid(second) == 0 else {
            jv_free(second)
            return .error("the program produced more than one output; a transform or a reply produces one")
        }
        if jv_invalid_has_msg(jv_copy(second)) != 0 { return .error(Self.message(of: second)) }
        jv_free(second)
        if jv_get_kind(first) == JV_KIND_NULL { return .none }
        return shape(first, parsed)
    }

    /// `value` as compact JSON text (`value` is not consumed).
    public static func dump(_ value: jv) -> String {
        string(jv_dump_string(jv_copy(value), 0))
    }

    /// The Swift string of a jq string, which is consumed.
    static func string(_ value: jv) -> String {
        defer { jv_free(value) }
        guard let pointer = jv_string_value(value) else { return "" }
        let count = Int(jv_string_length_bytes(jv_copy(value)))
        return pointer.withMemoryRebound(to: UInt8.self, capacity: count) {
            String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
        }
    }

    /// The bytes of a jq string (not consumed).
    static func bytes(of value: jv) -> [UInt8] {
        guard let pointer = jv_string_value(value) else { return [] }
        let count = Int(jv_string_length_bytes(jv_copy(value)))
        return pointer.withMemoryRebound(to: UInt8.self, capacity: count) { Array(UnsafeBufferPointer(start: $0, count: count)) }
    }

    /// The message of an invalid value, which is consumed: the text of a string message, the
    /// JSON of any other (`error({code: 1})`).
    private static func message(of invalid: jv) -> String {
        let message = jv_invalid_get_msg(invalid)
        if jv_get_kind(message) == JV_KIND_STRING { return string(message) }
        defer { jv_free(message) }
        return dump(message) + " (not a string)"
    }
}

/// Collects the messages jq reports while compiling.
private final class MessageSink {
    var lines: [String] = []

    func take(_ message: jv) {
        let formatted = jq_format_error(message)
        let text = jv_get_kind(formatted) == JV_KIND_STRING ? JQProgram.string(formatted) : "jq error"
        if jv_get_kind(formatted) != JV_KIND_STRING { jv_free(formatted) }
        lines.append(text.trimmingSuffix("\n"))
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: Character) -> String {
        var text = self
        while text.last == suffix { text.removeLast() }
        return text
    }
}

/// A jq program does not compile; `message` is jq's.
public struct JQError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

extension JQProgram.Output: Equatable where Value: Equatable {}
extension JQProgram.Output: Sendable where Value: Sendable {}
