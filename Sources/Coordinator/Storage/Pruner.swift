// Retention: keep the newest N backups of a layer, then remove the chunks no remaining
// backup references. Prune holds the repository's exclusive lock on every node it touches,
// so no backup or restore is running and none is about to reference a chunk it deletes.
// It never deletes anything while some remaining manifest cannot be read.
import Foundation
import Repository
import Support

public struct PruneReport: Sendable, Equatable {
    public var removedBackups: [String]
    public var keptBackups: [String]
    /// Chunks removed, per node.
    public var removedChunks: [String: Int]
    /// Nodes skipped (unreachable), with why: they keep extra data until the next prune.
    public var skipped: [String: String]
}

public enum Pruner {
    public static func prune(_ repo: OpenRepository, layer: String, keep: Int) async throws(StowageError) -> PruneReport {
        let storage = repo.storage
        var skipped: [String: String] = [:]
        var manifests: [String: Set<String>] = [:] // node → manifest object names
        var live: [StorageNodeClient] = []
        for node in storage.nodes {
            do throws(StowageError) {
                manifests[node.target.node] = Set(try await node.list(prefix: "backups").map(\.name))
                live.append(node)
            } catch {
                skipped[node.target.node] = error.message
            }
        }
        guard !live.isEmpty else {
            throw StowageError(.nodeUnreachable, "storage \(storage.name): no node reachable for prune", retryable: true)
        }
        var locks: [LayerLock] = []
        for node in live {
            do throws(StowageError) {
                locks.append(try await LayerLock.acquire(node, layer: nil, operation: "prune \(repo.environment)", exclusive: true))
            } catch {
                for l in locks { await l.release() }
                throw error
            }
        }
        do throws(StowageError) {
            let r = try await pruneLocked(repo, layer: layer, keep: keep, live: live, manifests: manifests, skipped: skipped)
            for l in locks { await l.release() }
            return r
        } catch {
            for l in locks { await l.release() }
            throw error
        }
    }

    static func pruneLocked(_ repo: OpenRepository, layer: String, keep: Int, live: [StorageNodeClient],
                            manifests: [String: Set<String>], skipped: [String: String]) async throws(StowageError) -> PruneReport {
        // Every backup on any node, with the chunks it references.
        var refs: [BackupRef] = []
        for object in manifests.values.reduce(into: Set<String>(), { $0.formUnion($1) }).sorted() {
            let parts = object.split(separator: "/")
            guard parts.count == 3, let name = BackupName(String(parts[2])) else { continue }
            let l = String(parts[1])
            let (m, _) = try await BackupReader.manifest(repo, layer: l, name: name)
            refs.append(BackupRef(layer: l, name: name, chunks: Set(m.streams.flatMap { $0.chunks.map(\.id) })))
        }
        let expired = Retention.expired(refs, layer: layer, keep: keep)
        let remaining = refs.filter { r in !expired.contains(r) }
        let referenced = remaining.reduce(into: Set<String>()) { $0.formUnion($1.chunks) }

        // Manifests first: once they are gone, their chunks are unreferenced.
        var removedChunks: [String: Int] = [:]
        for node in live {
            let names = expired.map { BackupWriter.manifestName(layer: $0.layer, name: $0.name) }.filter { manifests[node.target.node]?.contains($0) == true }
            if !names.isEmpty { _ = try await node.delete(names) }
            let chunks = try await node.list(prefix: "chunks").map(\.name)
            let unreferenced = chunks.filter { !referenced.contains(String($0.split(separator: "/").last ?? "")) }
            var removed = 0
            for start in stride(from: 0, to: unreferenced.count, by: 1000) {
                removed += try await node.delete(Array(unreferenced[start..<min(start + 1000, unreferenced.count)]))
            }
            removedChunks[node.target.node] = removed
        }
        return PruneReport(removedBackups: expired.map { "\($0.layer)/\($0.name)" },
                           keptBackups: remaining.filter { $0.layer == layer }.map { "\($0.layer)/\($0.name)" },
                           removedChunks: removedChunks, skipped: skipped)
    }
}
