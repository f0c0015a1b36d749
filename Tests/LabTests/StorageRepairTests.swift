// Damage a careful operator finds, and what verify, repair, prune and restore make of it:
// a manifest flipped on one node (verify at any subset, restore names the copy it used),
// chunks damaged, truncated and removed on either node (repair replaces each from a copy
// that authenticates; what has no good copy is named and exits 13), a storage node filled
// by a failed backup (the next one goes through without hand-work), leftovers removed by
// `storage prune`, and storage nodes whose host key is unknown or changed (exit 6, before
// any dump).
import Foundation
import Repository
import Support
import TestSupport
import Testing

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Scheduling
@testable import Storage

private func flipByte(_ path: String, at offset: Int = 30) throws {
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    bytes[min(offset, bytes.count - 1)] ^= 0x40
    try bytes.write(to: URL(fileURLWithPath: path))
}

private func files(_ path: String) -> Set<String> {
    guard let e = FileManager.default.enumerator(atPath: path) else { return [] }
    var out = Set<String>()
    while let f = e.nextObject() as? String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: "\(path)/\(f)", isDirectory: &isDir), !isDir.boolValue,
            !f.hasPrefix("tmp/"), !f.hasPrefix("locks/")
        {
            out.insert(f)
        }
    }
    return out
}

extension LabSuites {
    @Suite struct StorageRepairs {
        let f: StorageFixture

        init() async throws {
            try Lab.require()
            f = try StorageFixture()
            for n in ["st1", "st2", "pg1"] { _ = try await AgentInstaller.install(try f.inv.agentNode(named: n), f.agent) }
        }

        func stowage(_ args: [String]) throws -> CommandResult { try runCommand(Repo.stowage, args + ["--config", Lab.inventory]) }

        func backup(_ repo: OpenRepository, _ name: String, rows: Int, seed: UInt64) async throws -> (BackupWriteResult, String) {
            let dump = "\(f.dir)/\(name).sql"
            try writeDump(dump, rows: rows, seed: seed)
            let w = try await BackupWriter.write(
                repo, layer: "sqldb", name: BackupName(name)!, source: try f.source(), agent: f.agent,
                command: ["cat", dump], streamName: "pg_dumpall", metadata: dumpMeta)
            return (w, dump)
        }

        /// Reads a backup from one node only and compares it with the dump it came from.
        func readsBack(_ repo: OpenRepository, node: Int, _ w: BackupWriteResult, _ dump: String) async throws -> Bool {
            var only = repo
            only.storage = ReplicatedStorage(name: repo.storage.name, nodes: [repo.storage.nodes[node]], quorum: nil)
            var out = Data()
            _ = try await BackupReader.read(only, w.manifest) { out.append(contentsOf: $0) }
            return out == (try Data(contentsOf: URL(fileURLWithPath: dump)))
        }

        @Test func verifyAtAnySubsetCatchesAManifestDamagedOnOneNodeAndRepairMendsIt() async throws {
            defer { f.cleanup() }
            let repo = try await f.repo()
            let (w, _) = try await backup(repo, "2026-11-21T030000Z-auto", rows: 20_000, seed: 5)
            let manifest = RepositoryLayout.manifest(layer: "sqldb", name: BackupName(w.manifest.name)!)
            try flipByte("\(Lab.dir)/storage/st1/\(f.env)/\(manifest)")

            for subset in [[], ["--read-data-subset", "0%"], ["--read-data-subset", "100%"]] {
                let v = try stowage(["storage", "verify", "lab-storage", "--environment", f.env, "--json"] + subset)
                #expect(v.status == ExitStatus.repositoryDamaged.rawValue, "\(subset): \(v.stdout)")
                try JSONSchema.validate(v.stdout, schema: "storage-verify")
                let reports = try JSONDecoder().decode([NodeVerifyReport].self, from: Data(v.stdout.utf8))
                #expect(reports.first { $0.node == "st1" }?.damaged == [manifest], "\(subset): \(v.stdout)")
                #expect(reports.first { $0.node == "st2" }?.ok == true, "\(subset): \(v.stdout)")
            }
            let text = try stowage(["storage", "verify", "lab-storage", "--environment", f.env])
            #expect(text.stdout.contains("\(f.env) st1: DAMAGED"), "\(text.stdout)")
            #expect(text.stdout.contains("damaged: \(manifest) ("), "\(text.stdout)")
            #expect(text.stdout.contains("\(f.env) st2: structure ok, data not read"), "\(text.stdout)")

            // A restore reads every copy: it says which one it used and which it found bad.
            let read = try await BackupReader.manifestWithSource(repo, layer: "sqldb", name: BackupName(w.manifest.name)!, allCopies: true).get()
            #expect(read.source == "st2")
            #expect(read.bad.map(\.node) == ["st1"])
            #expect(read.bad.first?.object == manifest)

            let r = try await StorageRepair.repair(repo)
            #expect(r.ok, "\(r)")
            #expect(r.replaced["st1"]?.count == 1 && r.replaced["st1"]?.first?.hasPrefix(manifest) == true, "\(r)")
            let after = try stowage(["storage", "verify", "lab-storage", "--environment", f.env, "--read-data-subset", "100%"])
            #expect(after.status == 0, "\(after.stdout)")
        }

        @Test func repairReplacesEveryBadCopyFromOneThatAuthenticates() async throws {
            defer { f.cleanup() }
            let repo = try await f.repo()
            // Four chunks are needed whatever the repository's chunker seed: a dump larger than
            // three of the largest chunks (8 MiB) always has them (200,000 rows had 3 once in CI).
            let (w1, d1) = try await backup(repo, "2026-11-21T030000Z-auto", rows: 500_000, seed: 7)
            let (w2, d2) = try await backup(repo, "2026-11-22T030000Z-auto", rows: 20_000, seed: 8)
            let size = try FileManager.default.attributesOfItem(atPath: d1)[.size] as! Int
            try #require(size > 3 * ChunkerParameters.standard.max, "dump of \(size) bytes")
            let chunks = w1.manifest.streams[0].chunks.map { RepositoryLayout.chunk($0.id) }
            try #require(chunks.count >= 4)
            let st1 = "\(Lab.dir)/storage/st1/\(f.env)", st2 = "\(Lab.dir)/storage/st2/\(f.env)"
            try flipByte("\(st1)/\(chunks[0])")  // damaged on st1
            try flipByte("\(st2)/\(chunks[1])")  // another, damaged on st2
            try FileManager.default.removeItem(atPath: "\(st1)/\(chunks[2])")  // missing on st1
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(st2)/\(chunks[3])"))
            try h.truncate(atOffset: 100); try h.close()  // wrong size on st2
            let m2 = RepositoryLayout.manifest(layer: "sqldb", name: BackupName(w2.manifest.name)!)
            try FileManager.default.removeItem(atPath: "\(st2)/\(m2)")  // a manifest missing on st2

            let verify = ["storage", "verify", "lab-storage", "--environment", f.env, "--read-data-subset", "100%"]
            let before = try stowage(verify)
            #expect(before.status == ExitStatus.repositoryDamaged.rawValue, "\(before.stdout)")

            let r = try stowage(["storage", "repair", "lab-storage", "--environment", f.env])
            #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
            #expect(r.stdout.contains("lab-storage/\(f.env): st1: 1 copied, 1 replaced, st2: 1 copied, 2 replaced"), "\(r.stdout)")
            #expect(r.stdout.contains("replaced on st1: \(chunks[0]) (damaged"), "\(r.stdout)")
            #expect(r.stdout.contains("replaced on st2: \(chunks[1]) (damaged"), "\(r.stdout)")
            #expect(r.stdout.contains("replaced on st2: \(chunks[3]) (wrong size"), "\(r.stdout)")

            let after = try stowage(verify)
            #expect(after.status == 0, "\(after.stdout)")
            // Each node alone now holds both backups whole.
            for node in [0, 1] {
                #expect(try await readsBack(repo, node: node, w1, d1))
                #expect(try await readsBack(repo, node: node, w2, d2))
            }
            // Nothing left to do.
            let again = try await StorageRepair.repair(repo)
            #expect(again.copied.isEmpty && again.replaced.isEmpty && again.ok, "\(again)")
        }

        @Test func aChunkWithNoGoodCopyIsNamedAndExits13() async throws {
            defer { f.cleanup() }
            let repo = try await f.repo()
            let (w, _) = try await backup(repo, "2026-11-21T030000Z-auto", rows: 20_000, seed: 9)
            let chunk = RepositoryLayout.chunk(w.manifest.streams[0].chunks[0].id)
            for n in ["st1", "st2"] { try flipByte("\(Lab.dir)/storage/\(n)/\(f.env)/\(chunk)") }
            let damaged = try Data(contentsOf: URL(fileURLWithPath: "\(Lab.dir)/storage/st1/\(f.env)/\(chunk)"))

            let r = try stowage(["storage", "repair", "lab-storage", "--environment", f.env])
            #expect(r.status == ExitStatus.repositoryDamaged.rawValue, "\(r.stdout)\(r.stderr)")
            #expect(r.stdout.contains("NOT REPAIRED: \(chunk): no good copy on any reachable node (bad on st1, st2)"), "\(r.stdout)")
            #expect(r.stderr.hasPrefix("stowage: error: lab-storage/\(f.env): 1 object(s) have no good copy on any node"), "\(r.stderr)")
            #expect(r.stderr.contains("\nhint: "))
            // Repair never makes it worse: the damaged copies are left as they were.
            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(Lab.dir)/storage/st1/\(f.env)/\(chunk)")) == damaged)
            // As a document: the same outcome, the same exit status.
            let j = try stowage(["storage", "repair", "lab-storage", "--environment", f.env, "--json"])
            #expect(j.status == ExitStatus.repositoryDamaged.rawValue)
            try JSONSchema.validate(j.stdout, schema: "storage-repair")
            struct Outcome: Decodable { var environment: String; var unrepairable: [String: String] }
            let outcomes = try JSONDecoder().decode([Outcome].self, from: Data(j.stdout.utf8))
            #expect(outcomes.map(\.environment) == [f.env] && outcomes.first?.unrepairable[chunk]?.contains("no good copy") == true, "\(j.stdout)")
        }

        @Test func aStorageFilledByAFailedBackupTakesTheNextOne() async throws {
            defer { f.cleanup() }
            // st2's copy of this environment on a small file system of its own.
            let mount = "\(Lab.dir)/storage/st2/\(f.env)"
            try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
            let m = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mount])
            try #require(m.status == 0, "mount: \(m.stderr)")
            defer { _ = try? runCommand("/bin/umount", ["-l", mount]) }

            let repo = try await f.repo()
            _ = try await backup(repo, "2026-11-21T030000Z-auto", rows: 10_000, seed: 11)
            let st1 = "\(Lab.dir)/storage/st1/\(f.env)"
            let filesBefore = (files(st1), files(mount))

            // 12 MiB that does not compress: st2 runs out of space part way.
            let source = try f.source()
            do throws(StowageError) {
                _ = try await BackupWriter.write(
                    repo, layer: "sqldb", name: BackupName("2026-11-22T030000Z-auto")!, source: source,
                    agent: f.agent, command: ["head", "-c", "12582912", "/dev/urandom"], streamName: "dump", metadata: dumpMeta)
                Issue.record("12 MiB committed on an 8 MiB node under quorum all")
            } catch {
                #expect(error.status == .quorumNotReached, "\(error)")
                #expect(error.message.contains("ENOSPC"), "\(error.message)")
                #expect(error.message.contains("chunk files it left unreferenced were removed"), "\(error.message)")
            }
            // What the failed run wrote is gone from both nodes; the earlier backup is whole.
            #expect(files(st1) == filesBefore.0)
            #expect(files(mount) == filesBefore.1)
            let (w3, d3) = try await backup(repo, "2026-11-23T030000Z-auto", rows: 10_000, seed: 12)
            #expect(w3.replicas.complete.sorted() == ["st1", "st2"])
            #expect(try await readsBack(repo, node: 1, w3, d3))
            let dry = try stowage(["storage", "prune", "lab-storage", "--environment", f.env, "--dry-run"])
            #expect(dry.status == 0, "\(dry.stderr)")
            #expect(dry.stdout.contains("st1: would remove 0 unreferenced chunks"), "\(dry.stdout)")
        }

        @Test func storagePruneRemovesWhatNoBackupReferences() async throws {
            defer { f.cleanup() }
            let repo = try await f.repo()
            let (w, d) = try await backup(repo, "2026-11-21T030000Z-auto", rows: 20_000, seed: 13)
            // A failed run's leftover: a sealed chunk under its ID that no manifest names.
            let stray = Array(repeating: UInt8(7), count: 50_000)
            let id = stray.withUnsafeBytes { repo.keys.chunkID($0) }
            let sealed = Envelope.seal(stray, key: repo.keys.data, aad: id)
            _ = try await repo.storage.put([StoredObject(name: RepositoryLayout.chunk(id), bytes: sealed)])
            let strayPath = "\(Lab.dir)/storage/st1/\(f.env)/\(RepositoryLayout.chunk(id))"

            let dry = try stowage(["storage", "prune", "lab-storage", "--environment", f.env, "--dry-run"])
            #expect(dry.status == 0, "\(dry.stderr)")
            #expect(dry.stdout.contains("lab-storage/\(f.env): st1: would remove 1 unreferenced chunks"), "\(dry.stdout)")
            #expect(FileManager.default.fileExists(atPath: strayPath))
            let dryJSON = try stowage(["storage", "prune", "lab-storage", "--environment", f.env, "--dry-run", "--json"])
            try JSONSchema.validate(dryJSON.stdout, schema: "storage-prune")
            #expect(dryJSON.stdout.contains(#""dryRun" : true"#), "\(dryJSON.stdout)")
            let real = try stowage(["storage", "prune", "lab-storage", "--environment", f.env])
            #expect(real.status == 0, "\(real.stderr)")
            #expect(real.stdout.contains("st1: removed 1 unreferenced chunks") && real.stdout.contains("st2: removed 1 unreferenced chunks"), "\(real.stdout)")
            #expect(!FileManager.default.fileExists(atPath: strayPath))
            #expect(try await readsBack(repo, node: 0, w, d))
            let verify = try stowage(["storage", "verify", "lab-storage", "--environment", f.env, "--read-data-subset", "100%"])
            #expect(verify.status == 0, "\(verify.stdout)")
        }
    }
}

extension LabSuites {
    /// Storage nodes whose host key is not the one known_hosts holds.
    @Suite struct StorageHostKeys {
        init() throws { try Lab.require() }

        /// An inventory like the lab's whose known_hosts has st1's line changed by `edit`.
        func inventory(_ dir: String, _ edit: (String) -> String) throws -> String {
            let known = "\(dir)/known_hosts"
            let lines = try String(contentsOfFile: "\(Lab.dir)/ssh/known_hosts", encoding: .utf8).split(separator: "\n").map(String.init)
            try lines.map { $0.hasPrefix(Lab.sshHost("127.0.9.1") + " ") ? edit($0) : $0 }.filter { !$0.isEmpty }.joined(separator: "\n")
                .appending("\n").write(toFile: known, atomically: true, encoding: .utf8)
            let inv = "\(dir)/stowage.yaml"
            try String(contentsOfFile: Lab.inventory, encoding: .utf8)
                .replacingOccurrences(of: "\(Lab.dir)/ssh/known_hosts", with: known)
                .write(toFile: inv, atomically: true, encoding: .utf8)
            return inv
        }

        func tempDir() throws -> String {
            let d = FileManager.default.temporaryDirectory.appendingPathComponent("hk-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            return d
        }

        @Test func anUnknownStorageHostKeyIsExit6WithTheFingerprint() throws {
            let dir = try tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let made = try runCommand(Repo.stowage, ["backup", "shop/cache", "--config", Lab.inventory])
            #expect(made.status == 0, "\(made.stderr)")
            let inv = try inventory(dir) { _ in "" }
            for args in [["backups", "shop/cache"], ["storage", "verify", "lab-storage", "--environment", "shop"]] {
                let r = try runCommand(Repo.stowage, args + ["--config", inv])
                #expect(r.status == ExitStatus.hostKeyRefused.rawValue, "\(args): \(r.stdout)\(r.stderr)")
                #expect(r.stderr.contains("st1 (root@\(Lab.sshHost("127.0.9.1"))): unknown host key ssh-ed25519 SHA256:"), "\(args): \(r.stderr)")
                #expect(r.stderr.contains("hint: ") && r.stderr.contains("stowage ssh trust st1"), "\(args): \(r.stderr)")
            }
        }

        @Test func aChangedStorageHostKeyStopsABackupBeforeItsDump() throws {
            let dir = try tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            // st1's address with another node's key.
            let st2Key = try String(contentsOfFile: "\(Lab.dir)/ssh/known_hosts", encoding: .utf8).split(separator: "\n")
                .first { $0.hasPrefix(Lab.sshHost("127.0.9.2") + " ") }!.split(separator: " ").dropFirst().joined(separator: " ")
            let inv = try inventory(dir) { _ in Lab.sshHost("127.0.9.1") + " \(st2Key)" }
            // New data: a dump would make chunks the storage does not have yet.
            try LabData.redis("rd1", ["SET", "hostkey-test", UUID().uuidString + String(repeating: "x", count: 100_000)])
            defer { _ = try? LabData.redis("rd1", ["DEL", "hostkey-test"]) }
            let chunksBefore = files("\(Lab.dir)/storage/st2/shop").filter { $0.hasPrefix("chunks/") }.count
            let r = try runCommand(Repo.stowage, ["backup", "shop/cache", "--config", inv])
            #expect(r.status == ExitStatus.hostKeyRefused.rawValue, "\(r.stdout)\(r.stderr)")
            #expect(r.stderr.contains("st1 (root@\(Lab.sshHost("127.0.9.1"))): HOST KEY CHANGED"), "\(r.stderr)")
            #expect(!r.stderr.contains("quorum"), "\(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 2, "\(r.stderr)")
            // Nothing was sent to the other node; the dump, started ahead of the repository's
            // keys (EarlyChunkJob), got none and was stopped.
            #expect(files("\(Lab.dir)/storage/st2/shop").filter { $0.hasPrefix("chunks/") }.count == chunksBefore)
            #expect(try LabData.eventually { try Procs.agentSessions(on: "rd1").isEmpty }, "an agent session stayed on rd1")
        }
    }
}
