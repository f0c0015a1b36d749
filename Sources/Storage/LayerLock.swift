// At most one backup, restore or prune per layer at a time, across coordinators: each
// replica holds the lock for as long as the holder's session lives (docs/storage-format.md,
// "Locking"; for an SSH node a flock held by its agent). If the coordinator dies, the
// session ends and the lock with it: no stale lock, no manual unlock.
import Foundation
import Support

package final class LayerLock: Sendable {
    package let node: String
    package let layer: String
    private let session: any StorageLockSession

    init(node: String, layer: String, session: any StorageLockSession) {
        self.node = node
        self.layer = layer
        self.session = session
    }

    /// False once the holding session has ended (agent killed, connection dropped).
    package var isHeld: Bool { session.isHeld }

    /// Acquires the layer's lock (and the repository lock, shared) on one replica, or fails
    /// at once naming the holder. `layer` nil with `exclusive` is prune's lock: the whole
    /// repository, while no backup or restore runs.
    package static func acquire(_ driver: any StorageDriver, layer: String?, operation: String, exclusive: Bool = false) async throws(StowageError) -> LayerLock
    {
        let owner = "\(ProcessInfo.processInfo.hostName) pid \(getpid()) (\(operation), since \(UTCStamp.format(Date())))"
        let started = Deadline.now()
        let label = "\(driver.name) lock \(layer ?? "*")\(exclusive ? " exclusive" : "")"
        do throws(StowageError) {
            let session = try await driver.lock(layers: layer.map { [$0] } ?? [], owner: owner, exclusive: exclusive)
            Trace.log("\(label): held after \(Int((Deadline.now() - started) * 1000)) ms")
            return LayerLock(node: driver.name, layer: layer ?? "*", session: session)
        } catch {
            Trace.log("\(label): refused after \(Int((Deadline.now() - started) * 1000)) ms")
            throw error
        }
    }

    /// How long a backup or restore waits for a repository held by a prune or a repository
    /// creation (those hold it for seconds); a layer held by another backup is not waited for.
    package static let repositoryPatience: Double = 120

    /// `acquire`, but while the whole repository is busy (not the layer), tries again every
    /// half second for up to `patience` seconds.
    package static func acquire(
        _ driver: any StorageDriver, layer: String?, operation: String, exclusive: Bool = false,
        waitWhileRepositoryBusy patience: Double
    ) async throws(StowageError) -> LayerLock {
        let deadline = Date().addingTimeInterval(patience)
        while true {
            do throws(StowageError) {
                return try await acquire(driver, layer: layer, operation: operation, exclusive: exclusive)
            } catch {
                let repositoryBusy = error.status == .locked && error.message.contains("the repository is busy")
                guard repositoryBusy, Date() < deadline else { throw error }
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// Releases the lock (the driver ends its session: cleanly when it can, at once when not).
    package func release() async {
        let started = Deadline.now()
        await session.release()
        Trace.log("\(node) lock \(layer) released in \(Int((Deadline.now() - started) * 1000)) ms")
    }

    /// Releases every lock at once.
    package static func release(_ locks: [LayerLock]) async {
        await withTaskGroup(of: Void.self) { g in
            for l in locks { g.addTask { await l.release() } }
        }
    }
}

/// Locks held on several nodes of one storage.
package struct HeldLocks: Sendable {
    package var locks: [LayerLock]
    /// Nodes that could not be locked for another reason than a holder (unreachable,
    /// no agent), with the error.
    package var failed: [String: StowageError]

    /// Releases every lock at once.
    package func release() async { await LayerLock.release(locks) }
}

extension LayerLock {
    /// The lock on each node, one node after the other in the storage's order: two
    /// coordinators racing for a layer meet on the first node, and one of them wins
    /// outright instead of each holding half. A lock held elsewhere releases what was taken
    /// and throws (`locked`); a node that fails otherwise is listed in `failed`.
    package static func acquireAll(
        _ nodes: [any StorageDriver], layer: String?, operation: String, exclusive: Bool = false,
        patience: Double
    ) async throws(StowageError) -> HeldLocks {
        var held = HeldLocks(locks: [], failed: [:])
        for node in nodes {
            do throws(StowageError) {
                held.locks.append(
                    try await acquire(
                        node, layer: layer, operation: operation, exclusive: exclusive,
                        waitWhileRepositoryBusy: patience))
            } catch {
                // A lock held elsewhere, or a node this coordinator is not set up to trust
                // or log into: nothing goes ahead on the other nodes alone.
                if error.status == .locked || error.isSetupFault {
                    await held.release()
                    throw error
                }
                held.failed[node.name] = error
            }
        }
        return held
    }
}
