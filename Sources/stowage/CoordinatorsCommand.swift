import ArgumentParser
import Fleet
import Foundation
import Scheduling
import Support

/// The coordinators that share this inventory's fleet through scheduler.shared_catalog:
/// who is alive, when each was last heard of, and which layers each holds.
struct CoordinatorsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinators",
        abstract: "List the live coordinators of a shared fleet (scheduler.shared_catalog), with the layers each holds.")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "As JSON: coordinators (id, host, pid, started, heartbeatAge, layers) and leases (layer, owner, remaining).")
    var json = false

    struct View: Encodable {
        var coordinators: [CoordinatorRow]
        var leases: [LeaseRow]
    }

    func run() async throws {
        try await reportingErrors {
            let inv = try global.loadInventory()
            guard let spec = inv.scheduler.sharedCatalog else {
                throw StowageError(
                    .usage, "\(inv.path) has no scheduler.shared_catalog: this coordinator is alone",
                    hint: "docs/coordinators.md says how several coordinators share one fleet")
            }
            let catalog = try SharedCatalog(spec)
            try await catalog.migrate()
            let live = try await catalog.live(within: spec.lease)
            let leases = try await catalog.leases().filter { $0.remaining > 0 }
            if json {
                printJSON(View(coordinators: live, leases: leases))
            } else {
                let held = Dictionary(grouping: leases, by: \.owner)
                let rows = live.map { c in
                    [c.id, c.host, String(c.pid), String(format: "%.1f s ago", c.heartbeatAge), String(held[c.id]?.count ?? 0)]
                }
                print(textTable([["COORDINATOR", "HOST", "PID", "HEARTBEAT", "LAYERS"]] + rows), terminator: "")
                let orphans = leases.filter { l in !live.contains { $0.id == l.owner } }
                if !orphans.isEmpty { print("\(orphans.count) layers still held by coordinators no longer alive (until their leases expire)") }
            }
            return .ok
        }
    }
}
