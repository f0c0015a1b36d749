import ArgumentParser
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

struct BackupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backups",
        abstract: "List the backups on a storage: per environment and layer, by timestamp, with size, source and replica health.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("ENV or ENV/LAYER (default: every environment of the inventory).", valueName: "env[/layer]"))
    var selection: String?

    @OptionGroup var storageOption: StorageOption

    @Flag(help: Docs.jsonHelp("backups"))
    var json = false

    @OptionGroup var agentOption: AgentBinaryOption

    func run() async throws {
        try await reportingErrors {
            let inv = try global.loadInventory()
            let sel = try LayerSelection(parsing: selection)
            let spec = try storageOption.spec(in: inv)
            let entries = try await BackupCatalog.list(
                spec, inventory: inv, agent: try await agentOption.locate(inv),
                environment: sel.environment, layer: sel.layer)
            if json {
                printJSON(entries)
            } else {
                print(BackupCatalog.text(entries), terminator: "")
            }
            return entries.contains { $0.health != "ok" } ? .warnings : .ok
        }
    }
}
