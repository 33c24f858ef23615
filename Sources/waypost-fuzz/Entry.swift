// The fuzz executable. Built by `scripts/fuzz.sh` with `-sanitize=fuzzer,address -DFUZZING`, it is
// a libFuzzer binary running the target named by $WAYPOST_FUZZ_TARGET. Built normally, it replays
// files through a target, to reproduce what the fuzzer found:
//
//     swift run waypost-fuzz intake crash-1234 corpus/intake/*

import Foundation
import WaypostFuzzing

/// Blocks until the async set-up of a target is done (libFuzzer's entry points are synchronous).
func makeTarget(_ name: String) -> @Sendable ([UInt8]) -> Void {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("waypost-fuzz-\(getpid())").path
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    nonisolated(unsafe) var made: Result<(@Sendable ([UInt8]) -> Void)?, any Error> = .success(nil)
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do { made = .success(try await FuzzTargets.make(name, directory: directory)) } catch { made = .failure(error) }
        done.signal()
    }
    done.wait()
    switch made {
    case .success(let target?): return target
    case .success(nil): fatalError("unknown fuzz target \(name); the targets are \(FuzzTargets.names.joined(separator: ", "))")
    case .failure(let error): fatalError("fuzz target \(name) cannot start: \(error)")
    }
}

#if FUZZING
    nonisolated(unsafe) private var target: (@Sendable ([UInt8]) -> Void)?

    /// libFuzzer's driver (`-sanitize=fuzzer` links it); its own `main` is not used, because the
    /// package manager makes this module's entry point `waypost_fuzz_main`.
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    @_cdecl("waypost_fuzz_main")
    public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        guard let name = ProcessInfo.processInfo.environment["WAYPOST_FUZZ_TARGET"] else {
            fatalError("set WAYPOST_FUZZ_TARGET to one of \(FuzzTargets.names.joined(separator: ", "))")
        }
        target = makeTarget(name)
        var count = argc
        var arguments = argv
        return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
            target?(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
            return 0
        }
    }
#else
    @main
    struct Replay {
        static func main() throws {
            let arguments = CommandLine.arguments.dropFirst()
            guard let name = arguments.first, arguments.count >= 2 else {
                print("usage: waypost-fuzz TARGET FILE...   (targets: \(FuzzTargets.names.joined(separator: ", ")))")
                exit(64)
            }
            let target = makeTarget(name)
            for path in arguments.dropFirst() {
                target(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
                print("\(path): ok")
            }
        }
    }
#endif
