// Reading a backup back: every object is authenticated (AES-GCM with its name as AAD) and
// every chunk's keyed hash recomputed; a missing or damaged copy is read from another node
// and reported, and the whole stream's SHA-256 must match the manifest's.
import Foundation
import Repository
import Support

public struct BadCopy: Sendable, Equatable, CustomStringConvertible {
    public var node: String
    public var object: String
    public var problem: String
    public var description: String { "\(node): \(object): \(problem)" }
}

public enum BackupReader {
    /// The manifest, from the first node whose copy authenticates.
    public static func manifest(_ repo: OpenRepository, layer: String, name: BackupName) async throws(StowageError) -> (Manifest, [BadCopy]) {
        let objectName = BackupWriter.manifestName(layer: layer, name: name)
        var bad: [BadCopy] = []
        for node in repo.storage.nodes {
            guard let got = try? await node.get([objectName]) else {
                bad.append(BadCopy(node: node.target.node, object: objectName, problem: "unreachable"))
                continue
            }
            guard let obj = got.objects.first else { continue }
            do throws(RepositoryError) {
                let plain = try Envelope.open(obj.bytes, key: repo.keys.data, aad: objectName)
                guard let m = try? JSONDecoder().decode(Manifest.self, from: Data(plain)) else {
                    bad.append(BadCopy(node: node.target.node, object: objectName, problem: "authenticated but not a manifest"))
                    continue
                }
                return (m, bad)
            } catch {
                bad.append(BadCopy(node: node.target.node, object: objectName, problem: error.description))
            }
        }
        throw StowageError(.usage, "no backup \(name) of \(repo.environment)/\(layer) on storage \(repo.storage.name)\(bad.isEmpty ? "" : " (\(bad.map(\.description).joined(separator: "; ")))")",
                           hint: "stowage backups \(repo.environment)/\(layer) lists the backups there are")
    }

    /// Streams the plaintext of the manifest's stream `index` to `deliver`, in order.
    public static func read(_ repo: OpenRepository, _ manifest: Manifest, stream index: Int = 0,
                            deliver: (UnsafeRawBufferPointer) -> Void) async throws(StowageError) -> [BadCopy] {
        let stream = manifest.streams[index]
        var bad: [BadCopy] = []
        var hash = SHA256Hasher()
        for batch in batches(stream) {
            let got = try await fetch(repo, manifest, batch, keepPlain: true, bad: &bad)
            for c in batch {
                let p = got[c.id]!.plain
                p.withUnsafeBytes { hash.update($0); deliver($0) }
            }
        }
        let digest = hash.hex()
        guard digest == stream.sha256 else {
            throw StowageError(.repositoryDamaged, "backup \(manifest.name): the reassembled stream's SHA-256 is \(digest), the manifest says \(stream.sha256)")
        }
        return bad
    }

    /// The stream's chunks in batches of at most 48 MiB stored: one get session per node each.
    static func batches(_ stream: ManifestStream) -> [[ManifestStream.Chunk]] {
        var out: [[ManifestStream.Chunk]] = []
        var batch: [ManifestStream.Chunk] = []
        var size = 0
        for c in stream.chunks {
            if !batch.isEmpty && size + c.stored > 48 << 20 {
                out.append(batch)
                batch = []
                size = 0
            }
            batch.append(c)
            size += c.stored
        }
        if !batch.isEmpty { out.append(batch) }
        return out
    }

    /// The sealed objects of `batch`, each authenticated and checked against its keyed ID,
    /// from the first node with a good copy; bad copies are added to `bad`. The plaintext is
    /// kept only when asked (a restore forwards the sealed bytes to the database node).
    static func fetch(_ repo: OpenRepository, _ manifest: Manifest, _ batch: [ManifestStream.Chunk], keepPlain: Bool,
                      bad: inout [BadCopy]) async throws(StowageError) -> [String: (sealed: [UInt8], plain: [UInt8])] {
        var out: [String: (sealed: [UInt8], plain: [UInt8])] = [:]
        var wanted = Set(batch.map(\.id))
        for node in repo.storage.nodes where !wanted.isEmpty {
            let names = wanted.sorted().map { "chunks/\($0.prefix(2))/\($0)" }
            let got: (objects: [StoredObject], missing: [String])
            do throws(StowageError) { got = try await node.get(names) } catch {
                bad.append(BadCopy(node: node.target.node, object: "\(wanted.count) chunks", problem: error.message))
                continue
            }
            for m in got.missing { bad.append(BadCopy(node: node.target.node, object: m, problem: "missing")) }
            for obj in got.objects {
                let id = String(obj.name.split(separator: "/").last ?? "")
                do throws(RepositoryError) {
                    let p = try Envelope.open(obj.bytes, key: repo.keys.data, aad: id)
                    guard p.withUnsafeBytes({ repo.keys.chunkID($0) }) == id else {
                        bad.append(BadCopy(node: node.target.node, object: obj.name, problem: "content does not match its ID"))
                        continue
                    }
                    out[id] = (obj.bytes, keepPlain ? p : [])
                    wanted.remove(id)
                } catch {
                    bad.append(BadCopy(node: node.target.node, object: obj.name, problem: error.description))
                }
            }
        }
        if let lost = wanted.first {
            throw StowageError(.repositoryDamaged,
                               "backup \(manifest.name) of \(manifest.environment)/\(manifest.layer): chunk \(lost) is missing or damaged on every node (\(bad.map(\.description).joined(separator: "; ")))",
                               hint: "this backup cannot be restored; use an earlier one (stowage backups)")
        }
        return out
    }
}

import Crypto

struct SHA256Hasher {
    private var h = SHA256()
    mutating func update(_ b: UnsafeRawBufferPointer) { h.update(bufferPointer: b) }
    func hex() -> String { hexString(h.finalize()) }
}
