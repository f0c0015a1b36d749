// Chunk jobs started before the repository is open (EarlyChunkJob, `ChunkJob.keysFollow`):
// the dump runs ahead and waits for its keys, and the backup is the same as one started
// late; a job stopped before it has its keys leaves nothing running on the node; a job
// that ended while it waited is replaced by one the writer starts itself.
import AgentProtocol
import Foundation
import Repository
import Support
import TestSupport
import Testing

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Storage

extension LabSuites {
    @Suite struct EarlyChunkJobs {
        init() async throws {
            try Lab.require()
            let inv = try Inventory.load(path: Lab.inventory)
            for n in ["st1", "st2", "pg1"] { _ = try await AgentInstaller.install(try inv.agentNode(named: n), try AgentBinary.locate()) }
        }

        /// The source's process on pg1 (every lab node runs on this machine).
        func running(_ dump: String) -> Bool { !Procs.matching("cat \(dump)").isEmpty }

        func stream(_ dump: String, _ f: StorageFixture) throws -> BackupStreamSource {
            BackupStreamSource(name: "dump", node: try f.source(), job: ChunkJob(command: ["cat", dump]))
        }

        /// A ~12 MB dump (more than the pipe holds) in `f`'s folder and its chunk job started
        /// ahead on pg1, seen running there; the agent sessions pg1 had before it.
        func startAhead(_ f: StorageFixture, seed: UInt64) throws -> (dump: String, stream: BackupStreamSource, before: Set<Int32>, early: EarlyChunkJob) {
            let dump = "\(f.dir)/dump.sql"
            try writeDump(dump, rows: 200_000, seed: seed)
            let s = try stream(dump, f)
            let before = Set(try Procs.agentSessions(on: "pg1"))
            let early = EarlyChunkJob(s.node, agent: f.agent, job: s.job)
            #expect(try LabData.eventually { running(dump) }, "the source did not start ahead of its keys")
            return (dump, s, before, early)
        }

        @Test func aJobStartedAheadTakesItsKeysLaterAndTheBackupReadsBackWhole() async throws {
            let f = try StorageFixture()
            defer { f.cleanup() }
            // The dump runs before the repository is even open, and waits there.
            let (dump, s, _, early) = try startAhead(f, seed: 11)
            let repo = try await f.repo()
            #expect(running(dump), "the source ended without its keys")
            let w = try await BackupWriter.write(
                repo, layer: "sqldb", name: BackupName("2026-12-01T000000Z-manual")!, streams: [s], agent: f.agent,
                metadata: dumpMeta, early: [early])
            #expect(w.replicas.complete.sorted() == ["st1", "st2"])
            guard case .success(let run) = await early.result else { Issue.record("the early job did not succeed"); return }
            #expect(run.chunks.count == w.manifest.streams[0].chunks.count)
            var out = Data()
            _ = try await BackupReader.read(repo, w.manifest) { out.append(contentsOf: $0) }
            #expect(out == (try Data(contentsOf: URL(fileURLWithPath: dump))))
            #expect(!running(dump))
        }

        @Test func aJobStoppedBeforeItsKeysLeavesNothingRunningOnTheNode() async throws {
            let f = try StorageFixture()
            defer { f.cleanup() }
            let (dump, _, sessionsBefore, early) = try startAhead(f, seed: 12)
            early.cancel()
            guard case .failure(let e) = await early.result else { Issue.record("a cancelled job succeeded"); return }
            #expect(e.status == .cancelled, "\(e)")
            // The agent saw its input end before the keys and stopped the source.
            #expect(try LabData.eventually { !running(dump) }, "the source still runs on pg1")
            #expect(try LabData.eventually { Set(try Procs.agentSessions(on: "pg1")).isSubset(of: sessionsBefore) }, "an agent session stayed on pg1")
        }

        @Test func aJobThatEndedWhileItWaitedIsReplacedByTheWritersOwn() async throws {
            let f = try StorageFixture()
            defer { f.cleanup() }
            let (dump, s, sessionsBefore, early) = try startAhead(f, seed: 13)
            // Its agent dies while it waits (the node rebooted, an operator killed it).
            for p in Set(try Procs.agentSessions(on: "pg1")).subtracting(sessionsBefore) { kill(p, SIGKILL) }
            guard case .failure = await early.result else { Issue.record("a killed job succeeded"); return }
            let repo = try await f.repo()
            let w = try await BackupWriter.write(
                repo, layer: "sqldb", name: BackupName("2026-12-01T000000Z-manual")!, streams: [s], agent: f.agent,
                metadata: dumpMeta, early: [early])
            var out = Data()
            _ = try await BackupReader.read(repo, w.manifest) { out.append(contentsOf: $0) }
            #expect(out == (try Data(contentsOf: URL(fileURLWithPath: dump))))
        }
    }
}
