// The deployment files under deploy/: every example configuration passes `waypost check-config`,
// the systemd unit passes `systemd-analyze verify`, and the nginx snippet passes `nginx -t`.
// The last two run only where the tool is installed, and say so when they skip.

import Foundation
import Testing

/// The example configurations in `deploy/examples`, by file name.
private let exampleNames: [String] = {
    let directory = packageRoot.appendingPathComponent("deploy/examples").path
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
}()

private let systemdUnit = packageRoot.appendingPathComponent("deploy/systemd/waypost.service").path
private let nginxSnippet = packageRoot.appendingPathComponent("deploy/nginx/waypost.conf").path

/// The unit's `ExecStart` binary, which does not exist on a development machine.
private let installedBinary = "/usr/local/bin/waypost"

@Suite("deploy/: example configurations, systemd unit, nginx snippet", .timeLimit(.minutes(1)))
struct DeployExamplesTests {
    @Test("deploy/examples holds the shipped configurations")
    func examplesArePresent() {
        for name in ["minimal.yaml", "full.yaml", "integration.yaml"] {
            #expect(exampleNames.contains(name), "deploy/examples/\(name) is missing; found \(exampleNames)")
        }
    }

    @Test("every example configuration passes check-config", arguments: exampleNames)
    func examplePassesCheckConfig(name: String) async throws {
        let path = exampleConfig(name)
        let result = try await waypost("check-config", "--config", path, environment: exampleEnvironment)
        #expect(result.status == 0, "\(result)")
        #expect(result.lines.first?.hasPrefix("\(path): valid, ") == true, "\(result)")
        #expect(result.stderr.isEmpty, "\(result)")
    }

    @Test("the integration example fronts GitHub asynchronously by repository and Stripe synchronously")
    func integrationExampleRoutes() async throws {
        let result = try await waypost("check-config", "--config", exampleConfig("integration.yaml"), environment: exampleEnvironment)
        #expect(result.status == 0, "\(result)")
        #expect(result.lines.first?.hasSuffix(": valid, 2 routes") == true, "\(result)")
        #expect(result.stdout.contains("github: /hooks/github -> https://integration.internal/github (async, ordering key)"), "\(result)")
        #expect(result.stdout.contains("stripe: /hooks/stripe -> https://integration.internal/stripe (sync, ordering none)"), "\(result)")
    }

    /// The sample inputs beside the transforms example, through `waypost transform`: what the
    /// chat destination, the ERP and Stripe would get.
    @Test("the transforms example turns its sample GitHub push, Stripe event and ERP answer into what its comments say")
    func transformsExampleSamples() async throws {
        let config = exampleConfig("transforms.yaml")

        let push = try await transformSample(["--config", config, "--route", "github"], input: "github-push.json")
        #expect(push.status == 0 && push.stderr.isEmpty, "\(push)")
        let chat = try push.json()
        #expect(chat["method"] as? String == "POST" && chat["path"] as? String == "", "\(push)")
        #expect(chat["headers"] as? [String: String] == ["content-type": "application/json"], "GitHub's headers are not sent: \(push)")
        let compare = "https://github.com/octo-org/waypost/compare/6113728f27ae...0d1a26e67d8f"
        #expect(
            (chat["body"] as? [String: Any])?["text"] as? String == "octocat pushed 2 commits to main of octo-org/waypost: \(compare)",
            "\(push)")

        let checkout = try await transformSample(["--config", config, "--route", "stripe"], input: "stripe-checkout.json")
        #expect(checkout.status == 0 && checkout.stderr.isEmpty, "\(checkout)")
        let request = try checkout.json()
        #expect(request["method"] as? String == "POST" && request["path"] as? String == "/orders", "\(checkout)")
        let headers = request["headers"] as? [String: String]
        #expect(headers?["content-type"] == "application/json" && headers?["stripe-signature"] == nil, "\(checkout)")
        let order = try #require(request["body"] as? [String: Any], "\(checkout)")
        #expect(order["order_id"] as? String == "SO-10482", "\(checkout)")
        #expect(order["customer"] as? String == "ada@example.com", "\(checkout)")
        #expect(order["amount"] as? Double == 49.99, "\(checkout)")
        #expect(order["currency"] as? String == "EUR", "\(checkout)")
        #expect(order.count == 4, "\(checkout)")

        let reply = try await transformSample(["--config", config, "--route", "stripe", "--reply"], input: "erp-answer.json")
        #expect(reply.status == 0 && reply.stderr.isEmpty, "\(reply)")
        let answer = try reply.json()
        #expect(answer["status"] as? Int == 200, "\(reply)")
        let body = try #require(answer["body"] as? [String: Any], "\(reply)")
        #expect(body["received"] as? Bool == true && body["erp_order"] as? String == "ERP-2024-0117", "\(reply)")
    }

    /// With `ExecStart` pointing at the built executable, `systemd-analyze verify` has nothing to say.
    @Test(
        "the systemd unit passes systemd-analyze verify",
        .enabled(if: executableOnPath("systemd-analyze") != nil, "systemd-analyze is not installed (apt-get install systemd)"))
    func systemdUnitVerifies() async throws {
        let analyze = try #require(executableOnPath("systemd-analyze"))
        let binary = try #require(waypostExecutable, "run `swift build --build-tests` first").path
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let unit = try String(contentsOfFile: systemdUnit, encoding: .utf8)
        #expect(unit.contains("ExecStart=\(installedBinary) serve --config /etc/waypost/waypost.yaml\n"))
        // Same file name, so that systemd sees the same unit; only the binary's path differs.
        let copy = try dir.write("waypost.service", unit.replacingOccurrences(of: installedBinary, with: binary))

        let result = try await runTool(analyze, ["verify", copy])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.isEmpty && result.stderr.isEmpty, "\(result)")
    }

    /// The shipped file as it is: the only complaint allowed is the binary that is not installed here.
    @Test(
        "systemd-analyze verify of the shipped unit reports nothing but the missing ExecStart binary",
        .enabled(if: executableOnPath("systemd-analyze") != nil, "systemd-analyze is not installed (apt-get install systemd)"))
    func shippedSystemdUnit() async throws {
        let analyze = try #require(executableOnPath("systemd-analyze"))
        let result = try await runTool(analyze, ["verify", systemdUnit])
        let lines = (result.stdout + result.stderr).split(separator: "\n").map(String.init)
        if FileManager.default.isExecutableFile(atPath: installedBinary) {
            #expect(result.status == 0 && lines.isEmpty, "\(result)")
        } else {
            #expect(!lines.isEmpty, "expected the missing \(installedBinary) to be reported: \(result)")
            for line in lines {
                #expect(line.contains("Command \(installedBinary) is not executable"), "unexpected: \(line)\n\(result)")
            }
        }
    }

    @Test(
        "the Prometheus alerting rules pass promtool check rules and their unit tests",
        .enabled(if: executableOnPath("promtool") != nil, "promtool is not installed (apt-get install prometheus)"))
    func alertRules() async throws {
        let promtool = try #require(executableOnPath("promtool"))
        let directory = packageRoot.appendingPathComponent("deploy/prometheus").path
        let check = try await runTool(promtool, ["check", "rules", directory + "/waypost-alerts.yaml"])
        #expect(check.status == 0, "\(check)")
        let test = try await runTool(promtool, ["test", "rules", directory + "/waypost-alerts.test.yaml"])
        #expect(test.status == 0, "\(test)")
        #expect(test.stdout.contains("SUCCESS"), "\(test)")
    }

    /// `nginx -t` of the snippet inside a minimal nginx.conf, with a throwaway certificate in place
    /// of the placeholders.
    @Test(
        "the nginx snippet passes nginx -t",
        .enabled(
            if: executableOnPath("nginx") != nil && executableOnPath("openssl") != nil,
            "nginx or openssl is not installed (apt-get install nginx-light openssl)"))
    func nginxSnippetParses() async throws {
        let nginx = try #require(executableOnPath("nginx"))
        let openssl = try #require(executableOnPath("openssl"))
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let certificate = try await runTool(
            openssl,
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hooks.example.com",
                "-keyout", dir.file("privkey.pem"), "-out", dir.file("fullchain.pem"),
            ])
        try #require(certificate.status == 0, "\(certificate)")

        let snippet = try String(contentsOfFile: nginxSnippet, encoding: .utf8)
        #expect(snippet.contains("proxy_pass http://waypost_intake;"))
        #expect(snippet.contains("server 127.0.0.1:8080;"))
        #expect(!snippet.contains("9901;"), "the admin listener must not be proxied")
        try dir.write("waypost.conf", snippet.replacingOccurrences(of: "/etc/ssl/waypost/", with: dir.path + "/"))
        let temporary = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .map { "    \($0)_temp_path \(dir.path)/\($0);" }.joined(separator: "\n")
        let main = try dir.write(
            "nginx.conf",
            """
            worker_processes 1;
            pid \(dir.path)/nginx.pid;
            error_log \(dir.path)/error.log;
            events { worker_connections 64; }
            http {
                access_log off;
            \(temporary)
                include \(dir.path)/waypost.conf;
            }

            """)

        let result = try await runTool(nginx, ["-t", "-p", dir.path, "-e", dir.file("error.log"), "-c", main])
        #expect(result.status == 0, "\(result)")
        #expect(result.stderr.contains("test is successful"), "\(result)")
    }
}

// MARK: - Helpers

/// The first executable named `name` on `$PATH` (and the sbin directories, which a non-root
/// `$PATH` may lack).
private func executableOnPath(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    for directory in directories where !directory.isEmpty {
        let candidate = directory + "/" + name
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// Runs `waypost transform ARGUMENTS` with standard input from `deploy/examples/transforms/INPUT`
/// (the helpers give a child /dev/null as its standard input, so a shell redirects it).
private func transformSample(_ arguments: [String], input: String) async throws -> CommandResult {
    let executable = try #require(waypostExecutable, "run `swift build --build-tests` first")
    let inputPath = packageRoot.appendingPathComponent("deploy/examples/transforms/\(input)").path
    return try await runCommand(
        executable: URL(fileURLWithPath: "/bin/sh"), ["-c", #"exec "$0" transform "$@" < "$SAMPLE_INPUT""#, executable.path] + arguments,
        environment: ["SAMPLE_INPUT": inputPath], timeout: .seconds(20))
}

/// Runs a tool to completion (at most `timeout`, then kills it and fails) and collects its output.
private func runTool(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(20)) async throws -> CommandResult {
    try await runCommand(executable: URL(fileURLWithPath: executable), arguments, timeout: timeout)
}
