import Foundation
import WaypostCore

// The JSON documents of the journal's records, in one place: the status API (SPEC §4), the admin
// API (SPEC §5) and the CLI's `--json` all write these.

extension MessageRecord {
    /// The status document of SPEC §4.
    public var statusJSON: String {
        func text(_ value: String?) -> String { value.map(JSON.quote) ?? "null" }
        var json = "{\"id\":\(JSON.quote(correlationID)),\"route\":\(JSON.quote(route)),\"state\":\(JSON.quote(state.rawValue)),"
        json += "\"attempts\":\(attempts),\"received_at\":\(JSON.quote(receivedAt)),\"next_attempt_at\":\(text(nextAttemptAt)),"
        json += "\"delivered_at\":\(text(deliveredAt)),\"last_error\":\(text(lastError))"
        if let response = storedResponse {
            let headers = "[" + response.headers.map { "[\(JSON.quote($0.name)),\(JSON.quote($0.value))]" }.joined(separator: ",") + "]"
            json += ",\"response\":{\"status\":\(response.status),\"headers\":\(headers),"
            if let body = String(validating: response.body, as: UTF8.self) {
                json += "\"body\":\(JSON.quote(body))}"
            } else {
                json += "\"body\":\(JSON.quote(Data(response.body).base64EncodedString())),\"body_encoding\":\"base64\"}"
            }
        }
        return json + "}"
    }
}

extension MessageRecord {
    /// One message in a list (CLI `list --json`, admin `GET /messages`): no bodies.
    public var summaryJSON: String {
        func text(_ value: String?) -> String { value.map(JSON.quote) ?? "null" }
        return "{\"id\":\(JSON.quote(correlationID)),\"route\":\(JSON.quote(route)),\"state\":\(JSON.quote(state.rawValue)),"
            + "\"attempts\":\(attempts),\"received_at\":\(JSON.quote(receivedAt)),\"next_attempt_at\":\(text(nextAttemptAt)),"
            + "\"delivered_at\":\(text(deliveredAt)),\"last_error\":\(text(lastError)),\"method\":\(JSON.quote(method)),"
            + "\"path\":\(JSON.quote(path)),\"body_bytes\":\(body.count),\"response_status\":\(responseStatus.map(String.init) ?? "null")}"
    }
}

extension AttemptRecord {
    /// One attempt in the admin API's message document.
    public var json: String {
        "{\"attempt\":\(attempt),\"started_at\":\(JSON.quote(startedAt)),\"duration_ms\":\(durationMilliseconds.map(String.init) ?? "null"),"
            + "\"status\":\(status.map(String.init) ?? "null"),\"error\":\(error.map(JSON.quote) ?? "null")}"
    }
}
