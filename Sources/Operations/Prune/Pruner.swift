// Retention, in two steps as restic does (forget, then prune):
// 1. forget: the layer's backups beyond the newest N lose their manifests, under the layer's
//    own lock on every reachable node (no backup or restore of this layer runs meanwhile);
// 2. reclaim: the chunks no remaining backup references are deleted, under the repository's
//    exclusive lock, so that no backup of any layer is about to reference one it deletes.
//    When another layer's backup holds the repository, reclaiming waits for the next
//    retention that finds it idle: a fleet backing up many layers of one environment at
//    once would otherwise fail its retention all the time. Nothing is lost by waiting.
// Neither step deletes anything while some remaining manifest cannot be read.
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package struct PruneReport: Sendable, Equatable {
    package var removedBackups: [String]
    package var keptBackups: [String]
    /// Chunks removed, per node.
    package var removedChunks: [String: Int]
    /// Nodes skipped (unreachable), with why: they keep extra data until the next prune.
    package var skipped: [String: String]
    /// Why unreferenced chunks were left for a later prune (the repository was busy).
    package var reclaimDeferred: String?
}

package enum Pruner {
    package static func prune(_ repo: OpenRepository, layer: String, keep: Int) async throws(StowageError) -> PruneReport {
        let storage = repo.storage
        // Every node is tried; the ones that cannot be locked (unreachable) are skipped and
        // keep extra data until a later prune. Manifests are listed under the locks: what
        // committed before the lock was held must count (a chunk a just-committed backup
        // references is never reclaimed).
        let forgetting = try await LayerLock.acquireAll(
            storage.nodes, layer: layer, operation: "forget \(repo.environment)/\(layer)",
            patience: LayerLock.repositoryPatience)
        let skipped = forgetting.failed.mapValues(\.message)
        let live = storage.nodes.filter { skipped[$0.name] == nil }
        guard !live.isEmpty else {
            throw StowageError(.nodeUnreachable, "storage \(storage.name): no node reachable for prune", retryable: true)
        }
        let removed: (removed: [String], kept: [String])
        do throws(StowageError) {
            removed = try await forget(repo, layer: layer, keep: keep, live: live, manifests: try await listManifests(live))
            await forgetting.release()
        } catch {
            await forgetting.release()
            throw error
        }
        var report = PruneReport(removedBackups: removed.removed, keptBackups: removed.kept, removedChunks: [:], skipped: skipped)
        // Nothing forgotten, nothing (much) to reclaim: chunks left by interrupted backups wait
        // for the next retention that removes a backup, and the repository is not held.
        guard !removed.removed.isEmpty else { return report }
        do throws(StowageError) {
            let reclaiming = try await LayerLock.acquireAll(live, layer: nil, operation: "prune \(repo.environment)", exclusive: true, patience: 0)
            do throws(StowageError) {
                // Chunks are reclaimed only with every live node's manifests in view.
                if let failure = reclaiming.failed.values.first { throw failure }
                report.removedChunks = try await reclaim(repo, live: live, manifests: try await listManifests(live))
                await reclaiming.release()
            } catch {
                await reclaiming.release()
                throw error
            }
        } catch {
            guard error.status == .locked else { throw error }
            report.reclaimDeferred = "another backup or restore of \(repo.environment) is running; unreferenced chunks are reclaimed by a later prune"
        }
        return report
    }

    static func listManifests(_ live: [any StorageDriver]) async throws(StowageError) -> [String: Set<String>] {
        var out: [String: Set<String>] = [:]
        for node in live { out[node.name] = Set(try await node.list(prefix: RepositoryLayout.backupsPrefix).map(\.name)) }
        return out
    }

    /// Step 1: the layer's expired manifests, on every live node.
    static func forget(
        _ repo: OpenRepository, layer: String, keep: Int, live: [any StorageDriver],
        manifests: [String: Set<String>]
    ) async throws(StowageError) -> (removed: [String], kept: [String]) {
        var refs: [BackupRef] = []
        for object in manifests.values.reduce(into: Set<String>(), { $0.formUnion($1) }).sorted() {
            let parts = object.split(separator: "/")
            guard parts.count == 3, String(parts[1]) == layer, let name = BackupName(String(parts[2])) else { continue }
            refs.append(BackupRef(layer: layer, name: name, chunks: []))
        }
        let expired = Retention.expired(refs, layer: layer, keep: keep)
        for node in live {
            let names = expired.map { RepositoryLayout.manifest(layer: $0.layer, name: $0.name) }.filter { manifests[node.name]?.contains($0) == true }
            if !names.isEmpty { _ = try await node.delete(names) }
        }
        let remaining = refs.filter { r in !expired.contains(r) }
        return (expired.map { "\($0.layer)/\($0.name)" }, remaining.map { "\($0.layer)/\($0.name)" })
    }

    /// Step 2: chunks no manifest on any node references, per live node.
    static func reclaim(_ repo: OpenRepository, live: [any StorageDriver], manifests: [String: Set<String>]) async throws(StowageError) -> [String: Int] {
        try await reclaim(repo, live: live, manifests: manifests, dryRun: false).mapValues(\.count)
    }

    /// The chunks no manifest on any live node references, per node (name and size); deleted
    /// unless `dryRun`. The caller holds the repository's exclusive lock on every live node.
    static func reclaim(
        _ repo: OpenRepository, live: [any StorageDriver], manifests: [String: Set<String>],
        dryRun: Bool
    ) async throws(StowageError) -> [String: [ListedObject]] {
        var referenced = Set<String>()
        let objects = manifests.values.reduce(into: Set<String>(), { $0.formUnion($1) }).filter { RepositoryLayout.manifest($0) != nil }
        // A manifest no node holds a good copy of stops everything (it throws): its chunks are unknown.
        for m in try await BackupReader.manifests(repo, Array(objects)).values {
            for s in m.streams { for c in s.chunks { referenced.insert(c.id) } }
        }
        var out: [String: [ListedObject]] = [:]
        for node in live {
            let chunks = try await node.list(prefix: RepositoryLayout.chunksPrefix)
            let unreferenced = chunks.filter { RepositoryLayout.chunkID($0.name).map { !referenced.contains($0) } ?? false }
            if !dryRun {
                for start in stride(from: 0, to: unreferenced.count, by: 1000) {
                    _ = try await node.delete(unreferenced[start..<min(start + 1000, unreferenced.count)].map(\.name))
                }
            }
            out[node.name] = unreferenced
        }
        return out
    }
}

/// What `storage prune` (or the clean-up after a failed backup) found unreferenced.
package struct ReclaimReport: Sendable, Equatable, Codable {
    package var environment: String
    /// Per node: unreferenced chunks removed (or, in a dry run, that would be), and their bytes.
    package var removed: [String: Int] = [:]
    package var bytes: [String: Int64] = [:]
    /// Nodes not pruned (unreachable), with why: they keep their leftovers until the next prune.
    package var skipped: [String: String] = [:]
    package var dryRun = false
}

extension Pruner {
    /// Removes every chunk no committed backup references, on every reachable node, under
    /// the repository's exclusive lock: no backup is running, so none is about to reference
    /// what goes. `patience`: how long to wait for backups holding the repository (0: fail
    /// at once with `locked`).
    package static func reclaimUnreferenced(
        _ repo: OpenRepository, dryRun: Bool, patience: Double,
        operation: String
    ) async throws(StowageError) -> ReclaimReport {
        let held = try await LayerLock.acquireAll(repo.storage.nodes, layer: nil, operation: operation, exclusive: true, patience: patience)
        var report = ReclaimReport(environment: repo.environment, skipped: held.failed.mapValues(\.message), dryRun: dryRun)
        let live = repo.storage.nodes.filter { held.failed[$0.name] == nil }
        do throws(StowageError) {
            guard !live.isEmpty else {
                throw StowageError(.nodeUnreachable, "storage \(repo.storage.name): no node reachable to prune", retryable: true)
            }
            // Unreferenced is judged with every live node's manifests in view.
            let found = try await reclaim(repo, live: live, manifests: try await listManifests(live), dryRun: dryRun)
            for (node, objs) in found {
                report.removed[node] = objs.count
                report.bytes[node] = objs.map(\.size).reduce(0, +)
            }
            await held.release()
        } catch {
            await held.release()
            throw error
        }
        return report
    }
}
