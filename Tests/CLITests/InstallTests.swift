// scripts/install.sh into a staged root (DESTDIR), and the systemd unit it installs checked
// by systemd itself: no warning from `systemd-analyze verify`, and the settings the
// scheduler's shutdown and reload depend on.
import Foundation
import TestSupport
import Testing

@Suite struct Install {
    @Test func aStagedInstallHasEverythingAndTheUnitVerifies() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("install-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let binaries = URL(fileURLWithPath: Repo.stowage).deletingLastPathComponent().path
        let r = try runCommand("/bin/bash", [Repo.path("scripts/install.sh"), "--binaries", binaries], env: ["DESTDIR": root])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        for f in [
            "usr/local/bin/stowage", "usr/local/bin/stowage-agent", "etc/stowage/stowage.yaml", "etc/systemd/system/stowage-scheduler.service",
            "usr/local/share/doc/stowage/scheduler.md", "usr/local/share/doc/stowage/exit-codes.md",
            "usr/local/share/doc/stowage/json/status.schema.json", "usr/local/share/doc/stowage/json/notification.schema.json",
        ] {
            #expect(FileManager.default.fileExists(atPath: "\(root)/\(f)"), "\(f)")
        }
        func mode(_ f: String) throws -> Int { try FileManager.default.attributesOfItem(atPath: "\(root)/\(f)")[.posixPermissions] as? Int ?? -1 }
        #expect(try mode("etc/stowage/credentials") == 0o700)
        #expect(try mode("var/lib/stowage") == 0o700)
        let version = try runCommand("\(root)/usr/local/bin/stowage", ["--version"])
        #expect(version.stdout.hasPrefix("0.1.0 (commit "))
        // Help names the docs where the install put them: paths that open.
        let docs = "\(root)/usr/local/share/doc/stowage"
        let help = try runCommand("\(root)/usr/local/bin/stowage", ["--help"])
        #expect(help.stdout.contains("\(docs)/exit-codes.md") && help.stdout.contains("\(docs)/inventory.md"), "\(help.stdout)")
        let statusHelp = try runCommand("\(root)/usr/local/bin/stowage", ["status", "--help"])
        #expect(statusHelp.stdout.replacingOccurrences(of: "\n", with: " ").contains("json/status.schema.json"), "\(statusHelp.stdout)")
        for path in help.stdout.matches(of: /\/[^\s()]*\.md/).map({ String($0.output) }) {
            #expect(FileManager.default.fileExists(atPath: path), "help names \(path), which does not exist")
        }

        let unitPath = "\(root)/etc/systemd/system/stowage-scheduler.service"
        let unit = try String(contentsOfFile: unitPath, encoding: .utf8)
        for setting in [
            "User=stowage", "StateDirectory=stowage", "LoadCredential=storage-password:", "ExecReload=/bin/kill -HUP $MAINPID",
            "KillMode=mixed", "TimeoutStopSec=660", "Type=notify", "NotifyAccess=main",
        ] {
            #expect(unit.contains(setting), "\(setting)")
        }
        // systemd checks that ExecStart's program exists: point it at the staged binary.
        let staged = "\(root)/stowage-scheduler.service"
        try unit.replacingOccurrences(of: "ExecStart=/usr/local/bin/stowage", with: "ExecStart=\(root)/usr/local/bin/stowage")
            .write(toFile: staged, atomically: true, encoding: .utf8)
        let verify = try runCommand("/usr/bin/systemd-analyze", ["verify", "--man=no", staged])
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(verify.stderr.isEmpty && verify.stdout.isEmpty, "systemd-analyze: \(verify.stdout)\(verify.stderr)")
    }
}
