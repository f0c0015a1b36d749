// The hand-over between a producer of object records (a dump's chunk stream, a restore's
// reader) and one consumer (a storage driver's put session, a restore job's input), each on
// a thread of its own. The consumer polls: a bounded queue behind it blocks the producer
// instead of growing memory, and a consumer that dies says so, so the producer stops
// feeding it.

/// What a feed has for its consumer now.
package enum FeedItem: Sendable, Equatable {
    /// One encoded object record (`ObjectRecord`), unframed.
    case record([UInt8])
    /// Nothing yet: the producer is behind; ask again soon.
    case later
    /// Nothing more will come.
    case end
    /// The producer failed: the consumer's input must end as cut (no end frame), so the
    /// job on the other side commits nothing of it.
    case abandoned
}

package protocol RecordFeed: Sendable {
    /// The next record, without blocking.
    func next() -> FeedItem
    /// The consumer is gone (its session failed): drop what is queued and take no more.
    func abandon()
}
