// A storage as a set of replicas: every node holds a full copy. Writes go to every
// reachable node in parallel and commit once the write quorum holds them; nodes that missed
// a write are reported, and `storage repair` (StorageRepair) copies what they lack.
import Fleet
import Foundation
import Remote
import Repository
import Support
import Topology

package struct ReplicatedWrite: Sendable, Equatable {
    package var outcome: QuorumOutcome
    package var stored: [String: PutResult]
}

package struct ReplicatedStorage: Sendable {
    package var name: String
    package var nodes: [any StorageDriver]
    package var quorum: Int?

    /// The drivers of the storage's nodes, for one environment's repository (nil: the
    /// storage's root, where each environment is a folder).
    package init(_ spec: StorageSpec, inventory: Inventory, agent: AgentBinary, environment: String?) throws(StowageError) {
        name = spec.name
        quorum = spec.quorum
        var drivers: [any StorageDriver] = []
        for n in spec.nodes {
            if let b = n.bucket {
                drivers.append(try S3Bucket(node: n.name, b, environment: environment))
                continue
            }
            guard let root = n.root ?? spec.root else {
                throw StowageError(.invalidInventory, "storage node \(n.name) has no root folder (\(n.location))")
            }
            drivers.append(
                SSHStorageNode(
                    target: try inventory.sshTarget(n), agent: agent,
                    repository: environment.map { "\(root)/\($0)" } ?? root))
        }
        nodes = drivers
    }

    /// The environments with a repository folder on any reachable node of the storage.
    package static func environments(_ spec: StorageSpec, inventory: Inventory, agent: AgentBinary) async throws(StowageError) -> [String] {
        let root = try ReplicatedStorage(spec, inventory: inventory, agent: agent, environment: nil)
        var found = Set<String>()
        var reached = 0
        for node in root.nodes {
            let listing: [ListedObject]
            switch await captured({ try await node.list() }) {
            case .success(let l): listing = l
            case .failure(let e):
                if e.isSetupFault { throw e }
                continue
            }
            reached += 1
            for entry in listing {
                if let env = entry.name.split(separator: "/").first { found.insert(String(env)) }
            }
        }
        guard reached > 0 else {
            throw StowageError(
                .nodeUnreachable, "storage \(spec.name): no node could be listed",
                hint: "stowage agent check \(spec.name) tells which nodes are unreachable and why", retryable: true)
        }
        return found.sorted()
    }

    package init(name: String, nodes: [any StorageDriver], quorum: Int?) {
        self.name = name
        self.nodes = nodes
        self.quorum = quorum
    }

    /// Writes the objects to every node; throws when fewer than the quorum hold them all.
    package func put(_ objects: [StoredObject]) async throws(StowageError) -> ReplicatedWrite {
        let results = await withTaskGroup(of: (String, Result<PutResult, StowageError>).self) { group in
            for c in nodes {
                group.addTask { (c.name, await captured { try await c.put(objects) }) }
            }
            var out: [String: Result<PutResult, StowageError>] = [:]
            for await (n, r) in group { out[n] = r }
            return out
        }
        var failures: [String: String] = [:], stored: [String: PutResult] = [:]
        for (n, r) in results.sorted(by: { $0.key < $1.key }) {
            switch r {
            case .success(let p): stored[n] = p
            case .failure(let e):
                // A node this coordinator is not set up for is not a node that is down.
                if e.isSetupFault { throw e }
                failures[n] = e.message
            }
        }
        let outcome = QuorumOutcome.decide(nodes: nodes.map(\.name), failures: failures, quorum: quorum)
        guard outcome.committed else {
            let why = failures.keys.sorted().map { "\($0): \(failures[$0]!)" }.joined(separator: "; ")
            throw StowageError(
                .quorumNotReached,
                "storage \(name): \(outcome.complete.count) of \(nodes.count) nodes hold the write, quorum is \(quorum.map(String.init) ?? "all"); \(why)",
                hint: "bring the nodes back, or lower the storage's quorum in the inventory; nothing was committed", retryable: true)
        }
        return ReplicatedWrite(outcome: outcome, stored: stored)
    }
}

/// The backups a storage's nodes hold, by manifest name only (nothing read or decrypted).
package struct StoredBackups: Sendable {
    /// layer → backup → the nodes holding its manifest.
    package var holders: [String: [BackupName: Set<String>]] = [:]
    /// Nodes that answered and nodes that could not be asked, in the storage's order.
    package var reachable: [String] = []
    package var unreachable: [String] = []
    /// Why each unreachable node could not be asked.
    package var errors: [String: StowageError] = [:]
    /// The first node this coordinator is not set up for (host key, SSH key, agent): such a
    /// node is not merely down, and commands that list report it as their error.
    package var setupFault: StowageError? { unreachable.lazy.compactMap { errors[$0] }.first { $0.isSetupFault } }

    /// The newest backup of a layer, by name.
    package func newest(_ layer: String) -> BackupName? { holders[layer]?.keys.max() }
}

extension ReplicatedStorage {
    /// Which backups each node holds (every node asked at once). Names under `backups/`
    /// that are not `<layer>/<backup name>` are foreign and left out.
    package func listBackups() async -> StoredBackups {
        let listings = await withTaskGroup(of: (Int, Result<[String], StowageError>).self) { group in
            for (i, c) in nodes.enumerated() {
                group.addTask { (i, await captured { try await c.list(prefix: RepositoryLayout.backupsPrefix).map(\.name) }) }
            }
            var out: [(Int, Result<[String], StowageError>)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        var stored = StoredBackups()
        for (i, result) in listings {
            let node = nodes[i].name
            if case .failure(let e) = result {
                stored.unreachable.append(node)
                stored.errors[node] = e
                continue
            }
            guard case .success(let names) = result else { continue }
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

extension ReplicatedStorage {
    /// The names of its replicas, in the storage's order.
    package var nodeNames: [String] { nodes.map(\.name) }

    /// Opens connections to every replica ahead of the work.
    package func prewarm(connections: Int) { for n in nodes { n.prewarm(connections: connections) } }
}
