import ArgumentParser
import Coordinator
import Foundation

struct StorageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Look after backup storages.",
        subcommands: [Repair.self])

    struct Repair: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy to every node of a storage the files other nodes have and it lacks.",
            discussion: "Exit status: 0 when every node was reached and repaired, 5 when a node could not be reached.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The storage's name in the inventory.")
        var storage: String

        @Option(help: ArgumentHelp("The agent binary (default: $STOWAGE_AGENT_BINARY, else beside stowage).", valueName: "path"))
        var agentBinary: String?

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                guard let spec = inv.storage(storage) else {
                    throw StowageError(.usage, "unknown storage '\(storage)' in \(inv.path)",
                                       hint: "storages: \(inv.storages.map(\.name).joined(separator: ", "))")
                }
                let results = try await StorageRepair.run(spec, inventory: inv, agent: try AgentBinary.locate(agentBinary))
                var status = ExitStatus.ok
                for r in results {
                    let copied = r.report.copied.keys.sorted().map { "\($0): \(r.report.copied[$0]!) copied" }.joined(separator: ", ")
                    print("\(storage)/\(r.environment): \(copied.isEmpty ? "nothing to copy" : copied)")
                    for (node, why) in r.report.unreachable.sorted(by: { $0.key < $1.key }) {
                        printError(StowageError(.nodeUnreachable, "\(storage)/\(r.environment): \(node) not repaired: \(why)"))
                        status = .nodeUnreachable
                    }
                }
                if results.isEmpty { print("\(storage): no repositories yet") }
                return status
            }
        }
    }
}
