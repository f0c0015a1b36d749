import ArgumentParser
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

extension StorageCommand {
    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove from every node of a storage the chunks no committed backup references (leftovers of failed runs).",
            discussion: """
                Runs under each repository's exclusive lock (it waits up to two minutes for running backups,
                then gives up with exit 11). Never removes a backup or a chunk a backup references; stops
                without removing anything while some backup's manifest has no good copy (exit 13).
                Exit status: 0 done, 5 a node was unreachable (it keeps its leftovers).
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The storage's name in the inventory.")
        var storage: String

        @Flag(help: "Only say what would be removed.")
        var dryRun = false

        @Option(help: ArgumentHelp("Environments to prune (default: every environment of the inventory).", valueName: "env"))
        var environment: [String] = []

        @Flag(help: Docs.jsonHelp("storage-prune"))
        var json = false

        @OptionGroup var agentOption: AgentBinaryOption

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let spec = try inv.requireStorage(storage)
                let reports = try await StoragePrune.run(
                    spec, inventory: inv, agent: try await agentOption.locate(inv),
                    environments: environment.isEmpty ? inv.environments.map(\.name) : environment,
                    dryRun: dryRun)
                if json { printJSON(reports) } else { print(StoragePrune.text(reports, storage: storage), terminator: "") }
                var status = ExitStatus.ok
                for r in reports {
                    for (node, why) in r.skipped.sorted(by: { $0.key < $1.key }) {
                        printError(
                            StowageError(
                                .nodeUnreachable, "\(storage)/\(r.environment): \(node) not pruned: \(why)",
                                hint: "it keeps its leftovers until the next prune"))
                        status = .nodeUnreachable
                    }
                }
                return status
            }
        }
    }
}
