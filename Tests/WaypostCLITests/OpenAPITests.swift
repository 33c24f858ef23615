// The OpenAPI document (SPEC §14) against the server: scripts/openapi-check.sh runs schemathesis
// over docs/openapi.yaml against a real `waypost serve`. Where schemathesis is not installed the
// script skips, saying so; CI installs it and sets OPENAPI_CHECK_REQUIRED, so there it must run.

import Foundation
import Testing

// One run at a time: schemathesis takes a core while it runs.
@Suite("docs/openapi.yaml holds for the running server (schemathesis)", .serialized)
struct OpenAPITests {
    @Test(
        "schemathesis finds no answer that breaks the document, and no 5xx, on the status and admin APIs",
        arguments: JournalBackend.allCases)
    func schemathesis(backend: JournalBackend) async throws {
        let executable = try #require(waypostExecutable, "no waypost executable")
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let journal = try await TestJournal.make(backend, in: dir)
        defer { journal.stop() }
        // OPENAPI_CHECK_REQUIRED, when CI sets it, reaches the script with the rest of the environment.
        let environment = [
            "WAYPOST_BIN": executable.path, "OPENAPI_CHECK_EXAMPLES": "25", "OPENAPI_CHECK_JOURNAL": journal.location,
        ]
        let result = try await runCommand(
            executable: URL(fileURLWithPath: "/bin/bash"), [packageRoot.appendingPathComponent("scripts/openapi-check.sh").path],
            environment: environment, directory: packageRoot.path, timeout: .seconds(300))
        if result.stdout.contains("SKIPPED") {
            print("OpenAPITests: \(result.stdout.split(separator: "\n").last ?? "skipped")")
            return
        }
        #expect(result.status == 0, "\(result.stdout.suffix(6000))\n\(result.stderr.suffix(2000))")
    }
}
