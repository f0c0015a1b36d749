// A storage driver: one replica of a storage, holding a full copy of one environment's
// repository under the object names `RepositoryLayout` builds. The replicated storage, the
// repository, the reader and every operation speak only this interface, so a new kind of
// replica (an S3-compatible bucket) is one new driver here and nothing above changes
// (pgBackRest's storage/remote, restic's backend interface).
//
// Every driver keeps the format's promises (docs/storage-format.md): an object appears
// whole under its final name or not at all; a committed object is never replaced except by
// `put(replace: true)` (repair, with copies it authenticated); a lock lives exactly as long
// as the session that holds it.
import Repository
import Support

/// One object to store: its name in the repository and its (already encrypted) bytes.
package struct StoredObject: Sendable, Equatable {
    package var name: String
    package var bytes: [UInt8]
    package init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }
}

package struct PutResult: Sendable, Equatable {
    /// Objects written, and objects already there (not written again).
    package var stored: Int
    package var existed: Int
    package var bytes: Int64

    package init(stored: Int, existed: Int, bytes: Int64) {
        self.stored = stored
        self.existed = existed
        self.bytes = bytes
    }
}

/// An object a listing found, with its size in bytes.
package struct ListedObject: Sendable, Equatable {
    package var name: String
    package var size: Int64

    package init(name: String, size: Int64) {
        self.name = name
        self.size = size
    }
}

package struct FreeSpace: Sendable, Equatable, Codable {
    package var freeBytes: Int64
    package var totalBytes: Int64?

    package init(freeBytes: Int64, totalBytes: Int64?) {
        self.freeBytes = freeBytes
        self.totalBytes = totalBytes
    }
}

/// A held lock: the layer locks and the repository lock of one replica, for as long as the
/// session lives. If the holder dies, the lock goes with it: no stale lock to clear.
package protocol StorageLockSession: Sendable {
    /// False once the session that held the lock has ended (agent killed, connection lost).
    var isHeld: Bool { get }
    /// Ends the session, releasing the lock; waits at most a moment for a clean end.
    func release() async
}

package protocol StorageDriver: Sendable {
    /// The replica's name in the inventory (a storage node's name): what messages, quorum
    /// decisions and reports call it.
    var name: String { get }

    /// Writes the objects, each atomically; objects already present are left alone unless
    /// `replace`.
    func put(_ objects: [StoredObject], replace: Bool) async throws(StowageError) -> PutResult

    /// One write session fed record by record while a backup runs (a slow replica slows the
    /// feed's producer, not memory). Objects complete when the session ends stay.
    func put(feed: any RecordFeed) async throws(StowageError) -> PutResult

    /// The objects' bytes by name, and the names the replica does not have.
    func get(_ names: [String]) async throws(StowageError) -> (objects: [StoredObject], missing: [String])

    /// Every object under `prefix` (all when nil) with its size, sorted by name.
    func list(prefix: String?) async throws(StowageError) -> [ListedObject]

    /// Removes the objects; returns how many were there.
    func delete(_ names: [String]) async throws(StowageError) -> Int

    /// Takes the exclusive locks of `layers` and the repository lock (shared, or
    /// `exclusive`), or fails at once with `.locked` naming the holder (`owner` is what
    /// others are shown while this lock is held).
    func lock(layers: [String], owner: String, exclusive: Bool) async throws(StowageError) -> any StorageLockSession

    /// The free space where the repository lives, when the replica can tell.
    func freeSpace() async throws(StowageError) -> FreeSpace?

    /// Opens connections ahead of the work that needs them (a hint; drivers may ignore it).
    func prewarm(connections: Int)
}

extension StorageDriver {
    package func put(_ objects: [StoredObject]) async throws(StowageError) -> PutResult { try await put(objects, replace: false) }
    package func list() async throws(StowageError) -> [ListedObject] { try await list(prefix: nil) }
}
