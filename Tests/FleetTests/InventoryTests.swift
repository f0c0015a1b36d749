// Inventory parsing and validation: every bad input gets one line naming file, line and
// column, and a hint.
import Foundation
import Support
import TestSupport
import Testing
import Topology

@testable import Fleet

private func parseError(_ yaml: String) -> StowageError? {
    do {
        _ = try Inventory.parse(yaml, file: "inv.yaml")
        return nil
    } catch {
        return error
    }
}

private let minimal = """
    environments:
      shop:
        layers:
          sqldb:
            engine: postgresql
            nodes:
              - { name: n1, ssh: root@10.0.1.10, db: 10.0.1.10:5432 }
              - { name: n2, ssh: admin@10.0.1.11:2222, db: 10.0.1.11 }
            credentials: { user: webadmin, password_env: SHOP_DB_PASSWORD }
    """

@Suite struct InventoryParsing {
    @Test func commentedExampleParses() throws {
        let inv = try Inventory.load(path: Repo.path("fixtures/inventories/example.yaml"))
        #expect(inv.environments.map(\.name) == ["shop"])
        #expect(inv.layers.map(\.id) == ["shop/sqldb", "shop/mysql", "shop/cache"])
        #expect(inv.probe.connectTimeout == 5)
        #expect(inv.storages.first?.nodes.map(\.name) == ["st1", "st2"])
        #expect(inv.storages.first?.quorum == nil)
        let mysql = inv.layers[1]
        #expect(mysql.engine == .mysql)
        #expect(mysql.masterNode == "node202")
        #expect(mysql.maxLagSeconds == 300)
        #expect(mysql.nodes[0].db == Endpoint(host: "10.0.1.20", port: 3306))
        #expect(inv.layers[2].nodes[0].db == Endpoint(host: "fd00::30", port: 6379))
        #expect(inv.layers[2].credentials?.user == nil)
    }

    @Test func labTemplateParses() throws {
        let text = try String(contentsOfFile: Repo.path("fixtures/lab/stowage.yaml.in"), encoding: .utf8)
            .replacingOccurrences(of: "@LAB_DIR@", with: "/lab").replacingOccurrences(of: "@SSH_PORT@", with: "4022")
        let inv = try Inventory.parse(text, file: "lab.yaml")
        #expect(inv.layers.count == 7)
        #expect(inv.storages.first?.nodes.map(\.root) == ["/lab/storage/st1", "/lab/storage/st2"])
    }

    @Test func defaultsAndAddresses() throws {
        let inv = try Inventory.parse(minimal, file: "inv.yaml")
        let l = inv.layers[0]
        #expect(l.masterNode == "n1")
        #expect(l.nodes[1].db == Endpoint(host: "10.0.1.11", port: 5432))
        #expect(l.nodes[1].ssh == SSHAddress(user: "admin", host: "10.0.1.11", port: 2222))
        #expect(l.nodes[0].ssh?.description == "root@10.0.1.10")
        #expect(l.maxLagSeconds == 60)
        #expect(l.credentials?.password == .environment("SHOP_DB_PASSWORD"))
    }

    @Test func storageZstdLevel() throws {
        let storage = """

            storages:
              s:
                password_env: P
                zstd_level: LEVEL
                nodes: [ { name: st1, ssh: root@10.0.9.1, root: /srv/stowage } ]
            """
        let inv = try Inventory.parse(minimal + storage.replacingOccurrences(of: "LEVEL", with: "9"), file: "inv.yaml")
        #expect(inv.storages[0].zstdLevel == 9)
        let dflt = try Inventory.parse(minimal + storage.replacingOccurrences(of: "    zstd_level: LEVEL\n", with: ""), file: "inv.yaml")
        #expect(dflt.storages[0].zstdLevel == nil)  // each engine's own
        let e = parseError(minimal + storage.replacingOccurrences(of: "LEVEL", with: "22"))
        #expect(e?.status == .invalidInventory)
        #expect(e?.message.contains("zstd_level must be between 1 and 19") == true, "\(e?.message ?? "")")
        #expect(e?.message.contains("inv.yaml:") == true)
    }

    @Test func bucketsAreStorageNodesBesideSSHNodes() throws {
        let storage = """

            storages:
              s:
                password_env: P
                root: /srv/stowage
                quorum: 2
                nodes:
                  - { name: st1, ssh: root@10.0.9.1 }
                  - { name: off-site, s3: { endpoint: "https://s3.example.net", bucket: backups-eu, region: eu-west-1, prefix: stowage, access_key_file: /etc/stowage/s3-keys } }
                  - NODE
            """
        let ok = try Inventory.parse(
            minimal + storage.replacingOccurrences(of: "NODE", with: "{ name: lab, s3: { endpoint: http://127.0.0.1:8333, bucket: lab, path_style: false } }"),
            file: "inv.yaml")
        let nodes = ok.storages[0].nodes
        #expect(nodes[0].bucket == nil && nodes[0].ssh != nil)
        #expect(
            nodes[1].bucket
                == BucketSpec(
                    endpoint: "https://s3.example.net", bucket: "backups-eu", region: "eu-west-1", prefix: "stowage", pathStyle: true,
                    accessKeyFile: "/etc/stowage/s3-keys"))
        #expect(nodes[2].bucket?.region == "us-east-1" && nodes[2].bucket?.pathStyle == false && nodes[2].bucket?.accessKeyFile == nil)
        for (node, message) in [
            ("{ name: x, ssh: root@h, s3: { endpoint: http://h:1, bucket: abc } }", "has both ssh: and s3:"),
            ("{ name: x, s3: { endpoint: ftp://h, bucket: abc } }", "is not an http:// or https:// address"),
            ("{ name: x, s3: { endpoint: http://h:1, bucket: Bad_Name } }", "is not a bucket name"),
            ("{ name: x, s3: { endpoint: http://h:1 } }", "bucket"),
            ("{ name: x, s3: { endpoint: http://h:1, bucket: abc, secret_key: k } }", "secret_key"),
            ("{ name: x }", "has neither ssh: nor s3:"),
        ] {
            let e = parseError(minimal + storage.replacingOccurrences(of: "NODE", with: node))
            #expect(
                e?.status == .invalidInventory && e?.message.contains(message) == true && e?.message.contains("inv.yaml:") == true,
                "\(node): \(e?.message ?? "")")
        }
    }

    @Test func yamlSyntaxErrorHasLineAndColumn() throws {
        let e = try #require(parseError(try String(contentsOfFile: Repo.path("fixtures/inventories/bad-yaml-syntax.yaml"), encoding: .utf8)))
        #expect(e.status == .invalidInventory)
        #expect(e.message.hasPrefix("inv.yaml:7:1: YAML syntax error"))
        #expect(e.hint != nil)
    }

    @Test func unknownEngine() throws {
        let e = try #require(parseError(try String(contentsOfFile: Repo.path("fixtures/inventories/bad-unknown-engine.yaml"), encoding: .utf8)))
        #expect(e.message == "inv.yaml:5:17: unknown engine 'oracle' for layer shop/sqldb")
        #expect(e.hint?.contains("postgresql, mysql") == true)
    }

    @Test func duplicateNodeNamesAcrossLayers() throws {
        let e = try #require(parseError(try String(contentsOfFile: Repo.path("fixtures/inventories/bad-duplicate-node.yaml"), encoding: .utf8)))
        #expect(e.message == "inv.yaml:13:21: duplicate node name 'node101' (first defined at inv.yaml:7:21)")
        #expect(e.status == .invalidInventory)
    }

    @Test func misspelledKeySuggestsTheRightOne() throws {
        let e = try #require(parseError(minimal.replacingOccurrences(of: "engine:", with: "engin:")))
        #expect(e.message.contains("unknown key 'engin' in environments.shop.layers.sqldb"))
        #expect(e.hint == "did you mean 'engine'?")
    }

    @Test func plainTextPasswordIsRefused() throws {
        let e = try #require(parseError(minimal.replacingOccurrences(of: "password_env: SHOP_DB_PASSWORD", with: "password: hunter2")))
        #expect(e.message.contains("plain-text passwords are not accepted"))
        #expect(!e.message.contains("hunter2"))
        #expect(e.hint?.contains("password_env") == true)
    }

    @Test(arguments: [
        ("environments: {}\nstorages: []\n", "storages must be a mapping"),
        ("ssh: {}\n", "has no 'environments'"),
        ("environments:\n  shop:\n    layers:\n      db:\n        engine: redis\n        nodes: []\n", "has no nodes"),
        (
            "environments:\n  shop:\n    layers:\n      db:\n        engine: redis\n        nodes:\n          - { name: a, db: 'h:99999' }\n",
            "port 99999 is out of range"
        ),
        (
            "environments:\n  shop:\n    layers:\n      db:\n        engine: redis\n        nodes:\n          - { name: a, db: h, master: true }\n          - { name: b, db: h, master: true }\n",
            "2 nodes marked master: true"
        ),
        ("environments:\n  'sh op':\n    layers: {}\n", "environment name 'sh op'"),
        ("probe: { connect_timeout: soon }\nenvironments: {}\n", "must be a duration"),
        ("environments:\n  shop:\n    layers:\n      db:\n        engine: mysql\n        nodes:\n          - { name: a, db: h }\n", "has no credentials"),
        ("", "the inventory is empty"),
    ])
    func malformedInventories(yaml: String, expected: String) throws {
        let e = try #require(parseError(yaml), "accepted: \(yaml)")
        #expect(e.message.contains(expected), "\(e.message)")
        #expect(e.status == .invalidInventory)
        #expect(!e.message.contains("\n"))
    }

    @Test func missingFile() {
        #expect(throws: StowageError.self) { try Inventory.load(path: "/nonexistent/stowage.yaml") }
        do { _ = try Inventory.load(path: "/nonexistent/stowage.yaml") } catch {
            #expect(error.status == .noInventory)
            #expect(error.message == "no inventory at /nonexistent/stowage.yaml")
        }
    }

    @Test func configPathPrecedence() {
        #expect(Inventory.resolvePath(option: "a.yaml", environment: ["STOWAGE_CONFIG": "b.yaml"]) == "a.yaml")
        #expect(Inventory.resolvePath(option: nil, environment: ["STOWAGE_CONFIG": "b.yaml"]) == "b.yaml")
        #expect(Inventory.resolvePath(option: nil, environment: [:]) == "/etc/stowage/stowage.yaml")
    }

    @Test func stateLivesInTheStateFolderNotBesideAnInstalledInventory() throws {
        let text = "environments:\n  e:\n    layers:\n      c: { engine: redis, nodes: [ { name: n1, db: h1 } ] }\n"
        // Installed: /etc/stowage/stowage.yaml keeps its state in /var/lib/stowage.
        let installed = try Inventory.parseWithoutPolicies(text, file: "/etc/stowage/stowage.yaml", environment: [:])
        #expect(installed.stateDirectory == "/var/lib/stowage")
        #expect(installed.policiesPath == "/var/lib/stowage/stowage.policies.yaml")
        #expect(installed.catalogPath == "/var/lib/stowage/stowage.catalog.sqlite")
        // Under systemd, StateDirectory= says where.
        let unit = try Inventory.parseWithoutPolicies(text, file: "/etc/stowage/stowage.yaml", environment: ["STATE_DIRECTORY": "/var/lib/stowage-b"])
        #expect(unit.catalogPath == "/var/lib/stowage-b/stowage.catalog.sqlite")
        // Anywhere else (a lab, a test): beside the inventory, as before.
        let local = try Inventory.parseWithoutPolicies(text, file: "/srv/lab/fleet.yaml", environment: [:])
        #expect(local.policiesPath == "/srv/lab/fleet.policies.yaml" && local.catalogPath == "/srv/lab/fleet.catalog.sqlite")
        // The inventory's own word wins; a relative folder is refused with the line.
        let named = try Inventory.parseWithoutPolicies(
            "state_dir: /data/stowage\n" + text, file: "/etc/stowage/stowage.yaml", environment: ["STATE_DIRECTORY": "/x"])
        #expect(named.catalogPath == "/data/stowage/stowage.catalog.sqlite")
        #expect(throws: StowageError.self) {
            try Inventory.parseWithoutPolicies("state_dir: data\n" + text, file: "/etc/stowage/stowage.yaml", environment: [:])
        }
    }
}

@Suite struct SelectionAndSecrets {
    let inv = try! Inventory.parse(minimal, file: "inv.yaml")

    @Test func selectsEnvironmentsAndLayers() throws {
        #expect(try LayerSelection(parsing: nil).layers(in: inv).count == 1)
        #expect(try LayerSelection(parsing: "shop/sqldb").layers(in: inv).map(\.id) == ["shop/sqldb"])
    }

    @Test func unknownEnvironmentAndLayerListWhatExists() throws {
        do { _ = try LayerSelection(parsing: "shpo").layers(in: inv); Issue.record("accepted") } catch {
            #expect(error.status == .usage)
            #expect(error.message == "unknown environment 'shpo' in inv.yaml")
            #expect(error.hint == "environments: shop")
        }
        do { _ = try LayerSelection(parsing: "shop/cache").layers(in: inv); Issue.record("accepted") } catch {
            #expect(error.message == "unknown layer 'cache' in environment shop (inv.yaml)")
            #expect(error.hint == "layers of shop: sqldb")
        }
        #expect(throws: StowageError.self) { try LayerSelection(parsing: "a/b/c") }
    }

    @Test func unsetPasswordVariable() throws {
        let creds = try #require(inv.layers[0].credentials)
        do { _ = try creds.resolvePassword(layer: "shop/sqldb", environment: [:]); Issue.record("accepted") } catch {
            #expect(error.status == .invalidInventory)
            #expect(error.message == "shop/sqldb: environment variable SHOP_DB_PASSWORD (credentials.password_env at inv.yaml:9:22) is not set")
        }
        let secret = try creds.resolvePassword(layer: "shop/sqldb", environment: ["SHOP_DB_PASSWORD": "s3cret"])
        #expect(secret?.value == "s3cret")
        #expect("\(secret!)" == "<redacted>")
    }

    @Test func aStoragePasswordFileIsNamedAsTheStoragesField() throws {
        let inv = try Inventory.parse(
            """
            environments:
              shop:
                layers:
                  cache:
                    engine: redis
                    nodes: [{ name: r1, ssh: root@10.0.1.10, db: 10.0.1.10 }]
            storages:
              vault:
                root: /srv/stowage
                password_file: /nonexistent/stowage-storage-password
                nodes: [{ name: st1, ssh: root@10.0.2.10 }]
            """, file: "inv.yaml")
        let spec = try inv.requireStorage("vault")
        do { _ = try spec.resolvePassword(); Issue.record("accepted") } catch {
            #expect(error.status == .invalidInventory)
            #expect(error.message.contains("(storages.vault.password_file at inv.yaml:"), "\(error.message)")
            #expect(!error.message.contains("credentials."), "\(error.message)")
            #expect(error.hint != nil)
        }
    }

    @Test func passwordFileTrailingNewlineAndMissingFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UInt32.random(in: 0...UInt32.max))").path
        try "s3cret\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let creds = CredentialsSpec(user: "u", password: .file(path), location: "inv.yaml:1:1")
        #expect(try creds.resolvePassword(layer: "x/y")?.value == "s3cret")
        let missing = CredentialsSpec(user: "u", password: .file(path + ".none"), location: "inv.yaml:1:1")
        do { _ = try missing.resolvePassword(layer: "x/y"); Issue.record("accepted") } catch {
            #expect(error.message.contains("no such file"))
        }
    }
}

@Suite struct SystemdCredentialTests {
    @Test func aPasswordCredentialIsReadFromTheCredentialsDirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("creds-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "s3cret\n".write(toFile: "\(dir)/storage-password", atomically: true, encoding: .utf8)
        let inv = try Inventory.parseWithoutPolicies(
            """
            storages:
              backup-storage:
                password_credential: storage-password
                nodes: [ { name: st1, ssh: root@10.0.0.1, root: /srv/stowage } ]
            environments:
              e:
                layers:
                  c: { engine: redis, nodes: [ { name: n1, db: h1 } ] }
            """, file: "/etc/stowage/stowage.yaml", environment: [:])
        let spec = try #require(inv.storages.first)
        #expect(try spec.resolvePassword(environment: ["CREDENTIALS_DIRECTORY": dir]).value == "s3cret")
        // Outside systemd: a one-line error naming the key and what sets it.
        #expect {
            _ = try spec.resolvePassword(environment: [:])
        } throws: { error in
            guard let e = error as? StowageError else { return false }
            return e.status == .invalidInventory && e.message.contains("storages.backup-storage.password_credential storage-password")
                && e.message.contains("CREDENTIALS_DIRECTORY") && e.hint?.contains("LoadCredential=storage-password") == true
        }
        // A path is not a credential's name.
        #expect(throws: StowageError.self) {
            try Inventory.parseWithoutPolicies(
                """
                storages:
                  s: { password_credential: ../etc/shadow, nodes: [ { name: st1, ssh: root@10.0.0.1, root: /srv } ] }
                environments: { e: { layers: { c: { engine: redis, nodes: [ { name: n1, db: h1 } ] } } } }
                """, file: "/tmp/i.yaml", environment: [:])
        }
    }
}
