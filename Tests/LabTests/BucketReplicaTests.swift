// Object storage as replicas, end to end on the lab: a storage of one SSH node and two
// SeaweedFS buckets with a write quorum of 2. Every engine (PostgreSQL, MariaDB, Redis, Redis
// Cluster) backs up through it; one bucket's store goes down in the middle of a backup (the
// quorum commits on the other two and names it); an object corrupted on the other bucket is
// found by verify and read around by a restore; repair brings every replica back to full;
// and a second coordinator that knows nothing but the buckets' addresses, their credentials
// and the storage password lists every backup and restores every engine from them.
import Foundation
import Repository
import Support
import TestSupport
import Testing
import Topology

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Storage

extension LabSuites {
    @Suite(.serialized) struct BucketReplicas {
        init() throws { try Lab.require() }

        /// The lab's inventory (its database layers as they are) with lab-storage made of
        /// `nodes` (YAML flow entries) instead of st1 and st2, and `quorum`.
        static func inventory(_ path: String, nodes: [String], quorum: Int?) throws -> Inventory {
            var out: [String] = []
            for line in try String(contentsOfFile: Lab.inventory, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false) {
                if line.contains("{ name: st1,") {
                    out += nodes.map { "      - \($0)" }
                    if let quorum { out.append("    quorum: \(quorum)") }
                } else if !line.contains("{ name: st2,") {
                    out.append(String(line))
                }
            }
            try out.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
            return try Inventory.load(path: path)
        }

        /// Storage repair, tried again while a lease left by a store that was down holds
        /// (named), for at most 30 s.
        static func repairOnceUnlocked(_ spec: StorageSpec, _ inv: Inventory, _ agent: AgentBinary) async throws -> [RepairOutcome] {
            let deadline = Date().addingTimeInterval(30)
            while true {
                do {
                    return try await StorageRepair.run(spec, inventory: inv, agent: agent, environments: ["shop"])
                } catch {
                    guard error.status == .locked, Date() < deadline else { throw error }
                    #expect(error.message.contains("sw2"), "\(error)")
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
        }

        @Test func oneNodeAndTwoBucketsCarryEveryEngineThroughAStoreDownACorruptionAndARepair() async throws {
            let dir = "\(Lab.dir)/work/buckets-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let prefix = "replicas-\(UUID().uuidString.prefix(8).lowercased())"
            func bucket(_ name: String, _ endpoint: String) -> String {
                "{ name: \(name), s3: { endpoint: \"\(endpoint)\", bucket: stowage-lab, prefix: \(prefix), access_key_file: \(Lab.dir)/secrets/s3-keys, lease_seconds: 6 } }"
            }
            // sw2 is reached through a proxy: one that dies after the first chunk of the first
            // backup (the store gone mid-run), then one that passes everything.
            let port = API.freePort(20000...24999)
            let first = try Self.inventory(
                "\(dir)/first.yaml",
                nodes: [
                    "{ name: st1, ssh: root@127.0.9.1:\(Lab.sshPort), root: \(dir)/st1 }",
                    bucket("sw1", "http://127.0.9.21:8333"), bucket("sw2", "http://127.0.0.1:\(port)"),
                ], quorum: 2)
            // The second coordinator: the two buckets at their own addresses, the key file
            // and the storage password; no SSH storage node, nothing of the first's state.
            let second = try Self.inventory(
                "\(dir)/second.yaml", nodes: [bucket("sw1", "http://127.0.9.21:8333"), bucket("sw2", "http://127.0.9.22:8334")], quorum: nil)
            let spec = try #require(first.storage("lab-storage"))
            let bucketsOnly = try #require(second.storage("lab-storage"))
            let agent = try AgentBinary.locate()
            for n in ["st1", "pg1", "pg2", "my1", "my2", "rd1", "rd2", "rc1", "rc2", "rc3"] {
                _ = try await AgentInstaller.install(try first.agentNode(named: n), agent)
            }
            _ = try await labBucket("sw1", "http://127.0.9.21:8333", prefix: prefix)
            _ = try await labBucket("sw2", "http://127.0.9.22:8334", prefix: prefix)
            let sw1 = S3Bucket(
                name: "sw1", location: S3Location(endpoint: "http://127.0.9.21:8333", bucket: "stowage-lab", prefix: prefix),
                credentials: try labS3Credentials(), environment: "shop")
            let proxies = Proxies()
            defer { proxies.stop() }

            let cases: [RoundTripCase] = [.postgresql, .mariadb, .redisCluster, .redis]
            defer { for c in cases { try? c.clean() } }
            var before: [RoundTripCase: Snapshot] = [:]
            var names: [RoundTripCase: String] = [:]
            var corruptible = ""
            for c in cases {
                try c.seed()
                before[c] = try c.fingerprint(c.primary)
                let layer = try LayerSelection(parsing: c.layer).layers(in: first)[0]
                if c == .postgresql {
                    let dying = try await startS3Proxy(port: port, upstream: "127.0.9.22:8334", ["--die-after-chunk"])
                    proxies.add(dying)
                    let b = try await BackupRun.run(inventory: first, layer: layer, storage: spec, agent: agent)
                    // Committed on st1 and sw1 (quorum 2); sw2 named as a missing replica.
                    #expect(b.replicas.complete.sorted() == ["st1", "sw1"], "\(b.replicas)")
                    #expect(b.replicas.missing["sw2"]?.contains("sw2") == true, "\(b.replicas)")
                    #expect(dying.wait(timeout: 5) == 0, "the proxy did not see a chunk: \(dying.output)")
                    names[c] = b.manifest.name.description
                    proxies.add(try await startS3Proxy(port: port, upstream: "127.0.9.22:8334", []))
                } else {
                    let b = try await BackupRun.run(inventory: first, layer: layer, storage: spec, agent: agent)
                    #expect(b.replicas.complete.sorted() == ["st1", "sw1", "sw2"], "\(c): \(b.replicas)")
                    names[c] = b.manifest.name.description
                    // Redis: the first chunk of its stream is read first, from sw1 (the first
                    // node of a bucket-only storage): the one corrupted below.
                    if c == .redis { corruptible = RepositoryLayout.chunk(b.manifest.streams[0].chunks[0].id) }
                }
            }

            // One object corrupted on sw1 (a byte flipped, the size kept).
            var bytes = try #require(try await sw1.get([corruptible]).objects.first?.bytes)
            bytes[bytes.count / 2] ^= 0x5a
            #expect(try await sw1.send("PUT", sw1.key(corruptible), body: Data(bytes)).status == 200)

            // Verify reading every chunk: the damaged copy on sw1, the backup sw2 lacks.
            let damaged = try await StorageVerify.run(spec, inventory: first, agent: agent, environments: ["shop"], readDataPercent: 100)
            let bySwitch = Dictionary(uniqueKeysWithValues: damaged.map { ($0.node, $0) })
            #expect(bySwitch["sw1"]?.damaged == [corruptible], "\(damaged)")
            #expect(bySwitch["sw2"]?.ok == false && bySwitch["st1"]?.ok == true, "\(damaged)")

            // Before any repair, from the buckets alone: the Redis backup restores, reading
            // around the damaged copy (from sw2), and says which copy it passed over.
            try RoundTripCase.redis.damage()
            let redisLayer = try LayerSelection(parsing: RoundTripCase.redis.layer).layers(in: second)[0]
            let around = try await RestoreRun.execute(
                try await RestoreRun.prepare(
                    inventory: second, layer: redisLayer, storage: bucketsOnly, agent: agent, fromEnvironment: "shop", fromLayer: "cache",
                    backup: try #require(names[.redis]), node: nil, allNodes: false),
                inventory: second, storage: bucketsOnly, agent: agent)
            #expect(around.badCopies.contains { $0.node == "sw1" && $0.object == corruptible }, "\(around.badCopies)")
            #expect(try RoundTripCase.redis.fingerprint(["rd1"]).same(as: before[.redis]!))

            // Repair: the lease sw2 kept from the backup it lost expires (6 s) and is taken
            // over; then sw1's copy is replaced from a good one and sw2 gets what it lacks.
            let repaired = try #require(try await Self.repairOnceUnlocked(spec, first, agent).first)
            #expect(repaired.ok && repaired.replaced["sw1"]?.contains { $0.hasPrefix("\(corruptible) (damaged") } == true, "\(repaired)")
            #expect(repaired.copied["sw2"]?.contains { $0.hasPrefix("backups/sqldb/") } == true, "\(repaired)")
            let whole = try await StorageVerify.run(spec, inventory: first, agent: agent, environments: ["shop"], readDataPercent: 100)
            #expect(whole.count == 3 && whole.allSatisfy(\.ok), "\(whole)")

            // The second coordinator lists every backup on both buckets and restores each engine.
            let listed = try await BackupCatalog.list(bucketsOnly, inventory: second, agent: agent, environment: "shop", layer: nil)
            for c in cases {
                let entry = listed.first { $0.name == names[c] && "shop/\($0.layer)" == c.layer }
                #expect(entry?.replicas == ["sw1", "sw2"] && entry?.health == "ok", "\(c): \(listed)")
            }
            for c in cases {
                try c.damage()
                #expect(!(try c.fingerprint(c.primary)).same(as: before[c]!))
                let layer = try LayerSelection(parsing: c.layer).layers(in: second)[0]
                let restored = try await RestoreRun.execute(
                    try await RestoreRun.prepare(
                        inventory: second, layer: layer, storage: bucketsOnly, agent: agent, fromEnvironment: "shop", fromLayer: layer.name,
                        backup: try #require(names[c]), node: nil, allNodes: false),
                    inventory: second, storage: bucketsOnly, agent: agent)
                #expect(restored.checkPassed && restored.badCopies.isEmpty, "\(c): \(restored.checks) \(restored.badCopies)")
                let after = try c.fingerprint(c.primary)
                #expect(after.same(as: before[c]!), "\(c) after restore from the buckets: \(before[c]!.firstDifference(after))")
            }
        }
    }
}

/// The proxies a test started, stopped at its end.
private final class Proxies: @unchecked Sendable {
    private var all: [BackgroundProcess] = []
    func add(_ p: BackgroundProcess) { all.append(p) }
    func stop() { for p in all { p.signal(SIGKILL) } }
}
