// One pass over every copy of one environment's repository, shared by `storage verify`
// (which reports it) and `storage repair` (which acts on it). Per node:
// - the listing (names and sizes);
// - every manifest copy, fetched and authenticated (manifests are small: always, at any
//   read subset; a damaged copy on one node must never pass as "ok");
// - config and key files: a config must decode and match the one the repository was opened
//   with; key files that differ between nodes are unlocked to tell the good copy;
// - the chunks the authenticated manifests reference: present with their recorded size,
//   and a share of them (`readPercent`) read and authenticated.
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

/// What is wrong with one node's copy of one object.
package struct CopyProblem: Sendable, Equatable, Codable {
    package enum Kind: String, Sendable, Codable { case missing, wrongSize = "wrong size", damaged }
    package var kind: Kind
    package var detail: String?
}

struct NodeScan: Sendable {
    var client: any StorageDriver
    var node: String { client.name }
    var files: [String: Int64] = [:]
    var unreachable: StowageError?
    /// Objects the repository needs whose copy here is missing or bad.
    var problems: [String: CopyProblem] = [:]
    /// Copies read here and found good (authenticated, keyed ID matching).
    var verified: Set<String> = []
    var backups = 0
    var chunksChecked = 0
    var chunksRead = 0
    var foreign: [String] = []
}

struct RepositoryScan: Sendable {
    var nodes: [NodeScan]
    /// Manifest object → its content, from a copy that authenticates.
    var manifests: [String: Manifest] = [:]
    /// Manifest objects no node holds a good copy of, with why.
    var lost: [String: String] = [:]
    /// Chunk object → stored size, for every chunk an authenticated manifest references.
    var referenced: [String: Int] = [:]
    /// Whether every referenced chunk copy was read.
    var readAll: Bool
}

enum StorageScan {
    static func scan(_ repo: OpenRepository, readPercent: Double) async throws(StowageError) -> RepositoryScan {
        let storage = repo.storage
        // Listings, every node at once.
        let listings = await withTaskGroup(of: (Int, Result<[ListedObject], StowageError>).self) { g in
            for (i, c) in storage.nodes.enumerated() { g.addTask { (i, await captured { try await c.list() }) } }
            var out: [(Int, Result<[ListedObject], StowageError>)] = []
            for await r in g { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        var nodes: [NodeScan] = []
        for (i, r) in listings {
            var n = NodeScan(client: storage.nodes[i])
            switch r {
            case .success(let l): n.files = Dictionary(l.map { ($0.name, $0.size) }, uniquingKeysWith: { a, _ in a })
            case .failure(let e):
                if e.isSetupFault { throw e }
                n.unreachable = e
            }
            n.foreign = n.files.keys.filter { !RepositoryLayout.isKnown($0) }.sorted()
            nodes.append(n)
        }
        var scan = RepositoryScan(nodes: nodes, readAll: readPercent >= 100)
        let live = scan.nodes.indices.filter { scan.nodes[$0].unreachable == nil }

        // Manifests: every copy on every node, authenticated.
        let manifestNames = Set(live.flatMap { scan.nodes[$0].files.keys.filter { RepositoryLayout.manifest($0) != nil } })
        let checked = await withTaskGroup(of: (Int, Result<[String: BackupReader.Copy], StowageError>).self) { g in
            for i in live {
                let node = scan.nodes[i]
                let mine = node.files.keys.filter { manifestNames.contains($0) }.sorted()
                g.addTask { (i, await captured { try await authenticateManifests(repo, node.client, mine) }) }
            }
            var out: [(Int, Result<[String: BackupReader.Copy], StowageError>)] = []
            for await r in g { out.append(r) }
            return out
        }
        var why: [String: [String]] = [:]
        for (i, r) in checked {
            switch r {
            case .failure(let e): scan.nodes[i].unreachable = e
            case .success(let copies):
                for (name, copy) in copies {
                    switch copy {
                    case .good(let m):
                        scan.nodes[i].verified.insert(name)
                        if scan.manifests[name] == nil { scan.manifests[name] = m }
                    case .bad(let problem):
                        scan.nodes[i].problems[name] = CopyProblem(kind: .damaged, detail: problem)
                        why[name, default: []].append("\(scan.nodes[i].node): \(problem)")
                    }
                }
            }
        }
        for name in manifestNames where scan.manifests[name] == nil {
            scan.lost[name] = why[name]?.joined(separator: "; ") ?? "no copy could be read"
        }
        let live2 = scan.nodes.indices.filter { scan.nodes[$0].unreachable == nil }
        for i in live2 {
            for name in scan.manifests.keys where scan.nodes[i].files[name] == nil {
                scan.nodes[i].problems[name] = CopyProblem(kind: .missing)
            }
            scan.nodes[i].backups = scan.manifests.keys.filter { scan.nodes[i].verified.contains($0) }.count
        }

        // Config and key files.
        try await checkConfigAndKeys(repo, &scan, live: live2)

        // Referenced chunks: presence and size everywhere, a share read.
        for m in scan.manifests.values {
            for c in m.streams.flatMap(\.chunks) { scan.referenced[RepositoryLayout.chunk(c.id)] = c.stored }
        }
        let referenced = scan.referenced
        let reads = await withTaskGroup(of: (Int, Result<(read: Int, good: Set<String>, bad: [String: String]), StowageError>).self) { g in
            for i in live2 {
                let node = scan.nodes[i]
                let present = referenced.keys.filter { node.files[$0] != nil && node.files[$0] == Int64(referenced[$0]!) }.sorted()
                let sample = readPercent >= 100 ? present : present.filter { stableFraction($0) < readPercent / 100 }
                g.addTask { (i, await captured { try await authenticateChunks(repo, node.client, sample, sizes: referenced) }) }
            }
            var out: [(Int, Result<(read: Int, good: Set<String>, bad: [String: String]), StowageError>)] = []
            for await r in g { out.append(r) }
            return out
        }
        for i in live2 {
            for (name, stored) in referenced {
                scan.nodes[i].chunksChecked += 1
                guard let size = scan.nodes[i].files[name] else {
                    scan.nodes[i].problems[name] = CopyProblem(kind: .missing)
                    continue
                }
                if size != Int64(stored) {
                    scan.nodes[i].problems[name] = CopyProblem(kind: .wrongSize, detail: "\(size) bytes, the manifest says \(stored)")
                }
            }
        }
        for (i, r) in reads {
            switch r {
            case .failure(let e): scan.nodes[i].unreachable = e
            case .success(let got):
                scan.nodes[i].chunksRead = got.read
                scan.nodes[i].verified.formUnion(got.good)
                for (name, problem) in got.bad { scan.nodes[i].problems[name] = CopyProblem(kind: .damaged, detail: problem) }
            }
        }
        return scan
    }

    /// Each manifest copy on one node: its content, or what is wrong with it.
    static func authenticateManifests(_ repo: OpenRepository, _ node: any StorageDriver, _ names: [String]) async throws -> [String: BackupReader.Copy] {
        var out: [String: BackupReader.Copy] = [:]
        for start in stride(from: 0, to: names.count, by: 256) {
            let got = try await node.get(Array(names[start..<min(start + 256, names.count)]))
            // A manifest listed a moment ago and gone now was forgotten meanwhile: not damage.
            for obj in got.objects { out[obj.name] = BackupReader.openManifest(obj.bytes, repo: repo, objectName: obj.name) }
        }
        return out
    }

    /// Reads the chunk copies `names` on one node (about 32 MiB a session) and authenticates each.
    static func authenticateChunks(
        _ repo: OpenRepository, _ node: any StorageDriver, _ names: [String],
        sizes: [String: Int]
    ) async throws -> (read: Int, good: Set<String>, bad: [String: String]) {
        var good = Set<String>(), bad: [String: String] = [:]
        var read = 0
        var batch: [String] = []
        var bytes = 0
        func flush() async throws {
            guard !batch.isEmpty else { return }
            let got = try await node.get(batch)
            for obj in got.objects {
                read += 1
                if let problem = checkChunk(obj.bytes, name: obj.name, keys: repo.keys) { bad[obj.name] = problem } else { good.insert(obj.name) }
            }
            batch.removeAll()
            bytes = 0
        }
        for n in names {
            batch.append(n)
            bytes += sizes[n] ?? 0
            if bytes >= 32 << 20 || batch.count >= 512 { try await flush() }
        }
        try await flush()
        return (read, good, bad)
    }

    /// Nil when the sealed bytes of chunk object `name` authenticate and match its keyed ID.
    static func checkChunk(_ sealed: [UInt8], name: String, keys: RepositoryKeys) -> String? {
        let id = String(name.split(separator: "/").last ?? "")
        do throws(RepositoryError) {
            let plain = try Envelope.open(sealed, key: keys.data, aad: id)
            return plain.withUnsafeBytes { keys.chunkID($0) } == id ? nil : "content does not match its ID"
        } catch {
            return error.description
        }
    }

    static func checkConfigAndKeys(_ repo: OpenRepository, _ scan: inout RepositoryScan, live: [Int]) async throws(StowageError) {
        let keyNames = Set(live.flatMap { scan.nodes[$0].files.keys.filter { $0.hasPrefix(RepositoryLayout.keysPrefix + "/") } })
        let names = [RepositoryLayout.config] + keyNames.sorted()
        var copies: [Int: [String: [UInt8]]] = [:]
        for i in live {
            let wanted = names.filter { scan.nodes[i].files[$0] != nil }
            do throws(StowageError) {
                copies[i] = Dictionary(try await scan.nodes[i].client.get(wanted).objects.map { ($0.name, $0.bytes) }, uniquingKeysWith: { a, _ in a })
            } catch {
                if error.isSetupFault { throw error }
                scan.nodes[i].unreachable = error
            }
        }
        // Config: present, decodes, and is the config the repository was opened with.
        for (i, files) in copies {
            guard let bytes = files[RepositoryLayout.config] else {
                scan.nodes[i].problems[RepositoryLayout.config] = CopyProblem(kind: .missing)
                continue
            }
            if let c = try? JSONDecoder().decode(RepositoryConfig.self, from: Data(bytes)), c == repo.config {
                scan.nodes[i].verified.insert(RepositoryLayout.config)
            } else {
                scan.nodes[i].problems[RepositoryLayout.config] = CopyProblem(kind: .damaged, detail: "not this repository's config")
            }
        }
        // Key files: identical copies everywhere need no unlocking; where they differ, a copy
        // that decodes and unlocks with the storage password is the good one.
        for name in keyNames {
            let held = copies.compactMap { i, files in files[name].map { (i, $0) } }
            let distinct = Set(held.map(\.1))
            for (i, bytes) in held {
                var problem: String?
                if let file = try? JSONDecoder().decode(KeyFile.self, from: Data(bytes)) {
                    if distinct.count > 1, let password = repo.password, await RepositoryAccess.unlock(file, password) == nil {
                        problem = "does not unlock with the storage password"
                    }
                } else {
                    problem = "not a key file"
                }
                if let problem { scan.nodes[i].problems[name] = CopyProblem(kind: .damaged, detail: problem) } else { scan.nodes[i].verified.insert(name) }
            }
            for i in copies.keys where copies[i]?[name] == nil { scan.nodes[i].problems[name] = CopyProblem(kind: .missing) }
        }
    }

    /// A number in [0, 1) from a name, the same on every run and every node.
    static func stableFraction(_ s: String) -> Double {
        var h: UInt64 = 1469598103934665603
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 1099511628211 }
        return Double(h % 10_000) / 10_000
    }
}
