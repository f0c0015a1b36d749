// The lab's two storage nodes as replicas: parallel writes, the write quorum, a node down
// during a write. (Repair, on real repositories: StorageRepairTests.)
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

private func storage(quorum: Int?) throws -> (ReplicatedStorage, String) {
    let inv = try Inventory.load(path: Lab.inventory)
    let env = "repltest-\(UUID().uuidString.prefix(8))"
    var s = try ReplicatedStorage(inv.storage("lab-storage")!, inventory: inv, agent: try AgentBinary.locate(), environment: env)
    s.quorum = quorum
    return (s, env)
}

/// The lab's two storage nodes and a bucket on sw1 as a third replica.
private func withBucket(quorum: Int?) async throws -> (ReplicatedStorage, String) {
    var (s, env) = try storage(quorum: quorum)
    let b = try await labBucket("sw1", "http://127.0.9.21:8333", prefix: env.lowercased())
    s.nodes.append(S3Bucket(name: "sw1", location: b.location, credentials: try labS3Credentials(), environment: env, timeout: 5))
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

        @Test func nodeDownWithQuorumOneCommitsDegraded() async throws {
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
            // (storage repair completing st2 with real backups: StorageRepairTests.)
        }

        @Test func aBucketAmongTheReplicasGetsTheSameCopy() async throws {
            let (s, env) = try await withBucket(quorum: nil)
            defer { cleanup(env) }
            let objs = objects("ee", 5)
            let w = try await s.put(objs)
            #expect(w.outcome.committed && w.outcome.complete.sorted() == ["st1", "st2", "sw1"], "\(w.outcome)")
            let ssh = try await s.nodes[0].list(), bucket = try await s.nodes[2].list()
            #expect(bucket == ssh, "\(bucket) \(ssh)")
            let again = try await s.put(objs)
            #expect(again.stored.values.allSatisfy { $0.stored == 0 && $0.existed == 5 }, "\(again.stored)")
        }

        @Test func aBucketDownCommitsOnTheQuorumOrFailsCleanlyWithoutIt() async throws {
            let (two, env) = try await withBucket(quorum: 2)
            defer { cleanup(env) }
            let degraded = try await Lab.with("block", "sw1") { try await two.put(objects("ff", 3)) }
            #expect(degraded.outcome.committed && degraded.outcome.complete.sorted() == ["st1", "st2"], "\(degraded.outcome)")
            #expect(degraded.outcome.missing["sw1"]?.contains("sw1 (bucket stowage-lab") == true, "\(degraded.outcome.missing)")
            var all = two
            all.quorum = nil
            try await Lab.with("block", "sw1") {
                do throws(StowageError) {
                    _ = try await all.put(objects("gg", 2))
                    Issue.record("committed without sw1")
                } catch {
                    #expect(error.status == .quorumNotReached && error.message.contains("2 of 3 nodes hold the write"), "\(error.message)")
                    #expect(error.message.contains("sw1"), "\(error.message)")
                }
            }
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
                    #expect(error.message.contains("st2: st2 (root@\(Lab.sshHost("127.0.9.2"))): unreachable"))
                    #expect(error.retryable)
                }
            }
        }
    }
}
