// `stowage agent check`: per node, everything a job needs: SSH reachable, host key
// trusted, this build's agent present, the engine's tools, free space.
import AgentProtocol
import Fleet
import Foundation
import Support
import Topology

package struct NodeCheck: Sendable, Codable, Equatable {
    package var node: String
    package var address: String
    package var role: String
    package var ssh: String
    package var agent: String
    package var tools: [String: String]
    package var freeBytes: Int64?
    package var path: String?
    /// The first problem found, as an operator message; nil when all is well.
    package var problem: String?
    package var hint: String?
    package var exitCode: Int32

    package var ok: Bool { problem == nil }

    package init(
        node: String, address: String, role: String, ssh: String, agent: String, tools: [String: String], freeBytes: Int64?, path: String?,
        problem: String?, hint: String?, exitCode: Int32
    ) {
        self.node = node
        self.address = address
        self.role = role
        self.ssh = ssh
        self.agent = agent
        self.tools = tools
        self.freeBytes = freeBytes
        self.path = path
        self.problem = problem
        self.hint = hint
        self.exitCode = exitCode
    }
}

package enum AgentCheck {
    package static func run(_ nodes: [AgentNode], agent: AgentBinary) async -> [NodeCheck] {
        await withTaskGroup(of: (Int, NodeCheck).self) { group in
            for (i, n) in nodes.enumerated() {
                group.addTask { (i, await check(n, agent: agent)) }
            }
            var out: [(Int, NodeCheck)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    static func check(_ n: AgentNode, agent: AgentBinary) async -> NodeCheck {
        var c = NodeCheck(
            node: n.spec.name, address: "\(n.target.user)@\(n.target.address)",
            role: n.layer.map { "db \($0)" } ?? "storage \(n.storage ?? "")",
            ssh: "?", agent: "?", tools: [:], freeBytes: nil, path: nil, problem: nil, hint: nil, exitCode: 0)
        do {
            let run = try await AgentClient.run(n.target, agent: agent, job: .check(CheckJob(tools: n.tools, path: n.workPath)))
            c.ssh = "ok"
            c.agent = "\(run.hello.version ?? "?") (protocol \(run.hello.protocol ?? 0))"
            c.tools = run.result.tools ?? [:]
            c.freeBytes = run.result.freeBytes
            c.path = run.result.message
            let missing = missingTools(n, c.tools)
            if !missing.isEmpty {
                c.problem = "\(n.spec.name): missing \(missing.joined(separator: ", "))"
                c.hint = "install the engine's client tools on the node (Debian: \(packageHint(n.engine)))"
                c.exitCode = ExitStatus.toolsMissing.rawValue
            }
        } catch {
            c.problem = error.message
            c.hint = error.hint
            c.exitCode = error.status.rawValue
            switch error.status {
            case .nodeUnreachable: c.ssh = "unreachable"
            case .hostKeyRefused: c.ssh = "host key refused"
            case .sshAuthFailed: c.ssh = "auth failed"
            case .agentMismatch: c.ssh = "ok"; c.agent = "missing or other build"
            default: c.ssh = "error"
            }
        }
        return c
    }

    /// MySQL and MariaDB name their tools differently: one of each pair is enough.
    static func missingTools(_ n: AgentNode, _ found: [String: String]) -> [String] {
        let has = { (t: String) in (found[t] ?? "missing") != "missing" }
        switch n.engine {
        case .mysql:
            var m: [String] = []
            if !has("mariadb-dump") && !has("mysqldump") { m.append("mariadb-dump or mysqldump") }
            if !has("mariadb") && !has("mysql") { m.append("mariadb or mysql") }
            return m
        default:
            return n.tools.filter { !has($0) }
        }
    }

    static func packageHint(_ e: Engine?) -> String {
        switch e {
        case .postgresql: "postgresql-client"
        case .mysql: "mariadb-client"
        case .redis: "redis-tools, redis-server"
        case nil: "-"
        }
    }
}

package enum AgentCheckReport {
    package static func text(_ checks: [NodeCheck]) -> String {
        var rows = [["NODE", "ADDRESS", "ROLE", "SSH", "AGENT", "FREE", "TOOLS"]]
        for c in checks {
            let tools = c.tools.keys.sorted().map { "\($0): \(shortVersion(c.tools[$0]!))" }.joined(separator: "; ")
            rows.append([c.node, c.address, c.role, c.ssh, c.agent, c.freeBytes.map(formatBytes) ?? "-", tools.isEmpty ? "-" : tools])
        }
        var out = textTable(rows, indent: "")
        for c in checks where !c.ok {
            out += "error: \(c.problem!)\n"
            if let h = c.hint { out += "  hint: \(h)\n" }
        }
        return out
    }

    /// "pg_dump (PostgreSQL) 15.20 (Debian ...)" → "15.20".
    static func shortVersion(_ s: String) -> String {
        if s == "missing" { return s }
        let words = s.split(separator: " ")
        // "mariadb  Ver 15.1 Distrib 10.11.19-MariaDB": the server release, not the client protocol.
        if let i = words.firstIndex(of: "Distrib"), i + 1 < words.count {
            return String(words[i + 1].split(separator: "-").first ?? words[i + 1]).trimmingCharacters(in: CharacterSet(charactersIn: ","))
        }
        return words.first { w in w.first?.isNumber == true && w.contains(".") }.map { String($0.trimmingCharacters(in: CharacterSet(charactersIn: ","))) }
            ?? words.first { $0.hasPrefix("v=") }.map { String($0.dropFirst(2)) } ?? s
    }
}
