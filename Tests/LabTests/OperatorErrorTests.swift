import Fleet
// Errors and notes an operator must be able to act on without reading code: the node, its
// address and the cause when a layer's only server is down; the inventory field of a
// storage's missing password file; every database a restore leaves alone; one layer's
// unreadable secret not hiding the rest of the fleet; `status --no-probe` judging only what
// it looked at.
import Foundation
import Operations
import Remote
import Scheduling
import Storage
import Support
import TestSupport
import Testing

extension LabSuites {
    @Suite(.serialized) struct OperatorErrors {
        init() throws { try Lab.require() }

        func tempDir() throws -> String {
            let d = FileManager.default.temporaryDirectory.appendingPathComponent("oe-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            return d
        }

        /// The lab's inventory with `edit` applied, in `dir`.
        func inventory(_ dir: String, _ edit: (String) -> String) throws -> String {
            let path = "\(dir)/stowage.yaml"
            try edit(try String(contentsOfFile: Lab.inventory, encoding: .utf8)).write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        @Test func aSingleNodeLayerWhoseServerRefusesIsAnErrorNamingNodeAddressAndCause() throws {
            let dir = try tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            // A layer whose only node's database port has nothing listening.
            let inv = try inventory(dir) {
                $0 + """

                      closed:
                        layers:
                          db:
                            engine: redis
                            nodes:
                              - { name: rx, ssh: root@127.0.3.10:\(Lab.sshPort), db: 127.0.3.10:6390 }
                            credentials: { password_file: \(Lab.dir)/secrets/redis-password }

                    """
            }
            let topo = try runCommand(Repo.stowage, ["topology", "closed/db", "--config", inv])
            #expect(topo.status == ExitStatus.unsafeTopology.rawValue, "\(topo.stdout)\(topo.stderr)")
            #expect(topo.stdout.contains("error: the layer's only node rx (127.0.3.10:6390) is unreachable"), "\(topo.stdout)")
            let b = try runCommand(Repo.stowage, ["backup", "closed/db", "--config", inv])
            #expect(b.status == ExitStatus.unsafeTopology.rawValue, "\(b.stderr)")
            let line = b.stderr.split(separator: "\n").first.map(String.init) ?? ""
            #expect(line.contains("rx (127.0.3.10:6390)"), "\(b.stderr)")
            #expect(line.lowercased().contains("refused"), "\(b.stderr)")
            #expect(line.hasSuffix("backup refused"), "\(b.stderr)")
            #expect(b.stderr.contains("\nhint: "), "\(b.stderr)")
        }

        @Test func aMissingStoragePasswordFileIsNamedAsTheStoragesField() throws {
            let dir = try tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let inv = try inventory(dir) {
                $0.replacingOccurrences(of: "password_file: \(Lab.dir)/secrets/storage-password", with: "password_file: \(dir)/no-such-password")
            }
            let r = try runCommand(Repo.stowage, ["backups", "--config", inv])
            #expect(r.status == ExitStatus.invalidInventory.rawValue, "\(r.stderr)")
            #expect(r.stderr.contains("storages.lab-storage.password_file at \(inv):"), "\(r.stderr)")
            #expect(!r.stderr.contains("credentials.password_file"), "\(r.stderr)")
        }

        @Test func topologyReportsALayerWithAnUnsetPasswordVariableAndProbesTheOthers() throws {
            let dir = try tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            var first = true
            let inv = try inventory(dir) { text in
                // Only shop/sqldb (the first layer with this file) reads its password from an unset variable.
                text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                    guard first, line.contains("password_file: \(Lab.dir)/secrets/db-password") else { return String(line) }
                    first = false
                    return line.replacingOccurrences(of: "password_file: \(Lab.dir)/secrets/db-password", with: "password_env: STOWAGE_TEST_UNSET")
                }.joined(separator: "\n")
            }
            let r = try runCommand(Repo.stowage, ["topology", "--config", inv], env: ["STOWAGE_TEST_UNSET": nil])
            #expect(r.status == ExitStatus.invalidInventory.rawValue, "\(r.stdout)\(r.stderr)")
            #expect(r.stderr.contains("stowage: error: shop/sqldb: environment variable STOWAGE_TEST_UNSET"), "\(r.stderr)")
            // Every other layer was probed and shown.
            for other in ["shop/mariadb", "shop/cache", "staging/sqldb"] { #expect(r.stdout.contains(other), "\(r.stdout)") }
            #expect(!r.stdout.contains("shop/sqldb "), "\(r.stdout)")
        }

        @Test func statusWithoutProbesDoesNotMarkLayersFailed() throws {
            let r = try runCommand(Repo.stowage, ["status", "--no-probe", "--json", "--config", Lab.inventory])
            try JSONSchema.validate(r.stdout, schema: "status")
            #expect(!r.stdout.contains("not probed (--no-probe)"), "\(r.stdout)")
            struct Problem: Decodable { var severity: String; var message: String }
            struct Layer: Decodable { var layer: String; var health: String; var topology: String; var problems: [Problem] }
            struct Report: Decodable { var layers: [Layer] }
            let layers = try JSONDecoder().decode(Report.self, from: Data(r.stdout.utf8)).layers
            #expect(layers.count >= 5)
            #expect(layers.allSatisfy { $0.topology == "not probed" })
            // Not looking at the topology is no topology problem; a layer is judged by its runs and storage.
            #expect(layers.allSatisfy { $0.problems.allSatisfy { !$0.message.hasPrefix("topology:") } }, "\(r.stdout)")
            #expect(layers.contains { $0.health == "ok" }, "\(r.stdout)")
        }

        @Test func aRestoreNamesEveryDatabaseItLeavesAloneEmptyOnesToo() throws {
            let made = try runCommand(Repo.stowage, ["backup", "shop/sqldb", "--config", Lab.inventory])
            #expect(made.status == 0, "\(made.stderr)")
            try LabData.psql("pg1", "CREATE DATABASE rt_created_after")
            defer { _ = try? LabData.psql("pg1", "DROP DATABASE IF EXISTS rt_created_after") }
            let r = try runCommand(Repo.stowage, ["restore", "shop/sqldb", "--backup", "latest", "--yes", "--config", Lab.inventory])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("note: not in the backup, left as they were: ") && r.stdout.contains("rt_created_after"), "\(r.stdout)")
        }
    }
}
