// The SSH transport and the agent on the lab's real sshd nodes: streaming both ways with
// SHA-256 checks, many sessions at once, host-key refusal and trust, a killed agent,
// cancellation that leaves nothing behind, secrets kept out of /proc, and bad agents.
import AgentProtocol
import Crypto
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

private func labInventory() throws -> Inventory { try Inventory.load(path: Lab.inventory) }

private func agent() throws -> AgentBinary { try AgentBinary.locate() }

/// An SSH target for a lab node by name and address (the sx* nodes are not in the inventory).
private func target(_ name: String, _ host: String, knownHosts: String? = nil, identity: String? = nil) -> SSHTarget {
    var t = SSHTarget(
        node: name, host: host, port: Lab.sshPort, user: "root",
        identity: identity ?? "\(Lab.dir)/ssh/id_ed25519", knownHosts: knownHosts ?? "\(Lab.dir)/ssh/known_hosts")
    t.connectTimeout = 3
    return t
}

private func hex(_ d: SHA256.Digest) -> String { d.map { String(format: "%02x", $0) }.joined() }

/// Waits up to `seconds` for `condition`.
private func eventually(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return condition()
}

/// A deterministic stream of distinct 1 MiB blocks.
private final class BlockStream: @unchecked Sendable {
    let total: Int
    private var sent = 0
    private var base: [UInt8]
    private(set) var hash = SHA256()

    init(bytes: Int) {
        total = bytes
        var g = SystemRandomNumberGenerator()
        base = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    func next() -> [UInt8]? {
        guard sent < total else { return nil }
        let n = min(base.count, total - sent)
        // Stamp the block number in so that no two blocks are alike.
        withUnsafeBytes(of: UInt64(sent).bigEndian) { for i in 0..<8 { base[i] = $0[i] } }
        let block = Array(base[0..<n])
        hash.update(data: block)
        sent += n
        return block
    }
}

private final class Hasher: @unchecked Sendable {
    var hash = SHA256()
    var bytes: Int64 = 0
    func add(_ b: UnsafeRawBufferPointer) { hash.update(bufferPointer: b); bytes += Int64(b.count) }
}

extension LabSuites {
    @Suite struct AgentTransport {
        init() async throws {
            try Lab.require()
            // Every lab node shares this machine's file system: one install serves them all.
            let inv = try labInventory()
            _ = try await AgentInstaller.install(try inv.agentNode(named: "st1"), try agent())
        }

        @Test func oneGiBOutOfTheNodeMatchesTheAgentsSHA256() async throws {
            let h = Hasher()
            let size: Int64 = 1 << 30
            let run = try await AgentClient.run(
                target("st1", "127.0.9.1"), agent: try agent(),
                job: .source(SourceJob(bytes: size)), output: { h.add($0) })
            #expect(run.received == size)
            #expect(run.result.bytes == size)
            #expect(run.result.sha256 == hex(h.hash.finalize()))
        }

        @Test func oneGiBIntoTheNodeMatchesTheCoordinatorsSHA256() async throws {
            let input = BlockStream(bytes: 1 << 30)
            let run = try await AgentClient.run(
                target("st2", "127.0.9.2"), agent: try agent(),
                job: .sink, input: { input.next() })
            #expect(run.result.bytes == 1 << 30)
            #expect(run.result.sha256 == hex(input.hash.finalize()))
        }

        @Test func echoStreamsBothWaysAtOnce() async throws {
            let input = BlockStream(bytes: 256 << 20)
            let h = Hasher()
            let run = try await AgentClient.run(
                target("sx1", "127.0.9.11"), agent: try agent(),
                job: .echo, input: { input.next() }, output: { h.add($0) })
            let sent = hex(input.hash.finalize())
            #expect(h.bytes == 256 << 20)
            #expect(hex(h.hash.finalize()) == sent)
            #expect(run.result.sha256 == sent)
        }

        @Test func twentySessionsToTwentyNodesAtOnce() async throws {
            let inv = try labInventory()
            var targets = try inv.agentNodes(nil).map(\.target)
            for i in 1...5 { targets.append(target("sx\(i)", "127.0.9.\(10 + i)")) }
            #expect(targets.count == 20)
            #expect(Set(targets.map(\.host)).count == 20)
            let a = try agent()
            let results = try await withThrowingTaskGroup(of: (String, Bool).self) { group in
                for t in targets {
                    group.addTask {
                        let h = Hasher()
                        let run = try await AgentClient.run(t, agent: a, job: .source(SourceJob(bytes: 32 << 20)), output: { h.add($0) })
                        return (t.node, run.result.sha256 == hex(h.hash.finalize()) && h.bytes == 32 << 20)
                    }
                }
                var out: [(String, Bool)] = []
                for try await r in group { out.append(r) }
                return out
            }
            #expect(results.count == 20)
            #expect(results.filter { !$0.1 }.isEmpty, "\(results.filter { !$0.1 })")
        }

        @Test func unknownAndChangedHostKeysAreRefusedUntilTrusted() async throws {
            let a = try agent()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kh-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let known = "\(dir)/known_hosts"
            let real = try String(contentsOfFile: "\(Lab.dir)/ssh/known_hosts", encoding: .utf8).split(separator: "\n")
            let pg1Line = try #require(real.first { $0.hasPrefix(Lab.sshHost("127.0.1.10") + " ") })
            let st1Key = try #require(real.first { $0.hasPrefix(Lab.sshHost("127.0.9.1") + " ") }).split(separator: " ")[2]

            // Unknown: an empty known_hosts.
            try "".write(toFile: known, atomically: true, encoding: .utf8)
            let t = target("pg1", "127.0.1.10", knownHosts: known)
            do throws(StowageError) { _ = try await AgentClient.run(t, agent: a, job: .check(CheckJob())); Issue.record("accepted an unknown key") } catch {
                #expect(error.status == .hostKeyRefused)
                #expect(error.message.contains("pg1 (root@\(Lab.sshHost("127.0.1.10"))): unknown host key ssh-ed25519 SHA256:"))
                #expect(error.hint?.contains("stowage ssh trust pg1") == true)
            }
            // `ssh trust` records it, and then the node is accepted.
            guard case .recorded(let key) = try await KnownHosts.trust(t, replace: false) else { Issue.record("not recorded"); return }
            #expect(try String(contentsOfFile: known, encoding: .utf8) == "\(pg1Line)\n")
            #expect(key.fingerprint.hasPrefix("SHA256:") && !key.fingerprint.hasSuffix("="))
            _ = try await AgentClient.run(t, agent: try agent(), job: .check(CheckJob()))
            #expect(try await KnownHosts.trust(t, replace: false) == .alreadyTrusted(key))

            // Changed: known_hosts holds another key for the address.
            try "\(Lab.sshHost("127.0.1.10")) ssh-ed25519 \(st1Key)\n".write(toFile: known, atomically: true, encoding: .utf8)
            do throws(StowageError) { _ = try await AgentClient.run(t, agent: a, job: .check(CheckJob())); Issue.record("accepted a changed key") } catch {
                #expect(error.status == .hostKeyRefused)
                #expect(error.message.contains("HOST KEY CHANGED"))
                #expect(error.message.contains(key.fingerprint))
            }
            do throws(StowageError) { _ = try await KnownHosts.trust(t, replace: false); Issue.record("trusted a changed key without --replace") } catch {
                #expect(error.status == .hostKeyRefused)
                #expect(error.hint?.contains("--replace") == true)
            }
            #expect(try await KnownHosts.trust(t, replace: true) == .replaced(key))
            _ = try await AgentClient.run(t, agent: try agent(), job: .check(CheckJob()))
        }

        @Test func trustWritesBracketedEntriesForOtherPorts() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kh-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            var t = target("x", "10.1.1.1", knownHosts: "\(dir)/known_hosts")
            t.port = 2222
            let key = HostKey(type: "ssh-ed25519", blob: Array("not a real key".utf8))
            _ = try KnownHosts.record(key, for: t, replace: false)
            #expect(try String(contentsOfFile: "\(dir)/known_hosts", encoding: .utf8) == "[10.1.1.1]:2222 ssh-ed25519 \(key.base64)\n")
        }

        @Test func agentKilledMidStreamIsReportedAsKilled() async throws {
            let killed = Hasher()
            let task = Task {
                try await AgentClient.run(
                    target("sx2", "127.0.9.12"), agent: try agent(),
                    job: .source(SourceJob(bytes: 1 << 40)), output: { killed.add($0) })
            }
            #expect(await eventually(10) { killed.bytes > 64 << 20 })
            let pids = Procs.agentSessions()
            #expect(pids.count == 1)
            for p in pids { kill(p, SIGKILL) }
            do { _ = try await task.value; Issue.record("a killed agent reported success") } catch let e as StowageError {
                #expect(e.status == .remoteFailed)
                #expect(e.message.contains("sx2 (\(Lab.sshHost("127.0.9.12"))): the agent"))
                #expect(e.message.contains("killed by signal KILL"))
            }
        }

        @Test func cancellationLeavesNothingRunningOnTheNode() async throws {
            // A job whose tool produces nothing for an hour; the unique duration finds it in /proc.
            let task = Task {
                try await AgentClient.run(
                    target("sx3", "127.0.9.13"), agent: try agent(),
                    job: .source(SourceJob(command: ["sleep", "3517"])))
            }
            #expect(await eventually(5) { !Procs.matching("sleep 3517").isEmpty })
            task.cancel()
            do { _ = try await task.value; Issue.record("not cancelled") } catch let e as StowageError {
                #expect(e.status == .cancelled)
            }
            #expect(await eventually(5) { Procs.matching("sleep 3517").isEmpty }, "the tool outlived the cancelled job")
            #expect(await eventually(5) { Procs.agentSessions().isEmpty }, "an agent outlived the cancelled job")
        }

        @Test func secretsFromTheJobAppearInNoArgvOrEnvironment() async throws {
            let secret = "s3cret-\(UUID().uuidString)"
            let task = Task {
                try await AgentClient.run(
                    target("sx4", "127.0.9.14"), agent: try agent(),
                    job: .source(SourceJob(command: ["sleep", "3518"], secrets: JobSecrets(dbPassword: secret))))
            }
            defer { task.cancel() }
            #expect(await eventually(5) { !Procs.matching("sleep 3518").isEmpty })
            var scanned = 0
            for pid in (try FileManager.default.contentsOfDirectory(atPath: "/proc")).compactMap({ Int32($0) }) {
                for file in ["cmdline", "environ"] {
                    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/\(file)") else { continue }
                    scanned += 1
                    #expect(data.range(of: Data(secret.utf8)) == nil, "secret in /proc/\(pid)/\(file)")
                }
            }
            #expect(scanned > 20)
            task.cancel()
            _ = try? await task.value
        }

        @Test func missingAgentAndAgentOfAnotherProtocol() async throws {
            let real = try agent()
            var missing = real
            missing.sha256 = String(repeating: "0", count: 64)
            do throws(StowageError) {
                _ = try await AgentClient.run(target("sx5", "127.0.9.15"), agent: missing, job: .check(CheckJob())); Issue.record("ran")
            } catch {
                #expect(error.status == .agentMismatch)
                #expect(error.message.contains("no stowage-agent of this build at \(missing.remotePath(user: "root"))"))
                #expect(error.hint?.contains("stowage agent install") == true)
            }
            // An agent that greets with another protocol version is refused before any job runs.
            var other = real
            other.sha256 = String(repeating: "e", count: 64)
            let fake = "#!/bin/sh\necho '{\"event\":\"hello\",\"agent\":\"stowage-agent\",\"protocol\":99,\"version\":\"9.9.9\"}' >&2\nexec cat >/dev/null\n"
            try fake.write(toFile: other.remotePath(user: "root"), atomically: true, encoding: .utf8)
            chmod(other.remotePath(user: "root"), 0o755)
            defer { unlink(other.remotePath(user: "root")) }
            do throws(StowageError) {
                _ = try await AgentClient.run(target("sx5", "127.0.9.15"), agent: other, job: .check(CheckJob())); Issue.record("ran")
            } catch {
                #expect(error.status == .agentMismatch)
                #expect(error.message.contains("speaks protocol 99 (version 9.9.9), this coordinator protocol \(AgentWire.protocolVersion)"))
            }
        }

        @Test func unknownJobIsAClearError() async throws {
            // A job type this agent build does not know (from a newer coordinator, say).
            let r = try runCommand("/bin/sh", ["-c", "echo '{\"type\":\"restore-everything\"}' | \(try agent().localPath) serve"])
            #expect(r.status == AgentExit.badJob.rawValue)
            #expect(r.stderr.contains("unknown job type 'restore-everything'"))
        }

        @Test func unreachableRefusedAndBlockedNodes() async throws {
            let a = try agent()
            var refused = target("sx5", "127.0.9.15")
            refused.port = 2222
            do throws(StowageError) { _ = try await AgentClient.run(refused, agent: a, job: .check(CheckJob())); Issue.record("connected") } catch {
                #expect(error.status == .nodeUnreachable)
                #expect(error.message == "sx5 (root@[127.0.9.15]:2222): SSH connection refused")
            }
            try await Lab.with("block", "st1") {
                let start = Date()
                do throws(StowageError) {
                    _ = try await AgentClient.run(target("st1", "127.0.9.1"), agent: a, job: .check(CheckJob())); Issue.record("connected")
                } catch {
                    #expect(error.status == .nodeUnreachable)
                    #expect(error.message.hasPrefix("st1 (root@\(Lab.sshHost("127.0.9.1"))): unreachable"))
                    #expect(error.retryable)
                }
                #expect(Date().timeIntervalSince(start) < 4)
            }
        }

        @Test func wrongKeyAndRSAKey() async throws {
            let a = try agent()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            for (type, name) in [("ed25519", "other"), ("rsa", "rsa")] {
                let r = try runCommand("/usr/bin/ssh-keygen", ["-q", "-t", type, "-N", "", "-f", "\(dir)/\(name)"])
                #expect(r.status == 0)
            }
            do throws(StowageError) {
                _ = try await AgentClient.run(target("sx5", "127.0.9.15", identity: "\(dir)/other"), agent: a, job: .check(CheckJob()));
                Issue.record("accepted")
            } catch {
                #expect(error.status == .sshAuthFailed)
                #expect(error.message.contains("sx5 (root@\(Lab.sshHost("127.0.9.15"))): SSH authentication with \(dir)/other failed"))
            }
            do throws(StowageError) {
                _ = try await AgentClient.run(target("sx5", "127.0.9.15", identity: "\(dir)/rsa"), agent: a, job: .check(CheckJob())); Issue.record("accepted")
            } catch {
                #expect(error.status == .sshAuthFailed)
                #expect(error.message.contains("is an RSA key: libssh2 1.10 signs RSA only with SHA-1"))
            }
        }
    }
}
