// Two coordinators, each with its own SQLite catalog, on one storage: each scheduled slot
// is backed up once. A slot's run checks the storage under the layer's lock, so the second
// run of a slot ends without a dump (exit 16, recorded as skipped), whether it meets the
// first run's lock (it waits for it) or its committed backup.
import Foundation
import Repository
import TestSupport
import Testing

@testable import Fleet
@testable import Operations
@testable import Scheduling

extension LabSuites.SchedulerDaemon {
    @Test func twoRunsOfOneSlotTakeOneBackup() async throws {
        let lab = try FleetLab(fleet: ["fl09"], shop: false, scheduler: "start_delay: 0s")
        defer { lab.cleanup() }
        let installed = Date().addingTimeInterval(-7200)
        try lab.writePolicies([
            Policy(layer: "fleet/r09", schedule: .expression("hourly"), storage: "fleet-storage", keep: 5, credentials: nil, installed: installed)
        ])
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory]).status == 0)
        // A dump that takes seconds: the second run certainly meets the first one's lock.
        try FleetLab.fill("fl09", slowSnapshot: true)
        defer { FleetLab.empty("fl09") }
        let slot = BackupName(date: Date().addingTimeInterval(-5), kind: .auto).stamp
        func run(_ slot: String, _ tag: String) throws -> BackgroundProcess {
            try BackgroundProcess(
                Repo.stowage, ["backup", "fleet/r09", "--policy", "--json", "--slot", slot, "--config", lab.inventory], output: "\(lab.dir)/\(tag).log")
        }
        let first = try run(slot, "first")
        // Its dump is about 3 MB (the values compress): one chunk or a few.
        #expect(try await lab.waitForChunks(1), "the first run did not start writing: \(first.output)")
        let second = try run(slot, "second")
        let firstExit = first.wait(timeout: 120), secondExit = second.wait(timeout: 120)
        #expect(firstExit == 0, "\(first.output)")
        // The second waited for the layer, then found the first's backup: nothing dumped.
        #expect(secondExit == 16, "\(second.output)")
        let backups = try lab.backups("fleet/r09")
        #expect(backups.count == 1, "\(backups.map(\.name))")
        let made = try #require(backups.first?.name)
        #expect(second.output.contains("fleet/r09: the run due at \(slot) is already done: backup \(made)"), "\(second.output)")
        // Once committed, a run of that slot ends at once; a run of a later slot backs up.
        let again = try runCommand(Repo.stowage, ["backup", "fleet/r09", "--policy", "--json", "--slot", slot, "--config", lab.inventory])
        #expect(again.status == 16 && again.stdout.isEmpty, "\(again.stderr)")
        FleetLab.empty("fl09")
        let later = BackupName(date: Date(), kind: .auto).stamp
        let next = try runCommand(Repo.stowage, ["backup", "fleet/r09", "--policy", "--json", "--slot", later, "--config", lab.inventory])
        #expect(next.status == 0, "\(next.stderr)")
        #expect(try lab.backups("fleet/r09").count == 2)
    }

    @Test func twoCoordinatorsWithTheirOwnCatalogsRunEachSlotOnce() async throws {
        let layers = ["fl10", "fl11", "fl12", "fl13"]
        let a = try FleetLab(fleet: layers, shop: false, scheduler: "start_delay: 0s")
        defer { a.cleanup() }
        // The second coordinator: the same inventory (the same storage nodes and folders) in
        // a folder of its own, so its catalog and policy file are its own.
        let bDir = "\(a.dir)/second"
        try FileManager.default.createDirectory(atPath: bDir, withIntermediateDirectories: true)
        let bInventory = "\(bDir)/stowage.yaml"
        try FileManager.default.copyItem(atPath: a.inventory, toPath: bInventory)
        // Every layer missed its last hourly slot: both coordinators make it up at once.
        let installed = Date().addingTimeInterval(-7200)
        let policies = layers.map {
            Policy(
                layer: "fleet/r\($0.dropFirst(2))", schedule: .expression("hourly"), storage: "fleet-storage", keep: 5, credentials: nil, installed: installed)
        }
        try a.writePolicies(policies)
        try PolicyFile.render(policies).write(toFile: PolicyStore.defaultPath(forInventory: bInventory), atomically: true, encoding: .utf8)
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", a.inventory]).status == 0)
        for n in layers { _ = try FleetLab.redis(n, ["SET", "k:\(n)", String(repeating: n, count: 5000)]) }
        defer { for n in layers { FleetLab.empty(n) } }

        let schedulerA = try a.startScheduler(log: "a")
        let schedulerB = try BackgroundProcess(Repo.stowage, ["scheduler", "--config", bInventory], output: "\(bDir)/b.log")
        let catalogB = try RunCatalog(path: "\(bDir)/stowage.catalog.sqlite")
        // Until every layer has a run that ended ok on one of them and none is running.
        var rows: [RunRecord] = []
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            rows = (try? await a.runs()) ?? []
            rows += (try? await catalogB.runs()) ?? []
            let done = policies.allSatisfy { p in rows.contains { $0.layer == p.layer && $0.outcome == .ok } }
            if done && !rows.contains(where: { $0.outcome == .running }) { break }
            try await Task.sleep(for: .milliseconds(300))
        }
        schedulerA.signal(SIGTERM)
        schedulerB.signal(SIGTERM)
        #expect(schedulerA.wait(timeout: 60) == 0 && schedulerB.wait(timeout: 60) == 0)
        rows = try await a.runs() + (try await catalogB.runs())

        // One backup per layer on the storage; one ok run per layer over both catalogs; the
        // other coordinator's run of the slot, if it started one, skipped naming that backup.
        let stored = try a.backups("fleet")
        for p in policies {
            let mine = stored.filter { "fleet/\($0.layer)" == p.layer }
            #expect(mine.count == 1, "\(p.layer): \(mine.map(\.name))\n\(schedulerA.output.suffix(1500))\n\(schedulerB.output.suffix(1500))")
            let runs = rows.filter { $0.layer == p.layer }
            #expect(runs.filter { $0.outcome == .ok }.count == 1, "\(p.layer): \(runs.map { "\($0.outcome) \($0.error ?? "")" })")
            #expect(runs.allSatisfy { [.ok, .skipped].contains($0.outcome) }, "\(p.layer): \(runs.map { "\($0.outcome) \($0.error ?? "")" })")
            for r in runs where r.outcome == .skipped {
                #expect(r.backup == mine.first?.name && r.exitCode == 16, "\(p.layer): \(r)")
            }
        }
    }
}
