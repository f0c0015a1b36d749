// Three coordinators share one fleet through the lab's catalog server (cat1, a database of
// the test's own): twenty layers every minute, each slot run exactly once fleet-wide (the
// storage's backups and the catalog's claims and runs counted); one coordinator SIGKILLed
// in the middle of a run: its layers run on the others from the next slot on, its
// half-written backup is never listed, no lock is left; and the fleet view (`stowage
// coordinators`) is the same from any of them.
import Foundation
import Repository
import Support
import TestSupport
import Testing

@testable import Fleet
@testable import Scheduling

/// A database of its own on the lab's catalog server, dropped at the end.
struct LabCatalog {
    let database = "fleet_\(UUID().uuidString.prefix(8).lowercased())"

    static func sql(_ statement: String) throws {
        let r = try runCommand(
            "/usr/sbin/runuser",
            [
                "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "\(Lab.dir)/run/cat1", "-U", "postgres", "-d", "postgres", "-c",
                statement,
            ])
        guard r.status == 0 else { throw SpawnError(description: "psql: \(r.stderr)") }
    }

    init() throws { try Self.sql("CREATE DATABASE \(database) OWNER stowage") }
    func drop() { try? Self.sql("DROP DATABASE IF EXISTS \(database) WITH (FORCE)") }

    /// The inventory's scheduler.shared_catalog (flow style), with `lease`.
    func setting(lease: Int = 6) -> String {
        "shared_catalog: { postgresql: \"host=127.0.9.30 port=5432 dbname=\(database) user=stowage\", password_file: \(Lab.dir)/secrets/catalog-password, lease: \(lease)s }"
    }

    func spec(lease: Double = 6) -> SharedCatalogSpec {
        var s = SharedCatalogSpec(
            host: "127.0.9.30", credentials: CredentialsSpec(user: "stowage", password: .file("\(Lab.dir)/secrets/catalog-password"), location: "test"))
        s.database = database
        s.lease = lease
        return s
    }
}

extension LabSuites.SchedulerDaemon {
    @Test func threeCoordinatorsShareTwentyLayersThroughAKill() async throws {
        let cat = try LabCatalog()
        defer { cat.drop() }
        let nodes = FleetLab.fleetNodes
        let a = try FleetLab(
            fleet: nodes, shop: false, scheduler: "start_delay: 0s, concurrency: 8, per_storage: 8, retries: 0, \(cat.setting())")
        defer { a.cleanup() }
        // Three coordinators: the same inventory in three folders (a catalog and a policy
        // file each), one shared catalog.
        var inventories = [a.inventory]
        let installed = Date()
        let policies = nodes.map {
            Policy(
                layer: "fleet/r\($0.dropFirst(2))", schedule: .expression("* * * * *"), storage: "fleet-storage", keep: 10, credentials: nil,
                installed: installed)
        }
        try a.writePolicies(policies)
        for name in ["b", "c"] {
            let dir = "\(a.dir)/\(name)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: a.inventory, toPath: "\(dir)/stowage.yaml")
            try PolicyFile.render(policies).write(toFile: PolicyStore.defaultPath(forInventory: "\(dir)/stowage.yaml"), atomically: true, encoding: .utf8)
            inventories.append("\(dir)/stowage.yaml")
        }
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", a.inventory]).status == 0)
        for n in nodes { _ = try FleetLab.redis(n, ["SET", "k:\(n)", String(repeating: n, count: 2000)]) }
        defer { for n in nodes { FleetLab.empty(n) } }
        var daemons = try inventories.enumerated().map { i, inv in
            try BackgroundProcess(Repo.stowage, ["scheduler", "--config", inv], output: "\(a.dir)/coordinator-\(i).log")
        }
        defer { for d in daemons { d.signal(SIGKILL) } }
        let catalog = try SharedCatalog(cat.spec())

        func view(_ inventory: String) throws -> (live: [String], leases: [String: String]) {
            let r = try runCommand(Repo.stowage, ["coordinators", "--json", "--config", inventory])
            let doc = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
            let live = ((doc["coordinators"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }.sorted()
            let leases = ((doc["leases"] as? [[String: Any]]) ?? []).reduce(into: [String: String]()) { m, l in
                if let layer = l["layer"] as? String, let owner = l["owner"] as? String { m[layer] = owner }
            }
            return (live, leases)
        }
        // Settled: three live coordinators, every layer held, each holding some.
        var settled = (live: [String](), leases: [String: String]())
        for _ in 0..<100 {
            settled = try view(a.inventory)
            if settled.live.count == 3 && settled.leases.count == 20 && Set(settled.leases.values).count == 3 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(settled.live.count == 3 && settled.leases.count == 20 && Set(settled.leases.values) == Set(settled.live), "\(settled)")
        // The same view from another coordinator's inventory.
        let fromC = try view(inventories[2])
        #expect(fromC.live == settled.live && fromC.leases == settled.leases)

        // The next two slots, then the one after the kill.
        let s1 = try #require(try Schedule.parse("* * * * *").next(after: Date()))
        let s2 = s1.addingTimeInterval(60), s3 = s2.addingTimeInterval(60)
        func runs(_ slot: Date) async throws -> [SharedRunRow] { try await catalog.runs(limit: 1000).filter { $0.slot == slot } }
        func allOk(_ slot: Date, _ layers: [String]) async throws -> Bool {
            let rs = try await runs(slot)
            return layers.allSatisfy { l in rs.contains { $0.layer == l && $0.outcome == "ok" } } && !rs.contains { $0.outcome == "running" }
        }
        let layers = policies.map(\.layer)
        while Date() < s1.addingTimeInterval(50), !(try await allOk(s1, layers)) { try await Task.sleep(for: .milliseconds(500)) }
        let slot1 = try await runs(s1)
        #expect(try await allOk(s1, layers), "slot 1: \(slot1.map { "\($0.layer) \($0.outcome)" })")

        // The third coordinator's layers; one of them dumps slowly at slot 2, and the
        // coordinator is killed while that run writes.
        let victim = daemons[2]
        let cID = try #require(settled.live.first { $0.contains(":\(victim.pid):") }, "\(settled.live) \(victim.pid)")
        let cLayers = settled.leases.filter { $0.value == cID }.map(\.key).sorted()
        let slow = try #require(cLayers.first)
        let slowNode = "fl" + slow.suffix(2)
        try FleetLab.fill(slowNode, slowSnapshot: true)
        // Mid-run: every other layer's run of slot 2 has ended, the slow one still runs.
        func midRun() async throws -> Bool {
            let rs = try await runs(s2)
            return rs.contains { $0.layer == slow && $0.coordinator == cID && $0.outcome == "running" }
                && layers.filter { $0 != slow }.allSatisfy { l in rs.contains { $0.layer == l && $0.outcome == "ok" } }
        }
        while Date() < s2.addingTimeInterval(40), !(try await midRun()) { try await Task.sleep(for: .milliseconds(100)) }
        let slot2 = try await runs(s2)
        #expect(try await midRun(), "\(slot2.map { "\($0.layer) \($0.outcome)" })")
        victim.signal(SIGKILL)
        _ = victim.wait(timeout: 10)
        daemons.removeLast()

        // The two others hold every layer once the dead one's leases expire (6 s here; the
        // test waits at most 30 s); the dead one is no longer live.
        var after = (live: [String](), leases: [String: String]())
        for _ in 0..<150 {
            after = try view(a.inventory)
            if after.live.count == 2 && after.leases.count == 20 && !after.leases.values.contains(cID) { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(after.live.count == 2 && !after.live.contains(cID) && after.leases.count == 20 && !after.leases.values.contains(cID), "\(after)")
        FleetLab.empty(slowNode)

        // Slot 3: every layer, the dead one's included, runs once on the two left.
        while Date() < s3.addingTimeInterval(50), !(try await allOk(s3, layers)) { try await Task.sleep(for: .milliseconds(500)) }
        let slot3 = try await runs(s3)
        #expect(try await allOk(s3, layers), "slot 3: \(slot3.map { "\($0.layer) \($0.outcome) \($0.coordinator)" })")
        for l in cLayers { #expect(slot3.contains { $0.layer == l && $0.coordinator != cID && $0.outcome == "ok" }, "\(l)") }
        for d in daemons { d.signal(SIGTERM) }
        for d in daemons { #expect(d.wait(timeout: 60) == 0, "\(d.output.suffix(2000))") }

        // Exactly once: per layer and slot one claim, at most one ok run, and as many backups
        // on the storage as slots that ran (the killed run's backup is not listed).
        let claims = try await catalog.query("SELECT layer, extract(epoch FROM slot) AS slot, count(*) AS n FROM slots GROUP BY layer, slot")
        #expect(claims.allSatisfy { $0["n"] == "1" }, "\(claims.filter { $0["n"] != "1" })")
        let all = try await catalog.runs(limit: 2000)
        let okPerSlot = Dictionary(grouping: all.filter { $0.outcome == "ok" }, by: { "\($0.layer) \($0.slot.map { "\($0.timeIntervalSince1970)" } ?? "-")" })
        #expect(okPerSlot.values.allSatisfy { $0.count == 1 }, "\(okPerSlot.filter { $0.value.count > 1 }.keys)")
        let stored = try a.backups("fleet")
        for l in layers {
            let made = stored.filter { "fleet/\($0.layer)" == l }
            let ran = all.filter { $0.layer == l && $0.outcome == "ok" }
            #expect(made.count == ran.count, "\(l): \(made.map(\.name)) for \(ran.count) ok runs")
            #expect(Set(made.map(\.name)) == Set(ran.compactMap(\.backup)), "\(l)")
        }
        // The killed run of slot 2 is recorded as running by a coordinator that is gone, and
        // no backup of that slot exists for its layer; slot 3's run of it took the lock.
        #expect(!all.contains { $0.layer == slow && $0.slot == s2 && $0.outcome == "ok" })
        #expect(all.contains { $0.layer == slow && $0.slot == s3 && $0.outcome == "ok" })
    }
}
