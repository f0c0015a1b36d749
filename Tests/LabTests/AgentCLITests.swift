// `stowage agent install|check` and `stowage ssh trust` as an operator runs them, plus the
// faults that end a session from the node's side.
import AgentProtocol
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

private func tempDir() throws -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("stowage-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

private func sxTarget(_ n: Int, identity: String? = nil) -> SSHTarget {
    var t = SSHTarget(
        node: "sx\(n)", host: "127.0.9.\(10 + n)", port: Lab.sshPort, user: "root",
        identity: identity ?? "\(Lab.dir)/ssh/id_ed25519", knownHosts: "\(Lab.dir)/ssh/known_hosts")
    t.connectTimeout = 3
    return t
}

extension LabSuites {
    @Suite struct AgentCLI {
        init() throws { try Lab.require() }

        @Test func installIsIdempotentAndCheckReportsTools() throws {
            let first = try runCommand(Repo.stowage, ["agent", "install", "shop/sqldb", "--config", Lab.inventory])
            #expect(first.status == 0, "\(first.stderr)")
            let second = try runCommand(Repo.stowage, ["agent", "install", "shop/sqldb", "--config", Lab.inventory])
            #expect(second.status == 0)
            #expect(second.stdout.split(separator: "\n").allSatisfy { $0.contains(": up-to-date /var/lib/stowage/agent/stowage-agent-") }, "\(second.stdout)")

            let check = try runCommand(Repo.stowage, ["agent", "check", "shop", "--json", "--config", Lab.inventory])
            #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
            try JSONSchema.validate(check.stdout, schema: "agent-check")
            let nodes = try JSONDecoder().decode([NodeCheck].self, from: Data(check.stdout.utf8))
            #expect(nodes.map(\.node) == ["pg1", "pg2", "my1", "my2", "rd1", "rd2", "rc1", "rc2", "rc3"])
            #expect(nodes.allSatisfy { $0.ok && $0.ssh == "ok" && ($0.freeBytes ?? 0) > 0 })
            #expect(nodes[0].tools["pg_dump"]?.contains("PostgreSQL") == true)
            #expect(nodes[2].tools["mariadb-dump"]?.contains("MariaDB") == true)
            #expect(nodes[4].tools["redis-cli"]?.hasPrefix("redis-cli 7") == true)
            #expect(nodes[0].agent == "\(AgentWire.version) (protocol \(AgentWire.protocolVersion))")

            let storage = try runCommand(Repo.stowage, ["agent", "check", "lab-storage", "--config", Lab.inventory])
            #expect(storage.status == 0)
            #expect(storage.stdout.contains("st1"))
            #expect(storage.stdout.contains("storage lab-storage"))
        }

        @Test func missingToolsAreNamedPerEngine() {
            let spec = NodeSpec(name: "m", ssh: nil, db: nil, root: nil, location: "x")
            let t = SSHTarget(node: "m", host: "h", port: 22, user: "root", identity: "i", knownHosts: "k")
            let my = AgentNode(spec: spec, target: t, engine: .mysql, layer: "a/b", storageRoot: nil, storage: nil)
            // MySQL's and MariaDB's names stand in for each other.
            #expect(AgentCheck.missingTools(my, ["mariadb-dump": "x", "mysqldump": "missing", "mariadb": "missing", "mysql": "y"]).isEmpty)
            #expect(AgentCheck.missingTools(my, ["mariadb-dump": "missing", "mysqldump": "missing", "mariadb": "x"]) == ["mariadb-dump or mysqldump"])
            let pg = AgentNode(spec: spec, target: t, engine: .postgresql, layer: "a/b", storageRoot: nil, storage: nil)
            #expect(AgentCheck.missingTools(pg, ["pg_dump": "x", "pg_dumpall": "missing", "psql": "x"]) == ["pg_dumpall"])
        }

        @Test func checkNamesTheNodeWithAnUnknownHostKeyAndTrustFixesIt() throws {
            let dir = try tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let known = "\(dir)/known_hosts"
            try "".write(toFile: known, atomically: true, encoding: .utf8)
            let inv = "\(dir)/stowage.yaml"
            try String(contentsOfFile: Lab.inventory, encoding: .utf8)
                .replacingOccurrences(of: "\(Lab.dir)/ssh/known_hosts", with: known)
                .write(toFile: inv, atomically: true, encoding: .utf8)

            let before = try runCommand(Repo.stowage, ["agent", "check", "staging/mariadb", "--config", inv])
            #expect(before.status == ExitStatus.hostKeyRefused.rawValue)
            #expect(before.stdout.contains("error: my3 (root@\(Lab.sshHost("127.0.2.20"))): unknown host key ssh-ed25519 SHA256:"))
            #expect(before.stdout.contains("hint: check the fingerprint on the node"))

            let trust = try runCommand(Repo.stowage, ["ssh", "trust", "my3", "--config", inv])
            #expect(trust.status == 0, "\(trust.stderr)")
            #expect(trust.stdout.hasPrefix("my3: recorded ssh-ed25519 SHA256:"))
            let again = try runCommand(Repo.stowage, ["ssh", "trust", "my3", "--config", inv])
            #expect(again.stdout.contains("is already trusted"))
            // The same as a document, for automation.
            let doc = try runCommand(Repo.stowage, ["ssh", "trust", "my3", "--json", "--config", inv])
            try JSONSchema.validate(doc.stdout, schema: "ssh-trust")
            let obj = try JSONSerialization.jsonObject(with: Data(doc.stdout.utf8)) as? [String: String]
            #expect(obj?["node"] == "my3" && obj?["result"] == "alreadyTrusted" && obj?["keyType"] == "ssh-ed25519", "\(doc.stdout)")
            #expect(obj?["fingerprint"]?.hasPrefix("SHA256:") == true)
            let after = try runCommand(Repo.stowage, ["agent", "check", "staging/mariadb", "--config", inv])
            #expect(after.status == 0, "\(after.stdout)")

            let unknown = try runCommand(Repo.stowage, ["ssh", "trust", "nosuch", "--config", inv])
            #expect(unknown.status == ExitStatus.usage.rawValue)
            #expect(unknown.stderr.contains("unknown node 'nosuch'"))
        }

        @Test func ecdsaIdentityWorks() async throws {
            let dir = try tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            #expect(try runCommand("/usr/bin/ssh-keygen", ["-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f", "\(dir)/id_ecdsa"]).status == 0)
            let pub = try String(contentsOfFile: "\(dir)/id_ecdsa.pub", encoding: .utf8)
            let authorized = "\(Lab.dir)/ssh/authorized_keys"
            let original = try String(contentsOfFile: authorized, encoding: .utf8)
            try (original + pub).write(toFile: authorized, atomically: true, encoding: .utf8)
            defer { try? original.write(toFile: authorized, atomically: true, encoding: .utf8) }
            let run = try await AgentClient.run(
                sxTarget(1, identity: "\(dir)/id_ecdsa"), agent: try AgentBinary.locate(),
                job: .check(CheckJob(path: "/")))
            #expect(run.result.freeBytes != nil)
        }

        @Test func malformedJobsAreRefusedByTheAgent() throws {
            let agent = try AgentBinary.locate().localPath
            for (job, expected) in [
                (#"{"type":"source"}"#, "a source job needs bytes or command"),
                (#"{"type":"put","root":7}"#, "malformed put job"),
                // A kind without a field it needs: a get names no objects.
                (#"{"type":"get","root":"/srv/stowage"}"#, "malformed get job"),
                (#"[1,2,3]"#, #"not a JSON object with a \"type\""#),
            ] {
                let r = try runCommand("/bin/sh", ["-c", "printf '%s\\n' '\(job)' | \(agent) serve"])
                #expect(r.status == AgentExit.badJob.rawValue, "\(job)")
                #expect(r.stderr.contains(expected), "\(job): \(r.stderr)")
            }
        }

        @Test func frozenSSHDTimesOutTheHandshake() async throws {
            // SIGSTOP: the kernel still completes the TCP connection; no SSH banner ever comes.
            let listener = try Procs.sshdListener("sx4")
            kill(listener, SIGSTOP)
            defer { kill(listener, SIGCONT) }
            var t = sxTarget(4)
            t.connectTimeout = 1.5
            let start = Date()
            do throws(StowageError) {
                _ = try await AgentClient.run(t, agent: try AgentBinary.locate(), job: .check(CheckJob()))
                Issue.record("a frozen sshd answered")
            } catch {
                #expect(error.status == .nodeUnreachable)
                #expect(error.message.contains("sx4 (root@\(Lab.sshHost("127.0.9.14"))): SSH handshake: no answer"), "\(error.message)")
                #expect(error.retryable)
            }
            #expect(Date().timeIntervalSince(start) < 4)
        }

        @Test func frozenAgentTimesOutTheJobAndThenExits() async throws {
            var t = sxTarget(3)
            t.ioTimeout = 2
            let received = ByteTally()
            let task = Task {
                try await AgentClient.run(
                    t, agent: try AgentBinary.locate(), job: .source(SourceJob(bytes: 1 << 40)),
                    output: { received.add($0.count) })
            }
            let deadline = Date().addingTimeInterval(10)
            while received.total < 8 << 20 && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            let agents = Procs.agentSessions()
            #expect(agents.count == 1)
            for p in agents { kill(p, SIGSTOP) }
            let stopped = Date()
            do { _ = try await task.value; Issue.record("a frozen agent finished") } catch let e as StowageError {
                #expect(e.status == .nodeUnreachable)
                #expect(e.message.contains("no data from the node for 2.0 s"), "\(e.message)")
            }
            #expect(Date().timeIntervalSince(stopped) < 6)
            // Thawed, it finds its session gone and exits.
            for p in agents { kill(p, SIGCONT) }
            let gone = Date().addingTimeInterval(5)
            while !Procs.agentSessions().isEmpty && Date() < gone { try await Task.sleep(for: .milliseconds(50)) }
            #expect(Procs.agentSessions().isEmpty)
        }

        @Test func connectionDroppedMidJobIsReportedAndLeavesNothingBehind() async throws {
            // As when a node reboots: its sshd session processes die, the TCP connection drops.
            let received = ByteTally()
            let task = Task {
                try await AgentClient.run(
                    sxTarget(5), agent: try AgentBinary.locate(),
                    job: .source(SourceJob(bytes: 1 << 40)), output: { received.add($0.count) })
            }
            let deadline = Date().addingTimeInterval(10)
            while received.total < 32 << 20 && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(received.total >= 32 << 20)
            let sessions = try Procs.sshdSessions("sx5")
            #expect(!sessions.isEmpty)
            for p in sessions { kill(p, SIGKILL) }
            do { _ = try await task.value; Issue.record("a dropped connection reported success") } catch let e as StowageError {
                #expect([ExitStatus.nodeUnreachable, .remoteFailed].contains(e.status), "\(e)")
                #expect(e.message.hasPrefix("sx5 ("), "\(e.message)")
            }
            let gone = Date().addingTimeInterval(5)
            while !Procs.agentSessions().isEmpty && Date() < gone { try await Task.sleep(for: .milliseconds(50)) }
            #expect(Procs.agentSessions().isEmpty, "an agent outlived its dropped connection")
        }
    }
}

final class ByteTally: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add(_ k: Int) { lock.lock(); n += k; lock.unlock() }
    var total: Int { lock.lock(); defer { lock.unlock() }; return n }
}
