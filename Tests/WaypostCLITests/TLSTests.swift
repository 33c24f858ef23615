// TLS at the intake (SPEC §14) end to end: certificates made by Debian's openssl for each test,
// curl as the source (TLS 1.2 and 1.3), a python TLS client that keeps its connection across a
// SIGHUP reload, and check-config on missing and mismatched files.

import Foundation
import Testing
import WaypostTestSupport

/// A self-signed certificate for 127.0.0.1 and its key, made with openssl in `dir`; nil (the
/// test then skips, saying why) where openssl is not installed.
private func makeCertificate(_ name: String, in dir: ScratchDirectory) async throws -> (cert: String, key: String)? {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else { return nil }
    let cert = dir.file("\(name).crt")
    let key = dir.file("\(name).key")
    let made = try await runCommand(
        executable: URL(fileURLWithPath: "/usr/bin/openssl"),
        [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
            "-days", "2", "-subj", "/CN=\(name)", "-addext", "subjectAltName=IP:127.0.0.1",
        ], timeout: .seconds(20))
    try #require(made.status == 0, "openssl: \(made)")
    return (cert, key)
}

private func tlsConfig(cert: String, key: String, upstream: String, extra: String = "") -> String {
    """
    tls: { cert_file: \(cert), key_file: \(key) }
    routes:
      - name: hooks
        path: /hooks
        upstream: "\(upstream)"
    \(extra)
    """
}

@Suite("TLS at the intake, and to an HTTP/2 upstream (SPEC §14)")
struct TLSTests {
    @Test("TLS 1.2 and 1.3 with HTTP/1.1; plain HTTP is refused; the upstream is told X-Forwarded-Proto: https")
    func tlsVersions() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        guard let (cert, key) = try await makeCertificate("intake", in: dir) else {
            print("TLSTests: skipped, /usr/bin/openssl is not installed (apt-get install openssl)")
            return
        }
        let upstream = try await SettableUpstream.start()
        try await withServer(config: tlsConfig(cert: cert, key: key, upstream: upstream.url), upstreams: [upstream]) { server, _ in
            let url = "https://127.0.0.1:\(server.intakePort)/hooks"
            var ids: [String] = []
            for version in [["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]] {
                let answer = try await curlExchange(
                    "POST", url,
                    options: ["--cacert", cert, "--http1.1", "-H", "Content-Type: application/json", "--data-binary", "{}"] + version)
                #expect(answer.status == 202, "\(version): \(answer.status) \(answer.body)")
                ids.append(try #require(answer.header("X-Correlation-ID")))
            }
            // A client that does not trust the certificate is refused by curl; plain HTTP gets no HTTP answer.
            let untrusted = try await runCommand(
                executable: URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-sS", "--max-time", "5", "-d", "{}", url], timeout: .seconds(10)
            )
            #expect(untrusted.status != 0, "\(untrusted)")
            let plain = try await runCommand(
                executable: URL(fileURLWithPath: "/usr/bin/env"),
                [
                    "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "-d", "{}",
                    "http://127.0.0.1:\(server.intakePort)/hooks",
                ],
                timeout: .seconds(10))
            #expect(plain.stdout == "000", "\(plain)")
            try await server.waitForStates("delivered") { states in ids.allSatisfy { states[$0] == "delivered" } }
            let forwarded = upstream.upstream.requests.map { $0.header("X-Forwarded-Proto") }
            #expect(forwarded == ["https", "https"], "\(forwarded)")
        }
    }

    @Test("a missing, unreadable or mismatched certificate or key stops check-config and serve with 78 naming the file")
    func badFiles() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        guard let (cert, key) = try await makeCertificate("one", in: dir), let (_, otherKey) = try await makeCertificate("two", in: dir)
        else {
            print("TLSTests: skipped, /usr/bin/openssl is not installed (apt-get install openssl)")
            return
        }
        let notPEM = try dir.write("garbage.pem", "not a certificate\n")
        let cases: [(String, String, String)] = [
            (dir.file("missing.crt"), key, "tls.cert_file \(dir.file("missing.crt"))"),
            (cert, dir.file("missing.key"), "tls.key_file \(dir.file("missing.key"))"),
            (notPEM, key, "tls.cert_file \(notPEM)"),
            (cert, notPEM, "tls.key_file \(notPEM)"),
            (cert, otherKey, "is not the private key of tls.cert_file"),
        ]
        for (certFile, keyFile, mention) in cases {
            let config = try dir.write("waypost.yaml", tlsConfig(cert: certFile, key: keyFile, upstream: "http://127.0.0.1:9/"))
            let check = try await waypost("check-config", "--config", config)
            #expect(check.status == 78 && check.stderr.contains(mention), "\(certFile) \(keyFile): \(check)")
            let serve = try await waypost("serve", "--config", config, "--journal", dir.file("j.db"), "--listen", "127.0.0.1:0")
            #expect(serve.status == 78 && serve.stderr.contains(mention), "\(serve)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("j.db")), "no journal is created")
    }

    @Test("SIGHUP re-reads the certificate: a connection open across the reload goes on, new ones get the new certificate")
    func reload() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        guard let (oldCert, oldKey) = try await makeCertificate("old", in: dir),
            let (newCert, newKey) = try await makeCertificate("new", in: dir)
        else {
            print("TLSTests: skipped, /usr/bin/openssl is not installed (apt-get install openssl)")
            return
        }
        let cert = dir.file("intake.crt")
        let key = dir.file("intake.key")
        try FileManager.default.copyItem(atPath: oldCert, toPath: cert)
        try FileManager.default.copyItem(atPath: oldKey, toPath: key)
        let upstream = try await SettableUpstream.start()
        try await withServer(config: tlsConfig(cert: cert, key: key, upstream: upstream.url), upstreams: [upstream]) { server, _ in
            // A client on one kept-alive connection: a request, then (once told) the files change
            // and the server reloads, then more requests on the same connection.
            let script = """
                import socket, ssl, sys, time
                context = ssl.create_default_context(cafile=sys.argv[2])
                connection = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="127.0.0.1")
                def post(n):
                    body = b'{"n":%d}' % n
                    connection.sendall(b"POST /hooks HTTP/1.1\\r\\nHost: a\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
                    answer = b""
                    while b"\\r\\n\\r\\n" not in answer:
                        chunk = connection.recv(65536)
                        if not chunk: break
                        answer += chunk
                    head, _, rest = answer.partition(b"\\r\\n\\r\\n")
                    length = [int(line.split(b":")[1]) for line in head.split(b"\\r\\n") if line.lower().startswith(b"content-length:")][0]
                    while len(rest) < length: rest += connection.recv(65536)
                    print(head.split(b"\\r\\n")[0].decode(), flush=True)
                post(1)
                sys.stdin.readline()
                for n in range(2, 12): post(n)
                """
            let scriptPath = try dir.write("client.py", script)
            let client = try ChildProcess(
                "/usr/bin/env", ["python3", scriptPath, String(server.intakePort), oldCert], output: .merged, input: true)
            let lines = try #require(client.stdout)
            let first = ContinuousClock.now + .seconds(10)
            while !lines.text.contains("\n"), ContinuousClock.now < first { try await Task.sleep(for: .milliseconds(20)) }
            #expect(lines.text.hasPrefix("HTTP/1.1 202"), "\(lines.text)")

            try FileManager.default.removeItem(atPath: cert)
            try FileManager.default.removeItem(atPath: key)
            try FileManager.default.copyItem(atPath: newCert, toPath: cert)
            try FileManager.default.copyItem(atPath: newKey, toPath: key)
            server.child.send(SIGHUP)
            let reloaded = ContinuousClock.now + .seconds(10)
            while !server.child.stderr.text.contains("TLS certificate and key reloaded"), ContinuousClock.now < reloaded {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(server.child.stderr.text.contains("TLS certificate and key reloaded"), "\(server.child.stderr.text.suffix(2000))")
            client.input?.write(Data("go\n".utf8))
            let rest = ContinuousClock.now + .seconds(10)
            while lines.text.split(separator: "\n").count < 11, ContinuousClock.now < rest { try await Task.sleep(for: .milliseconds(20)) }
            let statuses = lines.text.split(separator: "\n").map { String($0.prefix(12)) }
            #expect(statuses == Array(repeating: "HTTP/1.1 202", count: 11), "the open connection went on: \(lines.text)")

            // New connections get the new certificate: trusted with the new one, not with the old.
            let url = "https://127.0.0.1:\(server.intakePort)/hooks"
            let withNew = try await curlExchange("POST", url, options: ["--cacert", newCert, "--data-binary", "{}"])
            #expect(withNew.status == 202)
            let withOld = try await runCommand(
                executable: URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-sS", "--max-time", "5", "--cacert", oldCert, "-d", "{}", url],
                timeout: .seconds(10))
            #expect(withOld.status != 0, "\(withOld)")

            // A reload that fails keeps the certificate in use.
            try "not a key\n".write(toFile: key, atomically: true, encoding: .utf8)
            server.child.send(SIGHUP)
            let failed = ContinuousClock.now + .seconds(10)
            while !server.child.stderr.text.contains("TLS reload failed"), ContinuousClock.now < failed {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(server.child.stderr.text.contains("TLS reload failed"), "\(server.child.stderr.text.suffix(2000))")
            let still = try await curlExchange("POST", url, options: ["--cacert", newCert, "--data-binary", "{}"])
            #expect(still.status == 202)
            try await server.waitForStates("all delivered") { states in states.count == 13 && states.values.allSatisfy { $0 == "delivered" }
            }
        }
    }

    @Test("an https upstream: HTTP/2 negotiated by libcurl, its certificate checked against ca_file; without it the delivery fails")
    func upstreamHTTP2() async throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        guard let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            print("TLSTests: upstreamHTTP2 skipped, nginx is not installed (apt-get install nginx)")
            return
        }
        guard let (cert, key) = try await makeCertificate("upstream", in: dir) else {
            print("TLSTests: upstreamHTTP2 skipped, /usr/bin/openssl is not installed (apt-get install openssl)")
            return
        }
        // nginx from Debian as the upstream: TLS, HTTP/2 by ALPN, each request's protocol logged.
        let port = try freeLoopbackPort()
        let conf = try dir.write(
            "nginx.conf",
            """
            daemon off;
            worker_processes 1;
            pid \(dir.file("nginx.pid"));
            error_log \(dir.file("error.log"));
            events { worker_connections 64; }
            http {
                log_format protocol '$server_protocol $request_method $request_uri $http_x_correlation_id';
                access_log \(dir.file("access.log")) protocol;
                client_body_temp_path \(dir.path);
                proxy_temp_path \(dir.path);
                fastcgi_temp_path \(dir.path);
                uwsgi_temp_path \(dir.path);
                scgi_temp_path \(dir.path);
                server {
                    listen 127.0.0.1:\(port) ssl http2;
                    ssl_certificate \(cert);
                    ssl_certificate_key \(key);
                    location / { return 200 "ok"; }
                }
            }
            """)
        let server = try ChildProcess(nginx, ["-c", conf, "-p", dir.path, "-e", dir.file("error.log")], output: .discarded)
        defer {
            server.send(SIGTERM)
            _ = server.waitUntilExit()
        }
        let up = ContinuousClock.now + .seconds(10)
        while !acceptsConnections(port: port), ContinuousClock.now < up { try await Task.sleep(for: .milliseconds(50)) }
        try #require(
            acceptsConnections(port: port),
            "nginx did not listen: \((try? String(contentsOfFile: dir.file("error.log"), encoding: .utf8)) ?? "")")

        let config = """
            routes:
              - name: shop
                path: /shop
                retry: { max_attempts: 1 }
                destinations:
                  - { name: trusted, upstream: "https://127.0.0.1:\(port)/in", ca_file: "\(cert)" }
                  - { name: system, upstream: "https://127.0.0.1:\(port)/in" }
            """
        try await withServer(config: config, upstreams: []) { server, _ in
            let id = try await server.accept("/shop", body: #"{"n":1}"#)
            try await server.waitForStates("final") { $0[id] == "failed" }
            let byName = try await server.deliveries(id)
            #expect(byName["trusted"]?["state"] as? String == "delivered", "\(byName)")
            #expect(byName["system"]?["state"] as? String == "failed", "\(byName)")
            let error = byName["system"]?["last_error"] as? String ?? ""
            #expect(error.contains("certificate"), "the system's CAs do not know the test's: \(error)")
            let log = (try? String(contentsOfFile: dir.file("access.log"), encoding: .utf8)) ?? ""
            #expect(log.contains("HTTP/2.0 POST /in \(id)"), "nginx's access log: \(log)")
        }
        // A ca_file that is not a PEM file of certificates stops start-up, naming the key.
        let broken = try dir.write(
            "broken.yaml", "routes:\n  - { name: a, path: /a, upstream: \"https://127.0.0.1:\(port)/\", ca_file: \(key) }\n")
        let check = try await waypost("check-config", "--config", broken)
        #expect(check.status == 78 && check.stderr.contains("routes[0].ca_file"), "\(check)")
    }
}
