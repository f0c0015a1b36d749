// A storage as a set of replicas: every node holds a full copy. Writes go to every
// reachable node in parallel and commit once the write quorum holds them; nodes that missed
// a write are reported, and `repair` copies what they lack from nodes that have it.
import AgentProtocol
import Foundation
import Repository
import Support
import Topology

public struct ReplicatedWrite: Sendable, Equatable {
    public var outcome: QuorumOutcome
    public var stored: [String: PutResult]
}

public struct RepairReport: Sendable, Equatable {
    /// Objects copied to each node.
    public var copied: [String: Int]
    /// Nodes that could not be listed or written, with why.
    public var unreachable: [String: String]
}

public struct ReplicatedStorage: Sendable {
    public var name: String
    public var nodes: [StorageNodeClient]
    public var quorum: Int?

    /// The storage's node clients for one environment's repository.
    public init(_ spec: StorageSpec, inventory: Inventory, agent: AgentBinary, environment: String) throws(StowageError) {
        name = spec.name
        quorum = spec.quorum
        var clients: [StorageNodeClient] = []
        for n in spec.nodes {
            guard let root = n.root ?? spec.root else {
                throw StowageError(.invalidInventory, "storage node \(n.name) has no root folder (\(n.location))")
            }
            clients.append(StorageNodeClient(target: try inventory.sshTarget(n), agent: agent, repository: "\(root)/\(environment)"))
        }
        nodes = clients
    }

    public init(name: String, nodes: [StorageNodeClient], quorum: Int?) {
        self.name = name
        self.nodes = nodes
        self.quorum = quorum
    }

    /// Writes the objects to every node; throws when fewer than the quorum hold them all.
    public func put(_ objects: [StoredObject]) async throws(StowageError) -> ReplicatedWrite {
        let results = await withTaskGroup(of: (String, Result<PutResult, StowageError>).self) { group in
            for c in nodes {
                group.addTask { (c.target.node, await captured { try await c.put(objects) }) }
            }
            var out: [String: Result<PutResult, StowageError>] = [:]
            for await (n, r) in group { out[n] = r }
            return out
        }
        var failures: [String: String] = [:], stored: [String: PutResult] = [:]
        for (n, r) in results {
            switch r {
            case .success(let p): stored[n] = p
            case .failure(let e): failures[n] = e.message
            }
        }
        let outcome = QuorumOutcome.decide(nodes: nodes.map(\.target.node), failures: failures, quorum: quorum)
        guard outcome.committed else {
            let why = failures.keys.sorted().map { "\($0): \(failures[$0]!)" }.joined(separator: "; ")
            throw StowageError(.quorumNotReached,
                               "storage \(name): \(outcome.complete.count) of \(nodes.count) nodes hold the write, quorum is \(quorum.map(String.init) ?? "all"); \(why)",
                               hint: "bring the nodes back, or lower the storage's quorum in the inventory; nothing was committed", retryable: true)
        }
        return ReplicatedWrite(outcome: outcome, stored: stored)
    }

    /// Copies to every node the objects other nodes have and it lacks (or holds with another
    /// size): the union of all copies is the repository.
    public func repair() async -> RepairReport {
        let listings = await withTaskGroup(of: (String, Result<[(name: String, size: Int64)], StowageError>).self) { group in
            for c in nodes {
                group.addTask { (c.target.node, await captured { try await c.list() }) }
            }
            var out: [String: Result<[(name: String, size: Int64)], StowageError>] = [:]
            for await (n, r) in group { out[n] = r }
            return out
        }
        var unreachable: [String: String] = [:]
        var have: [String: [String: Int64]] = [:]
        for (n, r) in listings {
            switch r {
            case .success(let l): have[n] = Dictionary(l.map { ($0.name, $0.size) }, uniquingKeysWith: { a, _ in a })
            case .failure(let e): unreachable[n] = e.message
            }
        }
        // For each object, the size most nodes agree on, and one node holding it with that size.
        var sources: [String: (size: Int64, node: String)] = [:]
        var votes: [String: [Int64: [String]]] = [:]
        for (n, objs) in have { for (name, size) in objs { votes[name, default: [:]][size, default: []].append(n) } }
        for (name, bySize) in votes {
            let best = bySize.max { a, b in a.value.count != b.value.count ? a.value.count < b.value.count : a.key < b.key }!
            sources[name] = (best.key, best.value.sorted()[0])
        }
        var copied: [String: Int] = [:]
        for target in nodes where have[target.target.node] != nil {
            let mine = have[target.target.node]!
            let needed = sources.filter { mine[$0.key] != $0.value.size }
            // Fetch from each source node what it is the source of, then write in one session.
            var objects: [StoredObject] = []
            var failed = false
            for (src, names) in Dictionary(grouping: needed.keys, by: { needed[$0]!.node }) {
                guard let client = nodes.first(where: { $0.target.node == src }) else { continue }
                do throws(StowageError) {
                    objects += try await client.get(names.sorted()).objects
                } catch {
                    unreachable[src] = error.message
                    failed = true
                }
            }
            if failed && objects.isEmpty { continue }
            // Chunks first, manifests last: a copied backup is never listed before its chunks are there.
            objects.sort { ($0.name.hasPrefix("backups/") ? 1 : 0, $0.name) < ($1.name.hasPrefix("backups/") ? 1 : 0, $1.name) }
            do throws(StowageError) {
                let chunks = objects.filter { !$0.name.hasPrefix("backups/") }
                let manifests = objects.filter { $0.name.hasPrefix("backups/") }
                var n = 0
                if !chunks.isEmpty { n += try await target.put(chunks).stored }
                if !manifests.isEmpty { n += try await target.put(manifests).stored }
                copied[target.target.node] = n
            } catch {
                unreachable[target.target.node] = error.message
            }
        }
        return RepairReport(copied: copied, unreachable: unreachable)
    }
}

/// The backups a storage's nodes hold, by manifest name only (nothing read or decrypted).
public struct StoredBackups: Sendable {
    /// layer → backup → the nodes holding its manifest.
    public var holders: [String: [BackupName: Set<String>]] = [:]
    /// Nodes that answered and nodes that could not be asked, in the storage's order.
    public var reachable: [String] = []
    public var unreachable: [String] = []

    /// The newest backup of a layer, by name.
    public func newest(_ layer: String) -> BackupName? { holders[layer]?.keys.max() }
}

extension ReplicatedStorage {
    /// Which backups each node holds (every node asked at once). Names under `backups/`
    /// that are not `<layer>/<backup name>` are foreign and left out.
    public func listBackups() async -> StoredBackups {
        let listings = await withTaskGroup(of: (Int, Result<[String], StowageError>).self) { group in
            for (i, c) in nodes.enumerated() {
                group.addTask { (i, await captured { try await c.list(prefix: "backups").map(\.name) }) }
            }
            var out: [(Int, Result<[String], StowageError>)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        var stored = StoredBackups()
        for (i, result) in listings {
            let node = nodes[i].target.node
            guard case .success(let names) = result else { stored.unreachable.append(node); continue }
            stored.reachable.append(node)
            for object in names {
                let parts = object.split(separator: "/")
                guard parts.count == 3, let name = BackupName(String(parts[2])) else { continue }
                stored.holders[String(parts[1]), default: [:]][name, default: []].insert(node)
            }
        }
        return stored
    }
}
