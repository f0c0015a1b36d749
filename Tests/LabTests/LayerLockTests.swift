// The per-layer lock across coordinators: held by the storage agent's flock for as long as
// the holder's session lives, released by the kernel when that session dies.
import Foundation
import Support
import TestSupport
import Testing

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Scheduling
@testable import Storage

private func st2Client(_ repo: String) throws -> SSHStorageNode {
    var t = SSHTarget(
        node: "st2", host: "127.0.9.2", port: Lab.sshPort, user: "root",
        identity: "\(Lab.dir)/ssh/id_ed25519", knownHosts: "\(Lab.dir)/ssh/known_hosts")
    t.connectTimeout = 3
    return SSHStorageNode(target: t, agent: try AgentBinary.locate(), repository: repo)
}

extension LabSuites {
    @Suite struct LayerLocks {
        let repo = "\(Lab.dir)/storage/st2/locktest-\(UUID().uuidString)"

        init() async throws {
            try Lab.require()
            let inv = try Inventory.load(path: Lab.inventory)
            _ = try await AgentInstaller.install(try inv.agentNode(named: "st2"), try AgentBinary.locate())
        }

        @Test func secondHolderIsRefusedNamingTheFirstUntilReleased() async throws {
            defer { try? FileManager.default.removeItem(atPath: repo) }
            let c = try st2Client(repo)
            let first = try await LayerLock.acquire(c, layer: "sqldb", operation: "backup shop/sqldb")
            do throws(StowageError) {
                let second = try await LayerLock.acquire(c, layer: "sqldb", operation: "restore shop/sqldb")
                await second.release()
                Issue.record("two holders of one layer's lock")
            } catch {
                #expect(error.status == .locked)
                #expect(error.message.contains("st2: layer sqldb is busy: locked by"))
                #expect(error.message.contains("pid \(getpid()) (backup shop/sqldb"))
                #expect(error.retryable)
            }
            // Another layer is independent.
            let other = try await LayerLock.acquire(c, layer: "cache", operation: "backup shop/cache")
            await other.release()
            await first.release()
            let again = try await LayerLock.acquire(c, layer: "sqldb", operation: "restore shop/sqldb")
            await again.release()
        }

        @Test func aBusyLayerNamesOnlyItsOwnHolder() async throws {
            defer { try? FileManager.default.removeItem(atPath: repo) }
            let c = try st2Client(repo)
            let sqldb = try await LayerLock.acquire(c, layer: "sqldb", operation: "backup shop/sqldb")
            let cache = try await LayerLock.acquire(c, layer: "cache", operation: "backup shop/cache")
            do throws(StowageError) {
                let second = try await LayerLock.acquire(c, layer: "sqldb", operation: "restore shop/sqldb")
                await second.release()
                Issue.record("two holders of one layer's lock")
            } catch {
                #expect(error.status == .locked)
                #expect(error.message.contains("(backup shop/sqldb"), "\(error.message)")
                #expect(!error.message.contains("shop/cache"), "\(error.message)")
            }
            await cache.release()
            await sqldb.release()
        }

        @Test func aKilledHolderReleasesTheLockAtOnce() async throws {
            defer { try? FileManager.default.removeItem(atPath: repo) }
            let c = try st2Client(repo)
            let first = try await LayerLock.acquire(c, layer: "sqldb", operation: "backup shop/sqldb")
            let holders = Procs.agentSessions()
            #expect(holders.count == 1)
            for p in holders { kill(p, SIGKILL) }
            // No timeout, no manual unlock: the next run gets the lock straight away.
            let start = Date()
            var acquired: LayerLock?
            while acquired == nil && Date().timeIntervalSince(start) < 3 {
                acquired = try? await LayerLock.acquire(c, layer: "sqldb", operation: "backup shop/sqldb")
            }
            #expect(acquired != nil)
            #expect(Date().timeIntervalSince(start) < 3)
            await acquired?.release()
            await first.release()
        }

        @Test func aHolderWhoseConnectionDiesReleasesTheLock() async throws {
            // As when the coordinator holding it crashes: its SSH session ends, the agent sees
            // its stdin close and exits, and the kernel drops the flock.
            defer { try? FileManager.default.removeItem(atPath: repo) }
            let c = try st2Client(repo)
            let first = try await LayerLock.acquire(c, layer: "sqldb", operation: "backup shop/sqldb")
            let sessions = try Procs.sshdSessions("st2")
            #expect(!sessions.isEmpty)
            for p in sessions { kill(p, SIGKILL) }
            let start = Date()
            var acquired: LayerLock?
            while acquired == nil && Date().timeIntervalSince(start) < 5 {
                acquired = try? await LayerLock.acquire(c, layer: "sqldb", operation: "backup shop/sqldb")
                if acquired == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(acquired != nil, "the lock outlived its holder's connection")
            await acquired?.release()
            await first.release()
        }
    }
}
