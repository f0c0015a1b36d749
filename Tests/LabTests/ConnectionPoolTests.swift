// Parked SSH connections on the lab's real sshd: jobs to one node share a connection, and a
// parked connection that went bad (its session killed, the node's address blocked, its host
// key no longer trusted) is never what a job fails on.
import AgentProtocol
import Foundation
import Support
import TestSupport
import Testing

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Scheduling
@testable import Storage

private func st(_ name: String) throws -> SSHTarget {
    var t = try Inventory.load(path: Lab.inventory).agentNode(named: name).target
    t.connectTimeout = 6
    return t
}

extension LabSuites {
    @Suite(.serialized) struct ConnectionPool {
        init() async throws {
            try Lab.require()
            let inv = try Inventory.load(path: Lab.inventory)
            for n in ["st1", "st2"] { _ = try await AgentInstaller.install(try inv.agentNode(named: n), try AgentBinary.locate()) }
        }

        @Test func jobsToOneNodeShareAConnection() async throws {
            SSHConnectionPool.shared.closeAll()
            let t = try st("st1"), a = try AgentBinary.locate()
            let before = SSHConnectionPool.shared.reuses
            _ = try await AgentClient.run(t, agent: a, job: .check(CheckJob()))
            let sessions = try Procs.sshdSessions("st1")
            for _ in 0..<5 { _ = try await AgentClient.run(t, agent: a, job: .check(CheckJob())) }
            #expect(SSHConnectionPool.shared.reuses - before == 5)
            #expect(try Procs.sshdSessions("st1") == sessions, "a job opened a connection of its own")
            // Jobs at once each get a connection; those parked afterwards stay within the limit.
            try await withThrowingTaskGroup(of: Void.self) { g in
                for _ in 0..<8 { g.addTask { _ = try await AgentClient.run(t, agent: a, job: .check(CheckJob())) } }
                try await g.waitForAll()
            }
            #expect(SSHConnectionPool.shared.parkedCount <= SSHConnectionPool.maxIdlePerTarget)
            SSHConnectionPool.shared.closeAll()
            // Closed: the node's sshd drops the sessions.
            var left = try Procs.sshdSessions("st1")
            for _ in 0..<50 where !left.isEmpty { try await Task.sleep(for: .milliseconds(100)); left = try Procs.sshdSessions("st1") }
            #expect(left.isEmpty, "sessions left on st1: \(left)")
        }

        @Test func aKilledSessionIsNotReused() async throws {
            SSHConnectionPool.shared.closeAll()
            let t = try st("st1"), a = try AgentBinary.locate()
            _ = try await AgentClient.run(t, agent: a, job: .check(CheckJob()))
            #expect(SSHConnectionPool.shared.parkedCount == 1)
            let killed = try Procs.sshdSessions("st1")
            for p in killed { kill(p, SIGKILL) }
            // Until the killed sessions are gone from the node.
            for _ in 0..<250 where !Set(try Procs.sshdSessions("st1")).isDisjoint(with: killed) { try await Task.sleep(for: .milliseconds(20)) }
            let before = SSHConnectionPool.shared.reuses
            let run = try await AgentClient.run(t, agent: a, job: .check(CheckJob()))
            #expect(run.result.event == .result)
            #expect(SSHConnectionPool.shared.reuses == before, "a dead connection was reused")
        }

        @Test func aBlockedNodeIsReportedUnreachableNotStuckOnItsParkedConnection() async throws {
            SSHConnectionPool.shared.closeAll()
            let t = try st("st2"), a = try AgentBinary.locate()
            _ = try await AgentClient.run(t, agent: a, job: .check(CheckJob()))
            #expect(SSHConnectionPool.shared.parkedCount == 1)
            try await Lab.with("block", "st2") {
                let start = Date()
                do throws(StowageError) {
                    _ = try await AgentClient.run(t, agent: a, job: .check(CheckJob()))
                    Issue.record("ran on a blocked node")
                } catch {
                    #expect(error.status == .nodeUnreachable, "\(error.message)")
                    #expect(error.message.hasPrefix("st2 (root@\(Lab.sshHost("127.0.9.2"))): unreachable"), "\(error.message)")
                }
                // The parked connection gets a third of the connect timeout, the new one fails at once.
                let took = Date().timeIntervalSince(start)
                #expect(took >= t.connectTimeout / 3 - 0.1 && took < t.connectTimeout / 3 + 1.5, "took \(took) s")
            }
            _ = try await AgentClient.run(t, agent: a, job: .check(CheckJob()))
        }
    }
}
