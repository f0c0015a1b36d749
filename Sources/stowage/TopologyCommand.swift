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

struct TopologyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topology",
        abstract: "Show which node of each layer is the primary, how the others replicate, and what is unsafe.",
        discussion: """
            Connects to every node of the selected layers over the database's own protocol.
            Exit status: 0 healthy, 2 warnings, 3 unsafe topology, 4 credentials rejected.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("ENV or ENV/LAYER (default: every layer).", valueName: "env[/layer]"))
    var selection: String?

    @Flag(help: Docs.jsonHelp("topology", "Print a JSON document"))
    var json = false

    @Option(help: ArgumentHelp("Also write each layer's raw probe answers as JSON into this folder (for fixtures).", visibility: .hidden))
    var record: String?

    func run() async throws {
        try await reportingErrors {
            let inventory = try global.loadInventory()
            let selected = try LayerSelection(parsing: selection).layers(in: inventory)
            // A layer whose secret cannot be read is reported on its own line; the others are
            // still probed and shown.
            var layers: [LayerSpec] = []
            var unreadable: [StowageError] = []
            for l in selected {
                do throws(StowageError) {
                    _ = try TopologyCheck.members(of: l, settings: inventory.probe)
                    layers.append(l)
                } catch {
                    unreadable.append(error)
                }
            }
            let observations = try await TopologyCheck.observe(layers, settings: inventory.probe)
            if let record { try Self.record(observations, into: record) }
            let topologies = zip(observations, layers).map { TopologyCheck.analyze($0, layer: $1) }
            if !topologies.isEmpty || unreadable.isEmpty {
                print(json ? TopologyReport.json(topologies) : TopologyReport.text(topologies), terminator: json ? "\n" : "")
            }
            unreadable.forEach(printError)
            let status = TopologyCheck.exitStatus(topologies)
            // Rejected credentials and unsafe layers outrank an unreadable secret; warnings do not.
            if !unreadable.isEmpty && ![.credentialsRejected, .unsafeTopology].contains(status) { return unreadable[0].status }
            return status
        }
    }

    static func record(_ obs: [LayerObservation], into dir: String) throws(StowageError) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for o in obs {
                let url = URL(fileURLWithPath: dir).appendingPathComponent("\(o.environment)-\(o.layer).json")
                try enc.encode(o).write(to: url, options: .atomic)
            }
        } catch {
            throw StowageError(.internalError, "cannot write probe records into \(dir): \(error.localizedDescription)")
        }
    }
}
