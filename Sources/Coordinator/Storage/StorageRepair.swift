// `stowage storage repair STORAGE`: for every environment repository found on any node of
// the storage, copy to each node what it lacks.
import Foundation
import Support

public struct StorageRepairResult: Sendable, Equatable {
    public var environment: String
    public var report: RepairReport
}

public enum StorageRepair {
    /// The environments (repository folders) present on any reachable node.
    static func environments(_ spec: StorageSpec, inventory: Inventory, agent: AgentBinary) async throws(StowageError) -> [String] {
        var found = Set<String>()
        var reached = 0
        for n in spec.nodes {
            guard let root = n.root ?? spec.root else { continue }
            let c = StorageNodeClient(target: try inventory.sshTarget(n), agent: agent, repository: root)
            guard let listing = try? await c.list() else { continue }
            reached += 1
            for entry in listing {
                if let env = entry.name.split(separator: "/").first { found.insert(String(env)) }
            }
        }
        guard reached > 0 else {
            throw StowageError(.nodeUnreachable, "storage \(spec.name): no node could be listed",
                               hint: "stowage agent check \(spec.name) tells which nodes are unreachable and why", retryable: true)
        }
        return found.sorted()
    }

    public static func run(_ spec: StorageSpec, inventory: Inventory, agent: AgentBinary) async throws(StowageError) -> [StorageRepairResult] {
        var out: [StorageRepairResult] = []
        for env in try await environments(spec, inventory: inventory, agent: agent) {
            let s = try ReplicatedStorage(spec, inventory: inventory, agent: agent, environment: env)
            out.append(StorageRepairResult(environment: env, report: await s.repair()))
        }
        return out
    }
}
