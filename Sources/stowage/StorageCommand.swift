import ArgumentParser
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

struct StorageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Look after backup storages.",
        subcommands: [Repair.self, Verify.self, Prune.self, Passwd.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every repository of a storage, per node: structure and references always, data for a share of the chunks.",
            discussion: "Exit status: 0 all well, 13 something missing or damaged (storage repair fixes copies), 5 a node unreachable.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The storage's name in the inventory.")
        var storage: String

        @Option(
            name: .customLong("read-data-subset"),
            help: ArgumentHelp("Share of the chunks whose data is read and authenticated, e.g. 5% (default 0%).", valueName: "P%"))
        var readDataSubset: String = "0%"

        @Option(help: ArgumentHelp("Environments to check (default: every environment of the inventory).", valueName: "env"))
        var environment: [String] = []

        @Flag(help: Docs.jsonHelp("storage-verify"))
        var json = false

        @OptionGroup var agentOption: AgentBinaryOption

        func validate() throws {
            guard let p = Double(readDataSubset.hasSuffix("%") ? String(readDataSubset.dropLast()) : readDataSubset), (0...100).contains(p) else {
                throw ValidationError("--read-data-subset: '\(readDataSubset)' is not a percentage from 0% to 100%")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let spec = try inv.requireStorage(storage)
                let percent = Double(readDataSubset.hasSuffix("%") ? String(readDataSubset.dropLast()) : readDataSubset)!
                let reports = try await StorageVerify.run(
                    spec, inventory: inv, agent: try await agentOption.locate(inv),
                    environments: environment.isEmpty ? inv.environments.map(\.name) : environment,
                    readDataPercent: percent)
                if json {
                    printJSON(reports)
                } else {
                    print(StorageVerify.text(reports), terminator: "")
                }
                if reports.contains(where: { $0.unreachable != nil }) { return .nodeUnreachable }
                return reports.allSatisfy(\.ok) ? .ok : .repositoryDamaged
            }
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "passwd",
            abstract: "Change a storage's password: every repository's keys are re-wrapped; no backup is re-encrypted.",
            discussion: "The current password comes from the inventory; afterwards, point the inventory at the new one.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The storage's name in the inventory.")
        var storage: String

        @Option(help: ArgumentHelp("Environment variable holding the new password.", valueName: "var"))
        var newPasswordEnv: String?

        @Option(help: ArgumentHelp("File holding the new password (one line).", valueName: "path"))
        var newPasswordFile: String?

        @OptionGroup var agentOption: AgentBinaryOption

        @Flag(help: Docs.jsonHelp("storage-passwd", "Print the outcome as JSON"))
        var json = false

        struct Outcome: Encodable {
            var storage: String
            var environments: [String]
        }

        func validate() throws {
            guard (newPasswordEnv == nil) != (newPasswordFile == nil) else {
                throw ValidationError(
                    "give exactly one of --new-password-env or --new-password-file (never the password itself: argv is readable by every user)")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let spec = try inv.requireStorage(storage)
                let source: CredentialsSpec.PasswordSource = newPasswordEnv.map { .environment($0) } ?? .file(newPasswordFile!)
                guard
                    let new = try CredentialsSpec(user: nil, password: source, location: "the command line").resolvePassword(
                        layer: "new password of storage \(storage)")
                else {
                    throw StowageError(.usage, "no new password", hint: "the variable or file named holds an empty value; put the new password there")
                }
                let changed = try await PasswordChange.run(
                    spec, inventory: inv, agent: try await agentOption.locate(inv),
                    old: try spec.resolvePassword(), new: new, environments: inv.environments.map(\.name))
                if json {
                    printJSON(Outcome(storage: storage, environments: changed))
                    return .ok
                }
                for env in changed { print("\(storage)/\(env): keys re-wrapped under the new password") }
                if changed.isEmpty { print("\(storage): no repositories yet") }
                return .ok
            }
        }
    }
}
