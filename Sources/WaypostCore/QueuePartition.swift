/// The partitions of a cluster's delivery queues (SPEC §12, `docs/scaling.md`): each queue
/// (route, destination, and the ordering key for `ordering: key`) belongs to one of
/// ``count`` partitions, and each partition is leased to one node at a time. The writer
/// stores a delivery's partition; a forwarder computes it again to know whose a queue is.
public enum QueuePartition {
    /// Fixed by the PostgreSQL schema: enough for a few dozen nodes at even shares, few enough
    /// that one statement renews all of a node's leases.
    public static let count = 256

    /// The partition of the queue (route, destination, key): the 32-bit FNV-1a hash of their
    /// UTF-8 bytes, separated by NUL (a present key, even empty, marked by a 1), modulo
    /// ``count``. Every node and every version must compute the same.
    public static func of(route: String, destination: String, queueKey: String?) -> Int {
        var hash: UInt32 = 0x811c_9dc5
        func mix<Bytes: Sequence<UInt8>>(_ bytes: Bytes) {
            for byte in bytes { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        }
        mix(route.utf8)
        mix(CollectionOfOne(0))
        mix(destination.utf8)
        if let queueKey {
            mix(CollectionOfOne(1))
            mix(queueKey.utf8)
        }
        return Int(hash % UInt32(count))
    }

    /// The partition of a delivery that is a queue of its own (`ordering: none`): its row id
    /// times 177 modulo ``count`` (an odd factor, so every partition in turn, consecutive rows
    /// far apart), which the database gives it as it stores the row (the writer asks for it
    /// with ``byRow``).
    public static func of(row id: Int64) -> Int {
        Int(id.magnitude % UInt64(count) * 177 % UInt64(count))
    }

    /// What the writer stores for a delivery whose partition is ``of(row:)``, not yet known.
    public static let byRow = -1

    /// The partition of `delivery`, a delivery of a message of `route`, as the writer stores
    /// it: ``byRow`` for `ordering: none`, else its queue's.
    public static func of(route: String, _ delivery: PlannedDelivery) -> Int {
        delivery.unordered ? byRow : of(route: route, destination: delivery.destination, queueKey: delivery.orderingKey)
    }

    /// The partition of `delivery` once stored as row `id`: its queue's, or the row's.
    public static func of(route: String, _ delivery: PlannedDelivery, row id: Int64) -> Int {
        let partition = of(route: route, delivery)
        return partition == byRow ? of(row: id) : partition
    }
}
