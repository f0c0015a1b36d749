// The lab's two storage nodes as replicas: parallel writes, the write quorum, a node down
// during a write, and repair.
import Foundation
import Repository
import Testing
import TestSupport
@testable import Coordinator

private func storage(quorum: Int?) throws -> (ReplicatedStorage, String) {
    let inv = try Inventory.load(path: Lab.inventory)
    let env = "repltest-\(UUID().uuidString.prefix(8))"
    var s = try ReplicatedStorage(inv.storage("lab-storage")!, inventory: inv, agent: try AgentBinary.locate(), environment: env)
    s.quorum = quorum
    return (s, env)
}

private func objects(_ tag: String, _ n: Int) -> [StoredObject] {
    (0..<n).map { i in StoredObject(name: "chunks/\(tag)/c\(i)", bytes: Array("\(tag)-\(i)-".utf8) + [UInt8](repeating: UInt8(i), count: 10_000 * (i + 1))) }
}

private func cleanup(_ env: String) {
    for n in ["st1", "st2"] { try? FileManager.default.removeItem(atPath: "\(Lab.dir)/storage/\(n)/\(env)") }
}

extension LabSuites {
@Suite struct Replication {
    init() async throws {
        try Lab.require()
        let inv = try Inventory.load(path: Lab.inventory)
        for n in ["st1", "st2"] { _ = try await AgentInstaller.install(try inv.agentNode(named: n), try AgentBinary.locate()) }
    }

    @Test func everyNodeGetsACopy() async throws {
        let (s, env) = try storage(quorum: nil)
        defer { cleanup(env) }
        let objs = objects("aa", 5)
        let w = try await s.put(objs)
        #expect(w.outcome.committed)
        #expect(w.outcome.complete.sorted() == ["st1", "st2"])
        #expect(w.stored["st1"]?.stored == 5 && w.stored["st2"]?.stored == 5)
        let l1 = try await s.nodes[0].list(), l2 = try await s.nodes[1].list()
        #expect(l1.map(\.name) == objs.map(\.name).sorted())
        #expect(l1.map(\.name) == l2.map(\.name))
        // Writing the same chunks again sends nothing new.
        let again = try await s.put(objs)
        #expect(again.stored.values.allSatisfy { $0.stored == 0 && $0.existed == 5 })
    }

    @Test func nodeDownWithQuorumOneCommitsDegradedAndRepairCatchesUp() async throws {
        let (s, env) = try storage(quorum: 1)
        defer { cleanup(env) }
        let first = objects("bb", 3)
        _ = try await s.put(first)
        let second = objects("cc", 4) + [StoredObject(name: "backups/sqldb/2026-11-21T030000Z-auto", bytes: [1, 2, 3])]
        let degraded = try await Lab.with("block", "st2") { try await s.put(second) }
        #expect(degraded.outcome.committed)
        #expect(degraded.outcome.complete == ["st1"])
        #expect(degraded.outcome.missing["st2"]?.contains("unreachable") == true)
        #expect(try await s.nodes[1].list().count == 3)

        let report = await s.repair()
        #expect(report.unreachable.isEmpty, "\(report.unreachable)")
        #expect(report.copied["st2"] == 5)
        #expect(report.copied["st1"] == 0)
        let l1 = try await s.nodes[0].list(), l2 = try await s.nodes[1].list()
        #expect(l1.map(\.name) == l2.map(\.name))
        #expect(l1.map(\.size) == l2.map(\.size))
        #expect(try await s.nodes[1].get(["backups/sqldb/2026-11-21T030000Z-auto"]).objects.first?.bytes == [1, 2, 3])
        // Nothing left to do.
        #expect(await s.repair().copied.values.allSatisfy { $0 == 0 })
    }

    @Test func nodeDownWithQuorumAllFailsCleanly() async throws {
        let (s, env) = try storage(quorum: nil)
        defer { cleanup(env) }
        try await Lab.with("block", "st2") {
            do throws(StowageError) {
                _ = try await s.put(objects("dd", 2))
                Issue.record("committed without st2")
            } catch {
                #expect(error.status == .quorumNotReached)
                #expect(error.message.contains("storage lab-storage: 1 of 2 nodes hold the write, quorum is all"))
                #expect(error.message.contains("st2: st2 (root@127.0.9.2): unreachable"))
                #expect(error.retryable)
            }
        }
    }

    @Test func aDeletedCopyIsRepairedFromTheOtherNode() async throws {
        let (s, env) = try storage(quorum: nil)
        defer { cleanup(env) }
        let objs = objects("ee", 3)
        _ = try await s.put(objs)
        try FileManager.default.removeItem(atPath: "\(Lab.dir)/storage/st1/\(env)/chunks/ee/c1")
        let report = await s.repair()
        #expect(report.copied["st1"] == 1)
        #expect(try await s.nodes[0].get(["chunks/ee/c1"]).objects == [objs[1]])
    }
}
}

extension LabSuites.Replication {
    @Test func repairCommandFindsEveryRepositoryAndFixesIt() async throws {
        let (s, env) = try storage(quorum: nil)
        defer { cleanup(env) }
        _ = try await s.put(objects("ff", 2))
        try FileManager.default.removeItem(atPath: "\(Lab.dir)/storage/st2/\(env)/chunks/ff/c0")
        let r = try runCommand(Repo.stowage, ["storage", "repair", "lab-storage", "--config", Lab.inventory])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("lab-storage/\(env): st1: 0 copied, st2: 1 copied"), "\(r.stdout)")
        #expect(FileManager.default.fileExists(atPath: "\(Lab.dir)/storage/st2/\(env)/chunks/ff/c0"))
        let unknown = try runCommand(Repo.stowage, ["storage", "repair", "nosuch", "--config", Lab.inventory])
        #expect(unknown.status == ExitStatus.usage.rawValue)
        #expect(unknown.stderr.contains("hint: storages: lab-storage"))
    }
}
