// What a backup or restore refuses, and what a failure leaves behind: wrong credentials,
// unknown backups, another engine's backup, corrupted chunks, a target that goes away
// mid-restore, a dump killed mid-stream; replicas refused as targets; a master node that is
// a replica; restores into another environment's layer.
import Foundation
import Support
import TestSupport
import Testing
import Topology

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Scheduling
@testable import Storage

private func storageStatus<T>(_ body: () async throws(StowageError) -> T) async -> StowageError? {
    do { _ = try await body(); return nil } catch { return error }
}

extension LabSuites {
    @Suite(.serialized) struct BackupRestoreSafety {
        let inv: Inventory
        let agent: AgentBinary
        var spec: StorageSpec { inv.storage("lab-storage")! }

        init() async throws {
            try Lab.require()
            inv = try Inventory.load(path: Lab.inventory)
            agent = try AgentBinary.locate()
            for n in ["st1", "st2", "pg1", "pg2", "pg3", "pg4", "rd1", "rd2", "my1", "my2"] {
                _ = try await AgentInstaller.install(try inv.agentNode(named: n), agent)
            }
        }

        func layer(_ id: String, _ change: (inout LayerSpec) -> Void = { _ in }) throws -> LayerSpec {
            var l = try LayerSelection(parsing: id).layers(in: inv)[0]
            change(&l)
            return l
        }

        /// The committed backups of a layer, as the storage nodes hold them.
        func backups(_ env: String, _ layer: String) -> [String: [String]] {
            var out: [String: [String]] = [:]
            for n in ["st1", "st2"] {
                out[n] = ((try? FileManager.default.contentsOfDirectory(atPath: "\(Lab.dir)/storage/\(n)/\(env)/backups/\(layer)")) ?? [])
                    .filter { !$0.hasPrefix(".") }.sorted()
            }
            return out
        }

        @Test func wrongDatabasePasswordStartsNoDumpAndWritesNothing() async throws {
            let bad = FileManager.default.temporaryDirectory.appendingPathComponent("wrong-\(UUID().uuidString)").path
            try "not-the-password\n".write(toFile: bad, atomically: true, encoding: .utf8)
            defer { unlink(bad) }
            let before = backups("shop", "sqldb")
            for id in ["shop/sqldb", "shop/cache"] {
                let l = try layer(id) { $0.credentials?.password = .file(bad) }
                let e = await storageStatus { () async throws(StowageError) in
                    try await BackupRun.run(inventory: inv, layer: l, storage: spec, agent: agent, keep: 1)
                }
                #expect(e?.status == .credentialsRejected)
                #expect(e?.message.contains("DB credentials of \(id) are incorrect") == true, "\(e?.message ?? "")")
                #expect(e?.message.contains("not-the-password") == false)
            }
            #expect(backups("shop", "sqldb") == before)
        }

        @Test func aDumpKilledMidStreamCommitsNothingAndPrunesNothing() async throws {
            try LabData.seedPostgres("pg1")
            defer { try? LabData.cleanPostgres("pg1") }
            let l = try layer("shop/sqldb")
            _ = try await BackupRun.run(inventory: inv, layer: l, storage: spec, agent: agent)
            let before = backups("shop", "sqldb")
            #expect(before["st1"]!.count >= 1)
            // Kill pg_dumpall as soon as it runs.
            let killer = Task.detached { () -> Bool in
                for _ in 0..<3000 {
                    if let pid = Procs.matching("stowage-dump").first(where: { Procs.matching("pg_dumpall").contains($0) }) {
                        kill(pid, SIGKILL)
                        return true
                    }
                    usleep(2_000)
                }
                return false
            }
            let e = await storageStatus { () async throws(StowageError) in
                try await BackupRun.run(inventory: inv, layer: l, storage: spec, agent: agent, keep: 1)
            }
            #expect(await killer.value)
            #expect(e?.status == .remoteFailed)
            #expect(e?.message.contains("pg_dumpall ended with killed by signal KILL") == true, "\(e?.message ?? "")")
            // No new backup, and retention (keep 1) did not run: every earlier backup is there.
            #expect(backups("shop", "sqldb") == before)
        }

        @Test func fromReplicaDumpsTheReplicaAndRecordsThePrimarysPosition() async throws {
            let out = try await BackupRun.run(inventory: inv, layer: try layer("shop/mariadb"), storage: spec, agent: agent, from: .replica)
            #expect(out.manifest.sourceNode == "my2")
            #expect(out.manifest.sourceRole == "replica")
            #expect(out.notes.contains { $0.contains("dumping the replica my2") })
            // The dump (read back and decrypted here) names the primary's binlog position and
            // GTID, commented out so that a restore never repoints replication.
            let storage = try ReplicatedStorage(spec, inventory: inv, agent: agent, environment: "shop")
            let repo = try await RepositoryAccess.open(storage, environment: "shop", password: try spec.resolvePassword(), create: false)
            var text = Data()
            _ = try await BackupReader.read(repo, out.manifest) { text.append(contentsOf: $0) }
            let dump = String(decoding: text, as: UTF8.self)
            let lines = dump.split(separator: "\n")
            #expect(lines.contains { $0.hasPrefix("-- CHANGE MASTER '' TO MASTER_LOG_FILE='binlog.") }, "\(lines.prefix(20))")
            #expect(lines.contains { $0.hasPrefix("-- CHANGE MASTER '' TO MASTER_USE_GTID=") })
            #expect(!lines.contains { $0.hasPrefix("CHANGE MASTER") })
            // The replica is replicating again afterwards (--dump-slave pauses its SQL thread).
            let running = try LabData.eventually(seconds: 10) {
                try LabData.mariadb("my2", "SHOW SLAVE STATUS").contains("\tYes\tYes\t")
            }
            #expect(running)
        }

        @Test func aReplicaDumpKilledMidStreamLeavesTheReplicaReplicating() async throws {
            try LabData.seedMariaDB("my1")
            defer { try? LabData.cleanMariaDB("my1") }
            let killer = Task.detached { () -> Bool in
                for _ in 0..<3000 {
                    if let pid = Procs.matching("--dump-slave=2").first(where: { Procs.matching("mariadb-dump").contains($0) }) {
                        // Into the dump: once --dump-slave has stopped the replica's SQL thread.
                        for _ in 0..<1500 {
                            if (try? LabData.mariadb("my2", "SHOW SLAVE STATUS"))?.contains("\tYes\tNo\t") == true { break }
                            usleep(2_000)
                        }
                        kill(pid, SIGKILL)
                        return true
                    }
                    usleep(2_000)
                }
                return false
            }
            let e = await storageStatus { () async throws(StowageError) in
                try await BackupRun.run(inventory: inv, layer: try! layer("shop/mariadb"), storage: spec, agent: agent, from: .replica)
            }
            #expect(await killer.value)
            #expect(e?.status == .remoteFailed, "\(e?.message ?? "")")
            let running = try LabData.eventually(seconds: 10) {
                try LabData.mariadb("my2", "SHOW SLAVE STATUS").contains("\tYes\tYes\t")
            }
            #expect(running, "my2's SQL thread was left stopped")
        }

        @Test func unknownBackupAndAnotherEnginesBackupAreRefused() async throws {
            let cache = try layer("shop/cache")
            _ = try await BackupRun.run(inventory: inv, layer: try layer("shop/sqldb"), storage: spec, agent: agent)
            let unknown = await storageStatus { () async throws(StowageError) in
                try await RestoreRun.prepare(
                    inventory: inv, layer: cache, storage: spec, agent: agent, fromEnvironment: "shop",
                    fromLayer: "cache", backup: "2001-01-01T000000Z-manual", node: nil, allNodes: false)
            }
            #expect(unknown?.status == .usage)
            #expect(unknown?.message.contains("no backup 2001-01-01T000000Z-manual of shop/cache") == true, "\(unknown?.message ?? "")")
            let other = await storageStatus { () async throws(StowageError) in
                try await RestoreRun.prepare(
                    inventory: inv, layer: cache, storage: spec, agent: agent, fromEnvironment: "shop",
                    fromLayer: "sqldb", backup: "latest", node: nil, allNodes: false)
            }
            #expect(other?.status == .incompatibleBackup)
            #expect(other?.message.contains("postgresql backup") == true, "\(other?.message ?? "")")
        }

        @Test func aReplicaIsRefusedAsTargetAndTheMasterNodeReplicaDumpsTheRealPrimary() async throws {
            let asReplica = try layer("shop/sqldb") { $0.masterNode = "pg2" }
            let out = try await BackupRun.run(inventory: inv, layer: asReplica, storage: spec, agent: agent)
            #expect(out.manifest.sourceNode == "pg1")
            #expect(out.manifest.sourceRole == "primary")
            #expect(out.notes.contains { $0.contains("master node pg2 is a replica") })
            let e = await storageStatus { () async throws(StowageError) in
                try await RestoreRun.prepare(
                    inventory: inv, layer: try! layer("shop/sqldb"), storage: spec, agent: agent, fromEnvironment: "shop",
                    fromLayer: "sqldb", backup: out.manifest.name, node: "pg2", allNodes: false)
            }
            #expect(e?.status == .unsafeTopology)
            #expect(e?.message.contains("pg2 is a replica of pg1") == true, "\(e?.message ?? "")")
        }

        @Test func aChunkCorruptedOnOneNodeIsReadFromTheOtherAndOnBothRefusesBeforeTouchingTheTarget() async throws {
            let l = try layer("shop/cache")
            try LabData.seedRedis("rd1")
            defer { try? LabData.redis("rd1", ["FLUSHALL"]) }
            let m = try await BackupRun.run(inventory: inv, layer: l, storage: spec, agent: agent).manifest
            let id = m.streams[0].chunks[0].id
            let paths = ["st1", "st2"].map { "\(Lab.dir)/storage/\($0)/shop/chunks/\(id.prefix(2))/\(id)" }
            let original = try Data(contentsOf: URL(fileURLWithPath: paths[0]))
            defer { for p in paths { try? original.write(to: URL(fileURLWithPath: p)) } }
            var bad = original
            bad[bad.count / 2] ^= 0xFF

            try bad.write(to: URL(fileURLWithPath: paths[0]))
            let p = try await RestoreRun.prepare(
                inventory: inv, layer: l, storage: spec, agent: agent, fromEnvironment: "shop",
                fromLayer: "cache", backup: m.name, node: nil, allNodes: false)
            let ok = try await RestoreRun.execute(p, inventory: inv, storage: spec, agent: agent)
            #expect(ok.checkPassed)
            #expect(ok.badCopies.contains { $0.node == "st1" && $0.object.contains(id) }, "\(ok.badCopies)")

            try bad.write(to: URL(fileURLWithPath: paths[1]))
            try LabData.redis("rd1", ["SET", "after-the-backup", "1"])
            let e = await storageStatus { () async throws(StowageError) in try await RestoreRun.execute(p, inventory: inv, storage: spec, agent: agent) }
            #expect(e?.status == .repositoryDamaged)
            #expect(e?.message.contains("chunk \(id) is missing or damaged on every node") == true, "\(e?.message ?? "")")
            // Nothing reached the target: the key written after the backup is still there.
            #expect(try LabData.redis("rd1", ["GET", "after-the-backup"]).trimmingCharacters(in: .whitespacesAndNewlines) == "1")
        }

        /// A Redis restore by replication that breaks off after the target has received part
        /// of the RDB: the target keeps its data (a replica loads only a whole payload) and is
        /// a master with its own settings again.
        @Test func aRedisRestoreBrokenOffMidTransferLeavesTheTargetAsItWas() async throws {
            let l = try layer("shop/cache")
            try LabData.seedRedis("rd1")
            // Three fetch batches (32 MiB stored each) of data that does not compress away
            // (SHA-1 hex, about 150 MB): two are fetched at once, so the last one, damaged,
            // is fetched only once the first has gone to the agent, and the target has begun
            // loading when it fails (the agent answers the target's PSYNC with the payload's
            // first bytes). Chunk boundaries depend on the repository's chunker seed: the
            // damaged chunk is chosen by batch, as the restore fetches them.
            let fill =
                "for i = 1, 250000 do redis.call('SET', 'fill:' .. i, redis.sha1hex(i .. 'a') .. redis.sha1hex(i .. 'b') .. redis.sha1hex(i .. 'c') .. redis.sha1hex(i .. 'd') .. redis.sha1hex(i .. 'e') .. redis.sha1hex(i .. 'f') .. redis.sha1hex(i .. 'g') .. redis.sha1hex(i .. 'h') .. redis.sha1hex(i .. 'i') .. redis.sha1hex(i .. 'j') .. redis.sha1hex(i .. 'k') .. redis.sha1hex(i .. 'l') .. redis.sha1hex(i .. 'm') .. redis.sha1hex(i .. 'n') .. redis.sha1hex(i .. 'o')) end"
            try LabData.redis("rd1", ["EVAL", fill, "0"])
            defer { try? LabData.redis("rd1", ["FLUSHALL"]) }
            let m = try await BackupRun.run(inventory: inv, layer: l, storage: spec, agent: agent).manifest
            let batches = BackupReader.batches(m.streams[0])
            #expect(batches.count >= 3, "\(batches.count) batches of \(m.streams[0].chunks.count) chunks, \(m.storedBytes) bytes stored")
            let id = try #require(batches.last?.first).id
            let paths = ["st1", "st2"].map { "\(Lab.dir)/storage/\($0)/shop/chunks/\(id.prefix(2))/\(id)" }
            let original = try Data(contentsOf: URL(fileURLWithPath: paths[0]))
            defer { for p in paths { try? original.write(to: URL(fileURLWithPath: p)) } }
            var bad = original
            bad[bad.count / 2] ^= 0xFF
            for p in paths { try bad.write(to: URL(fileURLWithPath: p)) }

            try LabData.redis("rd1", ["SET", "after-the-backup", "1"])
            let authBefore = try LabData.redis("rd1", ["CONFIG", "GET", "masterauth"])
            let loadBefore = try LabData.redis("rd1", ["CONFIG", "GET", "repl-diskless-load"])
            let keysBefore = try LabData.redis("rd1", ["DBSIZE"])
            let logPath = "\(Lab.dir)/log/rd1.log"
            let logBefore = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
            let p = try await RestoreRun.prepare(
                inventory: inv, layer: l, storage: spec, agent: agent, fromEnvironment: "shop",
                fromLayer: "cache", backup: m.name, node: nil, allNodes: false)
            let e = await storageStatus { () async throws(StowageError) in try await RestoreRun.execute(p, inventory: inv, storage: spec, agent: agent) }
            #expect(e?.status == .repositoryDamaged, "\(e?.status.rawValue ?? 0): \(e?.message ?? "")")
            // The target had begun receiving the stream from the agent.
            let log = String(decoding: try Data(contentsOf: URL(fileURLWithPath: logPath)).dropFirst(logBefore), as: UTF8.self)
            // Parsing it from the socket beside its old data (the lab's node has the memory).
            #expect(log.contains("receiving streamed RDB from master with EOF to parser"), "\(log.suffix(1500))")
            #expect(!log.contains("MASTER <-> REPLICA sync: Flushing old data"), "\(log.suffix(1500))")
            // What it had loaded is dropped, its old data kept.
            #expect(log.contains("MASTER <-> REPLICA sync: Discarding temporary DB"), "\(log.suffix(1500))")
            #expect(try LabData.redis("rd1", ["CONFIG", "GET", "repl-diskless-load"]) == loadBefore)
            let master = try LabData.eventually { try LabData.redis("rd1", ["INFO", "replication"]).contains("role:master") }
            #expect(master)
            #expect(try LabData.redis("rd1", ["CONFIG", "GET", "masterauth"]) == authBefore)
            #expect(try LabData.redis("rd1", ["GET", "after-the-backup"]).trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            #expect(try LabData.redis("rd1", ["DBSIZE"]) == keysBefore)
        }

        /// A Redis target whose maxmemory cannot hold its data and the backup's together
        /// takes the backup through its disk (its old data freed before the new is loaded):
        /// the restore says so and why, and the server's settings are as they were after.
        @Test func aRedisTargetWithoutRoomForBothDatasetsLoadsFromItsDisk() async throws {
            let l = try layer("shop/cache")
            try LabData.seedRedis("rd1")
            defer { try? LabData.redis("rd1", ["FLUSHALL"]) }
            let m = try await BackupRun.run(inventory: inv, layer: l, storage: spec, agent: agent).manifest
            try LabData.redis("rd1", ["SET", "after-the-backup", "1"])
            let memory = try LabData.redis("rd1", ["INFO", "memory"]).split(whereSeparator: \.isNewline)
            let used = try #require(memory.first { $0.hasPrefix("used_memory:") }.flatMap { Int64($0.dropFirst("used_memory:".count)) })
            let maxBefore = try LabData.redis("rd1", ["CONFIG", "GET", "maxmemory"])
            // A server set to load from the socket on its own: the restore still takes the disk.
            try LabData.redis("rd1", ["CONFIG", "SET", "repl-diskless-load", "swapdb"])
            defer { try? LabData.redis("rd1", ["CONFIG", "SET", "repl-diskless-load", "disabled"]) }
            let loadBefore = try LabData.redis("rd1", ["CONFIG", "GET", "repl-diskless-load"])
            // Room for the data held and a little more (the backup's data is about as large).
            try LabData.redis("rd1", ["CONFIG", "SET", "maxmemory", String(used + used / 10)])
            defer { try? LabData.redis("rd1", ["CONFIG", "SET", "maxmemory", "0"]) }
            let logPath = "\(Lab.dir)/log/rd1.log"
            let logBefore = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
            let p = try await RestoreRun.prepare(
                inventory: inv, layer: l, storage: spec, agent: agent, fromEnvironment: "shop",
                fromLayer: "cache", backup: m.name, node: nil, allNodes: false)
            let out = try await RestoreRun.execute(p, inventory: inv, storage: spec, agent: agent)
            #expect(out.checkPassed, "\(out.checks)")
            #expect(out.notes.count == 1, "\(out.notes)")
            #expect(out.notes.first?.hasPrefix("rd1: redis 127.0.3.10:6379 loads the backup from its disk after the transfer: ") == true, "\(out.notes)")
            #expect(out.notes.first?.contains("do not fit together in maxmemory") == true, "\(out.notes)")
            let log = String(decoding: try Data(contentsOf: URL(fileURLWithPath: logPath)).dropFirst(logBefore), as: UTF8.self)
            #expect(log.contains("receiving streamed RDB from master with EOF to disk"), "\(log.suffix(1500))")
            #expect(try LabData.redis("rd1", ["EXISTS", "after-the-backup"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            #expect(try LabData.redis("rd1", ["CONFIG", "GET", "repl-diskless-load"]) == loadBefore)
            #expect(try LabData.redis("rd1", ["CONFIG", "GET", "maxmemory"]) != maxBefore)
        }

        @Test func aTargetConnectionLostMidRestoreIsAClearErrorAndTheNextRestoreRuns() async throws {
            try LabData.seedPostgres("pg1")
            defer { try? LabData.cleanPostgres("pg1") }
            let l = try layer("shop/sqldb")
            let m = try await BackupRun.run(inventory: inv, layer: l, storage: spec, agent: agent).manifest
            let p = try await RestoreRun.prepare(
                inventory: inv, layer: l, storage: spec, agent: agent, fromEnvironment: "shop",
                fromLayer: "sqldb", backup: m.name, node: nil, allNodes: false)
            // The server ends the restore's connection once psql is applying the dump (as a
            // restart or a failover would).
            let killer = Task.detached { () -> Bool in
                for _ in 0..<5000 {
                    let r = try? LabData.psql("pg1", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'stowage-restore'")
                    if let r, r.trimmingCharacters(in: .whitespacesAndNewlines) != "0" { return true }
                    usleep(5_000)
                }
                return false
            }
            let e = await storageStatus { () async throws(StowageError) in try await RestoreRun.execute(p, inventory: inv, storage: spec, agent: agent) }
            #expect(await killer.value)
            #expect(e?.status == .remoteFailed, "\(e?.status.rawValue ?? 0): \(e?.message ?? "")")
            #expect(e?.message.contains("pg1") == true && e?.message.contains("psql ended with exit") == true, "\(e?.message ?? "")")
            #expect(e?.message.contains("connection to server was lost") == true, "\(e?.message ?? "")")
            #expect(e?.hint?.contains("partly") == true)
            // The restore's lock went with it: the next restore runs, and succeeds.
            let again = try await RestoreRun.execute(p, inventory: inv, storage: spec, agent: agent)
            #expect(again.checkPassed)
        }

        @Test func restoreIntoAnotherEnvironmentsNonClusteredLayer() async throws {
            try LabData.seedPostgres("pg1")
            defer {
                try? LabData.cleanPostgres("pg1")
                for n in ["pg3", "pg4"] { try? LabData.cleanPostgres(n) }
            }
            let m = try await BackupRun.run(inventory: inv, layer: try layer("shop/sqldb"), storage: spec, agent: agent).manifest
            let staging = try layer("staging/sqldb")
            for n in ["pg3", "pg4"] { try LabData.cleanPostgres(n) }

            let one = try await RestoreRun.prepare(
                inventory: inv, layer: staging, storage: spec, agent: agent, fromEnvironment: "shop",
                fromLayer: "sqldb", backup: m.name, node: nil, allNodes: false)
            #expect(one.plan.targets.map(\.node) == ["pg3"])
            #expect(one.plan.warnings.contains { $0.contains("only the master node pg3") })
            let r1 = try await RestoreRun.execute(one, inventory: inv, storage: spec, agent: agent)
            #expect(r1.checkPassed)
            #expect(try LabData.psql("pg3", "SELECT count(*) FROM people", db: "rt_crm").trimmingCharacters(in: .whitespacesAndNewlines) == "1000")
            #expect(try LabData.psql("pg4", "SELECT count(*) FROM pg_database WHERE datname = 'rt_crm'").trimmingCharacters(in: .whitespacesAndNewlines) == "0")

            let all = try await RestoreRun.prepare(
                inventory: inv, layer: staging, storage: spec, agent: agent, fromEnvironment: "shop",
                fromLayer: "sqldb", backup: "latest", node: nil, allNodes: true)
            #expect(all.plan.targets.map(\.node) == ["pg3", "pg4"])
            let r2 = try await RestoreRun.execute(all, inventory: inv, storage: spec, agent: agent)
            #expect(r2.checkPassed)
            #expect(r2.checks.contains { $0.database == "pg4:rt_shop" && $0.ok })
            #expect(try LabData.psql("pg4", "SELECT count(*) FROM items", db: "rt_shop").trimmingCharacters(in: .whitespacesAndNewlines) == "150000")
        }
    }
}
