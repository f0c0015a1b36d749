// Changing the storage password: for every repository on the storage, write a key file
// wrapping the same keys under the new password, then remove the old key files. Nothing
// else is re-encrypted. Until the old key files are gone both passwords open the
// repository, so an interruption at any point leaves it readable with one of them.
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package enum PasswordChange {
    package static func run(
        _ spec: StorageSpec, inventory: Inventory, agent: AgentBinary, old: Secret, new: Secret,
        environments: [String], kdfCost: Int = 32768
    ) async throws(StowageError) -> [String] {
        try await RepositoryAccess.forEach(
            spec, inventory: inventory, agent: agent, environments: environments,
            password: old
        ) { repo throws(StowageError) in
            let storage = repo.storage
            // Old key file names, from every reachable node.
            var oldKeys = Set<String>()
            for node in storage.nodes {
                if let l = try? await node.list(prefix: RepositoryLayout.keysPrefix) { oldKeys.formUnion(l.map(\.name)) }
            }
            let file = await RepositoryAccess.keyFile(repo.keys, password: new, kdfCost: kdfCost)
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            let id = "k" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
            // The new key first, on the quorum; only then the old ones go.
            _ = try await storage.put([StoredObject(name: RepositoryLayout.key(id), bytes: Array(try! enc.encode(file)))])
            for node in storage.nodes { _ = try? await node.delete(oldKeys.sorted()) }
            return repo.environment
        }
    }
}
