// `stowage storage repair STORAGE`: for every environment repository on the storage, every
// copy the repository needs that is missing, of the wrong size or fails authentication is
// replaced from a copy that authenticates (read and checked again as it is copied). What no
// node holds a good copy of is named per object, and the command exits non-zero. Objects no
// backup needs (leftovers of failed runs) are not copied: `storage prune` removes them.
//
// It runs under the repository's exclusive lock on every reachable node: no backup, restore
// or prune runs meanwhile, so a manifest forgotten by retention cannot be copied back.
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package struct RepairOutcome: Sendable, Equatable, Codable {
    package var environment: String
    /// Per node, objects written there because its copy was missing.
    package var copied: [String: [String]] = [:]
    /// Per node, objects whose bad copy (wrong size, damaged) was replaced, with what was wrong.
    package var replaced: [String: [String]] = [:]
    /// Objects no reachable node holds a good copy of, with why.
    package var unrepairable: [String: String] = [:]
    /// Nodes that could not be scanned or written, with why.
    package var unreachable: [String: String] = [:]

    package var ok: Bool { unrepairable.isEmpty && unreachable.isEmpty }
}

/// Which copy goes where (pure: decided from the scan, tested without servers).
struct RepairPlan: Sendable, Equatable {
    package struct Copy: Sendable, Equatable {
        var object: String
        var from: String
        var to: String
        var problem: CopyProblem
    }
    var copies: [Copy] = []
    var unrepairable: [String: String] = [:]

    struct NodeState: Sendable {
        var node: String
        /// Objects whose copy here is missing or bad.
        var problems: [String: CopyProblem]
        /// Copies read here and found good.
        var verified: Set<String>
        /// Copies here that were not read but have the right size (a read subset under 100%).
        var unread: Set<String>
    }

    /// For each problem on a writable node, a source: a node whose copy was read and found
    /// good, else (only for chunks a partial read did not reach) one with the right size;
    /// the first such node in the storage's order.
    static func decide(_ nodes: [NodeState], writable: Set<String>) -> RepairPlan {
        var plan = RepairPlan()
        for target in nodes where writable.contains(target.node) {
            for (object, problem) in target.problems.sorted(by: { $0.key < $1.key }) {
                let source =
                    nodes.first { $0.node != target.node && $0.verified.contains(object) }
                    ?? nodes.first { $0.node != target.node && $0.unread.contains(object) }
                if let source {
                    plan.copies.append(Copy(object: object, from: source.node, to: target.node, problem: problem))
                } else {
                    let bad = nodes.filter { ($0.problems[object]?.kind ?? .missing) != .missing }.map(\.node)
                    plan.unrepairable[object] =
                        bad.isEmpty
                        ? "no reachable node holds a copy"
                        : "no good copy on any reachable node (bad on \(bad.joined(separator: ", ")))"
                }
            }
        }
        return plan
    }
}

package enum StorageRepair {
    /// Every environment repository on the storage (folders without one are left alone).
    package static func run(
        _ spec: StorageSpec, inventory: Inventory, agent: AgentBinary, environments only: [String]? = nil,
        readDataPercent: Double = 100
    ) async throws(StowageError) -> [RepairOutcome] {
        let envs: [String]
        if let only { envs = only } else { envs = try await ReplicatedStorage.environments(spec, inventory: inventory, agent: agent) }
        return try await RepositoryAccess.forEach(spec, inventory: inventory, agent: agent, environments: envs) { repo throws(StowageError) in
            try await repair(repo, readDataPercent: readDataPercent)
        }
    }

    package static func repair(_ repo: OpenRepository, readDataPercent: Double = 100) async throws(StowageError) -> RepairOutcome {
        let storage = repo.storage
        let held = try await LayerLock.acquireAll(
            storage.nodes, layer: nil, operation: "repair \(repo.environment)", exclusive: true,
            patience: LayerLock.repositoryPatience)
        do throws(StowageError) {
            let r = try await repairLocked(repo, readDataPercent: readDataPercent, lockFailures: held.failed)
            await held.release()
            return r
        } catch {
            await held.release()
            throw error
        }
    }

    static func repairLocked(
        _ repo: OpenRepository, readDataPercent: Double,
        lockFailures: [String: StowageError]
    ) async throws(StowageError) -> RepairOutcome {
        var outcome = RepairOutcome(environment: repo.environment)
        let scan = try await StorageScan.scan(repo, readPercent: readDataPercent)
        for n in scan.nodes { if let u = n.unreachable ?? lockFailures[n.node] { outcome.unreachable[n.node] = u.message } }
        let states = scan.nodes.filter { outcome.unreachable[$0.node] == nil }.map { n in
            RepairPlan.NodeState(
                node: n.node, problems: n.problems, verified: n.verified,
                unread: Set(n.files.keys.filter { n.problems[$0] == nil && !n.verified.contains($0) }))
        }
        let plan = RepairPlan.decide(states, writable: Set(states.map(\.node)))
        outcome.unrepairable = plan.unrepairable
        for (name, why) in scan.lost { outcome.unrepairable[name] = why }

        // Per target node: fetched from each source (checked again), written chunks and key
        // files first, manifests last, so a copied backup is never listed before its chunks.
        let clients = Dictionary(uniqueKeysWithValues: repo.storage.nodes.map { ($0.name, $0) })
        for (target, copies) in Dictionary(grouping: plan.copies, by: \.to).sorted(by: { $0.key < $1.key }) {
            guard let to = clients[target] else { continue }
            let ordered = copies.sorted {
                (RepositoryLayout.manifest($0.object) != nil ? 1 : 0, $0.object) < (RepositoryLayout.manifest($1.object) != nil ? 1 : 0, $1.object)
            }
            do throws(StowageError) {
                var batch: [RepairPlan.Copy] = []
                var size = 0
                func flush() async throws(StowageError) {
                    guard !batch.isEmpty else { return }
                    var objects: [StoredObject] = []
                    for (source, group) in Dictionary(grouping: batch, by: \.from) {
                        guard let from = clients[source] else { continue }
                        let got = try await from.get(group.map(\.object))
                        for obj in got.objects {
                            if let problem = recheck(obj, repo: repo) {
                                outcome.unrepairable[obj.name] = "the copy on \(source) went bad while repairing: \(problem)"
                                continue
                            }
                            objects.append(obj)
                        }
                        for m in got.missing { outcome.unrepairable[m] = "its copy on \(source) vanished while repairing" }
                    }
                    // Chunks and keys before manifests, within the batch too.
                    let plain = objects.filter { RepositoryLayout.manifest($0.name) == nil }
                    let manifests = objects.filter { RepositoryLayout.manifest($0.name) != nil }
                    if !plain.isEmpty { _ = try await to.put(plain, replace: true) }
                    if !manifests.isEmpty { _ = try await to.put(manifests, replace: true) }
                    let written = Set(objects.map(\.name))
                    for c in batch where written.contains(c.object) {
                        if c.problem.kind == .missing {
                            outcome.copied[target, default: []].append(c.object)
                        } else {
                            outcome.replaced[target, default: []].append("\(c.object) (\(c.problem.kind.rawValue)\(c.problem.detail.map { ": \($0)" } ?? ""))")
                        }
                    }
                    batch.removeAll()
                    size = 0
                }
                for c in ordered {
                    batch.append(c)
                    size += scan.referenced[c.object] ?? 4096
                    if size >= 32 << 20 || batch.count >= 512 { try await flush() }
                }
                try await flush()
            } catch {
                if error.isSetupFault { throw error }
                outcome.unreachable[target] = error.message
            }
        }
        return outcome
    }

    /// Nil when a fetched copy is good: chunks and manifests authenticate, key files and the
    /// config decode. (The source was checked during the scan; this is the copy written.)
    static func recheck(_ obj: StoredObject, repo: OpenRepository) -> String? {
        if RepositoryLayout.chunkID(obj.name) != nil { return StorageScan.checkChunk(obj.bytes, name: obj.name, keys: repo.keys) }
        if RepositoryLayout.manifest(obj.name) != nil {
            if case .bad(let why) = BackupReader.openManifest(obj.bytes, repo: repo, objectName: obj.name) { return why }
            return nil
        }
        if obj.name == RepositoryLayout.config {
            return (try? JSONDecoder().decode(RepositoryConfig.self, from: Data(obj.bytes))) == repo.config ? nil : "not this repository's config"
        }
        return (try? JSONDecoder().decode(KeyFile.self, from: Data(obj.bytes))) == nil ? "not a key file" : nil
    }

    package static func text(_ outcomes: [RepairOutcome], storage: String) -> String {
        guard !outcomes.isEmpty else { return "no repositories on \(storage)\n" }
        var out = ""
        for o in outcomes {
            let nodes = Set(o.copied.keys).union(o.replaced.keys).union(o.unreachable.keys).sorted()
            let summary = nodes.map { n in
                o.unreachable[n].map { "\(n): unreachable (\($0))" } ?? "\(n): \(o.copied[n]?.count ?? 0) copied, \(o.replaced[n]?.count ?? 0) replaced"
            }
            out += "\(storage)/\(o.environment): \(summary.isEmpty ? "nothing to repair" : summary.joined(separator: ", "))\n"
            for (n, objs) in o.replaced.sorted(by: { $0.key < $1.key }) { for obj in objs { out += "  replaced on \(n): \(obj)\n" } }
            for (obj, why) in o.unrepairable.sorted(by: { $0.key < $1.key }) { out += "  NOT REPAIRED: \(obj): \(why)\n" }
        }
        return out
    }
}
