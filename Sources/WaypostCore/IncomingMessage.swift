/// A request accepted by the intake, on its way into the journal.
public struct IncomingMessage: Sendable {
    /// The id Waypost generated, or the source's own `X-Correlation-ID`.
    public var correlationID: String
    /// Whether the source supplied ``correlationID`` (a repeat of it is an idempotent repeat).
    public var correlationIDWasSupplied: Bool
    public var route: String
    /// One per destination of the route, the `reply_from` destination's first.
    public var deliveries: [PlannedDelivery]
    /// The value of the route's idempotency header, when the source sent one.
    public var idempotencyKey: String?
    /// How far back a repeat of ``idempotencyKey`` is recognised.
    public var dedupWindowMilliseconds: Int64
    public var method: String
    /// Path and query as received.
    public var path: String
    /// Header fields in order, hop-by-hop fields already removed.
    public var headers: [HeaderField] { didSet { headersJSON = JSON.encode(headers: headers) } }
    /// ``headers`` as the journal stores them, encoded by whoever builds the message (the
    /// intake's event loops), not by the single writer thread.
    public private(set) var headersJSON: String
    public var body: [UInt8]
    /// Milliseconds since the Unix epoch.
    public var receivedAt: Int64
    /// The source's IP address, for `X-Forwarded-For`.
    public var clientAddress: String?
    /// The intake span's `traceparent`, when spans are exported (SPEC §14): the parent of the
    /// attempts' spans.
    public var traceParent: String?

    public init(
        correlationID: String, correlationIDWasSupplied: Bool, route: String, orderingKey: String? = nil,
        deliveries: [PlannedDelivery]? = nil,
        idempotencyKey: String?, dedupWindowMilliseconds: Int64, method: String, path: String,
        headers: [HeaderField], body: [UInt8], receivedAt: Int64, clientAddress: String? = nil
    ) {
        self.clientAddress = clientAddress
        self.correlationID = correlationID
        self.correlationIDWasSupplied = correlationIDWasSupplied
        self.route = route
        self.deliveries = deliveries ?? [PlannedDelivery(destination: route, orderingKey: orderingKey)]
        self.idempotencyKey = idempotencyKey
        self.dedupWindowMilliseconds = dedupWindowMilliseconds
        self.method = method
        self.path = path
        self.headers = headers
        self.headersJSON = JSON.encode(headers: headers)
        self.body = body
        self.receivedAt = receivedAt
    }
}

/// One delivery of an incoming message, as the intake decides it (SPEC §11).
public struct PlannedDelivery: Sendable, Equatable {
    public var destination: String
    /// The destination's ordering key of the message (`ordering: key`).
    public var orderingKey: String?
    /// The destination's filter does not match: the delivery is final (`filtered`) at once.
    public var filtered: Bool
    /// `ordering: none`: the delivery is a queue of its own, which a cluster spreads over its
    /// partitions by row id (``QueuePartition/of(row:)``).
    public var unordered: Bool

    public init(destination: String, orderingKey: String? = nil, filtered: Bool = false, unordered: Bool = false) {
        self.destination = destination
        self.orderingKey = orderingKey
        self.filtered = filtered
        self.unordered = unordered
    }
}
