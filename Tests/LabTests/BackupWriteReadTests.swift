// Writing backups through the whole data path (source agent → coordinator → both storage
// nodes) and reading them back: byte-identical, deduplicated, a corrupted copy read from the
// other node and reported, a node down during a write, a failing source.
import Crypto
import Foundation
import Repository
import Support
import TestSupport
import Testing
import Topology

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Scheduling
@testable import Storage

/// About `rows` lines of SQL-dump-like text, deterministic for a seed.
func writeDump(_ path: String, rows: Int, seed: UInt64, insertAt: Int? = nil) throws {
    var x = seed | 1
    var s = "COPY public.accounts (id, branch, balance, note) FROM stdin;\n"
    s.reserveCapacity(rows * 80)
    for i in 0..<rows {
        if i == insertAt { s += "999999999\t1\t1\ta row inserted near the start\n" }
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27
        s += "\(i)\t\(x % 97)\t\(Int64(bitPattern: x) % 1_000_000)\tcustomer note \(x % 1013) lorem ipsum dolor\n"
    }
    try s.write(toFile: path, atomically: true, encoding: .utf8)
}

/// A fresh environment on the lab's storage, removed by `cleanup`.
struct StorageFixture {
    let env = "bktest-\(UUID().uuidString.prefix(8))"
    let dir: String
    let inv: Inventory
    let agent: AgentBinary

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("bk-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        inv = try Inventory.load(path: Lab.inventory)
        agent = try AgentBinary.locate()
    }

    func repo(quorum: Int? = nil) async throws -> OpenRepository {
        let spec = inv.storage("lab-storage")!
        var s = try ReplicatedStorage(spec, inventory: inv, agent: agent, environment: env)
        s.quorum = quorum
        return try await RepositoryAccess.open(s, environment: env, password: try spec.resolvePassword(), create: true, kdfCost: 1024)
    }

    func source() throws -> SSHTarget { try inv.agentNode(named: "pg1").target }

    func cleanup() {
        try? FileManager.default.removeItem(atPath: dir)
        for n in ["st1", "st2"] { try? FileManager.default.removeItem(atPath: "\(Lab.dir)/storage/\(n)/\(env)") }
    }
}

private typealias Fixture = StorageFixture

let dumpMeta = BackupMetadata(engine: "postgresql", engineVersion: "PostgreSQL 15", sourceRole: "primary")

extension LabSuites {
    @Suite struct BackupWriteRead {
        init() async throws {
            try Lab.require()
            let inv = try Inventory.load(path: Lab.inventory)
            for n in ["st1", "st2", "pg1"] { _ = try await AgentInstaller.install(try inv.agentNode(named: n), try AgentBinary.locate()) }
        }

        @Test func writeThenReadBackByteIdenticalFromBothNodes() async throws {
            let f = try Fixture()
            defer { f.cleanup() }
            let dump = "\(f.dir)/dump.sql"
            try writeDump(dump, rows: 400_000, seed: 1)
            let repo = try await f.repo()
            let name = BackupName("2026-11-21T030000Z-manual")!
            let w = try await BackupWriter.write(
                repo, layer: "sqldb", name: name, source: try f.source(), agent: f.agent,
                command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
            let m = w.manifest
            #expect(w.replicas.complete.sorted() == ["st1", "st2"])
            #expect(m.rawBytes == Int64(try Data(contentsOf: URL(fileURLWithPath: dump)).count))
            // No hash of the whole dump (the chunk IDs cover it): what the reader reassembles
            // below is the dump, byte for byte.
            #expect(m.streams[0].sha256 == nil)
            // Chunked: at least as many chunks as the largest chunk size allows (the cut points
            // depend on the repository's random chunker seed, so no more than that is certain).
            let largest = Int64(ChunkerParameters.standard.max)
            #expect(m.streams[0].chunks.count >= Int((m.rawBytes + largest - 1) / largest))
            #expect(m.storedBytes < m.rawBytes / 2, "compressed: \(m.storedBytes) of \(m.rawBytes)")
            #expect(m.sourceNode == "pg1")
            for n in ["st1", "st2"] {
                #expect(FileManager.default.fileExists(atPath: "\(Lab.dir)/storage/\(n)/\(f.env)/backups/sqldb/\(name)"))
            }
            // No plaintext on the storage: a distinctive phrase of the dump appears in no stored file.
            let phrase = Data("lorem ipsum dolor".utf8)
            for file in FileManager.default.enumerator(atPath: "\(Lab.dir)/storage/st1/\(f.env)")!.compactMap({ $0 as? String }) {
                if let d = FileManager.default.contents(atPath: "\(Lab.dir)/storage/st1/\(f.env)/\(file)") { #expect(d.range(of: phrase) == nil, "\(file)") }
            }

            // A reader that knows only the nodes and the password.
            let reopened = try await RepositoryAccess.open(
                repo.storage, environment: f.env, password: try f.inv.storage("lab-storage")!.resolvePassword(), create: false)
            let (manifest, badManifests) = try await BackupReader.manifest(reopened, layer: "sqldb", name: name)
            #expect(badManifests.isEmpty)
            #expect(manifest == m)
            var out = Data()
            let bad = try await BackupReader.read(reopened, manifest) { out.append(contentsOf: $0) }
            #expect(bad.isEmpty)
            #expect(out == (try Data(contentsOf: URL(fileURLWithPath: dump))))
        }

        @Test func nextDaysBackupStoresOnlyWhatChanged() async throws {
            let f = try Fixture()
            defer { f.cleanup() }
            let dump = "\(f.dir)/dump.sql"
            try writeDump(dump, rows: 400_000, seed: 2)
            let repo = try await f.repo()
            let first = try await BackupWriter.write(
                repo, layer: "sqldb", name: BackupName("2026-11-20T030000Z-auto")!, source: try f.source(),
                agent: f.agent, command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
            try writeDump(dump, rows: 400_000, seed: 2, insertAt: 100)
            let second = try await BackupWriter.write(
                repo, layer: "sqldb", name: BackupName("2026-11-21T030000Z-auto")!, source: try f.source(),
                agent: f.agent, command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
            #expect(first.manifest.newBytes == first.manifest.storedBytes)
            // One row inserted near the start: one or two chunks are new, the rest deduplicated.
            #expect(
                second.manifest.newBytes < second.manifest.storedBytes / 3,
                "new \(second.manifest.newBytes) of \(second.manifest.storedBytes) stored")
            let shared = Set(first.manifest.streams[0].chunks.map(\.id)).intersection(second.manifest.streams[0].chunks.map(\.id))
            #expect(shared.count >= first.manifest.streams[0].chunks.count - 2)
        }

        @Test func aCorruptedChunkIsReadFromTheOtherNodeAndReported() async throws {
            let f = try Fixture()
            defer { f.cleanup() }
            let dump = "\(f.dir)/dump.sql"
            try writeDump(dump, rows: 200_000, seed: 3)
            let repo = try await f.repo()
            let name = BackupName("2026-11-21T030000Z-auto")!
            let w = try await BackupWriter.write(
                repo, layer: "sqldb", name: name, source: try f.source(), agent: f.agent,
                command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
            let victim = w.manifest.streams[0].chunks[1].id
            let path = "\(Lab.dir)/storage/st1/\(f.env)/chunks/\(victim.prefix(2))/\(victim)"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes[bytes.count / 2] ^= 0xff
            try bytes.write(to: URL(fileURLWithPath: path))
            var out = Data()
            let bad = try await BackupReader.read(repo, w.manifest) { out.append(contentsOf: $0) }
            #expect(out == (try Data(contentsOf: URL(fileURLWithPath: dump))))
            #expect(bad.count == 1)
            #expect(bad.first?.node == "st1")
            #expect(bad.first?.object == "chunks/\(victim.prefix(2))/\(victim)")
            #expect(bad.first?.problem.contains("authentication failed") == true)
        }

        /// Retention and the catalog read many manifests at once (a get per node for all of
        /// them): a copy damaged or missing on the first node is read from the other; one
        /// with no good copy anywhere is left out by the lenient read and stops the strict
        /// one (whose chunks would be unknown to a prune).
        @Test func manyManifestsAreReadAtOnceFromWhicheverNodeHoldsAGoodCopy() async throws {
            let f = try Fixture()
            defer { f.cleanup() }
            let dump = "\(f.dir)/dump.sql"
            try writeDump(dump, rows: 2_000, seed: 5)
            let repo = try await f.repo()
            var written: [String: Manifest] = [:]
            for day in 1...3 {
                let name = BackupName("2026-11-0\(day)T030000Z-auto")!
                let w = try await BackupWriter.write(
                    repo, layer: "sqldb", name: name, source: try f.source(), agent: f.agent,
                    command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
                written[RepositoryLayout.manifest(layer: "sqldb", name: name)] = w.manifest
            }
            let objects = written.keys.sorted()
            func path(_ node: String, _ object: String) -> String { "\(Lab.dir)/storage/\(node)/\(f.env)/\(object)" }
            func damage(_ node: String, _ object: String) throws {
                var bytes = try Data(contentsOf: URL(fileURLWithPath: path(node, object)))
                bytes[bytes.count / 2] ^= 0xff
                try bytes.write(to: URL(fileURLWithPath: path(node, object)))
            }
            try damage("st1", objects[0])
            try FileManager.default.removeItem(atPath: path("st1", objects[1]))
            #expect(try await BackupReader.manifests(repo, objects) == written)
            #expect(await BackupReader.readableManifests(repo, objects, batch: 2) == written)
            try damage("st2", objects[0])
            #expect(await BackupReader.readableManifests(repo, objects) == written.filter { $0.key != objects[0] })
            do throws(StowageError) {
                _ = try await BackupReader.manifests(repo, objects)
                Issue.record("a manifest with no good copy was read")
            } catch {
                #expect(error.status == .repositoryDamaged && error.message.contains("no good copy of its manifest"), "\(error)")
            }
        }

        @Test func aStorageNodeDownDuringTheWrite() async throws {
            let f = try Fixture()
            defer { f.cleanup() }
            let dump = "\(f.dir)/dump.sql"
            try writeDump(dump, rows: 100_000, seed: 4)
            // Quorum all: the write fails and commits nothing.
            let strict = try await f.repo()
            let src = try f.source()
            try await Lab.with("block", "st2") {
                do throws(StowageError) {
                    _ = try await BackupWriter.write(
                        strict, layer: "sqldb", name: BackupName("2026-11-21T010000Z-auto")!, source: src,
                        agent: f.agent, command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
                    Issue.record("committed without st2 under quorum all")
                } catch {
                    #expect(error.status == .quorumNotReached)
                }
            }
            #expect(!FileManager.default.fileExists(atPath: "\(Lab.dir)/storage/st1/\(f.env)/backups/sqldb/2026-11-21T010000Z-auto"))
            // Quorum 1: commits on st1, reports st2, and repair completes st2 later.
            let lenient = try await f.repo(quorum: 1)
            let name = BackupName("2026-11-21T020000Z-auto")!
            let w = try await Lab.with("block", "st2") {
                try await BackupWriter.write(
                    lenient, layer: "sqldb", name: name, source: try f.source(), agent: f.agent,
                    command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
            }
            #expect(w.replicas.complete == ["st1"])
            #expect(w.replicas.missing["st2"] != nil)
            #expect(!FileManager.default.fileExists(atPath: "\(Lab.dir)/storage/st2/\(f.env)/backups/sqldb/\(name)"))
            let repaired = try await StorageRepair.repair(lenient)
            #expect(repaired.ok, "\(repaired)")
            #expect(repaired.copied["st2"]?.contains(RepositoryLayout.manifest(layer: "sqldb", name: name)) == true)
            #expect(FileManager.default.fileExists(atPath: "\(Lab.dir)/storage/st2/\(f.env)/backups/sqldb/\(name)"))
            let st2Only = ReplicatedStorage(name: "lab-storage", nodes: [lenient.storage.nodes[1]], quorum: nil)
            var only = lenient
            only.storage = st2Only
            var out = Data()
            _ = try await BackupReader.read(only, w.manifest) { out.append(contentsOf: $0) }
            #expect(out == (try Data(contentsOf: URL(fileURLWithPath: dump))))
        }

        @Test func aFailingSourceCommitsNothing() async throws {
            let f = try Fixture()
            defer { f.cleanup() }
            let repo = try await f.repo()
            let src = try f.source()
            do throws(StowageError) {
                _ = try await BackupWriter.write(
                    repo, layer: "sqldb", name: BackupName("2026-11-21T030000Z-auto")!, source: src,
                    agent: f.agent, command: ["sh", "-c", "head -c 3000000 /dev/urandom; exit 3"],
                    streamName: "pg_dumpall", metadata: dumpMeta)
                Issue.record("a failed dump was committed")
            } catch {
                #expect(error.status == .remoteFailed)
                #expect(error.message.contains("pg1 (\(Lab.sshHost("127.0.1.10"))): chunk job failed: sh ended with exit 3"))
            }
            for n in ["st1", "st2"] {
                #expect(!FileManager.default.fileExists(atPath: "\(Lab.dir)/storage/\(n)/\(f.env)/backups"), "a manifest on \(n)")
            }
        }
    }
}

extension LabSuites.BackupWriteRead {
    @Test func backupsCommandListsByTimestampWithReplicaHealth() async throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let dump = "\(f.dir)/dump.sql"
        try writeDump(dump, rows: 20_000, seed: 5)
        let repo = try await f.repo()
        for stamp in ["2026-11-21T030000Z-auto", "2026-11-20T030000Z-manual"] {
            _ = try await BackupWriter.write(
                repo, layer: "sqldb", name: BackupName(stamp)!, source: try f.source(), agent: f.agent,
                command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
        }
        let ok = try runCommand(Repo.stowage, ["backups", f.env, "--config", Lab.inventory])
        #expect(ok.status == 0, "\(ok.stderr)")
        let lines = ok.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[1].contains("\(f.env)/sqldb") && lines[1].contains("2026-11-20T030000Z-manual") && lines[1].contains("pg1 (primary)"))
        #expect(lines[2].contains("2026-11-21T030000Z-auto") && lines[2].hasSuffix("st1,st2"))

        try FileManager.default.removeItem(atPath: "\(Lab.dir)/storage/st2/\(f.env)/backups/sqldb/2026-11-21T030000Z-auto")
        let degraded = try runCommand(Repo.stowage, ["backups", "\(f.env)/sqldb", "--json", "--config", Lab.inventory])
        #expect(degraded.status == ExitStatus.warnings.rawValue)
        try JSONSchema.validate(degraded.stdout, schema: "backups")
        let entries = try JSONDecoder().decode([BackupEntry].self, from: Data(degraded.stdout.utf8))
        #expect(entries.map(\.name) == ["2026-11-20T030000Z-manual", "2026-11-21T030000Z-auto"])
        #expect(entries[1].replicas == ["st1"] && entries[1].missingOn == ["st2"] && entries[1].health == "degraded")
        #expect(entries[0].engine == "postgresql" && entries[0].rawBytes > 0)

        let none = try runCommand(Repo.stowage, ["backups", "nosuchenv", "--config", Lab.inventory])
        #expect(none.status == 0)
        #expect(none.stdout == "no backups\n")
    }
}

extension LabSuites.BackupWriteRead {
    @Test func pruneKeepsTheNewestAndEveryChunkStillNeeded() async throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let repo = try await f.repo()
        var files: [String: String] = [:]
        for (i, stamp) in ["2026-11-18T030000Z-auto", "2026-11-19T030000Z-auto", "2026-11-20T030000Z-auto"].enumerated() {
            let dump = "\(f.dir)/sqldb-\(i).sql"
            try writeDump(dump, rows: 60_000, seed: 10 + UInt64(i))
            files[stamp] = dump
            _ = try await BackupWriter.write(
                repo, layer: "sqldb", name: BackupName(stamp)!, source: try f.source(), agent: f.agent,
                command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
        }
        let cacheDump = "\(f.dir)/cache.rdb"
        try writeDump(cacheDump, rows: 30_000, seed: 99)
        let cacheName = BackupName("2026-11-18T040000Z-auto")!
        _ = try await BackupWriter.write(
            repo, layer: "cache", name: cacheName, source: try f.source(), agent: f.agent,
            command: ["cat", cacheDump], streamName: "rdb", metadata: dumpMeta)
        let chunksBefore = try await repo.storage.nodes[0].list(prefix: "chunks").count

        let report = try await Pruner.prune(repo, layer: "sqldb", keep: 1)
        #expect(report.removedBackups == ["sqldb/2026-11-18T030000Z-auto", "sqldb/2026-11-19T030000Z-auto"])
        #expect(report.keptBackups == ["sqldb/2026-11-20T030000Z-auto"])
        #expect(report.removedChunks["st1"] ?? 0 > 0)
        #expect(report.removedChunks["st1"] == report.removedChunks["st2"])
        let after0 = try await repo.storage.nodes[0].list(), after1 = try await repo.storage.nodes[1].list()
        #expect(after0.map(\.name) == after1.map(\.name))
        #expect(after0.filter { $0.name.hasPrefix("chunks/") }.count == chunksBefore - report.removedChunks["st1"]!)
        #expect(Set(after0.filter { $0.name.hasPrefix("backups/") }.map(\.name)) == ["backups/sqldb/2026-11-20T030000Z-auto", "backups/cache/\(cacheName)"])
        // What remains restores byte-identically: nothing it needs was pruned.
        for (layer, name, file) in [("sqldb", BackupName("2026-11-20T030000Z-auto")!, files["2026-11-20T030000Z-auto"]!), ("cache", cacheName, cacheDump)] {
            let (m, _) = try await BackupReader.manifest(repo, layer: layer, name: name)
            var out = Data()
            _ = try await BackupReader.read(repo, m) { out.append(contentsOf: $0) }
            #expect(out == (try Data(contentsOf: URL(fileURLWithPath: file))), "\(layer)/\(name)")
        }
        // Retention never removes a layer's last backup.
        #expect(try await Pruner.prune(repo, layer: "cache", keep: 0).removedBackups.isEmpty)
    }

    @Test func pruneAndBackupsExcludeEachOther() async throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let repo = try await f.repo()
        let dump = "\(f.dir)/d.sql"
        try writeDump(dump, rows: 5_000, seed: 1)
        _ = try await BackupWriter.write(
            repo, layer: "sqldb", name: BackupName("2026-11-19T030000Z-auto")!, source: try f.source(), agent: f.agent,
            command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
        try writeDump(dump, rows: 5_000, seed: 2)
        _ = try await BackupWriter.write(
            repo, layer: "sqldb", name: BackupName("2026-11-20T030000Z-auto")!, source: try f.source(), agent: f.agent,
            command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
        let chunksBefore = try await repo.storage.nodes[0].list(prefix: "chunks").count
        // A backup of the same layer running: retention waits for it.
        let sameLayer = try await LayerLock.acquire(repo.storage.nodes[0], layer: "sqldb", operation: "backup \(f.env)/sqldb")
        do throws(StowageError) {
            _ = try await Pruner.prune(repo, layer: "sqldb", keep: 1)
            Issue.record("retention ran during a backup of its layer")
        } catch {
            #expect(error.status == .locked)
            #expect(error.message.contains("backup \(f.env)/sqldb"))
        }
        await sameLayer.release()
        // Another layer's backup running: the old backup is forgotten, but no chunk is deleted
        // (the backup could be about to reference one); a later prune reclaims them.
        let backupLock = try await LayerLock.acquire(repo.storage.nodes[0], layer: "orders", operation: "backup \(f.env)/orders")
        let report = try await Pruner.prune(repo, layer: "sqldb", keep: 1)
        #expect(report.removedBackups == ["sqldb/2026-11-19T030000Z-auto"])
        #expect(report.removedChunks.isEmpty)
        #expect(report.reclaimDeferred?.contains("reclaimed by a later prune") == true)
        #expect(try await repo.storage.nodes[0].list(prefix: "chunks").count == chunksBefore)
        await backupLock.release()
        // The next retention that removes a backup, with the repository idle, reclaims them.
        try writeDump(dump, rows: 5_000, seed: 3)
        _ = try await BackupWriter.write(
            repo, layer: "sqldb", name: BackupName("2026-11-20T040000Z-auto")!, source: try f.source(), agent: f.agent,
            command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
        let chunksNow = try await repo.storage.nodes[0].list(prefix: "chunks").count
        let later = try await Pruner.prune(repo, layer: "sqldb", keep: 1)
        #expect(later.removedBackups == ["sqldb/2026-11-20T030000Z-auto"])
        #expect(later.reclaimDeferred == nil)
        #expect((later.removedChunks["st1"] ?? 0) > 0)
        #expect(try await repo.storage.nodes[0].list(prefix: "chunks").count == chunksNow - later.removedChunks["st1"]!)
        // Prune running: a backup waits for it (prune holds the repository for seconds), with
        // the lock it already holds on the other node kept alive meanwhile.
        let pruneLock = try await LayerLock.acquire(repo.storage.nodes[1], layer: nil, operation: "prune \(f.env)", exclusive: true)
        let src = try f.source()
        let agent = f.agent
        let started = Date()
        let backup = Task { () async throws -> Date in
            _ = try await BackupWriter.write(
                repo, layer: "sqldb", name: BackupName("2026-11-21T030000Z-auto")!, source: src, agent: agent,
                command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
            return Date()
        }
        // The backup is waiting once it holds the layer's lock on st1 (its owner text there)
        // while st2's repository is held.
        let ownerFile = "\(Lab.dir)/storage/st1/\(f.env)/locks/sqldb"
        var waiting = false
        for _ in 0..<1500 where !waiting {
            waiting = (try? String(contentsOfFile: ownerFile, encoding: .utf8))?.contains("backup \(f.env)/sqldb") == true
            if !waiting { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(waiting, "the backup never took its lock on st1")
        let released = Date()
        await pruneLock.release()
        let finished = try await backup.value
        #expect(finished > released, "the backup finished while the prune held st2")
        #expect(finished > started)
        let entries = try await BackupReader.manifest(repo, layer: "sqldb", name: BackupName("2026-11-21T030000Z-auto")!)
        #expect(entries.0.rawBytes > 0)
    }
}

extension LabSuites.BackupWriteRead {
    @Test func verifyReportsPerNodeWhatIsMissingDamagedOrForeign() async throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let dump = "\(f.dir)/d.sql"
        try writeDump(dump, rows: 150_000, seed: 21)
        let repo = try await f.repo()
        let w = try await BackupWriter.write(
            repo, layer: "sqldb", name: BackupName("2026-11-21T030000Z-auto")!, source: try f.source(),
            agent: f.agent, command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
        let args = ["storage", "verify", "lab-storage", "--environment", f.env, "--read-data-subset", "100%", "--config", Lab.inventory]
        let clean = try runCommand(Repo.stowage, args)
        #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
        #expect(clean.stdout.contains("\(f.env) st1: ok: 1 backups"))
        #expect(clean.stdout.contains("\(f.env) st2: ok: 1 backups"))

        let chunks = w.manifest.streams[0].chunks
        let damagedName = "chunks/\(chunks[0].id.prefix(2))/\(chunks[0].id)"
        let missingName = "chunks/\(chunks[1].id.prefix(2))/\(chunks[1].id)"
        let st1 = "\(Lab.dir)/storage/st1/\(f.env)", st2 = "\(Lab.dir)/storage/st2/\(f.env)"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: "\(st1)/\(damagedName)"))
        bytes[20] ^= 1
        try bytes.write(to: URL(fileURLWithPath: "\(st1)/\(damagedName)"))
        try FileManager.default.removeItem(atPath: "\(st2)/\(missingName)")
        try "hello".write(toFile: "\(st2)/backups/sqldb/README", atomically: true, encoding: .utf8)

        let bad = try runCommand(Repo.stowage, args + ["--json"])
        #expect(bad.status == ExitStatus.repositoryDamaged.rawValue)
        try JSONSchema.validate(bad.stdout, schema: "storage-verify")
        let reports = try JSONDecoder().decode([NodeVerifyReport].self, from: Data(bad.stdout.utf8))
        let r1 = try #require(reports.first { $0.node == "st1" }), r2 = try #require(reports.first { $0.node == "st2" })
        #expect(r1.damaged == [damagedName] && r1.missing.isEmpty)
        #expect(r2.missing == [missingName] && r2.damaged.isEmpty)
        #expect(r2.foreign == ["backups/sqldb/README"])
        #expect(r1.chunksRead == chunks.count)
        // A foreign file is reported, never listed as a backup.
        let list = try runCommand(Repo.stowage, ["backups", "\(f.env)/sqldb", "--config", Lab.inventory])
        #expect(!list.stdout.contains("README"))
    }
}

extension LabSuites.BackupWriteRead {
    @Test func changingTheStoragePasswordRewrapsKeysAndReencryptsNothing() async throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let dump = "\(f.dir)/d.sql"
        try writeDump(dump, rows: 30_000, seed: 31)
        let repo = try await f.repo()
        let name = BackupName("2026-11-21T030000Z-auto")!
        let w = try await BackupWriter.write(
            repo, layer: "sqldb", name: name, source: try f.source(), agent: f.agent,
            command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
        let chunkPath = "\(Lab.dir)/storage/st1/\(f.env)/chunks/\(w.manifest.streams[0].chunks[0].id.prefix(2))/\(w.manifest.streams[0].chunks[0].id)"
        let chunkBefore = try Data(contentsOf: URL(fileURLWithPath: chunkPath))
        let spec = f.inv.storage("lab-storage")!
        let old = try spec.resolvePassword(), new = Secret("a new storage password")

        let changed = try await PasswordChange.run(spec, inventory: f.inv, agent: f.agent, old: old, new: new, environments: [f.env], kdfCost: 1024)
        #expect(changed == [f.env])
        let storage = try ReplicatedStorage(spec, inventory: f.inv, agent: f.agent, environment: f.env)
        do throws(StowageError) {
            _ = try await RepositoryAccess.open(storage, environment: f.env, password: old, create: false)
            Issue.record("the old password still opens the repository")
        } catch {
            #expect(error.status == .credentialsRejected)
        }
        let reopened = try await RepositoryAccess.open(storage, environment: f.env, password: new, create: false)
        #expect(reopened.keys == repo.keys)
        var out = Data()
        _ = try await BackupReader.read(reopened, w.manifest) { out.append(contentsOf: $0) }
        #expect(out == (try Data(contentsOf: URL(fileURLWithPath: dump))))
        #expect(try Data(contentsOf: URL(fileURLWithPath: chunkPath)) == chunkBefore, "a chunk was rewritten")
        for n in ["st1", "st2"] {
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(Lab.dir)/storage/\(n)/\(f.env)/keys").count == 1)
        }

        let usage = try runCommand(Repo.stowage, ["storage", "passwd", "lab-storage", "--config", Lab.inventory])
        #expect(usage.status == ExitStatus.usage.rawValue)
        #expect(usage.stderr.contains("--new-password-env or --new-password-file"))
    }
}
