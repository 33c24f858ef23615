import Testing

/// Every test of the PostgreSQL journal, one at a time: each starts a PostgreSQL server of its
/// own (``PostgresServer``), and several at once, beside the rest of the suite, would load the
/// machine enough to make the timing of other tests (and of the leases here) flaky.
@Suite("PostgreSQL", .serialized)
enum PostgresTests {}
