import Foundation
import Testing
import WaypostCore
import WaypostJournal
import WaypostServer

private let upstream = "http://127.0.0.1:9/"

@Suite("Intake over a real socket")
struct IntakeTests {
    @Test("POST → 202 with the SPEC §1 answer → the row holds the byte-identical body (read with sqlite3)")
    func asyncAnswerAndRow() async throws {
        try await withIntake(routes: [RouteConfig(name: "github", path: "/hooks/github", upstream: upstream)]) { intake in
            var body = [UInt8](repeating: 0, count: 4096)
            for index in body.indices { body[index] = UInt8((index * 31 + 7) % 256) }
            let response = try intake.request(
                "POST", "/hooks/github/push?delivery=1",
                headers: [
                    ("Content-Type", "application/octet-stream"), ("X-B", "2"), ("Connection", "keep-alive, X-Drop"),
                    ("X-Drop", "gone"), ("Keep-Alive", "timeout=5"), ("Proxy-Authorization", "secret"), ("X-A", "1"),
                    ("X-B", "3"),
                ],
                body: body)
            #expect(response.status == 202)
            let id = try #require(response.header("X-Correlation-ID"))
            #expect(id.count == 26)
            #expect(response.header("Location") == "/_waypost/messages/\(id)")
            #expect(response.header("Content-Type") == "application/json")
            let json = try #require(response.json)
            #expect(json["id"] as? String == id)
            #expect(json["state"] as? String == "queued")
            #expect(json["status_url"] as? String == "/_waypost/messages/\(id)")

            let hex = try intake.sqlite("SELECT hex(body) FROM messages WHERE correlation_id = '\(id)'")
            #expect(hex == body.map { String(format: "%02X", $0) }.joined())
            let row = try intake.sqlite(
                "SELECT m.route || '|' || m.method || '|' || m.path || '|' || s.state FROM messages m JOIN message_states s ON s.id = m.id "
                    + "WHERE m.correlation_id = '\(id)'")
            #expect(row == "github|POST|/hooks/github/push?delivery=1|queued")
            let headers = try intake.sqlite("SELECT headers FROM messages WHERE correlation_id = '\(id)'")
            let pairs = try JSONSerialization.jsonObject(with: Data(headers.utf8)) as? [[String]]
            #expect(
                pairs == [
                    ["Host", "127.0.0.1"], ["Content-Type", "application/octet-stream"], ["X-B", "2"], ["X-A", "1"], ["X-B", "3"],
                    ["Content-Length", "4096"],
                ])
        }
    }

    @Test("routes match by path segment; the longest wins; no match is 404; /_waypost/ is reserved")
    func routing() async throws {
        try await withIntake(routes: [
            RouteConfig(name: "hooks", path: "/hooks", upstream: upstream),
            RouteConfig(name: "github", path: "/hooks/github", upstream: upstream),
        ]) { intake in
            for (path, route) in [
                ("/hooks/github", "github"), ("/hooks/github/x/y", "github"), ("/hooks/githubx", "hooks"), ("/hooks", "hooks"),
            ] {
                let response = try intake.request("POST", path, body: Array("{}".utf8))
                #expect(response.status == 202, "\(path)")
                let id = try #require(response.header("X-Correlation-ID"))
                #expect(try intake.sqlite("SELECT route FROM messages WHERE correlation_id = '\(id)'") == route, "\(path)")
            }
            for path in ["/other", "/hook", "/"] {
                let response = try intake.request("POST", path, body: Array("{}".utf8))
                #expect(response.status == 404, "\(path)")
                #expect(response.header("Content-Type") == "application/problem+json")
                #expect(response.json?["status"] as? Int == 404)
            }
            let reserved = try intake.request("GET", "/_waypost/anything")
            #expect(reserved.status == 404)
            #expect((reserved.json?["detail"] as? String)?.contains("reserved") == true)
            #expect(intake.rowCount == 4)
        }
    }

    @Test("limits answer 413, 431, 415 and 400 as problem+json, and nothing is stored")
    func limits() async throws {
        try await withIntake(routes: [
            RouteConfig(name: "small", path: "/small", upstream: upstream, maxBodyBytes: 100, maxHeaderBytes: 300),
            RouteConfig(
                name: "json", path: "/json", upstream: upstream, contentTypes: ["application/json"], validate: .json),
        ]) { intake in
            func expectProblem(_ response: RawResponse, _ status: Int, _ detailMentions: String) {
                #expect(response.status == status)
                #expect(response.header("Content-Type") == "application/problem+json")
                let json = response.json
                #expect(json?["status"] as? Int == status)
                #expect((json?["type"] as? String)?.isEmpty == false)
                #expect((json?["title"] as? String)?.isEmpty == false)
                #expect((json?["detail"] as? String)?.contains(detailMentions) == true, "\(json?["detail"] ?? "no detail")")
            }
            // Body over the limit, announced by Content-Length.
            expectProblem(try intake.request("POST", "/small", body: [UInt8](repeating: 65, count: 101)), 413, "max_body_bytes")
            // Body over the limit, chunked: found while reading.
            let chunked = try RawConnection(port: intake.port)
            try chunked.write(Array("POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
            for _ in 0..<3 { try chunked.write(Array("28\r\n\(String(repeating: "B", count: 40))\r\n".utf8)) }
            expectProblem(try chunked.readResponse(), 413, "max_body_bytes")
            #expect(chunked.isClosedByPeer())
            // Exactly at the limit is fine, chunked or not.
            #expect(try intake.request("POST", "/small", body: [UInt8](repeating: 65, count: 100)).status == 202)
            // Headers over the route's limit.
            expectProblem(
                try intake.request("POST", "/small", headers: [("X-Big", String(repeating: "h", count: 400))]), 431, "max_header_bytes")
            // Headers over every limit: the decoder refuses them.
            expectProblem(try intake.request("POST", "/json", headers: [("X-Huge", String(repeating: "h", count: 70_000))]), 431, "bytes")
            // Content type not allowed, or missing.
            expectProblem(
                try intake.request("POST", "/json", headers: [("Content-Type", "text/plain")], body: Array("{}".utf8)), 415,
                "application/json")
            expectProblem(try intake.request("POST", "/json", body: Array("{}".utf8)), 415, "none")
            // Parameters on an allowed media type are fine.
            #expect(
                try intake.request("POST", "/json", headers: [("Content-Type", "application/json; charset=utf-8")], body: Array("[1]".utf8))
                    .status == 202)
            // Malformed JSON.
            expectProblem(
                try intake.request("POST", "/json", headers: [("Content-Type", "application/json")], body: Array("{\"a\":".utf8)), 400,
                "JSON")
            #expect(intake.rowCount == 2)
        }
    }

    @Test("X-Correlation-ID: a valid supplied id is used, an invalid one is 400, a repeat is idempotent, another route's is 409")
    func suppliedCorrelationID() async throws {
        try await withIntake(routes: [
            RouteConfig(name: "a", path: "/a", upstream: upstream), RouteConfig(name: "b", path: "/b", upstream: upstream),
        ]) { intake in
            let first = try intake.request("POST", "/a", headers: [("X-Correlation-ID", "order-42:v1")], body: Array("1".utf8))
            #expect(first.status == 202)
            #expect(first.header("X-Correlation-ID") == "order-42:v1")
            let repeatResponse = try intake.request("POST", "/a", headers: [("X-Correlation-ID", "order-42:v1")], body: Array("2".utf8))
            #expect(repeatResponse.status == 202)
            #expect(repeatResponse.header("X-Correlation-ID") == "order-42:v1")
            #expect(try intake.request("POST", "/b", headers: [("X-Correlation-ID", "order-42:v1")]).status == 409)
            for bad in ["has space", "slash/", String(repeating: "x", count: 129), "é"] {
                #expect(try intake.request("POST", "/a", headers: [("X-Correlation-ID", bad)]).status == 400, "\(bad)")
            }
            #expect(intake.rowCount == 1)
            #expect(try intake.sqlite("SELECT body FROM messages") == "1")
        }
    }

    @Test("max_backlog → 503 with Retry-After, nothing stored")
    func backlogFull() async throws {
        try await withIntake(routes: [RouteConfig(name: "a", path: "/", upstream: upstream)], maxBacklog: 1) { intake in
            #expect(try intake.request("POST", "/x").status == 202)
            let refused = try intake.request("POST", "/x")
            #expect(refused.status == 503)
            #expect(refused.header("Retry-After") != nil)
            #expect(refused.header("Content-Type") == "application/problem+json")
            #expect(intake.rowCount == 1)
        }
    }

    @Test("malformed HTTP gets a 400 problem and the server keeps serving")
    func malformedRequests() async throws {
        try await withIntake(routes: [RouteConfig(name: "a", path: "/", upstream: upstream)]) { intake in
            let garbage = [
                "GARBAGE\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nxx\r\n0\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                "POST http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n",
            ]
            for raw in garbage {
                let response = try intake.send(raw)
                #expect(response.status == 400, "\(raw.debugDescription)")
                #expect(response.header("Content-Type") == "application/problem+json", "\(raw.debugDescription)")
            }
            #expect(try intake.request("POST", "/ok", body: Array("fine".utf8)).status == 202)
            #expect(intake.rowCount == 1)
        }
    }

    @Test("pipelined requests are answered in order on one connection; Expect: 100-continue is honoured")
    func pipeliningAndContinue() async throws {
        try await withIntake(routes: [RouteConfig(name: "a", path: "/", upstream: upstream)]) { intake in
            let connection = try RawConnection(port: intake.port)
            var bytes: [UInt8] = []
            for index in 0..<5 {
                bytes += RawConnection.encode(
                    "POST", "/n/\(index)", headers: [("X-Correlation-ID", "pipe-\(index)")], body: Array("\(index)".utf8))
            }
            try connection.write(bytes)
            for index in 0..<5 {
                let response = try connection.readResponse()
                #expect(response.status == 202)
                #expect(response.header("X-Correlation-ID") == "pipe-\(index)")
            }
            #expect(try intake.sqlite("SELECT group_concat(body, ',') FROM (SELECT body FROM messages ORDER BY id)") == "0,1,2,3,4")

            let expecting = try RawConnection(port: intake.port)
            try expecting.write(Array("POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n".utf8))
            #expect(try expecting.readResponse().status == 100)
            try expecting.write(Array("body".utf8))
            #expect(try expecting.readResponse().status == 202)
        }
    }

    @Test("concurrent clients are all acknowledged and all stored")
    func concurrentClients() async throws {
        try await withIntake(routes: [RouteConfig(name: "a", path: "/", upstream: upstream)]) { intake in
            let ids = try await withThrowingTaskGroup(of: String?.self) { group in
                for index in 0..<64 {
                    group.addTask {
                        let response = try intake.request("POST", "/c", body: Array("message \(index)".utf8))
                        return response.status == 202 ? response.header("X-Correlation-ID") : nil
                    }
                }
                return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(ids.count == 64)
            #expect(Set(ids).count == 64)
            #expect(intake.rowCount == 64)
            #expect(intake.writer.statistics.messages == 64)
        }
    }
}
