// The console in a real browser (SPEC §13): scripts/console-check.py drives Debian's chromium
// through chromium-driver and Selenium against a real `waypost serve`. Where they are not
// installed the script skips, saying so; CI installs them and sets CONSOLE_BROWSER_REQUIRED, so
// there it must run. CONSOLE_SCREENSHOTS=DIR saves the pictures the README shows.

import Foundation
import Testing

@Suite("the console in chromium: sign in, watch, replay, bulk replay, pause, hostile bodies")
struct ConsoleBrowserTests {
    @Test("an operator finds why messages failed and sends them again, from the console alone")
    func browser() async throws {
        let upstream = try await ScriptedUpstream.start()
        defer { Task { await upstream.stop() } }
        let config = """
            routes:
              - { name: orders, path: /orders, upstream: "\(upstream.url)flaky", retry: { max_attempts: 1 } }
              - { name: notes, path: /notes, upstream: "\(upstream.url)" }
            """
        try await withServer(config: config, upstreams: []) { server, _ in
            var arguments = [
                "python3", packageRoot.appendingPathComponent("scripts/console-check.py").path,
                "--admin", "http://127.0.0.1:\(server.adminPort)", "--intake", "http://127.0.0.1:\(server.intakePort)",
                "--token", adminTestToken,
            ]
            if let directory = ProcessInfo.processInfo.environment["CONSOLE_SCREENSHOTS"] { arguments += ["--screenshots", directory] }
            let result = try await runCommand(
                executable: URL(fileURLWithPath: "/usr/bin/env"), arguments, directory: packageRoot.path, timeout: .seconds(240))
            if result.stdout.contains("SKIPPED") {
                print("ConsoleBrowserTests: \(result.stdout.split(separator: "\n").last ?? "skipped")")
                return
            }
            #expect(result.status == 0, "\(result.stdout.suffix(4000))\n\(result.stderr.suffix(4000))")
        }
    }
}
