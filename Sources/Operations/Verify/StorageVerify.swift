// `stowage storage verify STORAGE`: per environment repository and per node, check the
// structure (every manifest copy authenticated, every backup's chunks present with their
// recorded sizes, no foreign files) and, for a share of the chunks, the data itself
// (authentication and keyed hash). Reports; changes nothing (StorageScan does the reading).
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package struct NodeVerifyReport: Codable, Sendable, Equatable {
    package var environment: String
    package var node: String
    package var backups: Int = 0
    package var chunksChecked: Int = 0
    package var chunksRead: Int = 0
    /// Whether every referenced chunk copy on the node was read (a 100% subset); otherwise
    /// chunk data was only sampled (or not read at all) and "ok" means structure only.
    package var dataRead: Bool = false
    package var missing: [String] = []
    package var wrongSize: [String] = []
    /// Copies that fail authentication (manifests always checked, chunks as sampled), with why.
    package var damaged: [String] = []
    /// Backups no node holds a good manifest copy of: lost unless an older copy turns up.
    package var lost: [String] = []
    package var foreign: [String] = []
    /// What is wrong with each damaged or wrong-sized copy.
    package var details: [String: String] = [:]
    package var unreachable: String?

    package var ok: Bool { missing.isEmpty && wrongSize.isEmpty && damaged.isEmpty && lost.isEmpty && unreachable == nil }
}

package enum StorageVerify {
    package static func run(
        _ spec: StorageSpec, inventory: Inventory, agent: AgentBinary, environments: [String],
        readDataPercent: Double
    ) async throws(StowageError) -> [NodeVerifyReport] {
        try await RepositoryAccess.forEach(spec, inventory: inventory, agent: agent, environments: environments) { repo throws(StowageError) in
            report(try await StorageScan.scan(repo, readPercent: readDataPercent), environment: repo.environment)
        }.flatMap { $0 }
    }

    /// The scan as one report per node (pure).
    static func report(_ scan: RepositoryScan, environment: String) -> [NodeVerifyReport] {
        scan.nodes.map { n in
            var r = NodeVerifyReport(environment: environment, node: n.node)
            if let u = n.unreachable { r.unreachable = u.message; return r }
            r.backups = n.backups
            r.chunksChecked = n.chunksChecked
            r.chunksRead = n.chunksRead
            r.dataRead = scan.readAll
            for (name, p) in n.problems.sorted(by: { $0.key < $1.key }) {
                switch p.kind {
                case .missing: r.missing.append(name)
                case .wrongSize: r.wrongSize.append(name)
                case .damaged: r.damaged.append(name)
                }
                if let d = p.detail { r.details[name] = d }
            }
            r.lost = scan.lost.keys.filter { n.files[$0] != nil }.sorted()
            r.foreign = n.foreign
            return r
        }
    }

    package static func text(_ reports: [NodeVerifyReport]) -> String {
        guard !reports.isEmpty else { return "no repositories\n" }
        var out = ""
        for r in reports {
            if let u = r.unreachable { out += "\(r.environment) \(r.node): unreachable: \(u)\n"; continue }
            // "ok" only when the data was read; else say what was and was not checked.
            let verdict = !r.ok ? "DAMAGED" : r.dataRead ? "ok" : r.chunksRead > 0 ? "structure ok, data sampled" : "structure ok, data not read"
            out +=
                "\(r.environment) \(r.node): \(verdict): \(r.backups) backups (manifests authenticated), \(r.chunksChecked) chunks present-checked, \(r.chunksRead) read\n"
            for m in r.lost { out += "  lost: \(m): no node holds a good copy\n" }
            for m in r.missing { out += "  missing: \(m)\n" }
            for m in r.wrongSize { out += "  wrong size: \(m)\(r.details[m].map { " (\($0))" } ?? "")\n" }
            for m in r.damaged { out += "  damaged: \(m)\(r.details[m].map { " (\($0))" } ?? "")\n" }
            for m in r.foreign { out += "  foreign file (ignored): \(m)\n" }
        }
        return out
    }
}
