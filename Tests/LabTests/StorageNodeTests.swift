// Storage-node operations through the agent on the lab's storage nodes: atomic puts,
// byte-identical reads, committed manifests never overwritten, bad names refused, a full
// disk, a read-only disk, and a writer killed mid-object.
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

private func storageTarget(_ name: String, _ host: String) -> SSHTarget {
    var t = SSHTarget(
        node: name, host: host, port: Lab.sshPort, user: "root",
        identity: "\(Lab.dir)/ssh/id_ed25519", knownHosts: "\(Lab.dir)/ssh/known_hosts")
    t.connectTimeout = 3
    return t
}

private func bytes(_ n: Int, _ seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) ^ seed } }

/// A fresh repository folder on st1 for one test.
private func client(_ folder: String? = nil) throws -> SSHStorageNode {
    SSHStorageNode(
        target: storageTarget("st1", "127.0.9.1"), agent: try AgentBinary.locate(),
        repository: folder ?? "\(Lab.dir)/storage/st1/test-\(UUID().uuidString)")
}

private func mountTmpfs(_ path: String, size: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    let r = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path])
    guard r.status == 0 else { throw SpawnError(description: "mount: \(r.stderr)") }
}

private func files(under path: String) -> [String] {
    (FileManager.default.enumerator(atPath: path)?.allObjects as? [String] ?? []).filter { p in
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: "\(path)/\(p)", isDirectory: &dir) && !dir.boolValue
    }.sorted()
}

extension LabSuites {
    @Suite struct StorageNode {
        init() async throws {
            try Lab.require()
            let inv = try Inventory.load(path: Lab.inventory)
            _ = try await AgentInstaller.install(try inv.agentNode(named: "st1"), try AgentBinary.locate())
        }

        @Test func putListGetRoundTrip() async throws {
            let c = try client()
            defer { try? FileManager.default.removeItem(atPath: c.repository) }
            var objects = (0..<20).map { i in StoredObject(name: "chunks/\(String(format: "%02x", i))/chunk\(i)", bytes: bytes(i * 150_000 + 1, UInt8(i))) }
            objects.append(StoredObject(name: "backups/sqldb/2026-11-21T030000Z-auto", bytes: Array("manifest".utf8)))
            let put = try await c.put(objects)
            #expect(put.stored == 21)
            #expect(put.existed == 0)
            #expect(put.bytes == Int64(objects.map(\.bytes.count).reduce(0, +)))

            let listed = try await c.list()
            #expect(listed.map(\.name) == objects.map(\.name).sorted())
            #expect(listed.map(\.size) == objects.sorted { $0.name < $1.name }.map { Int64($0.bytes.count) })
            #expect(try await c.list(prefix: "backups").map(\.name) == ["backups/sqldb/2026-11-21T030000Z-auto"])

            let got = try await c.get(objects.map(\.name) + ["chunks/ff/none"])
            #expect(got.objects == objects)
            #expect(got.missing == ["chunks/ff/none"])
            // Nothing is left in tmp/ after a clean put.
            #expect(files(under: "\(c.repository)/tmp").isEmpty)
        }

        @Test func presentChunksAreSkippedAndCommittedManifestsNeverOverwritten() async throws {
            let c = try client()
            defer { try? FileManager.default.removeItem(atPath: c.repository) }
            let chunk = StoredObject(name: "chunks/aa/aa01", bytes: bytes(1000, 1))
            let manifest = StoredObject(name: "backups/db/2026-11-21T030000Z-manual", bytes: Array("v1".utf8))
            _ = try await c.put([chunk, manifest])
            let again = try await c.put([chunk])
            #expect(again.stored == 0)
            #expect(again.existed == 1)
            do throws(StowageError) {
                _ = try await c.put([StoredObject(name: manifest.name, bytes: Array("v2".utf8))])
                Issue.record("overwrote a committed manifest")
            } catch {
                #expect(error.status == .remoteFailed)
                #expect(error.message.contains("st1 (\(Lab.sshHost("127.0.9.1"))): put job failed"))
                #expect(error.message.contains("a committed backup is never overwritten"))
            }
            #expect(try await c.get([manifest.name]).objects.first?.bytes == Array("v1".utf8))
            #expect(try await c.delete([chunk.name, "chunks/aa/none"]) == 1)
            #expect(try await c.list(prefix: "chunks").isEmpty)
        }

        @Test func badNamesAndRootsAreRefusedByTheAgent() async throws {
            let c = try client()
            defer { try? FileManager.default.removeItem(atPath: c.repository) }
            // Bypass the client's own check: the agent must refuse on its own.
            for name in ["../escape", "/abs", "chunks//x", "chunks/./x", "sp ace"] {
                let record = ObjectRecord.encode(name: name, bytes: [1])
                var sent = false
                do throws(StowageError) {
                    _ = try await AgentClient.run(
                        c.target, agent: c.agent, job: .put(PutJob(root: c.repository)),
                        input: {
                            if sent { return nil }; sent = true; return record
                        })
                    Issue.record("stored \(name)")
                } catch {
                    #expect(error.message.contains("refused object name"), "\(name): \(error.message)")
                }
            }
            do throws(StowageError) {
                _ = try await AgentClient.run(c.target, agent: c.agent, job: .list(ListJob(root: "relative/root")))
                Issue.record("accepted a relative root")
            } catch {
                #expect(error.message.contains("absolute root"))
            }
            #expect(!FileManager.default.fileExists(atPath: "\(Lab.dir)/storage/st1/escape"))
        }

        @Test func fullDiskFailsCleanlyAndKeepsWhatWasStored() async throws {
            let mount = "\(Lab.dir)/storage/st1/full-\(UUID().uuidString)"
            try mountTmpfs(mount, size: "2m")
            defer { _ = try? runCommand("/bin/umount", [mount]); try? FileManager.default.removeItem(atPath: mount) }
            let c = try client("\(mount)/shop")
            let small = StoredObject(name: "chunks/01/small", bytes: bytes(100_000, 3))
            _ = try await c.put([small])
            do throws(StowageError) {
                _ = try await c.put([StoredObject(name: "chunks/02/big", bytes: bytes(3 << 20, 4))])
                Issue.record("wrote 3 MiB into 2 MiB")
            } catch {
                #expect(error.status == .remoteFailed)
                #expect(error.message.contains("st1 (\(Lab.sshHost("127.0.9.1")))"))
                #expect(error.message.contains("ENOSPC"), "\(error.message)")
                #expect(error.message.contains("chunks/02/big"))
            }
            #expect(files(under: "\(mount)/shop") == ["chunks/01/small"], "a partial object or a tmp file was left")
            #expect(try await c.get([small.name]).objects == [small])
        }

        @Test func readOnlyDiskIsReportedAndStillReadable() async throws {
            let mount = "\(Lab.dir)/storage/st1/ro-\(UUID().uuidString)"
            try mountTmpfs(mount, size: "4m")
            defer { _ = try? runCommand("/bin/umount", [mount]); try? FileManager.default.removeItem(atPath: mount) }
            let c = try client("\(mount)/shop")
            let obj = StoredObject(name: "chunks/01/one", bytes: bytes(1000, 5))
            _ = try await c.put([obj])
            #expect(try runCommand("/bin/mount", ["-o", "remount,ro", mount]).status == 0)
            do throws(StowageError) {
                _ = try await c.put([StoredObject(name: "chunks/02/two", bytes: [1, 2, 3])])
                Issue.record("wrote to a read-only disk")
            } catch {
                #expect(error.message.contains("EROFS"), "\(error.message)")
            }
            #expect(try await c.get([obj.name]).objects == [obj])
        }

        @Test func writerKilledMidObjectLeavesNothingUnderItsName() async throws {
            let c = try client()
            defer { try? FileManager.default.removeItem(atPath: c.repository) }
            // An object of 100 MiB (records carry at most ObjectRecord.maxSize) whose bytes arrive
            // slowly enough to kill the writer mid-way.
            let header = ObjectRecord.header(name: "chunks/0b/huge", size: 100 << 20)
            let block = bytes(1 << 20, 9)
            let fed = ByteTally()
            let task = Task {
                try await AgentClient.run(
                    c.target, agent: c.agent, job: .put(PutJob(root: c.repository)),
                    input: {
                        if fed.total == 0 { fed.add(1); return header }
                        usleep(2000)
                        fed.add(block.count)
                        return block
                    })
            }
            let deadline = Date().addingTimeInterval(10)
            while fed.total < 16 << 20 && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            let agents = Procs.agentSessions()
            #expect(agents.count == 1)
            for p in agents { kill(p, SIGKILL) }
            _ = try? await task.value
            #expect(!FileManager.default.fileExists(atPath: "\(c.repository)/chunks/0b/huge"))
            let leftovers = files(under: "\(c.repository)/tmp")
            #expect(leftovers.count == 1, "the killed writer's temporary file")
            // The next writer removes leftovers older than an hour.
            let old = Date().addingTimeInterval(-7200)
            for f in leftovers { try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: "\(c.repository)/tmp/\(f)") }
            _ = try await c.put([StoredObject(name: "chunks/0c/next", bytes: [1])])
            #expect(files(under: "\(c.repository)/tmp").isEmpty)
            #expect(try await c.list().map(\.name) == ["chunks/0c/next"])
        }
    }
}
