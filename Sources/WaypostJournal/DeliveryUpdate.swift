import WaypostCore

/// A change of a delivery's state, recorded by the journal writer in the same
/// batched transactions as the intake, so delivery does not cost one fsync per message.
public enum DeliveryUpdate: Sendable, Equatable {
    /// Attempt `attempt` (the delivery's `cycleAttempt`-th since its receipt or last replay)
    /// starts: the delivery is `in_flight`, and an `attempts` row is opened. With `epoch`, only
    /// while the delivery's partition still has that lease (a cluster, SPEC §12).
    case started(deliveryID: Int64, attempt: Int, cycleAttempt: Int, atMilliseconds: Int64, epoch: Int64? = nil)
    /// An attempt ended; see ``AttemptRecord``.
    case finished(FinishedAttempt)
    /// The breaker of destination `key` (`route/destination`) tripped at `since`, or, with
    /// nil, closed again: kept in the journal's `control` table for status readers.
    case breaker(key: String, trippedSince: Int64?)
}

/// The end of one attempt and the delivery's state after it.
public struct FinishedAttempt: Sendable, Equatable {
    public var deliveryID: Int64
    public var attempt: Int
    /// The attempt's number since receipt or the last replay, when its start was not recorded
    /// (a quick attempt is recorded once, at its end).
    public var cycleAttempt: Int?
    public var durationMilliseconds: Int64
    /// The upstream's answer, when there was one.
    public var response: StoredResponse?
    /// The transport error, when there was no answer.
    public var error: String?
    /// The size and SHA-256 of the body sent; nil when nothing was sent (a transform failed).
    public var sentBody: SentBody?
    /// `delivered`, `failed`, `filtered` (by a transform), or `queued` for a retry.
    public var state: MessageState
    public var nextAttemptAt: Int64?
    public var lastError: String?
    public var atMilliseconds: Int64
    /// The lease of the delivery's partition the attempt was made under: the outcome is recorded
    /// only while the partition still has it (a cluster, SPEC §12); nil: always.
    public var epoch: Int64?
    /// The message's correlation id, when this outcome is its `reply_from` destination's final
    /// one: a cluster's other nodes are told, for the sources waiting on them.
    public var announce: String?

    public init(
        deliveryID: Int64, attempt: Int, cycleAttempt: Int? = nil, durationMilliseconds: Int64, response: StoredResponse?, error: String?,
        sentBody: SentBody? = nil, state: MessageState, nextAttemptAt: Int64?, lastError: String?, atMilliseconds: Int64,
        epoch: Int64? = nil, announce: String? = nil
    ) {
        self.epoch = epoch
        self.announce = announce
        self.deliveryID = deliveryID
        self.attempt = attempt
        self.cycleAttempt = cycleAttempt
        self.durationMilliseconds = durationMilliseconds
        self.response = response
        self.error = error
        self.sentBody = sentBody
        self.state = state
        self.nextAttemptAt = nextAttemptAt
        self.lastError = lastError
        self.atMilliseconds = atMilliseconds
    }
}

/// An upstream's answer as stored on the delivery.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [HeaderField]
    public var body: [UInt8]

    public init(status: Int, headers: [HeaderField], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// What an attempt sent (SPEC §11): the body's size and SHA-256 (lower-case hex).
public struct SentBody: Sendable, Equatable {
    public var bytes: Int
    public var sha256: String

    public init(bytes: Int, sha256: String) {
        self.bytes = bytes
        self.sha256 = sha256
    }
}
