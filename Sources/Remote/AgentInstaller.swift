// `stowage agent install`: copy this build's agent to a node, atomically and verified.
//
// 1. If the node already has this build (same path, same SHA-256), leave it alone.
// 2. SCP the binary to a temporary name in the agent folder (mode 700).
// 3. Check its SHA-256 on the node; a mismatch removes the temporary file.
// 4. Rename it to its versioned path (rename is atomic), then run its handshake.
// A failure at any step leaves the previous agents untouched and no half-written file
// under a name a job would run.
import AgentProtocol
import Fleet
import Foundation
import Support
import Topology

package enum AgentInstallOutcome: String, Sendable, Codable {
    case installed
    case upToDate = "up-to-date"
}

package enum AgentInstaller {
    package static func install(_ node: AgentNode, _ agent: AgentBinary) async throws(StowageError) -> AgentInstallOutcome {
        let t = node.target
        do {
            return try await DedicatedThread.run("install \(t.node)") { flag throws(StowageError) -> AgentInstallOutcome in
                try installBlocking(t, agent, flag)
            }
        } catch let e as StowageError {
            throw e
        } catch {
            throw StowageError(.internalError, "\(t.node): \(error)")
        }
    }

    static func installBlocking(_ t: SSHTarget, _ agent: AgentBinary, _ flag: CancelFlag) throws(StowageError) -> AgentInstallOutcome {
        let who = "\(t.node) (\(t.address))"
        do {
            let conn = try SSHConnection(t)
            let dir = AgentBinary.remoteDirectory(user: t.user)
            let final = agent.remotePath(user: t.user)
            let existing = try run(conn, "mkdir -p -m 700 \(shellQuote(dir)) && if [ -f \(shellQuote(final)) ]; then sha256sum \(shellQuote(final)); fi", flag)
            guard existing.exit.status == 0 else {
                throw StowageError(
                    .remoteFailed, "\(who): cannot create \(dir): \(existing.stderr)",
                    hint: t.user == "root"
                        ? "check the node's /var/lib" : "the SSH user \(t.user) needs a home folder it can write (the agent lives in ~/\(dir))")
            }
            if existing.stdout.split(separator: " ").first.map(String.init) == agent.sha256 {
                try handshake(conn, final, who, flag)
                return .upToDate
            }

            let tmp = "\(dir)/.stowage-agent.tmp.\(UInt64.random(in: 0...UInt64.max))"
            // Streamed in 1 MiB reads: the binary is tens of MB.
            guard let file = FileHandle(forReadingAtPath: agent.localPath) else {
                throw StowageError(
                    .usage, "cannot read the agent binary \(agent.localPath)",
                    hint: "check the file and its permissions, or point --agent-binary at a readable one")
            }
            defer { try? file.close() }
            let scp = try ExecChannel(scpTo: tmp, mode: 0o700, size: agent.size, conn, deadline: Deadline(seconds: t.connectTimeout))
            _ = try scp.pump(
                input: {
                    guard let chunk = try? file.read(upToCount: 1 << 20), !chunk.isEmpty else { return .end }
                    return .bytes(Array(chunk))
                }, stdout: { _ in }, stderr: { _ in }, cancelled: { flag.isSet })

            let sum = try run(conn, "sha256sum \(shellQuote(tmp))", flag)
            guard sum.stdout.split(separator: " ").first.map(String.init) == agent.sha256 else {
                _ = try? run(conn, "rm -f \(shellQuote(tmp))", flag)
                throw StowageError(
                    .remoteFailed, "\(who): the uploaded agent's SHA-256 does not match (\(sum.stdout.prefix(64))): upload corrupted",
                    hint: "try again; nothing was installed", retryable: true)
            }
            let mv = try run(conn, "chmod 755 \(shellQuote(tmp)) && mv -f \(shellQuote(tmp)) \(shellQuote(final))", flag)
            guard mv.exit.status == 0 else {
                _ = try? run(conn, "rm -f \(shellQuote(tmp))", flag)
                throw StowageError(.remoteFailed, "\(who): cannot move the agent into place: \(mv.stderr)")
            }
            try handshake(conn, final, who, flag)
            return .installed
        } catch let e as SSHError {
            throw StowageError.ssh(e, t)
        } catch let e as StowageError {
            throw e
        } catch {
            throw StowageError(.internalError, "\(who): \(error)")
        }
    }

    static func handshake(_ conn: SSHConnection, _ path: String, _ who: String, _ flag: CancelFlag) throws {
        let r = try run(conn, "\(shellQuote(path)) hello", flag)
        guard r.exit.status == 0,
            let hello = try? JSONDecoder().decode(AgentEvent.self, from: Data(r.stdout.utf8)),
            hello.agent == AgentWire.agentName
        else {
            throw StowageError(
                .agentMismatch, "\(who): the installed agent does not start: \(r.stderr.prefix(300))",
                hint: "the node may lack libc/libstdc++ of Debian 12's generation, or mount its folder noexec")
        }
        guard hello.protocol == AgentWire.protocolVersion else {
            throw StowageError(
                .agentMismatch, "\(who): the installed agent speaks protocol \(hello.protocol ?? 0), this coordinator \(AgentWire.protocolVersion)")
        }
    }

    struct Captured {
        var stdout: String
        var stderr: String
        var exit: RemoteExit
    }

    /// Runs a short shell command and captures its output (kept small: status commands only).
    static func run(_ conn: SSHConnection, _ command: String, _ flag: CancelFlag) throws -> Captured {
        let ch = try ExecChannel(conn, command: command, deadline: Deadline(seconds: conn.target.connectTimeout))
        var out: [UInt8] = [], err: [UInt8] = []
        let exit = try ch.pump(
            input: { .end }, stdout: { out.append(contentsOf: $0) }, stderr: { err.append(contentsOf: $0) },
            cancelled: { flag.isSet })
        return Captured(
            stdout: String(decoding: out, as: UTF8.self).trimmingWhitespace(),
            stderr: String(decoding: err, as: UTF8.self).trimmingWhitespace(), exit: exit)
    }
}
