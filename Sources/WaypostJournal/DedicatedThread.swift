import Foundation
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Starts `body` on a thread of its own, named `name` as `top -H`, `ps -L`, perf and
/// `/proc/PID/task/*/comm` show it (Linux keeps 15 bytes).
///
/// The thread names itself, through `/proc/thread-self/comm`, before `body` runs: Foundation's
/// `Thread.name` reaches the OS thread on Linux only when its handle is already stored, which
/// races with the start of the thread.
public func startDedicatedThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        #if os(Linux)
            let descriptor = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if descriptor >= 0 {
                let bytes = Array(name.utf8.prefix(15))
                _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                close(descriptor)
            }
        #endif
        body()
    }
    thread.name = name
    thread.start()
}

/// The life of a service after its start: waits for the service group's graceful shutdown (or
/// the task's cancellation), then runs `stop`.
public func untilGracefulShutdown(then stop: () async -> Void) async {
    try? await gracefulShutdown()
    await stop()
}
