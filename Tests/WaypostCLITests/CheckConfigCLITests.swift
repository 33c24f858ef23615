// `waypost check-config` and the command line's flag errors (SPEC §6, §8): exit codes 0, 64, 78
// and the messages an operator reads.

import Foundation
import Testing

/// A valid one-route configuration, to which a test appends one more route key (4 spaces in).
private let routeHead = """
    routes:
      - name: orders
        path: /hooks/orders
        upstream: http://127.0.0.1:9/

    """

@Suite("waypost check-config and flag errors", .timeLimit(.minutes(1)))
struct CheckConfigCLITests {
    @Test("the shipped example configurations are valid", arguments: ["full.yaml", "minimal.yaml"])
    func examplesAreValid(name: String) async throws {
        let path = exampleConfig(name)
        let result = try await waypost("check-config", "--config", path, environment: exampleEnvironment)
        #expect(result.status == 0, "\(result)")
        let first = try #require(result.lines.first, "\(result)")
        #expect(first.hasPrefix("\(path): valid, 1 route"), "\(result)")
        #expect(result.stderr.isEmpty, "\(result)")
    }

    @Test("the full example lists its route")
    func fullExampleDetails() async throws {
        let result = try await waypost("check-config", "--config", exampleConfig("full.yaml"), environment: exampleEnvironment)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("github: /hooks/github -> https://integration.internal/github (async, ordering key)"), "\(result)")
    }

    @Test("an unknown key exits 78 naming the file, the line and the key path")
    func unknownKey() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = try dir.write("typo.yaml", routeHead + "    retyr: { initial: 1s }\n")
        let result = try await waypost("check-config", "--config", path, environment: exampleEnvironment)
        #expect(result.status == 78, "\(result)")
        #expect(result.stderr.contains("\(path):5: routes[0].retyr: unknown key \"retyr\""), "\(result)")
        #expect(!result.stdout.contains("valid"), "\(result)")
    }

    @Test("an unknown top-level key names itself without a prefix")
    func unknownTopLevelKey() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = try dir.write("top.yaml", "lisen: 127.0.0.1:8080\n" + routeHead)
        let result = try await waypost("check-config", "--config", path, environment: exampleEnvironment)
        #expect(result.status == 78, "\(result)")
        #expect(result.stderr.contains("\(path):1: lisen: unknown key \"lisen\""), "\(result)")
        #expect(result.stderr.contains("did you mean \"listen\""), "\(result)")
    }

    @Test(
        "a bad duration exits 78 naming the key and the value",
        arguments: [
            ("shutdown_grace: 10 parsecs\n" + routeHead, "shutdown_grace", "10 parsecs"),
            (routeHead + "    retry: { initial: soon }\n", "routes[0].retry.initial", "soon"),
            (routeHead + "    sync_timeout: 5\n", "routes[0].sync_timeout", "5"),
        ])
    func badDuration(yaml: String, key: String, value: String) async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = try dir.write("duration.yaml", yaml)
        let result = try await waypost("check-config", "--config", path, environment: exampleEnvironment)
        #expect(result.status == 78, "\(result)")
        #expect(result.stderr.contains(path), "\(result)")
        #expect(result.stderr.contains("\(key): expected a duration"), "\(result)")
        #expect(result.stderr.contains("got \"\(value)\""), "\(result)")
    }

    @Test("a missing file exits 78 naming the file")
    func missingFile() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = dir.file("absent.yaml")
        let result = try await waypost("check-config", "--config", path, environment: exampleEnvironment)
        #expect(result.status == 78, "\(result)")
        #expect(result.stderr.contains("invalid configuration: \(path)"), "\(result)")
        #expect(result.stdout.isEmpty, "\(result)")
    }

    @Test("a sync route is valid for check-config, with no note")
    func syncRouteIsValid() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = try dir.write("sync.yaml", routeHead + "    mode: sync\n")
        let result = try await waypost("check-config", "--config", path, environment: exampleEnvironment)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("orders: /hooks/orders -> http://127.0.0.1:9/ (sync, ordering fifo)"), "\(result)")
    }

    @Test("check-config without --config exits 64")
    func checkConfigNeedsConfig() async throws {
        let result = try await waypost("check-config")
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains("--config"), "\(result)")
    }

    @Test("an unknown flag exits 64 and names the flag")
    func unknownFlag() async throws {
        let result = try await waypost("list", "--bogus")
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains("Unknown option '--bogus'"), "\(result)")
        #expect(result.stdout.isEmpty, "\(result)")
    }

    @Test("show without an id exits 64 and names the missing argument")
    func showWithoutID() async throws {
        let result = try await waypost("show")
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains("<id>"), "\(result)")
    }

    @Test("an unknown subcommand exits 64")
    func unknownSubcommand() async throws {
        let result = try await waypost("frobnicate")
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains("frobnicate"), "\(result)")
    }
}
