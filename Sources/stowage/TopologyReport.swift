// How `stowage topology` shows its result: a table per layer for people, a stable JSON
// document (docs/topology-json.md) for programs.
import Foundation
import Support
import Topology

enum TopologyReport {
    static let schema = "stowage.topology/v1"

    static func json(_ layers: [LayerTopology], generatedAt: Date = Date()) -> String {
        struct Document: Encodable {
            var schema: String
            var generatedAt: String
            var status: Severity
            var layers: [LayerTopology]
        }
        let fmt = ISO8601DateFormatter()
        let doc = Document(
            schema: schema, generatedAt: fmt.string(from: generatedAt),
            status: layers.map(\.status).max() ?? .ok, layers: layers)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain values cannot fail.
        return String(decoding: try! enc.encode(doc), as: UTF8.self)
    }

    static func text(_ layers: [LayerTopology]) -> String {
        layers.map(text(_:)).joined(separator: "\n")
    }

    static func text(_ t: LayerTopology) -> String {
        var out = ""
        let head: String
        switch t.kind {
        case .redisCluster:
            head = "masters: " + (t.shards ?? []).map { "\($0.master) [\($0.slots)]" }.joined(separator: ", ")
        default:
            head = "primary: \(t.primary ?? "none")"
        }
        out += "\(t.environment)/\(t.layer)  \(t.engine.displayName)  \(t.kind.rawValue)  \(head)  [\(statusWord(t.status))]\n"
        let rows =
            [["", "NODE", "ADDRESS", "ROLE", "UPSTREAM", "LAG", "STATE", "VERSION / DETAIL"]]
            + t.nodes.map { n in
                [
                    n.masterNode ? "*" : "", n.name, n.address, n.role.rawValue, n.upstream ?? "-", lag(n), n.state,
                    [n.version, n.detail].compactMap { $0 }.joined(separator: ", "),
                ]
            }
        out += textTable(rows, indent: "  ")
        out += "  (* = the layer's master node)\n"
        if t.findings.isEmpty {
            out += "  ok: healthy\n"
        } else {
            for f in t.findings { out += "  \(f.severity.rawValue): \(f.message)\n" }
        }
        return out
    }

    static func statusWord(_ s: Severity) -> String {
        switch s {
        case .ok: "HEALTHY"
        case .warning: "WARNING"
        case .error: "ERROR"
        }
    }

    static func lag(_ n: NodeStatus) -> String {
        guard n.role == .replica || n.role == .clusterReplica else { return "-" }
        let parts = [n.lagSeconds.map(formatDuration), n.lagBytes.map(formatBytes)].compactMap { $0 }
        return parts.isEmpty ? "?" : parts.joined(separator: ", ")
    }
}
