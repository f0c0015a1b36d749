// `stowage storage verify STORAGE`: per environment repository and per node, check the
// structure (every backup's chunks present with their recorded sizes, manifests on every
// node, no foreign files) and, for a share of the chunks, the data itself (authentication
// and keyed hash). Reports; changes nothing.
import Foundation
import Repository
import Support

public struct NodeVerifyReport: Codable, Sendable, Equatable {
    public var environment: String
    public var node: String
    public var backups: Int = 0
    public var chunksChecked: Int = 0
    public var chunksRead: Int = 0
    public var missing: [String] = []
    public var wrongSize: [String] = []
    public var damaged: [String] = []
    public var foreign: [String] = []
    public var unreachable: String?

    public var ok: Bool { missing.isEmpty && wrongSize.isEmpty && damaged.isEmpty && unreachable == nil }
}

public enum StorageVerify {
    public static func run(_ spec: StorageSpec, inventory: Inventory, agent: AgentBinary, environments: [String],
                           readDataPercent: Double) async throws(StowageError) -> [NodeVerifyReport] {
        let password = try spec.resolvePassword()
        var out: [NodeVerifyReport] = []
        for env in environments {
            let storage = try ReplicatedStorage(spec, inventory: inventory, agent: agent, environment: env)
            // No repository for this environment yet: nothing to do there.
            guard let repo = try await RepositoryAccess.openIfPresent(storage, environment: env, password: password) else { continue }
            // Each node's files.
            var files: [String: [String: Int64]] = [:]
            var reports: [String: NodeVerifyReport] = [:]
            for node in storage.nodes {
                var r = NodeVerifyReport(environment: env, node: node.target.node)
                do throws(StowageError) {
                    files[node.target.node] = Dictionary(try await node.list().map { ($0.name, $0.size) }, uniquingKeysWith: { a, _ in a })
                } catch {
                    r.unreachable = error.message
                }
                reports[node.target.node] = r
            }
            // Every manifest any node has.
            var manifests: [String: Manifest] = [:]
            for name in Set(files.values.flatMap { $0.keys }).filter({ $0.hasPrefix("backups/") }).sorted() {
                let parts = name.split(separator: "/")
                guard parts.count == 3, let bn = BackupName(String(parts[2])) else { continue }
                if let (m, _) = try? await BackupReader.manifest(repo, layer: String(parts[1]), name: bn) { manifests[name] = m }
            }
            for node in storage.nodes {
                guard let have = files[node.target.node], var r = reports[node.target.node] else { continue }
                var referenced: [String: Int] = [:]
                for (name, m) in manifests {
                    if have[name] == nil { r.missing.append(name); continue }
                    r.backups += 1
                    for c in m.streams.flatMap(\.chunks) { referenced["chunks/\(c.id.prefix(2))/\(c.id)"] = c.stored }
                }
                for (name, stored) in referenced.sorted(by: { $0.key < $1.key }) {
                    r.chunksChecked += 1
                    guard let size = have[name] else { r.missing.append(name); continue }
                    if size != Int64(stored) { r.wrongSize.append(name) }
                }
                r.foreign = have.keys.filter { !isKnown($0) }.sorted()
                // Data: a deterministic share of the referenced chunks present on this node.
                let present = referenced.keys.filter { have[$0] != nil }.sorted()
                let sample = present.filter { stableFraction($0) < readDataPercent / 100 }
                for start in stride(from: 0, to: sample.count, by: 16) {
                    let batch = Array(sample[start..<min(start + 16, sample.count)])
                    guard let got = try? await node.get(batch) else { r.unreachable = "could not read chunks"; break }
                    for obj in got.objects {
                        r.chunksRead += 1
                        let id = String(obj.name.split(separator: "/").last ?? "")
                        let ok = (try? Envelope.open(obj.bytes, key: repo.keys.data, aad: id)).map { p in p.withUnsafeBytes { repo.keys.chunkID($0) } == id } ?? false
                        if !ok { r.damaged.append(obj.name) }
                    }
                }
                reports[node.target.node] = r
            }
            out += storage.nodes.compactMap { reports[$0.target.node] }
        }
        return out
    }

    /// Names the format defines: config, keys/*, chunks/xx/<64 hex>, backups/<layer>/<name>, locks/, tmp/.
    static func isKnown(_ name: String) -> Bool {
        let p = name.split(separator: "/").map(String.init)
        switch p.first {
        case "config": return p.count == 1
        case "keys": return p.count == 2
        case "chunks":
            return p.count == 3 && p[2].count == 64 && p[2].hasPrefix(p[1]) && p[2].allSatisfy { $0.isHexDigit && !$0.isUppercase }
        case "backups": return p.count == 3 && BackupName(p[2]) != nil
        default: return false
        }
    }

    /// A number in [0, 1) from a name, the same on every run and every node.
    static func stableFraction(_ s: String) -> Double {
        var h: UInt64 = 1469598103934665603
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 1099511628211 }
        return Double(h % 10_000) / 10_000
    }

    public static func text(_ reports: [NodeVerifyReport]) -> String {
        guard !reports.isEmpty else { return "no repositories\n" }
        var out = ""
        for r in reports {
            if let u = r.unreachable { out += "\(r.environment) \(r.node): unreachable: \(u)\n"; continue }
            out += "\(r.environment) \(r.node): \(r.ok ? "ok" : "DAMAGED"): \(r.backups) backups, \(r.chunksChecked) chunks present-checked, \(r.chunksRead) read\n"
            for m in r.missing { out += "  missing: \(m)\n" }
            for m in r.wrongSize { out += "  wrong size: \(m)\n" }
            for m in r.damaged { out += "  damaged: \(m)\n" }
            for m in r.foreign { out += "  foreign file (ignored): \(m)\n" }
        }
        return out
    }
}
