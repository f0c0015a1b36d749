// `stowage storage prune STORAGE [--dry-run]`: what a failed run left behind, removed at
// any time (Pruner.reclaimUnreferenced does the work, under the exclusive lock).
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package enum StoragePrune {
    package static func run(
        _ spec: StorageSpec, inventory: Inventory, agent: AgentBinary, environments: [String],
        dryRun: Bool
    ) async throws(StowageError) -> [ReclaimReport] {
        try await RepositoryAccess.forEach(spec, inventory: inventory, agent: agent, environments: environments) { repo throws(StowageError) in
            try await Pruner.reclaimUnreferenced(
                repo, dryRun: dryRun, patience: LayerLock.repositoryPatience,
                operation: "storage prune \(repo.environment)")
        }
    }

    package static func text(_ reports: [ReclaimReport], storage: String) -> String {
        guard !reports.isEmpty else { return "no repositories on \(storage)\n" }
        var out = ""
        for r in reports {
            let verb = r.dryRun ? "would remove" : "removed"
            let nodes = r.removed.keys.sorted().map { "\($0): \(verb) \(r.removed[$0]!) unreferenced chunks (\(formatBytes(r.bytes[$0] ?? 0)))" }
            let skipped = r.skipped.keys.sorted().map { "\($0): skipped" }
            out += "\(storage)/\(r.environment): \((nodes + skipped).joined(separator: ", "))\n"
        }
        return out
    }
}
