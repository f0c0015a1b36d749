import ArgumentParser
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

/// `stowage status [ENV[/LAYER]]`: the fleet at a glance, failures first.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Per layer: policy, last run, next run, backups stored and topology findings; failures first.",
        discussion:
            "A layer whose newest backup is older than its policy's max_age is stale (an error). Exit status 0 when every selected layer is healthy and a scheduler runs for the enabled policies, 2 when something needs a look."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("ENV or ENV/LAYER (default: every layer).", valueName: "selection"))
    var selection: String?

    @Flag(help: "Skip the topology probe (faster; the topology column stays empty).")
    var noProbe = false

    @Flag(help: Docs.jsonHelp("status", "Print the status as JSON"))
    var json = false

    @OptionGroup var agentOption: AgentBinaryOption

    func run() async throws {
        try await reportingErrors {
            let inv = try global.loadInventory()
            let layers = try LayerSelection(parsing: selection).layers(in: inv)
            let report = try await FleetStatus.gather(layers, inventory: inv, agent: try await agentOption.locate(inv), probe: !noProbe)
            if json { printJSON(report) } else { print(FleetStatus.text(report), terminator: "") }
            return report.healthy ? .ok : .warnings
        }
    }
}
