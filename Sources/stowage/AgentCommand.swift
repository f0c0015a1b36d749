import ArgumentParser
import Coordinator
import Foundation
import Topology

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Install and check stowage-agent on the nodes.",
        subcommands: [Install.self, Check.self])

    struct AgentOptions: ParsableArguments {
        @Argument(help: ArgumentHelp("ENV, ENV/LAYER or STORAGE (default: every node).", valueName: "target"))
        var selection: String?

        @Option(help: ArgumentHelp("The agent binary to install or expect (default: $STOWAGE_AGENT_BINARY, else beside stowage).", valueName: "path"))
        var agentBinary: String?
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy this build's agent to the nodes (atomically, checksum verified); nodes already up to date are left alone.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: AgentOptions

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let nodes = try inv.agentNodes(options.selection)
                let agent = try AgentBinary.locate(options.agentBinary)
                let results = await withTaskGroup(of: (Int, Result<AgentInstallOutcome, StowageError>).self) { group in
                    for (i, n) in nodes.enumerated() {
                        group.addTask {
                            do throws(StowageError) { return (i, .success(try await AgentInstaller.install(n, agent))) } catch { return (i, .failure(error)) }
                        }
                    }
                    var out: [(Int, Result<AgentInstallOutcome, StowageError>)] = []
                    for await r in group { out.append(r) }
                    return out.sorted { $0.0 < $1.0 }.map(\.1)
                }
                var worst: ExitStatus = .ok
                for (n, r) in zip(nodes, results) {
                    switch r {
                    case .success(let o): print("\(n.spec.name): \(o.rawValue) \(agent.remotePath)")
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

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let nodes = try inv.agentNodes(options.selection)
                let agent = try AgentBinary.locate(options.agentBinary)
                let checks = await AgentCheck.run(nodes, agent: agent)
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
