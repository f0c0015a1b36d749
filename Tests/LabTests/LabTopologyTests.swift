// `stowage topology` against the lab's real servers (fixtures/lab/lab.sh): the healthy lab
// and each injected fault. The suite is serialized because faults change shared servers;
// every test heals what it broke. When the lab is down these tests fail, never skip.
import Foundation
import Support
import TestSupport
import Testing
import Topology

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Scheduling
@testable import Storage

private func labInventory(_ transform: (String) -> String = { $0 }) throws -> Inventory {
    let text = try String(contentsOfFile: Lab.inventory, encoding: .utf8)
    return try Inventory.parse(transform(text), file: Lab.inventory)
}

private func check(_ selection: String?, _ inv: Inventory) async throws -> [LayerTopology] {
    try await TopologyCheck.run(try LayerSelection(parsing: selection).layers(in: inv), settings: inv.probe)
}

private func checkOne(_ selection: String, _ inv: Inventory? = nil) async throws -> LayerTopology {
    let inv = try inv ?? labInventory()
    let r = try await check(selection, inv)
    return try #require(r.first)
}

/// Writes `text` to a fresh temporary file of mode 600 and returns its path.
private func tempFile(_ text: String, suffix: String = "") throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("stowage-test-\(UUID().uuidString)\(suffix)").path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    return path
}

/// Every suite that touches the lab nests in here: `.serialized` on the parent keeps them
/// from running at the same time as each other, not just within themselves.
@Suite(.serialized) enum LabSuites {}

extension LabSuites {
    @Suite struct LabTopology {
        init() throws { try Lab.require() }

        @Test func healthyLabEveryLayer() async throws {
            let all = try await check(nil, try labInventory())
            let byID = Dictionary(uniqueKeysWithValues: all.map { ("\($0.environment)/\($0.layer)", $0) })
            let expected: [(String, LayerKind, String?, Severity)] = [
                ("shop/sqldb", .primarySecondary, "pg1", .ok),
                ("shop/mariadb", .primarySecondary, "my1", .ok),
                ("shop/cache", .primarySecondary, "rd1", .ok),
                ("shop/sessions", .redisCluster, nil, .ok),
                ("staging/sqldb", .nonClustered, "pg3", .warning),
                ("staging/mariadb", .singleNode, "my3", .ok),
                ("staging/cache", .singleNode, "rd3", .ok),
            ]
            for (id, kind, primary, status) in expected {
                let t = try #require(byID[id], "\(id) missing")
                #expect(t.kind == kind, "\(id)")
                #expect(t.primary == primary, "\(id)")
                #expect(t.status == status, "\(id): \(t.findings)")
            }
            #expect(byID["shop/sqldb"]?.node("pg2")?.state == "streaming")
            #expect(byID["shop/mariadb"]?.node("my2")?.state == "replicating")
            #expect(byID["shop/cache"]?.node("rd2")?.state == "link up")
            #expect(byID["staging/sqldb"]?.findings(.nonClustered).count == 1)
            #expect(TopologyCheck.exitStatus(all) == .warnings)
        }

        @Test func redisClusterMastersAndSlots() async throws {
            let t = try await checkOne("shop/sessions")
            let shards = try #require(t.shards)
            #expect(shards.map(\.master) == ["rc1", "rc2", "rc3"])
            #expect(shards.map(\.slots) == ["0-5460", "5461-10922", "10923-16383"])
            #expect(t.nodes.allSatisfy { $0.role == .clusterMaster && $0.state == "serving slots" })
        }

        @Test func masterNodeIsTheReplicaForEveryEngine() async throws {
            // The same servers, with each layer's node order swapped in the inventory.
            let swapped = try labInventory { text in
                var t = text
                for (a, b) in [("pg1", "pg2"), ("my1", "my2"), ("rd1", "rd2")] {
                    let la = t.split(separator: "\n").first { $0.contains("name: \(a),") }!
                    let lb = t.split(separator: "\n").first { $0.contains("name: \(b),") }!
                    t = t.replacingOccurrences(of: la, with: "@@SWAP@@").replacingOccurrences(of: lb, with: la)
                        .replacingOccurrences(of: "@@SWAP@@", with: lb)
                }
                return t
            }
            for (layer, master, primary) in [("shop/sqldb", "pg2", "pg1"), ("shop/mariadb", "my2", "my1"), ("shop/cache", "rd2", "rd1")] {
                let t = try await checkOne(layer, swapped)
                #expect(t.masterNode == master)
                #expect(t.primary == primary, "\(layer)")
                let f = try #require(t.findings(.masterNotPrimary).first, "\(layer)")
                #expect(f.message.contains("the layer's master node \(master) is a replica; the primary is \(primary)"))
                #expect(t.status == .warning)
            }
        }

        @Test func splitBrainAfterPromotingThePostgresReplica() async throws {
            try await Lab.with("pg_promote") {
                let t = try await checkOne("shop/sqldb")
                #expect(t.primary == nil)
                let f = try #require(t.findings(.splitBrain).first)
                #expect(f.message.contains("pg2 moved to timeline 2"))
                #expect(t.node("pg2")?.role == .primary)
                let cli = try runCommand(Repo.stowage, ["topology", "shop/sqldb", "--config", Lab.inventory])
                #expect(cli.status == ExitStatus.unsafeTopology.rawValue)
                #expect(cli.stdout.contains("error: split brain"))
            }
            // Healed: streaming again.
            #expect(try await checkOne("shop/sqldb").status == .ok)
        }

        @Test func mariadbReplicationStopped() async throws {
            try await Lab.with("my_stop_slave") {
                let t = try await checkOne("shop/mariadb")
                #expect(t.primary == "my1")
                #expect(t.node("my2")?.state == "stopped")
                #expect(t.findings(.replicationBroken).first?.node == "my2")
                #expect(t.status == .warning)
            }
        }

        @Test func redisReplicaDetachedWithReplicaofNoOne() async throws {
            try await Lab.with("rd_detach") {
                let t = try await checkOne("shop/cache")
                #expect(t.findings(.replicationBroken).first?.node == "rd2")
                #expect(t.findings(.splitBrain).count == 1)
                #expect(t.primary == nil)
            }
            #expect(try await checkOne("shop/cache").status == .ok)
        }

        @Test func stoppedServerIsUnreachable() async throws {
            try await Lab.with("rd2_stopped") {
                let t = try await checkOne("shop/cache")
                #expect(t.node("rd2")?.role == .unreachable)
                #expect(t.findings(.nodeUnreachable).first?.message.contains("Connection refused") == true)
                #expect(t.primary == "rd1")
                #expect(t.status == .warning)
            }
        }

        @Test func blockedPrimaryAddressLeavesNoPrimary() async throws {
            try await Lab.with("block", "pg1") {
                let start = Date()
                let t = try await checkOne("shop/sqldb")
                #expect(Date().timeIntervalSince(start) < 3)
                #expect(t.node("pg1")?.role == .unreachable)
                #expect(t.findings(.noPrimary).first?.severity == .error)
                #expect(t.node("pg2")?.role == .replica)
            }
        }

        @Test func frozenServersTimeOutInsteadOfHanging() async throws {
            // SIGSTOP: the kernel still accepts TCP connections, nothing answers.
            let inv = try labInventory()
            let bound = inv.probe.connectTimeout + inv.probe.queryTimeout + 1.5
            for fault in ["pg2_frozen", "my2_frozen", "rd2_frozen"] { try Lab.fault(fault) }
            defer { for fault in ["pg2_frozen", "my2_frozen", "rd2_frozen"] { try? Lab.heal(fault) } }
            let start = Date()
            let layers = try await check("shop", inv)
            let elapsed = Date().timeIntervalSince(start)
            #expect(elapsed < bound, "took \(elapsed) s; bound \(bound) s")
            for (layer, node, primary) in [("sqldb", "pg2", "pg1"), ("mariadb", "my2", "my1"), ("cache", "rd2", "rd1")] {
                let t = try #require(layers.first { $0.layer == layer })
                #expect(t.node(node)?.role == .unreachable, "\(layer)")
                #expect(t.primary == primary, "\(layer)")
            }
        }

        @Test func wrongPasswordForEveryEngine() async throws {
            let wrong = try tempFile("not-the-password\n")
            defer { try? FileManager.default.removeItem(atPath: wrong) }
            let invText = try String(contentsOfFile: Lab.inventory, encoding: .utf8)
                .replacingOccurrences(of: "\(Lab.dir)/secrets/db-password", with: wrong)
                .replacingOccurrences(of: "\(Lab.dir)/secrets/redis-password", with: wrong)
            let invPath = try tempFile(invText, suffix: ".yaml")
            defer { try? FileManager.default.removeItem(atPath: invPath) }
            let inv = try Inventory.load(path: invPath)
            for layer in ["shop/sqldb", "shop/mariadb", "shop/cache", "shop/sessions"] {
                let t = try await checkOne(layer, inv)
                #expect(t.findings(.credentialsRejected).count == t.nodes.count, "\(layer): \(t.findings)")
            }
            let cli = try runCommand(Repo.stowage, ["topology", "shop", "--config", invPath])
            #expect(cli.status == ExitStatus.credentialsRejected.rawValue)
            #expect(cli.stdout.contains("rejected the layer's credentials"))
            for secret in ["not-the-password", try Lab.secret("db-password"), try Lab.secret("redis-password")] {
                #expect(!cli.stdout.contains(secret) && !cli.stderr.contains(secret))
            }
        }
    }

}

extension LabSuites {
    /// The `stowage` binary: exit codes and one-line errors with hints.
    @Suite struct TopologyCLI {
        init() throws { try Lab.require() }

        @Test func healthyLayerExitsZero() throws {
            let r = try runCommand(Repo.stowage, ["topology", "shop/sqldb", "--config", Lab.inventory])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("shop/sqldb  PostgreSQL  primary-secondary  primary: pg1  [HEALTHY]"))
            #expect(r.stdout.contains("ok: healthy"))
        }

        @Test func configFromEnvironmentAndWholeLabWarns() throws {
            let r = try runCommand(Repo.stowage, ["topology"], env: ["STOWAGE_CONFIG": Lab.inventory])
            #expect(r.status == ExitStatus.warnings.rawValue)
            #expect(r.stdout.contains("warning: 2 independent servers (pg3, pg4)"))
        }

        @Test func jsonDocument() throws {
            let r = try runCommand(Repo.stowage, ["topology", "shop", "--json", "--config", Lab.inventory])
            #expect(r.status == 0)
            try JSONSchema.validate(r.stdout, schema: "topology")
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            #expect(doc["schema"] as? String == "stowage.topology/v1")
            #expect(doc["status"] as? String == "ok")
            let layers = try #require(doc["layers"] as? [[String: Any]])
            #expect(layers.map { $0["layer"] as? String } == ["sqldb", "mariadb", "cache", "sessions"])
            #expect(layers[0]["primary"] as? String == "pg1")
            let nodes = try #require(layers[0]["nodes"] as? [[String: Any]])
            #expect(nodes[1]["role"] as? String == "replica")
            #expect(nodes[1]["upstream"] as? String == "pg1")
            // The document decodes back into the public values.
            struct Doc: Decodable { var layers: [LayerTopology] }
            #expect(try JSONDecoder().decode(Doc.self, from: Data(r.stdout.utf8)).layers.count == 4)
        }

        @Test func noInventory() throws {
            let r = try runCommand(Repo.stowage, ["topology"], env: ["STOWAGE_CONFIG": nil], cwd: "/")
            #expect(r.status == ExitStatus.noInventory.rawValue)
            #expect(
                r.stderr
                    == "stowage: error: no inventory at /etc/stowage/stowage.yaml\nhint: write one (docs/inventory.md, fixtures/inventories/example.yaml) or point --config or STOWAGE_CONFIG at it\n"
            )
            #expect(r.stdout.isEmpty)
        }

        @Test func yamlErrorNamesLineAndColumn() throws {
            let path = Repo.path("fixtures/inventories/bad-yaml-syntax.yaml")
            let r = try runCommand(Repo.stowage, ["topology", "--config", path])
            #expect(r.status == ExitStatus.invalidInventory.rawValue)
            #expect(r.stderr.hasPrefix("stowage: error: \(path):7:1: YAML syntax error"))
            #expect(r.stderr.split(separator: "\n").count == 2)
            #expect(!r.stderr.contains("Fatal error"))
        }

        @Test func unknownEngineAndDuplicateNodes() throws {
            for (file, text) in [("bad-unknown-engine.yaml", "unknown engine 'oracle'"), ("bad-duplicate-node.yaml", "duplicate node name 'node101'")] {
                let r = try runCommand(Repo.stowage, ["topology", "--config", Repo.path("fixtures/inventories/\(file)")])
                #expect(r.status == ExitStatus.invalidInventory.rawValue)
                #expect(r.stderr.contains(text))
                #expect(r.stderr.contains("hint: "))
            }
        }

        @Test func unknownEnvironmentAndLayer() throws {
            let r = try runCommand(Repo.stowage, ["topology", "shpo", "--config", Lab.inventory])
            #expect(r.status == ExitStatus.usage.rawValue)
            #expect(r.stderr.contains("unknown environment 'shpo'"))
            #expect(r.stderr.contains("hint: environments: shop, staging"))
            let l = try runCommand(Repo.stowage, ["topology", "shop/nosuch", "--config", Lab.inventory])
            #expect(l.status == ExitStatus.usage.rawValue)
            #expect(l.stderr.contains("hint: layers of shop: sqldb, mariadb, cache, sessions"))
        }

        @Test func unsetPasswordVariable() throws {
            let inv = Repo.path("fixtures/inventories/example.yaml")
            let r = try runCommand(Repo.stowage, ["topology", "shop/sqldb", "--config", inv], env: ["SHOP_DB_PASSWORD": nil])
            #expect(r.status == ExitStatus.invalidInventory.rawValue)
            #expect(r.stderr.contains("environment variable SHOP_DB_PASSWORD"))
            #expect(r.stderr.contains("is not set"))
        }

        @Test func unknownOptionIsUsage() throws {
            let r = try runCommand(Repo.stowage, ["topology", "--nope"])
            #expect(r.status == ExitStatus.usage.rawValue)
        }
    }
}
