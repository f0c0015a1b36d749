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
    @Test func threeCoordinatorsRunEachSlotOnceThroughAKillAPartitionAndACatalogRestart() async throws {
        let cat = try LabCatalog()
        defer { cat.drop() }
        let nodes = FleetLab.fleetNodes
        let a = try FleetLab(
            fleet: nodes, shop: false, scheduler: "start_delay: 0s, concurrency: 8, per_storage: 8, retries: 0, \(cat.setting())")
        defer { a.cleanup() }
        // Coordinator A reaches the catalog through a proxy the test can freeze (a partition
        // between A and the catalog alone); B and C directly. The same inventory otherwise, in
        // three folders (a local catalog and a policy file each).
        let port = API.freePort(25000...27999)
        let proxy = try BackgroundProcess(
            "/usr/bin/python3", [Repo.path("Tests/faults/tcp_proxy.py"), "127.0.0.1", "\(port)", "127.0.9.30:5432"], output: "\(a.dir)/proxy.log")
        defer {
            proxy.signal(SIGCONT)
            proxy.signal(SIGKILL)
        }
        #expect(try await proxy.waitForOutput("ready"))
        let text = try String(contentsOfFile: a.inventory, encoding: .utf8)
        try text.replacingOccurrences(of: "host=127.0.9.30 port=5432", with: "host=127.0.0.1 port=\(port)").write(
            toFile: a.inventory, atomically: true, encoding: .utf8)
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
            try text.write(toFile: "\(dir)/stowage.yaml", atomically: true, encoding: .utf8)
            try PolicyFile.render(policies).write(toFile: PolicyStore.defaultPath(forInventory: "\(dir)/stowage.yaml"), atomically: true, encoding: .utf8)
            inventories.append("\(dir)/stowage.yaml")
        }
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", a.inventory]).status == 0)
        for n in nodes { _ = try FleetLab.redis(n, ["SET", "k:\(n)", String(repeating: n, count: 2000)]) }
        defer { for n in nodes { FleetLab.empty(n) } }
        let daemons = try inventories.enumerated().map { i, inv in
            try BackgroundProcess(Repo.stowage, ["scheduler", "--config", inv], output: "\(a.dir)/coordinator-\(i).log")
        }
        defer { for d in daemons { d.signal(SIGKILL) } }
        let (coordA, coordB, coordC) = (daemons[0], daemons[1], daemons[2])
        let catalog = try SharedCatalog(cat.spec())
        let layers = policies.map(\.layer)

        func view(_ inventory: String) throws -> (live: [String], leases: [String: String]) {
            let r = try runCommand(Repo.stowage, ["coordinators", "--json", "--config", inventory])
            let doc = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
            let live = ((doc["coordinators"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }.sorted()
            let leases = ((doc["leases"] as? [[String: Any]]) ?? []).reduce(into: [String: String]()) { m, l in
                if let layer = l["layer"] as? String, let owner = l["owner"] as? String { m[layer] = owner }
            }
            return (live, leases)
        }
        /// Polls the view from B until `done` holds, for at most 30 s.
        func settle(_ done: ((live: [String], leases: [String: String])) -> Bool) async throws -> (live: [String], leases: [String: String]) {
            var v = try view(inventories[1])
            for _ in 0..<150 where !done(v) {
                try await Task.sleep(for: .milliseconds(200))
                v = try view(inventories[1])
            }
            return v
        }
        func id(_ d: BackgroundProcess, in live: [String]) -> String? { live.first { $0.contains(":\(d.pid):") } }
        func runs(_ slot: Date) async throws -> [SharedRunRow] { try await catalog.runs(limit: 2000).filter { $0.slot == slot } }
        func allOk(_ slot: Date) async throws -> Bool {
            // (The test's own connection may be the one the catalog restart cut: asked again.)
            guard let rs = try? await runs(slot) else { return false }
            return layers.allSatisfy { l in rs.contains { $0.layer == l && $0.outcome == "ok" } } && !rs.contains { $0.outcome == "running" }
        }
        func waitAllOk(_ slot: Date) async throws -> [SharedRunRow] {
            while Date() < slot.addingTimeInterval(50), !(try await allOk(slot)) { try await Task.sleep(for: .milliseconds(500)) }
            return try await runs(slot)
        }

        // Settled: three live coordinators holding every layer between them; the same view
        // from A (through its proxy) and from C.
        let settled = try await settle { $0.live.count == 3 && $0.leases.count == 20 && Set($0.leases.values).count == 3 }
        /// The schedulers' own last log lines, for a failure's message (their folder goes with the test).
        func logTails() -> String {
            (0..<daemons.count).map { i in
                let text = (try? String(contentsOfFile: "\(a.dir)/coordinator-\(i).log", encoding: .utf8)) ?? "(no log)"
                return "coordinator-\(i) (pid \(daemons[i].pid)):\n" + text.split(separator: "\n").suffix(15).joined(separator: "\n")
            }.joined(separator: "\n")
        }
        #expect(
            settled.live.count == 3 && settled.leases.count == 20 && Set(settled.leases.values) == Set(settled.live),
            "\(settled)\n\(logTails())")
        let (fromA, fromC) = (try view(inventories[0]), try view(inventories[2]))
        #expect(fromA.live == settled.live && fromA.leases == settled.leases && fromC.live == settled.live && fromC.leases == settled.leases)
        let (idA, idC) = (try #require(id(coordA, in: settled.live)), try #require(id(coordC, in: settled.live)))

        // Slot 1: one of C's layers dumps slowly; C is SIGKILLed while that run dumps (its
        // run is recorded as running, and the node's Redis is writing the snapshot for it).
        // (At least 15 s ahead: the slow layer is filled before its run of slot 1 starts.)
        let s1 = try #require(try Schedule.parse("* * * * *").next(after: Date().addingTimeInterval(15)))
        let (s2, s3, s4) = (s1.addingTimeInterval(60), s1.addingTimeInterval(120), s1.addingTimeInterval(180))
        let cLayers = settled.leases.filter { $0.value == idC }.map(\.key).sorted()
        let slow = try #require(cLayers.first)
        let slowNode = "fl" + slow.suffix(2)
        try FleetLab.fill(slowNode, slowSnapshot: true)
        func midRun() async throws -> Bool {
            let rs = try await runs(s1)
            guard rs.contains(where: { $0.layer == slow && $0.coordinator == idC && $0.outcome == "running" }) else { return false }
            return try FleetLab.redis(slowNode, ["INFO", "persistence"]).contains("rdb_bgsave_in_progress:1")
        }
        while Date() < s1.addingTimeInterval(40), !(try await midRun()) { try await Task.sleep(for: .milliseconds(100)) }
        let slot1 = try await runs(s1)
        #expect(try await midRun(), "\(slot1.map { "\($0.layer) \($0.outcome)" })")
        coordC.signal(SIGKILL)
        _ = coordC.wait(timeout: 10)
        FleetLab.empty(slowNode)
        // Once C's leases expire (6 s here), A and B hold every layer; C is no longer live.
        let afterKill = try await settle { $0.live.count == 2 && $0.leases.count == 20 && !$0.leases.values.contains(idC) }
        #expect(afterKill.live.count == 2 && !afterKill.live.contains(idC) && afterKill.leases.count == 20, "\(afterKill)")

        // Slot 2: every layer, C's included, runs once on A and B.
        let slot2 = try await waitAllOk(s2)
        #expect(try await allOk(s2), "slot 2: \(slot2.map { "\($0.layer) \($0.outcome) \($0.coordinator)" })")
        for l in cLayers { #expect(slot2.contains { $0.layer == l && $0.coordinator != idC && $0.outcome == "ok" }, "\(l)") }

        // The fleet view from A and from B alike: every layer's owner, the other coordinator's
        // runs as each layer's last run, the two live coordinators (status --json, valid).
        func status(_ inventory: String) throws -> FleetReport {
            let r = try runCommand(Repo.stowage, ["status", "--no-probe", "--json", "--config", inventory])
            try JSONSchema.validate(r.stdout, schema: "status")
            return try JSONDecoder().decode(FleetReport.self, from: Data(r.stdout.utf8))
        }
        let (viewA, viewB) = (try status(inventories[0]), try status(inventories[1]))
        #expect(viewA.coordinators?.count == 2 && viewA.coordinators?.map(\.id).sorted() == viewB.coordinators?.map(\.id).sorted())
        #expect(viewA.layers.map(\.owner) == viewB.layers.map(\.owner) && viewA.layers.allSatisfy { $0.owner != nil })
        #expect(viewA.layers.allSatisfy { $0.lastRun?.outcome == "ok" }, "\(viewA.layers.map { "\($0.layer) \($0.lastRun?.outcome ?? "-")" })")
        #expect(viewA.scheduler?.state == .running, "\(String(describing: viewA.scheduler))")

        // A partition between A and the catalog (its proxy frozen) 25 s before slot 3: A
        // stops starting scheduled runs; once A's leases expire B holds every layer and runs
        // slot 3 alone.
        while Date() < s3.addingTimeInterval(-25) { try await Task.sleep(for: .milliseconds(200)) }
        proxy.signal(SIGSTOP)
        let cutOff = try await settle { $0.live.count == 1 && $0.leases.count == 20 && !$0.leases.values.contains(idA) }
        #expect(cutOff.leases.count == 20 && !cutOff.leases.values.contains(idA), "\(cutOff)")
        let slot3 = try await waitAllOk(s3)
        #expect(try await allOk(s3) && slot3.allSatisfy { $0.coordinator != idA }, "slot 3: \(slot3.map { "\($0.layer) \($0.outcome) \($0.coordinator)" })")
        // A's own catalog: no run started while it was cut off.
        let localA = try await a.runs()
        #expect(!localA.contains { $0.scheduledFor == s3 && $0.outcome != .skipped }, "\(localA.filter { $0.scheduledFor == s3 })")
        #expect(coordA.output.contains("shared catalog unreachable"), "\(coordA.output.suffix(1500))")

        // The partition heals; then the catalog's server is stopped before slot 4 and
        // started again after it: the coordinators reconnect and slot 4 runs once, late.
        proxy.signal(SIGCONT)
        let healed = try await settle { $0.live.count == 2 && $0.leases.count == 20 && Set($0.leases.values).count == 2 }
        #expect(Set(healed.leases.values).count == 2, "\(healed)")
        while Date() < s4.addingTimeInterval(-5) { try await Task.sleep(for: .milliseconds(200)) }
        try Lab.fault("cat_stop")
        while Date() < s4.addingTimeInterval(5) { try await Task.sleep(for: .milliseconds(200)) }
        try Lab.heal("cat_stop")
        let slot4 = try await waitAllOk(s4)
        #expect(try await allOk(s4), "slot 4: \(slot4.map { "\($0.layer) \($0.outcome) \($0.coordinator)" })")
        #expect(slot4.allSatisfy { $0.started >= s4.addingTimeInterval(5) }, "a run of slot 4 started while the catalog was down")
        for d in [coordA, coordB] { d.signal(SIGTERM) }
        for d in [coordA, coordB] { #expect(d.wait(timeout: 60) == 0, "\(d.output.suffix(2000))") }

        // Exactly once, over the whole run: per layer and slot one claim and at most one ok
        // run; as many backups on the storage as ok runs, the same names (the killed run's
        // backup is not listed, and slot 2's run of its layer took its lock).
        let claims = try await catalog.query("SELECT layer, extract(epoch FROM slot) AS slot, count(*) AS n FROM slots GROUP BY layer, slot")
        #expect(claims.allSatisfy { $0["n"] == "1" }, "\(claims.filter { $0["n"] != "1" })")
        let all = try await catalog.runs(limit: 5000)
        let okPerSlot = Dictionary(grouping: all.filter { $0.outcome == "ok" }, by: { "\($0.layer) \($0.slot.map { "\($0.timeIntervalSince1970)" } ?? "-")" })
        #expect(okPerSlot.values.allSatisfy { $0.count == 1 }, "\(okPerSlot.filter { $0.value.count > 1 }.keys)")
        // On the storage: at most one backup per layer and slot (names carry their start,
        // within the slot's minute), and every ok run's backup is there. (A run of the
        // killed coordinator may have committed just before the kill: its backup is there,
        // its run recorded interrupted.)
        let stored = try a.backups("fleet")
        for l in layers {
            let made = stored.filter { "fleet/\($0.layer)" == l }
            let perSlot = Dictionary(grouping: made, by: { String($0.name.prefix(15)) })
            #expect(perSlot.values.allSatisfy { $0.count == 1 }, "\(l): \(made.map(\.name))")
            let ran = all.filter { $0.layer == l && $0.outcome == "ok" }.compactMap(\.backup)
            #expect(Set(ran).isSubset(of: Set(made.map(\.name))), "\(l): \(made.map(\.name)) for \(ran)")
            #expect(made.count >= 3 && made.count <= ran.count + 1, "\(l): \(made.map(\.name)) for \(ran)")
        }
        #expect(all.allSatisfy { $0.outcome != "running" }, "\(all.filter { $0.outcome == "running" })")
        #expect(!all.contains { $0.layer == slow && $0.slot == s1 && $0.outcome == "ok" })
        #expect(all.contains { $0.layer == slow && $0.slot == s2 && $0.outcome == "ok" })
    }
}
