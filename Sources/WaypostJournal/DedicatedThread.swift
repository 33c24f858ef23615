import Foundation

/// Starts `body` on a thread of its own, named `name` as `top -H`, `ps -L`, perf and
/// `/proc/PID/task/*/comm` show it (Linux keeps 15 bytes). The name is set from inside the
/// thread: on Linux, Foundation passes `Thread.name` to the OS only for the current thread.
public func startDedicatedThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    Thread {
        Thread.current.name = name
        body()
    }.start()
}
