import AgentProtocol
import ArgumentParser
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support
import Topology

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Install and check stowage-agent on the nodes.",
        subcommands: [Install.self, Check.self, Bench.self])

    struct AgentOptions: ParsableArguments {
        @Argument(help: ArgumentHelp("ENV, ENV/LAYER or STORAGE (default: every node).", valueName: "target"))
        var selection: String?

        @OptionGroup var agentOption: AgentBinaryOption
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy this build's agent to the nodes (atomically, checksum verified); nodes already up to date are left alone.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: AgentOptions

        @Flag(help: Docs.jsonHelp("agent-install", "Print per node the outcome as JSON"))
        var json = false

        /// One node's outcome, for --json.
        struct Outcome: Encodable {
            var node: String
            var result: String
            var path: String
            var error: String?
            var hint: String?
            var exitCode: Int32
        }

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let nodes = try inv.agentNodes(options.selection)
                let agent = try await options.agentOption.locate(inv)
                let results = await withTaskGroup(of: (Int, Result<AgentInstallOutcome, StowageError>).self) { group in
                    for (i, n) in nodes.enumerated() {
                        group.addTask { (i, await captured { try await AgentInstaller.install(n, agent) }) }
                    }
                    var out: [(Int, Result<AgentInstallOutcome, StowageError>)] = []
                    for await r in group { out.append(r) }
                    return out.sorted { $0.0 < $1.0 }.map(\.1)
                }
                var worst: ExitStatus = .ok
                if json {
                    printJSON(
                        zip(nodes, results).map { n, r in
                            let path = agent.remotePath(user: n.target.user)
                            switch r {
                            case .success(let o): return Outcome(node: n.spec.name, result: o.rawValue, path: path, exitCode: 0)
                            case .failure(let e):
                                if worst == .ok { worst = e.status }
                                return Outcome(node: n.spec.name, result: "failed", path: path, error: e.message, hint: e.hint, exitCode: e.status.rawValue)
                            }
                        })
                    return worst
                }
                for (n, r) in zip(nodes, results) {
                    switch r {
                    case .success(let o): print("\(n.spec.name): \(o.rawValue) \(agent.remotePath(user: n.target.user))")
                    case .failure(let e):
                        printError(e)
                        if worst == .ok { worst = e.status }
                    }
                }
                return worst
            }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "For every node: SSH reachable, host key trusted, agent version, the engine's tools, free space.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: AgentOptions

        @Flag(help: Docs.jsonHelp("agent-check"))
        var json = false

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let nodes = try inv.agentNodes(options.selection)
                let agent = try await options.agentOption.locate(inv)
                var checks = await AgentCheck.run(nodes, agent: agent)
                // Buckets run no agent: they are asked over S3 (reachable, keys, bucket, write).
                let storages = options.selection.map { s in inv.storage(s).map { [$0] } ?? [] } ?? inv.storages
                for st in storages {
                    for n in st.nodes {
                        guard let b = n.bucket else { continue }
                        let problem: StowageError?
                        do throws(StowageError) {
                            problem = try await S3Bucket(node: n.name, b, environment: nil, timeout: 10).check()
                        } catch { problem = error }
                        checks.append(
                            NodeCheck(
                                node: n.name, address: b.endpoint, role: "storage \(st.name) (bucket)", ssh: "-", agent: "-", tools: [:], freeBytes: nil,
                                path: "s3://\(b.bucket)/\(b.prefix)", problem: problem?.message, hint: problem?.hint, exitCode: problem?.status.rawValue ?? 0))
                    }
                }
                if json {
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                    print(String(decoding: try! enc.encode(checks), as: UTF8.self))
                } else {
                    print(AgentCheckReport.text(checks), terminator: "")
                }
                let failed = checks.first { !$0.ok }
                return failed.flatMap { ExitStatus(rawValue: $0.exitCode) } ?? .ok
            }
        }
    }
}

extension AgentCommand {
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stream zeros through one agent session and report the rate (transport check; bench/transport.sh uses it).")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The node's name in the inventory.")
        var node: String

        @Option(help: "Bytes to stream (suffixes K, M, G).")
        var bytes: String = "1G"

        @Option(help: "out: node → coordinator; in: coordinator → node.")
        var direction: String = "out"

        @OptionGroup var agentOption: AgentBinaryOption

        func validate() throws {
            guard Self.parseSize(bytes) != nil else { throw ValidationError("--bytes: '\(bytes)' is not a size like 512M or 1G") }
            guard ["in", "out"].contains(direction) else { throw ValidationError("--direction is in or out") }
        }

        static func parseSize(_ s: String) -> Int64? {
            let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
            if let u = s.last.flatMap({ units[Character($0.uppercased())] }), let n = Int64(s.dropLast()) { return n * u }
            return Int64(s)
        }

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let n = try inv.agentNode(named: node)
                let agent = try await agentOption.locate(inv)
                let total = Self.parseSize(bytes)!
                let block = [UInt8](repeating: 0, count: 1 << 20)
                let counter = ByteCounter(limit: total)
                let start = Date()
                let run: AgentRun
                if direction == "out" {
                    run = try await AgentClient.run(n.target, agent: agent, job: .source(SourceJob(bytes: total)))
                } else {
                    run = try await AgentClient.run(n.target, agent: agent, job: .sink, input: { counter.take(block) })
                }
                let secs = Date().timeIntervalSince(start)
                let moved = direction == "out" ? run.received : (run.result.bytes ?? 0)
                print("\(node) \(direction): \(moved) bytes in \(String(format: "%.2f", secs)) s = \(String(format: "%.1f", Double(moved) / secs / 1e6)) MB/s")
                return .ok
            }
        }
    }
}

/// Hands out a block until `limit` bytes were taken (used on one connection thread only).
final class ByteCounter: @unchecked Sendable {
    private var left: Int64
    init(limit: Int64) { left = limit }
    func take(_ block: [UInt8]) -> [UInt8]? {
        guard left > 0 else { return nil }
        let n = Int(min(Int64(block.count), left))
        left -= Int64(n)
        return n == block.count ? block : Array(block[0..<n])
    }
}
