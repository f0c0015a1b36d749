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
    struct Repair: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace every missing, wrong-sized or damaged copy on a storage's nodes from a copy that authenticates.",
            discussion: """
                Reads and authenticates every copy the repositories need (the manifests, and the chunks
                they reference), under the repository's exclusive lock. Exit status: 0 every node repaired,
                13 an object has no good copy on any node (named per object), 5 a node could not be reached.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The storage's name in the inventory.")
        var storage: String

        @Option(help: ArgumentHelp("Environments to repair (default: every repository on the storage).", valueName: "env"))
        var environment: [String] = []

        @OptionGroup var agentOption: AgentBinaryOption

        @Flag(help: Docs.jsonHelp("storage-repair", "Print per environment what was copied, replaced, unrepairable or unreachable as JSON"))
        var json = false

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let spec = try inv.requireStorage(storage)
                let results = try await StorageRepair.run(
                    spec, inventory: inv, agent: try await agentOption.locate(inv),
                    environments: environment.isEmpty ? nil : environment)
                if json { printJSON(results) } else { print(StorageRepair.text(results, storage: storage), terminator: "") }
                var status = ExitStatus.ok
                for r in results {
                    for (node, why) in r.unreachable.sorted(by: { $0.key < $1.key }) {
                        printError(
                            StowageError(
                                .nodeUnreachable, "\(storage)/\(r.environment): \(node) not repaired: \(why)",
                                hint: "run the repair again once the node is back"))
                        if status == .ok { status = .nodeUnreachable }
                    }
                    if !r.unrepairable.isEmpty {
                        printError(
                            StowageError(
                                .repositoryDamaged,
                                "\(storage)/\(r.environment): \(r.unrepairable.count) object(s) have no good copy on any node (listed above)",
                                hint: "the backups that need them cannot be restored; stowage backups lists the others"))
                        status = .repositoryDamaged
                    }
                }
                return status
            }
        }
    }
}
