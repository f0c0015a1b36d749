// A backup interrupted at many points of its write: before and after locking, mid-stream
// (the coordinator cancelled, the source agent killed, a storage node's agents killed, a
// storage node's connection dropped), after the chunks, at the manifest. After each: every
// backup the storage lists reads back byte-identically (nothing partial is listed), the
// earlier backup still does, the interrupted one is not listed, and the next run succeeds
// with no manual step (locks free; the next write cleans old temporary files).
import Foundation
import Repository
import Testing
import TestSupport
import Topology
@testable import Coordinator

private func writeDump(_ path: String, mb: Int, seed: UInt64) throws {
    var x = seed | 1
    var s = ""
    s.reserveCapacity(mb << 20)
    var i = 0
    while s.utf8.count < mb << 20 {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27
        s += "\(i)\t\(x % 97)\t\(Int64(bitPattern: x) % 1_000_000)\tnote \(x % 1013) lorem ipsum\n"
        i += 1
    }
    try s.write(toFile: path, atomically: true, encoding: .utf8)
}

enum Interrupt: String, CaseIterable, Sendable {
    case cancelAfterListing, cancelAfterLocking
    case cancelMidStream, killSourceMidStream, killStorage1MidStream, killStorage2MidStream, dropStorage1MidStream
    case cancelAfterChunks, killStorage2LockAfterChunks, cancelAtManifest, blockStorage2AtManifest
}

extension LabSuites {
@Suite struct CrashPoints {
    init() async throws {
        try Lab.require()
        let inv = try Inventory.load(path: Lab.inventory)
        for n in ["st1", "st2", "pg1"] { _ = try await AgentInstaller.install(try inv.agentNode(named: n), try AgentBinary.locate()) }
    }

    @Test func aWriteInterruptedAtElevenPointsLeavesNothingPartial() async throws {
        let env = "crash-\(UUID().uuidString.prefix(8))"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("crash-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            for n in ["st1", "st2"] { try? FileManager.default.removeItem(atPath: "\(Lab.dir)/storage/\(n)/\(env)") }
        }
        let inv = try Inventory.load(path: Lab.inventory)
        let spec = try #require(inv.storage("lab-storage"))
        let agent = try AgentBinary.locate()
        let storage = try ReplicatedStorage(spec, inventory: inv, agent: agent, environment: env)
        let repo = try await RepositoryAccess.open(storage, environment: env, password: try spec.resolvePassword(), create: true, kdfCost: 1024)
        let source = try inv.agentNode(named: "pg1").target
        let meta = BackupMetadata(engine: "postgresql")
        let dump = "\(dir)/dump.sql"
        try writeDump(dump, mb: 30, seed: 77)
        let original = try Data(contentsOf: URL(fileURLWithPath: dump))
        // The stream pauses after 20 MB, so that "mid-stream" is a wide, reliable window.
        let slow = ["sh", "-c", "head -c 20000000 \(dump); sleep 1.5; tail -c +20000001 \(dump)"]

        let good = BackupName("2026-11-01T000000Z-auto")!
        _ = try await BackupWriter.write(repo, layer: "sqldb", name: good, source: source, agent: agent, command: ["cat", dump],
                                         streamName: "dump", metadata: meta)

        var committed: Set<String> = [good.description]
        for (i, point) in Interrupt.allCases.enumerated() {
            let name = BackupName("2026-11-02T\(String(format: "%02d", i))0000Z-auto")!
            let task = Task { () async throws -> BackupWriteResult in
                try await BackupWriter.write(repo, layer: "sqldb", name: name, source: source, agent: agent, command: slow,
                                             streamName: "dump", metadata: meta, phase: { p in
                    switch (point, p) {
                    case (.cancelAfterListing, "listed"), (.cancelAfterLocking, "locked"), (.cancelAfterChunks, "chunks-done"), (.cancelAtManifest, "manifest"):
                        withUnsafeCurrentTask { $0?.cancel() }
                    case (.killStorage2LockAfterChunks, "chunks-done"):
                        for p in (try? Procs.agentSessions(on: "st2")) ?? [] { kill(p, SIGKILL) }
                        try? await Task.sleep(for: .milliseconds(300))
                    case (.blockStorage2AtManifest, "manifest"):
                        try? Lab.fault("block", "st2")
                    case (.cancelMidStream, "locked"), (.killSourceMidStream, "locked"), (.killStorage1MidStream, "locked"),
                         (.killStorage2MidStream, "locked"), (.dropStorage1MidStream, "locked"):
                        // Act during the pause in the source's output.
                        let task = withUnsafeCurrentTask { $0 }
                        Task.detached {
                            try? await Task.sleep(for: .milliseconds(900))
                            switch point {
                            case .cancelMidStream: task?.cancel()
                            case .killSourceMidStream: for p in (try? Procs.agentSessions(on: "pg1")) ?? [] { kill(p, SIGKILL) }
                            case .killStorage1MidStream: for p in (try? Procs.agentSessions(on: "st1")) ?? [] { kill(p, SIGKILL) }
                            case .killStorage2MidStream: for p in (try? Procs.agentSessions(on: "st2")) ?? [] { kill(p, SIGKILL) }
                            case .dropStorage1MidStream:
                                for p in (try? Procs.sshdSessions("st1")) ?? [] { kill(p, SIGKILL) }
                            default: break
                            }
                        }
                    default: break
                    }
                })
            }
            let outcome = await task.result
            if point == .blockStorage2AtManifest { try Lab.heal("block", "st2") }
            switch outcome {
            case .success(let w):
                Issue.record("\(point): a write interrupted at this point committed (\(w.replicas))")
                committed.insert(name.description)
            case .failure(let e):
                #expect(e is StowageError, "\(point): \(e)")
            }

            // 1. What the storage lists reads back whole; the interrupted backup is not listed
            //    as committed anywhere a reader would take it from.
            let listed = try await BackupCatalog.list(spec, inventory: inv, agent: agent, environment: env, layer: "sqldb")
            for entry in listed {
                let (m, _) = try await BackupReader.manifest(repo, layer: "sqldb", name: BackupName(entry.name)!)
                var out = Data()
                _ = try await BackupReader.read(repo, m) { out.append(contentsOf: $0) }
                #expect(out == original, "\(point): listed backup \(entry.name) does not read back whole")
            }
            #expect(!listed.contains { $0.name == name.description }, "\(point): the interrupted backup is listed")
            // 2. The earlier backup is intact on both nodes.
            #expect(listed.contains { $0.name == good.description && $0.replicas == ["st1", "st2"] }, "\(point)")
        }

        // 3. The next run succeeds at once: no lock left behind, nothing to clean by hand.
        for n in ["st1", "st2"] {
            for f in (try? FileManager.default.contentsOfDirectory(atPath: "\(Lab.dir)/storage/\(n)/\(env)/tmp")) ?? [] {
                try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)],
                                                      ofItemAtPath: "\(Lab.dir)/storage/\(n)/\(env)/tmp/\(f)")
            }
        }
        let next = try await BackupWriter.write(repo, layer: "sqldb", name: BackupName("2026-11-03T000000Z-auto")!, source: source,
                                                agent: agent, command: ["cat", dump], streamName: "dump", metadata: meta)
        #expect(next.replicas.complete.sorted() == ["st1", "st2"])
        for n in ["st1", "st2"] {
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(Lab.dir)/storage/\(n)/\(env)/tmp")) ?? []).isEmpty,
                    "\(n): leftovers of the interrupted writes were not cleaned")
        }
        // And storage verify finds everything listed intact on every node.
        let reports = try await StorageVerify.run(spec, inventory: inv, agent: agent, environments: [env], readDataPercent: 100)
        #expect(reports.allSatisfy { $0.missing.isEmpty && $0.damaged.isEmpty && $0.wrongSize.isEmpty }, "\(reports)")
    }
}
}
