// The add-on's Install, Configure and Uninstall for one layer: a policy is checked the way
// the add-on checks its form (the storage answers and opens with its password, the database
// accepts the credentials) before it is written; nothing is written when a check fails.
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package enum Addon {
    /// What an install or configure found besides errors.
    package struct Checked: Sendable {
        package var policy: Policy
        /// Findings that do not stop the install but will stop or mark scheduled runs.
        package var warnings: [String]
        /// Whether the environment's repository already exists on the storage.
        package var repositoryExists: Bool
    }

    /// Runs the checks for `policy` against the inventory (without the policy file's version
    /// of this layer). Throws the first failure.
    package static func check(_ policy: Policy, inventory: Inventory, agent: AgentBinary) async throws(StowageError) -> Checked {
        var inv = inventory
        var others = inv.policies.filter { $0.layer != policy.layer }
        others.append(policy)
        try inv.apply(others)
        _ = try policy.schedule.schedule()
        guard let layer = inv.layers.first(where: { $0.id == policy.layer }) else {
            throw StowageError(.usage, "unknown layer \(policy.layer) in \(inv.path)", hint: "name one layer of the inventory as ENV/LAYER")
        }
        guard let storageSpec = inv.storage(policy.storage) else {
            throw StowageError(
                .usage, "unknown storage '\(policy.storage)' in \(inv.path)",
                hint: "storages: \(inv.storages.map(\.name).joined(separator: ", "))")
        }
        // The storage: every node is asked; the repository opens with the storage password
        // (or does not exist yet: the first backup creates it).
        let password = try storageSpec.resolvePassword()
        let storage = try ReplicatedStorage(storageSpec, inventory: inv, agent: agent, environment: layer.environment)
        var unreachable: [String] = []
        for node in storage.nodes {
            do throws(StowageError) { _ = try await node.list(prefix: RepositoryLayout.keysPrefix) } catch {
                unreachable.append("\(node.name) (\(error.message))")
            }
        }
        let needed = storageSpec.quorum ?? storage.nodes.count
        if storage.nodes.count - unreachable.count < needed {
            throw StowageError(
                .nodeUnreachable,
                "storage \(storageSpec.name): \(unreachable.joined(separator: ", ")) cannot be reached; a backup needs \(needed) of \(storage.nodes.count) nodes",
                hint: "check the storage nodes (stowage agent check), then install again; nothing was written", retryable: true)
        }
        let repo = try await RepositoryAccess.openIfPresent(storage, environment: layer.environment, password: password)
        var warnings: [String] = unreachable.map { "storage node \($0) cannot be reached: backups will miss it until it is back" }
        // The credentials and the topology, as a scheduled backup will see them.
        let topology = try await TopologyCheck.run([layer], settings: inv.probe)[0]
        do throws(StowageError) {
            let plan = try Plans.backup(topology, from: policy.source)
            warnings += plan.notes
        } catch {
            if error.status == .credentialsRejected || error.status == .invalidInventory {
                throw StowageError(error.status, error.message, hint: (error.hint.map { $0 + "; " } ?? "") + "nothing was installed")
            }
            warnings.append("scheduled backups will be refused until this is fixed: \(error.message)")
        }
        return Checked(policy: policy, warnings: warnings, repositoryExists: repo != nil)
    }
}
