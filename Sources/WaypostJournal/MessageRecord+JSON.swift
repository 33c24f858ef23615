import Foundation
import WaypostCore

// The JSON documents of the journal's records, in one place: the status API (SPEC §4), the admin
// API (SPEC §5) and the CLI's `--json` all write these.

private func text(_ value: String?) -> String { value.map(JSON.quote) ?? "null" }

/// `,"response":{…}`: an upstream's answer (SPEC §4), its body as UTF-8 text or base64.
private func responseMember(_ response: StoredResponse?) -> String {
    guard let response else { return "" }
    let headers = "[" + response.headers.map { "[\(JSON.quote($0.name)),\(JSON.quote($0.value))]" }.joined(separator: ",") + "]"
    var json = ",\"response\":{\"status\":\(response.status),\"headers\":\(headers),"
    if let body = String(validating: response.body, as: UTF8.self) {
        json += "\"body\":\(JSON.quote(body))}"
    } else {
        json += "\"body\":\(JSON.quote(Data(response.body).base64EncodedString())),\"body_encoding\":\"base64\"}"
    }
    return json
}

extension MessageRecord {
    /// The status document of SPEC §4 and §11: the message's state, the `reply_from`
    /// destination's attempts, times, error and answer, and every delivery.
    public var statusJSON: String {
        var json = "{\"id\":\(JSON.quote(correlationID)),\"route\":\(JSON.quote(route)),\"state\":\(JSON.quote(state.rawValue)),"
        json += "\"attempts\":\(attempts),\"received_at\":\(JSON.quote(receivedAt)),\"next_attempt_at\":\(text(nextAttemptAt)),"
        json += "\"delivered_at\":\(text(deliveredAt)),\"last_error\":\(text(lastError))"
        json += responseMember(storedResponse)
        json += ",\"deliveries\":[" + deliveries.map { $0.json(response: true) }.joined(separator: ",") + "]"
        return json + "}"
    }
}

extension DeliveryRecord {
    /// The upstream's stored answer, if it answered.
    public var storedResponse: StoredResponse? {
        guard let status = responseStatus else { return nil }
        return StoredResponse(status: status, headers: JSON.decodeHeaders(responseHeadersJSON ?? "[]") ?? [], body: responseBody ?? [])
    }

    /// One delivery in the status document (with its `response`) or in a list (its
    /// `response_status` only), with `attempts` (a count) and, when given, its `attempt_log`.
    public func json(response: Bool, attemptLog: [AttemptRecord]? = nil) -> String {
        var json = "{\"destination\":\(JSON.quote(destination)),\"state\":\(JSON.quote(state.rawValue)),\"attempts\":\(attempts),"
        json += "\"next_attempt_at\":\(text(nextAttemptAt)),\"delivered_at\":\(text(deliveredAt)),\"last_error\":\(text(lastError))"
        json += response ? responseMember(storedResponse) : ",\"response_status\":\(responseStatus.map(String.init) ?? "null")"
        if let attemptLog { json += ",\"attempt_log\":[" + attemptLog.map(\.json).joined(separator: ",") + "]" }
        return json + "}"
    }
}

extension MessageRecord {
    /// One message in a list (CLI `list --json`, admin `GET /messages`): no bodies; its
    /// deliveries when they were read.
    public var summaryJSON: String { summaryJSON() }

    /// The admin API's and CLI's message object: the list item, and for one message
    /// (`attemptLogs`, by delivery row id) the `reply_from` destination's `response` and every
    /// delivery's `attempt_log` (the top level's is the `reply_from` destination's).
    public func summaryJSON(attemptLogs: [Int64: [AttemptRecord]]? = nil) -> String {
        var json = "{\"id\":\(JSON.quote(correlationID)),\"route\":\(JSON.quote(route)),\"state\":\(JSON.quote(state.rawValue)),"
        json += "\"attempts\":\(attempts),\"received_at\":\(JSON.quote(receivedAt)),\"next_attempt_at\":\(text(nextAttemptAt)),"
        json += "\"delivered_at\":\(text(deliveredAt)),\"last_error\":\(text(lastError)),\"method\":\(JSON.quote(method)),"
        json += "\"path\":\(JSON.quote(path)),\"body_bytes\":\(body.count),\"response_status\":\(responseStatus.map(String.init) ?? "null")"
        json +=
            ",\"deliveries\":[" + deliveries.map { $0.json(response: false, attemptLog: attemptLogs?[$0.id]) }.joined(separator: ",") + "]"
        if let attemptLogs {
            json += responseMember(storedResponse)
            json += ",\"attempt_log\":[" + (attemptLogs[replyDeliveryID] ?? []).map(\.json).joined(separator: ",") + "]"
        }
        return json + "}"
    }
}

extension AttemptRecord {
    /// One attempt in the admin API's message document.
    public var json: String {
        "{\"attempt\":\(attempt),\"started_at\":\(JSON.quote(startedAt)),\"duration_ms\":\(durationMilliseconds.map(String.init) ?? "null"),"
            + "\"status\":\(status.map(String.init) ?? "null"),\"error\":\(error.map(JSON.quote) ?? "null"),"
            + "\"body_bytes\":\(sentBody.map { String($0.bytes) } ?? "null"),\"body_sha256\":\(sentBody.map { JSON.quote($0.sha256) } ?? "null")}"
    }
}

extension DestinationState {
    /// One destination in the admin API's `GET /destinations`, its ages from `now` (milliseconds).
    public func json(now: Int64) -> String {
        let age = oldestQueuedAt.flatMap(Timestamp.parse).map { String(max(0, now - $0) / 1000) } ?? "null"
        let since = trippedSince.map { JSON.quote(Timestamp.format(millisecondsSince1970: $0)) } ?? "null"
        return "{\"route\":\(JSON.quote(route)),\"destination\":\(JSON.quote(destination)),\"queued\":\(queued),"
            + "\"in_flight\":\(inFlight),\"failed\":\(failed),\"oldest_queued_at\":\(text(oldestQueuedAt)),"
            + "\"oldest_queued_age_seconds\":\(age),\"paused\":\(paused),\"tripped\":\(trippedSince != nil),\"tripped_since\":\(since)}"
    }
}
