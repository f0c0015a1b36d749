// `stowage backups`: the add-on's "Restore from" (environments) and "Backup" (timestamped
// list) choices, read from the storage itself with nothing but its nodes and password.
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package struct BackupEntry: Codable, Sendable, Equatable {
    package var environment: String
    package var layer: String
    package var name: String
    package var engine: String
    package var sourceNode: String
    package var sourceRole: String?
    package var started: String
    package var finished: String
    package var rawBytes: Int64
    package var storedBytes: Int64
    /// Nodes holding the backup's manifest.
    package var replicas: [String]
    /// Reachable nodes that lack it (repair copies it), and nodes that could not be asked.
    package var missingOn: [String]
    package var unreachable: [String]

    package var health: String { missingOn.isEmpty && unreachable.isEmpty ? "ok" : "degraded" }
}

package enum BackupCatalog {
    /// Backups of the selected environment (or every environment of the inventory) and layer.
    package static func list(
        _ spec: StorageSpec, inventory: Inventory, agent: AgentBinary,
        environment: String?, layer: String?
    ) async throws(StowageError) -> [BackupEntry] {
        let envs = environment.map { [$0] } ?? inventory.environments.map(\.name)
        let perEnvironment = try await RepositoryAccess.forEach(spec, inventory: inventory, agent: agent, environments: envs) { repo throws(StowageError) in
            let env = repo.environment
            var out: [BackupEntry] = []
            let stored = await repo.storage.listBackups()
            // A refused host key (or SSH key, or agent) is the command's error, not a node that is down.
            if let fault = stored.setupFault { throw fault }
            let wanted = stored.holders.filter { layer == nil || $0.key == layer }
            // All at once (a get per node for many manifests); one no node holds a good copy
            // of is not listed (stowage storage verify names it).
            let read = await BackupReader.readableManifests(
                repo, wanted.flatMap { l, backups in backups.keys.map { RepositoryLayout.manifest(layer: l, name: $0) } })
            for (l, backups) in wanted {
                for (name, nodes) in backups {
                    guard let m = read[RepositoryLayout.manifest(layer: l, name: name)] else { continue }
                    out.append(
                        BackupEntry(
                            environment: env, layer: l, name: name.description, engine: m.engine, sourceNode: m.sourceNodes,
                            sourceRole: m.sourceRole, started: m.started, finished: m.finished, rawBytes: m.rawBytes,
                            storedBytes: m.storedBytes, replicas: nodes.sorted(),
                            missingOn: stored.reachable.filter { !nodes.contains($0) }.sorted(), unreachable: stored.unreachable.sorted()))
                }
            }
            return out
        }
        return perEnvironment.flatMap { $0 }.sorted { ($0.environment, $0.layer, $0.name) < ($1.environment, $1.layer, $1.name) }
    }

    package static func text(_ entries: [BackupEntry]) -> String {
        guard !entries.isEmpty else { return "no backups\n" }
        var rows = [["LAYER", "BACKUP", "ENGINE", "SOURCE", "SIZE", "STORED", "REPLICAS"]]
        for e in entries {
            var replicas = e.replicas.joined(separator: ",")
            if !e.missingOn.isEmpty { replicas += " (missing on \(e.missingOn.joined(separator: ",")))" }
            if !e.unreachable.isEmpty { replicas += " (\(e.unreachable.joined(separator: ",")) unreachable)" }
            rows.append([
                "\(e.environment)/\(e.layer)", e.name, e.engine, e.sourceNode + (e.sourceRole.map { " (\($0))" } ?? ""),
                formatBytes(e.rawBytes), formatBytes(e.storedBytes), replicas,
            ])
        }
        return textTable(rows, indent: "")
    }
}
