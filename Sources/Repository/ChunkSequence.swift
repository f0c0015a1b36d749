// What a restore checks that it applied the whole stream, in order: a digest of the
// stream's chunk IDs, taken from the (authenticated) manifest by the coordinator and from
// the chunks the agent authenticated, one after the other, as it applied them.
//
// Why not a SHA-256 of the plaintext, as backups before 2026-12-08 also recorded: each ID is
// already a keyed hash of its chunk's plaintext (checked by every reader), so the ordered IDs
// pin the stream as firmly; hashing every byte a second time cost about 5% of a backup's CPU
// on the database node and as much again in a restore (issue 15).
@preconcurrency import Crypto

package struct ChunkSequence: Sendable {
    private var hash = SHA256()
    package private(set) var count = 0

    package init() {
        hash.update(data: Array("stowage.chunk-sequence/v1\n".utf8))
    }

    package mutating func append(_ id: String) {
        hash.update(data: Array(id.utf8) + [0x0a])
        count += 1
    }

    package var hex: String { hexString(hash.finalize()) }

    /// The digest of `ids` in this order.
    package static func digest(_ ids: some Sequence<String>) -> String {
        var s = ChunkSequence()
        for id in ids { s.append(id) }
        return s.hex
    }
}
