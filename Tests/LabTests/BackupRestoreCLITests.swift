// `stowage backup` and `stowage restore` as an operator runs them: summaries, JSON, the
// confirmation rule, --dry-run changing nothing, one-line errors with their exit codes.
import Foundation
import TestSupport
import Testing

extension LabSuites {
    @Suite(.serialized) struct BackupRestoreCLI {
        init() throws { try Lab.require() }

        func stowage(_ args: String...) throws -> CommandResult {
            try runCommand(Repo.stowage, args + ["--config", Lab.inventory])
        }

        @Test func backupThenDryRunThenRestoreWithYes() throws {
            try LabData.redis("rd1", ["SET", "cli-key", "v1"])
            defer { _ = try? LabData.redis("rd1", ["DEL", "cli-key"]) }
            let b = try stowage("backup", "shop/cache", "--keep", "3", "--json")
            #expect(b.status == 0, "\(b.stderr)")
            try JSONSchema.validate(b.stdout, schema: "backup")
            struct Summary: Decodable {
                var backup: String; var sourceNodes: [String]; var replicas: [String]; var counts: [String: Int64]; var pruned: [String]?
            }
            let s = try JSONDecoder().decode(Summary.self, from: Data(b.stdout.utf8))
            #expect(s.sourceNodes == ["rd1"])
            #expect(s.replicas.sorted() == ["st1", "st2"])
            #expect((s.counts["db0"] ?? 0) >= 1)
            #expect(s.pruned != nil)

            let listed = try stowage("backups", "shop/cache")
            #expect(listed.stdout.contains(s.backup))

            try LabData.redis("rd1", ["SET", "cli-key", "v2"])
            let dry = try stowage("restore", "shop/cache", "--backup", s.backup, "--dry-run")
            #expect(dry.status == 0, "\(dry.stderr)")
            #expect(dry.stdout.contains("targets    rd1 (primary)"))
            let dryJSON = try stowage("restore", "shop/cache", "--backup", s.backup, "--dry-run", "--json")
            #expect(dryJSON.status == 0, "\(dryJSON.stderr)")
            try JSONSchema.validate(dryJSON.stdout, schema: "restore-plan")
            #expect(try LabData.redis("rd1", ["GET", "cli-key"]).contains("v2"))

            // Not a terminal and no --yes: refused, nothing changed.
            let unconfirmed = try stowage("restore", "shop/cache", "--backup", s.backup)
            #expect(unconfirmed.status == 64)
            #expect(unconfirmed.stderr.hasPrefix("stowage: error: restoring shop/cache replaces all its data; confirmation needed\nhint: "))
            #expect(try LabData.redis("rd1", ["GET", "cli-key"]).contains("v2"))

            let r = try stowage("restore", "shop/cache", "--backup", "latest", "--yes", "--json")
            #expect(r.status == 0, "\(r.stderr)")
            try JSONSchema.validate(r.stdout, schema: "restore")
            #expect(r.stdout.contains(#""checkPassed" : true"#), "\(r.stdout)")
            #expect(try LabData.redis("rd1", ["GET", "cli-key"]).contains("v1"))
        }

        @Test func errorsAreOneLineWithTheirExitCodes() throws {
            // A backup to name (the suite may run first on a fresh lab).
            let made = try stowage("backup", "shop/sqldb")
            #expect(made.status == 0, "\(made.stderr)")
            let replica = try stowage("restore", "shop/sqldb", "--backup", "latest", "--node", "pg2", "--yes")
            #expect(replica.status == 3)
            #expect(replica.stderr.contains("pg2 is a replica of pg1; restoring onto a replica is refused"))
            let name = try stowage("restore", "shop/sqldb", "--backup", "yesterday", "--yes")
            #expect(name.status == 64)
            #expect(name.stderr.contains("'yesterday' is not a backup name"))
            let from = try stowage("backup", "shop/sqldb", "--from", "secondary")
            #expect(from.status == 64)
            let env = try stowage("backup", "shop")
            #expect(env.status == 64)
            #expect(env.stderr.contains("name one layer as ENV/LAYER"))
            let engine = try stowage("restore", "shop/cache", "--from", "shop/sqldb", "--backup", "latest", "--dry-run")
            #expect(engine.status == 15, "\(engine.stderr)")
            for r in [replica, name, from, env, engine] {
                #expect(r.stderr.split(separator: "\n").count <= 2, "\(r.stderr)")
            }
        }
    }
}
