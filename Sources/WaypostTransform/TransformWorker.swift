import CJQ
import Foundation
import WaypostCore

#if canImport(Glibc)
    import Glibc
#endif

/// The worker process that runs jq programs for a server (SPEC §11): `waypost transform-worker`,
/// started by ``TransformProcess`` with an empty environment, its standard input and output
/// pipes to the server, and standard error to `/dev/null`.
///
/// The protocol is frames of a 4-byte big-endian length and that many bytes. The first request
/// is the set-up: an 8-byte memory cap (bytes) and the programs as a JSON array of strings; the
/// worker caps its data segment (`RLIMIT_DATA`) at that much above its own, compiles every program, and answers with a
/// JSON array holding, per program, `null` or jq's compile error. Then each request is
/// ``TransformRequest`` and each answer ``TransformAnswer``, one at a time, until its input
/// closes. Out of memory inside jq, it exits with ``outOfMemoryStatus``.
public enum TransformWorker {
    /// The exit status of a worker that ran out of memory inside jq.
    public static let outOfMemoryStatus = JQProgram.outOfMemoryStatus

    /// Serves the server on standard input and output until it closes them. Never returns.
    public static func main() -> Never {
        _ = waypost_die_with_parent()
        closeInheritedDescriptors()
        guard let setUp = readFrame(from: 0), setUp.count >= 8 else { exit(0) }
        // The cap is on what the programs use, above what the worker itself has mapped by now.
        let cap = UInt64(truncatingIfNeeded: readBigEndian(setUp.prefix(8)))
        if cap > 0 {
            let total = cap + ownDataBytes()
            var limit = rlimit(rlim_cur: rlim_t(total), rlim_max: rlim_t(total))
            _ = setrlimit(__rlimit_resource_t(RLIMIT_DATA.rawValue), &limit)
        }
        let texts: [String]
        if case .array(let values) = JSONValue.parse(setUp.dropFirst(8)) {
            texts = values.map { if case .string(let text) = $0 { text } else { "" } }
        } else {
            texts = []
        }
        var programs: [JQProgram?] = []
        var report: [String] = []
        for text in texts {
            do {
                programs.append(try JQProgram(text))
                report.append("null")
            } catch {
                programs.append(nil)
                report.append(JSON.quote(error.message))
            }
        }
        guard writeFrame(Array(("[" + report.joined(separator: ",") + "]").utf8), to: 1) else { exit(0) }
        while let frame = readFrame(from: 0) {
            let answer: TransformAnswer
            if let request = TransformRequest(frame), request.program < programs.count, let program = programs[request.program] {
                answer = run(program, request)
            } else {
                answer = .error("a request the worker cannot read")
            }
            guard writeFrame(answer.encoded, to: 1) else { exit(0) }
        }
        exit(0)
    }

    /// Runs `request` through `program`. A transform's output (``TransformRequest/Mode/transform``)
    /// must be an object; its `body` is sent as the text of a string when the stored body was
    /// not JSON, else as JSON, and as received when the program left it unchanged.
    static func run(_ program: JQProgram, _ request: TransformRequest) -> TransformAnswer {
        let output = program.run(request.input) { output, input -> JQProgram.Output<TransformAnswer> in
            guard request.mode == .transform else { return .value(.document(JQProgram.dump(output))) }
            guard jv_get_kind(output) == JV_KIND_OBJECT else {
                return .error("the output is \(String(cString: jv_kind_name(jv_get_kind(output)))), not an object or null")
            }
            guard jv_object_has(jv_copy(output), jv_string("body")) != 0 else {
                return .value(.shaped(ShapedOutput(rest: JQProgram.dump(output), body: .unchanged)))
            }
            let body = jv_object_get(jv_copy(output), jv_string("body"))
            defer { jv_free(body) }
            let rest = jv_object_delete(jv_copy(output), jv_string("body"))
            defer { jv_free(rest) }
            let shaped: ShapedOutput.Body
            if jv_equal(jv_copy(body), jv_object_get(jv_copy(input), jv_string("body"))) != 0 {
                shaped = .unchanged
            } else if !request.bodyIsJSON && jv_get_kind(body) == JV_KIND_STRING {
                shaped = .replaced(JQProgram.bytes(of: body))
            } else {
                shaped = .replaced(Array(JQProgram.dump(body).utf8))
            }
            return .value(.shaped(ShapedOutput(rest: JQProgram.dump(rest), body: shaped)))
        }
        switch output {
        case .value(let answer): return answer
        case .none: return .none
        case .error(let message): return .error(message)
        }
    }

    /// The process's data segment now (`VmData` of `/proc/self/status`), bytes.
    private static func ownDataBytes() -> UInt64 {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmData:") }),
            let kilobytes = UInt64(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes * 1024
    }

    /// Closes every descriptor but the three standard ones: a worker holds no listening socket
    /// or journal file of the server that started it.
    private static func closeInheritedDescriptors() {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for entry in entries { if let descriptor = Int32(entry), descriptor > 2 { close(descriptor) } }
    }
}
