// The agent binary this coordinator installs and runs. Each build has its own path on the
// nodes (its SHA-256 is in the name), so a coordinator always runs exactly the agent it was
// built with, and two coordinator versions sharing a node do not trample each other.
import AgentProtocol
import Crypto
import Fleet
import Foundation
import Repository
import Support
import Topology

package struct AgentBinary: Sendable, Equatable {
    /// The agent's folder on a node: /var/lib/stowage/agent for root; for any other SSH
    /// user `.local/lib/stowage/agent` in its home (a relative path: SSH sessions start in
    /// the login's home, and scp and the shell resolve it alike), so an unprivileged
    /// account needs no folder made for it by root.
    package static func remoteDirectory(user: String) -> String {
        user == "root" ? "/var/lib/stowage/agent" : ".local/lib/stowage/agent"
    }

    package var localPath: String
    package var sha256: String
    package var size: Int64

    /// This build's path on a node reached as `user`.
    package func remotePath(user: String) -> String {
        "\(Self.remoteDirectory(user: user))/stowage-agent-\(AgentWire.version)-p\(AgentWire.protocolVersion)-\(sha256.prefix(16))"
    }

    /// `explicit`, else $STOWAGE_AGENT_BINARY, else `stowage-agent` beside the running executable.
    package static func locate(
        _ explicit: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(StowageError) -> AgentBinary {
        let exeDir = URL(fileURLWithPath: currentExecutablePath() ?? CommandLine.arguments[0])
            .deletingLastPathComponent().path
        let path = explicit ?? environment["STOWAGE_AGENT_BINARY"] ?? "\(exeDir)/stowage-agent"
        // Hashed in 1 MiB reads: the binary is tens of MB, and the coordinator's memory
        // should not grow with it.
        guard let fh = FileHandle(forReadingAtPath: path) else {
            throw StowageError(
                .usage, "no stowage-agent binary at \(path)",
                hint: "build it (scripts/setup.sh builds a static one into .build-agent/release/) and pass --agent-binary or set STOWAGE_AGENT_BINARY")
        }
        defer { try? fh.close() }
        var hash = SHA256()
        var size: Int64 = 0
        while let chunk = try? fh.read(upToCount: 1 << 20), !chunk.isEmpty {
            hash.update(data: chunk)
            size += Int64(chunk.count)
        }
        let hex = hexString(hash.finalize())
        return AgentBinary(localPath: path, sha256: hex, size: size)
    }
}

/// A node as the agent commands see it: where it is, and what it is for.
package struct AgentNode: Sendable {
    package var spec: NodeSpec
    package var target: SSHTarget
    /// The layer's engine, for database nodes.
    package var engine: Engine?
    package var layer: String?
    /// The repository folder, for storage nodes.
    package var storageRoot: String?
    package var storage: String?

    /// Tools the agent must find on this node.
    package var tools: [String] {
        switch engine {
        case .postgresql: ["pg_dump", "pg_dumpall", "psql"]
        case .mysql: ["mariadb-dump", "mariadb", "mysqldump", "mysql"]
        case .redis: ["redis-cli", "redis-server"]
        case nil: []
        }
    }

    /// Where free space matters: the storage root, or the agent's own folder.
    package var workPath: String { storageRoot ?? AgentBinary.remoteDirectory(user: target.user) }
}

extension Inventory {
    /// SSH settings of a node, or an error naming what the inventory lacks.
    package func sshTarget(_ node: NodeSpec) throws(StowageError) -> SSHTarget {
        guard let addr = node.ssh else {
            throw StowageError(
                .invalidInventory, "node \(node.name) has no ssh address (\(node.location))",
                hint: "add ssh: root@HOST to the node")
        }
        guard let identity = ssh.identity else {
            throw StowageError(
                .invalidInventory, "\(path): no ssh.identity", hint: "set ssh: { identity: /path/to/id_ed25519, known_hosts: /path/to/known_hosts }")
        }
        guard let known = ssh.knownHosts else {
            throw StowageError(.invalidInventory, "\(path): no ssh.known_hosts", hint: "set ssh.known_hosts; stowage ssh trust NODE fills it")
        }
        var t = SSHTarget(node: node.name, host: addr.host, port: addr.port, user: addr.user, identity: identity, knownHosts: known)
        t.connectTimeout = probe.connectTimeout
        return t
    }

    /// The nodes a command names: a storage, an environment or layer, or (nil) every node.
    package func agentNodes(_ selection: String?) throws(StowageError) -> [AgentNode] {
        var out: [AgentNode] = []
        // Buckets run no agent: only SSH storage nodes are listed here.
        if let s = selection, let st = storage(s) {
            for n in st.nodes where n.bucket == nil { out.append(try storageNode(n, st)) }
            return out
        }
        for l in try LayerSelection(parsing: selection).layers(in: self) {
            for n in l.nodes {
                out.append(AgentNode(spec: n, target: try sshTarget(n), engine: l.engine, layer: l.id, storageRoot: nil, storage: nil))
            }
        }
        if selection == nil {
            for st in storages { for n in st.nodes where n.bucket == nil { out.append(try storageNode(n, st)) } }
        }
        return out
    }

    func storageNode(_ n: NodeSpec, _ st: StorageSpec) throws(StowageError) -> AgentNode {
        AgentNode(spec: n, target: try sshTarget(n), engine: nil, layer: nil, storageRoot: n.root ?? st.root, storage: st.name)
    }

    /// One node by name, anywhere in the inventory.
    package func agentNode(named name: String) throws(StowageError) -> AgentNode {
        if let n = try agentNodes(nil).first(where: { $0.spec.name == name }) { return n }
        let all = layers.flatMap { $0.nodes.map(\.name) } + storages.flatMap { $0.nodes.map(\.name) }
        throw StowageError(
            .usage, "unknown node '\(name)' in \(path)",
            hint: "nodes: \(all.prefix(20).joined(separator: ", "))\(all.count > 20 ? ", ..." : "")")
    }
}
