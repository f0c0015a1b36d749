// Nodes entered as an unprivileged account: the lab's sshds let in `stowage-backup` (no
// sudo, no group of the database servers). The agent goes into that account's home, the
// repository is written as that account, and a backup and a restore work as they do for
// root. Nothing on the node is written as root.
import Foundation
import TestSupport
import Testing

extension LabSuites.SchedulerDaemon {
    @Test func anUnprivilegedSSHAccountInstallsBacksUpAndRestores() throws {
        let user = "stowage-backup"
        guard let pw = getpwnam(user) else {
            Issue.record("the lab has no \(user) account (fixtures/lab/lab.sh up makes it)")
            return
        }
        let uid = pw.pointee.pw_uid
        let home = String(cString: pw.pointee.pw_dir)
        let lab = try FleetLab(fleet: ["fl11"], shop: false, scheduler: "start_delay: 0s", sshUser: user)
        defer { lab.cleanup() }
        // The operator gives the account its repository folders; it cannot write /var/lib.
        for st in ["st1", "st2"] {
            try FileManager.default.createDirectory(atPath: "\(lab.dir)/\(st)", withIntermediateDirectories: true)
            #expect(chown("\(lab.dir)/\(st)", uid, pw.pointee.pw_gid) == 0)
        }
        func stowage(_ args: String...) throws -> CommandResult { try runCommand(Repo.stowage, args + ["--config", lab.inventory]) }

        let install = try stowage("agent", "install", "--json")
        #expect(install.status == 0, "\(install.stderr)")
        try JSONSchema.validate(install.stdout, schema: "agent-install")
        struct Installed: Decodable { var node: String; var result: String; var path: String }
        let installed = try JSONDecoder().decode([Installed].self, from: Data(install.stdout.utf8))
        #expect(installed.map(\.node) == ["fl11", "st1", "st2"], "\(install.stdout)")
        #expect(installed.allSatisfy { $0.path.hasPrefix(".local/lib/stowage/agent/stowage-agent-") }, "\(install.stdout)")
        let agentDir = "\(home)/.local/lib/stowage/agent"
        let agents = try FileManager.default.contentsOfDirectory(atPath: agentDir).filter { $0.hasPrefix("stowage-agent-") }
        #expect(agents.count >= 1, "\(agentDir)")
        for a in agents {
            let attrs = try FileManager.default.attributesOfItem(atPath: "\(agentDir)/\(a)")
            #expect((attrs[.ownerAccountID] as? NSNumber)?.uint32Value == uid, "\(a) is not the account's")
        }
        let check = try stowage("agent", "check", "fleet")
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")

        _ = try FleetLab.redis("fl11", ["FLUSHALL"])
        _ = try FleetLab.redis("fl11", ["SET", "nonroot-key", "v1"])
        let b = try stowage("backup", "fleet/r11", "--storage", "fleet-storage", "--json")
        #expect(b.status == 0, "\(b.stderr)")
        struct Summary: Decodable { var backup: String; var replicas: [String] }
        let s = try JSONDecoder().decode(Summary.self, from: Data(b.stdout.utf8))
        #expect(s.replicas.sorted() == ["st1", "st2"])
        // Everything in the repository was written by the account.
        for st in ["st1", "st2"] {
            let root = "\(lab.dir)/\(st)"
            let files = FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []
            #expect(files.count > 3, "\(root): \(files)")
            for f in files {
                let attrs = try FileManager.default.attributesOfItem(atPath: "\(root)/\(f)")
                #expect((attrs[.ownerAccountID] as? NSNumber)?.uint32Value == uid, "\(root)/\(f) is not the account's")
            }
        }

        _ = try FleetLab.redis("fl11", ["SET", "nonroot-key", "v2"])
        let r = try stowage("restore", "fleet/r11", "--backup", s.backup, "--yes")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try FleetLab.redis("fl11", ["GET", "nonroot-key"]).contains("v1"))
        _ = try FleetLab.redis("fl11", ["FLUSHALL"])
    }
}
