// Reading a backup back: every object is authenticated (AES-GCM with its name as AAD) and
// every chunk's keyed hash recomputed; a missing or damaged copy is read from another node
// and reported; the chunks are delivered in the manifest's order, which is the whole stream.
import Fleet
import Foundation
import Remote
import Repository
import Support
import Topology

package struct BadCopy: Sendable, Equatable, CustomStringConvertible {
    package var node: String
    package var object: String
    package var problem: String
    package var description: String { "\(node): \(object): \(problem)" }
}

package enum BackupReader {
    /// One copy of a manifest: its content, or what is wrong with it.
    package enum Copy: Sendable {
        case good(Manifest)
        case bad(String)
    }

    package static func openManifest(_ sealed: [UInt8], repo: OpenRepository, objectName: String) -> Copy {
        do throws(RepositoryError) {
            let plain = try Envelope.open(sealed, key: repo.keys.data, aad: objectName)
            guard let m = try? JSONDecoder().decode(Manifest.self, from: Data(plain)) else { return .bad("authenticated but not a manifest") }
            return .good(m)
        } catch {
            return .bad(error.description)
        }
    }

    /// The manifest, from the first node (in the storage's order) whose copy authenticates.
    /// With `allCopies`, every node's copy is fetched and checked (all at once), so a bad
    /// copy is reported even when a good one comes first: what a restore does, since it
    /// says which copy it used and which it found bad.
    package static func manifest(
        _ repo: OpenRepository, layer: String, name: BackupName,
        allCopies: Bool = false
    ) async throws(StowageError) -> (Manifest, [BadCopy]) {
        try await manifestWithSource(repo, layer: layer, name: name, allCopies: allCopies).map { ($0.manifest, $0.bad) }.get()
    }

    package struct ManifestRead: Sendable {
        package var manifest: Manifest
        /// The node whose copy was used.
        package var source: String
        package var bad: [BadCopy]
    }

    package static func manifestWithSource(
        _ repo: OpenRepository, layer: String, name: BackupName,
        allCopies: Bool
    ) async -> Result<ManifestRead, StowageError> {
        let objectName = RepositoryLayout.manifest(layer: layer, name: name)
        let nodes = repo.storage.nodes
        // Each node's copy: nil when the node has none, else its content or its problem.
        var copies: [Int: Copy?] = [:]
        if allCopies {
            let got = await withTaskGroup(of: (Int, Copy?).self) { g in
                for (i, node) in nodes.enumerated() {
                    g.addTask { (i, await copy(repo, node, objectName)) }
                }
                var out: [(Int, Copy?)] = []
                for await r in g { out.append(r) }
                return out
            }
            for (i, r) in got { copies[i] = r }
        }
        var bad: [BadCopy] = []
        var found: (Manifest, String)?
        for (i, node) in nodes.enumerated() {
            let c = allCopies ? copies[i]! : await copy(repo, node, objectName)
            switch c {
            case .none: continue
            case .good(let m)?: if found == nil { found = (m, node.name) }
            case .bad(let problem)?: bad.append(BadCopy(node: node.name, object: objectName, problem: problem))
            }
            if found != nil && !allCopies { break }
        }
        if let (m, source) = found { return .success(ManifestRead(manifest: m, source: source, bad: bad)) }
        if !bad.isEmpty && bad.contains(where: { $0.problem != "unreachable" }) {
            return .failure(
                StowageError(
                    .repositoryDamaged,
                    "backup \(name) of \(repo.environment)/\(layer): no good copy of its manifest on storage \(repo.storage.name) (\(bad.map(\.description).joined(separator: "; ")))",
                    hint: "this backup cannot be restored; use an earlier one (stowage backups)"))
        }
        return .failure(
            StowageError(
                .usage,
                "no backup \(name) of \(repo.environment)/\(layer) on storage \(repo.storage.name)\(bad.isEmpty ? "" : " (\(bad.map(\.description).joined(separator: "; ")))")",
                hint: "stowage backups \(repo.environment)/\(layer) lists the backups there are"))
    }

    /// Many manifests at once (manifest object names): each node asked for those still
    /// unread, `batch` to a `get`, in the storage's node order, so the usual case is one
    /// round trip per `batch` (retention read 30 manifests one `get` after the other: a
    /// third of a second). Whatever no node gave a good copy of is read alone by
    /// `manifest`, whose error is the one reported.
    package static func manifests(_ repo: OpenRepository, _ objects: [String], batch: Int = 256) async throws(StowageError) -> [String: Manifest] {
        var out = await readableManifests(repo, objects, batch: batch)
        for object in Set(objects).subtracting(out.keys).sorted() {
            guard let (layer, name) = RepositoryLayout.manifest(object) else { continue }
            out[object] = try await manifest(repo, layer: layer, name: name).0
        }
        return out
    }

    /// As `manifests`, without the errors: those no node gave a good copy of are left out.
    package static func readableManifests(_ repo: OpenRepository, _ objects: [String], batch: Int = 256) async -> [String: Manifest] {
        var out: [String: Manifest] = [:]
        var left = Array(Set(objects)).sorted()
        for node in repo.storage.nodes where !left.isEmpty {
            for start in stride(from: 0, to: left.count, by: batch) {
                let names = Array(left[start..<min(start + batch, left.count)])
                guard case .success(let got) = await captured({ try await node.get(names) }) else { break }
                for obj in got.objects {
                    if case .good(let m) = openManifest(obj.bytes, repo: repo, objectName: obj.name) { out[obj.name] = m }
                }
            }
            left.removeAll { out[$0] != nil }
        }
        return out
    }

    /// One node's copy of a manifest: nil when it has none.
    private static func copy(_ repo: OpenRepository, _ node: any StorageDriver, _ objectName: String) async -> Copy? {
        switch await captured({ try await node.get([objectName]) }) {
        case .failure(let e): return .bad(e.isSetupFault ? e.message : "unreachable")
        case .success(let got):
            guard let obj = got.objects.first else { return nil }
            return openManifest(obj.bytes, repo: repo, objectName: objectName)
        }
    }

    /// Streams the plaintext of the manifest's stream `index` to `deliver`, in order.
    package static func read(
        _ repo: OpenRepository, _ manifest: Manifest, stream index: Int = 0,
        deliver: (UnsafeRawBufferPointer) -> Void
    ) async throws(StowageError) -> [BadCopy] {
        let stream = manifest.streams[index]
        var bad: [BadCopy] = []
        // Every chunk in the manifest's order, each authenticated and checked against its
        // keyed ID by `fetch`: that is the whole stream, in order (Repository/ChunkSequence.swift).
        for batch in batches(stream) {
            let got = try await fetch(repo, manifest, batch, keepPlain: true, bad: &bad)
            for c in batch {
                got[c.id]!.plain.withUnsafeBytes { deliver($0) }
            }
        }
        return bad
    }

    /// The stream's chunks in batches of at most `limit` bytes stored (32 MiB: one get session
    /// per node each; a restore has two in flight, from different nodes). With `rampFrom`,
    /// the first batch holds at most that many bytes and each next one twice the last, up to
    /// `limit`: the target begins applying after one small fetch instead of a whole 32 MiB
    /// (half a second here, in which a restore's target had nothing to do), and each batch
    /// still arrives about when the one before it has been applied.
    package static func batches(_ stream: ManifestStream, limit: Int = 32 << 20, rampFrom: Int? = nil) -> [[ManifestStream.Chunk]] {
        var out: [[ManifestStream.Chunk]] = []
        var batch: [ManifestStream.Chunk] = []
        var size = 0
        var cap = min(limit, rampFrom ?? limit)
        for c in stream.chunks {
            if !batch.isEmpty && size + c.stored > cap {
                out.append(batch)
                batch = []
                size = 0
                cap = min(limit, cap * 2)
            }
            batch.append(c)
            size += c.stored
        }
        if !batch.isEmpty { out.append(batch) }
        return out
    }

    /// The sealed objects of `batch`, each authenticated (and, when the plaintext is kept,
    /// checked against its keyed ID) from the first node with a good copy, trying the nodes from `firstNode` on (batches
    /// in flight together ask different nodes); bad copies are added to `bad`. The plaintext
    /// is kept only when asked (a restore forwards the sealed bytes to the database node).
    package static func fetch(
        _ repo: OpenRepository, _ manifest: Manifest, _ batch: [ManifestStream.Chunk], keepPlain: Bool,
        firstNode: Int = 0, bad: inout [BadCopy]
    ) async throws(StowageError) -> [String: (sealed: [UInt8], plain: [UInt8])] {
        var out: [String: (sealed: [UInt8], plain: [UInt8])] = [:]
        var wanted = Set(batch.map(\.id))
        let all = repo.storage.nodes
        let start = all.isEmpty ? 0 : firstNode % all.count
        for node in all[start...] + all[..<start] where !wanted.isEmpty {
            let names = wanted.sorted().map(RepositoryLayout.chunk)
            let got: (objects: [StoredObject], missing: [String])
            do throws(StowageError) { got = try await node.get(names) } catch {
                bad.append(BadCopy(node: node.name, object: "\(wanted.count) chunks", problem: error.message))
                continue
            }
            for m in got.missing { bad.append(BadCopy(node: node.name, object: m, problem: "missing")) }
            for obj in got.objects {
                let id = String(obj.name.split(separator: "/").last ?? "")
                do throws(RepositoryError) {
                    if keepPlain {
                        let p = try Envelope.open(obj.bytes, key: repo.keys.data, aad: id)
                        guard p.withUnsafeBytes({ repo.keys.chunkID($0) }) == id else {
                            bad.append(BadCopy(node: node.name, object: obj.name, problem: "content does not match its ID"))
                            continue
                        }
                        out[id] = (obj.bytes, p)
                    } else {
                        // Forwarded sealed: the tag is checked here (a damaged copy is
                        // replaced by another node's), the content against its ID by the
                        // agent that decompresses it anyway.
                        try Envelope.authenticate(obj.bytes, key: repo.keys.data, aad: id)
                        out[id] = (obj.bytes, [])
                    }
                    wanted.remove(id)
                } catch {
                    bad.append(BadCopy(node: node.name, object: obj.name, problem: error.description))
                }
            }
        }
        if let lost = wanted.first {
            throw StowageError(
                .repositoryDamaged,
                "backup \(manifest.name) of \(manifest.environment)/\(manifest.layer): chunk \(lost) is missing or damaged on every node (\(bad.map(\.description).joined(separator: "; ")))",
                hint: "this backup cannot be restored; use an earlier one (stowage backups)")
        }
        return out
    }
}
