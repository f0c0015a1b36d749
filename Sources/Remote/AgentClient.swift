// Runs one job on one node's agent: connect over SSH, start `stowage-agent serve`, check
// its greeting, send the job on stdin (then the input, framed), hand its stdout to the
// caller and its stderr events to the result. Protocol: docs/agent-protocol.md.
import AgentProtocol
import Fleet
import Foundation
import Support
import Topology

/// What a finished job said.
package struct AgentRun: Sendable {
    package var node: String
    package var hello: AgentEvent
    package var result: AgentEvent
    /// log and warning events, in order.
    package var messages: [AgentEvent]
    /// Bytes the coordinator received on the agent's stdout.
    package var received: Int64
    /// `chunk` events, in stream order.
    package var chunks: [AgentEvent] = []
}

package enum AgentClient {
    /// Runs `job` on the agent at `agent.remotePath(user:)` on the target node.
    ///
    /// - input: called on the connection's thread whenever the channel can take more;
    ///   return nil when there is no more. Without it the job's stdin stays open and empty
    ///   until the job ends: closing it is how a job is cancelled.
    /// - output: receives the agent's stdout on the connection's thread, in order. It may
    ///   block (that is how a slow consumer slows the remote producer down).
    package static func run(
        _ target: SSHTarget, agent: AgentBinary, job: AgentJob,
        input: (() -> [UInt8]?)? = nil,
        output: ((UnsafeRawBufferPointer) -> Void)? = nil,
        progress: ((Int64) -> Void)? = nil,
        ready: (@Sendable () -> Void)? = nil
    ) async throws(StowageError) -> AgentRun {
        var source: (() -> ExecChannel.Input)?
        if let input {
            var ended = false
            source = {
                if ended { return .end }
                guard let chunk = input() else { ended = true; return .bytes(Frame.end) }
                return .bytes(framed(chunk))
            }
        }
        return try await run(target, agent: agent, job: job, framedInput: source, output: output, progress: progress, ready: ready)
    }

    /// As above, with the input taken record by record from a feed that another thread fills
    /// (a backup's chunks, a restore's sealed records): each record goes out as one frame,
    /// and the end frame follows the feed's end.
    package static func run(
        _ target: SSHTarget, agent: AgentBinary, job: AgentJob, feed: any RecordFeed,
        output: ((UnsafeRawBufferPointer) -> Void)? = nil,
        progress: ((Int64) -> Void)? = nil,
        ready: (@Sendable () -> Void)? = nil
    ) async throws(StowageError) -> AgentRun {
        var ended = false
        return try await run(
            target, agent: agent, job: job,
            framedInput: {
                if ended { return .end }
                switch feed.next() {
                case .record(let r): return .bytes(framed(r))
                case .later: return .later
                case .end:
                    ended = true
                    return .bytes(Frame.end)
                case .abandoned:
                    // The input ends without its end frame: the agent sees it cut.
                    ended = true
                    return .end
                }
            }, output: output, progress: progress, ready: ready)
    }

    /// As above, with input that may be "not yet" (`.later`): a producer on another thread
    /// is behind. The closure frames its own bytes and ends with `Frame.end`. `wake`, once
    /// set, has the channel ask `framedInput` at once (input that comes late: `.hold` until).
    package static func run(
        _ target: SSHTarget, agent: AgentBinary, job: AgentJob,
        framedInput: (() -> ChannelInput)?,
        output: ((UnsafeRawBufferPointer) -> Void)?,
        progress: ((Int64) -> Void)?,
        ready: (@Sendable () -> Void)?,
        until: Wakeup? = nil, wake: Wakeup? = nil
    ) async throws(StowageError) -> AgentRun {
        let call = Handoff(value: (framedInput, output, progress))
        do {
            return try await DedicatedThread.run("agent \(target.node)") { flag in
                try runBlocking(
                    target, agent: agent, job: job, input: call.value.0, output: call.value.1,
                    progress: call.value.2, ready: ready, cancel: flag, until: until, wake: wake)
            }
        } catch let e as StowageError {
            throw e
        } catch {
            throw StowageError(.internalError, "\(target.node): \(error)")
        }
    }

    static func runBlocking(
        _ target: SSHTarget, agent: AgentBinary, job: AgentJob, input: (() -> ExecChannel.Input)?,
        output: ((UnsafeRawBufferPointer) -> Void)?, progress: ((Int64) -> Void)?,
        ready: (@Sendable () -> Void)? = nil, cancel: CancelFlag, until: Wakeup? = nil, wake: Wakeup? = nil
    ) throws(StowageError) -> AgentRun {
        // A job that holds something (a lock) until told: its input stays open until
        // `until` is set, then ends, and the agent finishes the job cleanly.
        let input = until.map { w in { w.isSet ? ExecChannel.Input.end : .hold } } ?? input
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var jobLine = Array((try? enc.encode(job)) ?? Data())
        jobLine.append(0x0A)

        var events = EventReader()
        var lineSent = false, received: Int64 = 0
        let exit: RemoteExit
        let started = Deadline.now()
        var how = "new"
        do {
            var opened = started
            // The channel lives only inside this closure: it is freed (libssh2_channel_free
            // touches the session) before its connection is parked for another thread.
            let (conn, remoteExit, clean) = try { () throws -> (SSHConnection, RemoteExit, Bool) in
                let (conn, channel) = try open(target, command: "\(shellQuote(agent.remotePath(user: target.user))) serve", how: &how)
                opened = Deadline.now()
                let r = try channel.pump(
                    input: {
                        if !lineSent { lineSent = true; return .bytes(jobLine) }
                        guard let input else { return .hold }
                        return input()
                    },
                    stdout: { buf in
                        received += Int64(buf.count)
                        output?(buf)
                    },
                    stderr: { buf in
                        events.feed(buf)
                        if let p = events.takeProgress() { progress?(p) }
                        if events.takeReady() { ready?() }
                    },
                    cancelled: { cancel.isSet || events.mismatch != nil },
                    wake: (until ?? wake)?.fd ?? -1)
                return (conn, r, channel.closedCleanly)
            }()
            exit = remoteExit
            // Closed on both ends: the connection can carry the next job to this node.
            if clean { SSHConnectionPool.shared.park(conn) }
            Trace.log(
                "\(target.node) \(job.kind.rawValue): channel \(Int((opened - started) * 1000)) ms (\(how) connection), job \(Int((Deadline.now() - opened) * 1000)) ms, \(received) bytes out"
            )
        } catch let e as SSHError {
            if case .cancelled = e, let hello = events.mismatch {
                throw mismatchError(target, hello, agent)
            }
            if case .cancelled = e { throw StowageError(.cancelled, "\(target.node): job \(job.kind.rawValue) cancelled; the agent was stopped") }
            SSHConnectionPool.shared.noteFailure(target)
            throw StowageError.ssh(e, target)
        } catch let e as StowageError {
            throw e
        } catch {
            throw StowageError(.internalError, "\(target.node): \(error)")
        }

        let who = "\(target.node) (\(target.address))"
        guard let hello = events.hello else {
            if exit.status == 127 {
                throw StowageError(
                    .agentMismatch, "\(who): no stowage-agent of this build at \(agent.remotePath(user: target.user))",
                    hint: "install it: stowage agent install (an agent of another build may be there; each build has its own path)")
            }
            throw StowageError(
                .agentMismatch,
                "\(who): the program at \(agent.remotePath(user: target.user)) did not greet as stowage-agent (exit \(exit.status)): \(events.plainText.prefix(200))",
                hint: "reinstall it: stowage agent install")
        }
        if let err = events.error {
            let how = exit.signal.map { "; the agent was killed by signal \($0)" } ?? ""
            let text = "\(who): \(job.kind.rawValue) job failed: \(err.message ?? err.code ?? "error")\(how)"
            switch err.code {
            case "auth-failed":
                throw StowageError(.credentialsRejected, text, hint: "check the layer's credentials in the inventory")
            case "damaged":
                throw StowageError(.repositoryDamaged, text, hint: "stowage storage verify finds damaged copies; use another backup")
            case "tool-missing":
                throw StowageError(.toolsMissing, text, hint: "stowage agent check lists what each node lacks")
            default:
                throw StowageError(.remoteFailed, text, retryable: true)
            }
        }
        if let sig = exit.signal {
            throw StowageError(
                .remoteFailed,
                "\(who): the agent (pid \(hello.pid ?? 0)) was killed by signal \(sig) during the \(job.kind.rawValue) job, after \(received) bytes of output",
                hint: "something on the node stopped it (OOM killer, an operator, a reboot); the job left nothing committed", retryable: true)
        }
        guard let result = events.result else {
            throw StowageError(
                .remoteFailed, "\(who): the agent ended (exit \(exit.status)) without a result: the stream was cut after \(received) bytes",
                retryable: true)
        }
        if let sent = result.bytes, job.kind == .source || job.kind == .echo, sent != received {
            throw StowageError(.remoteFailed, "\(who): the agent sent \(sent) bytes but \(received) arrived", retryable: true)
        }
        return AgentRun(node: target.node, hello: hello, result: result, messages: events.messages, received: received, chunks: events.chunks)
    }

    /// A channel running `command`, on a parked connection to the node when one answers
    /// quickly, else on a new one. A parked connection that fails to open a channel (the
    /// node went away, a firewall now drops its packets) costs at most 2 s (a third of the
    /// connect timeout when that is shorter) before the new connection, which then reports
    /// the node's real state.
    static func open(_ target: SSHTarget, command: String, how: inout String) throws -> (SSHConnection, ExecChannel) {
        if let parked = SSHConnectionPool.shared.take(target) {
            do {
                let ch = try ExecChannel(parked, command: command, deadline: Deadline(seconds: min(2, target.connectTimeout / 3)))
                how = "reused"
                SSHConnectionPool.shared.noteReuse()
                return (parked, ch)
            } catch {
                SSHConnectionPool.shared.noteFailure(target)
                Trace.log("\(target.node): a parked connection failed (\(error)); connecting anew")
            }
        }
        let conn = try SSHConnection(target)
        how = "new"
        return (conn, try ExecChannel(conn, command: command, deadline: Deadline(seconds: target.connectTimeout)))
    }

    static func mismatchError(_ t: SSHTarget, _ hello: AgentEvent, _ agent: AgentBinary) -> StowageError {
        StowageError(
            .agentMismatch,
            "\(t.node) (\(t.address)): the agent at \(agent.remotePath(user: t.user)) speaks protocol \(hello.protocol.map(String.init) ?? "?") (version \(hello.version ?? "?")), this coordinator protocol \(AgentWire.protocolVersion)",
            hint: "upgrade it: stowage agent install")
    }

    /// Input bytes as frames of at most `AgentWire.maxFrame`.
    package static func framed(_ chunk: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(chunk.count + 4 * (chunk.count / AgentWire.maxFrame + 1))
        var i = 0
        repeat {
            let n = min(AgentWire.maxFrame, chunk.count - i)
            if n == 0 { break }
            out += Frame.header(n)
            out += chunk[i..<(i + n)]
            i += n
        } while i < chunk.count
        return out
    }
}

/// Splits the agent's stderr into JSON events; anything that is not an event (a shell's
/// "not found", a crash message) is kept as plain text for the error message.
struct EventReader {
    private var partial: [UInt8] = []
    private(set) var hello: AgentEvent?
    private(set) var result: AgentEvent?
    private(set) var error: AgentEvent?
    private(set) var messages: [AgentEvent] = []
    private(set) var chunks: [AgentEvent] = []
    private(set) var plainText = ""
    private var lastProgress: Int64?
    /// Set when the greeting names another protocol version: the job must not run.
    private(set) var mismatch: AgentEvent?

    mutating func feed(_ buf: UnsafeRawBufferPointer) {
        partial.append(contentsOf: buf)
        while let nl = partial.firstIndex(of: 0x0A) {
            let line = Array(partial[..<nl])
            partial.removeSubrange(...nl)
            handle(line)
        }
    }

    private var readySeen = false

    /// True once, when the `ready` event has arrived.
    mutating func takeReady() -> Bool {
        defer { readySeen = false }
        return readySeen
    }

    mutating func takeProgress() -> Int64? {
        defer { lastProgress = nil }
        return lastProgress
    }

    private mutating func handle(_ line: [UInt8]) {
        guard let e = try? JSONDecoder().decode(AgentEvent.self, from: Data(line)) else {
            if plainText.count < 4096 { plainText += String(decoding: line, as: UTF8.self) + " " }
            return
        }
        switch e.event {
        case .hello:
            hello = e
            if e.agent != AgentWire.agentName || e.protocol != AgentWire.protocolVersion { mismatch = e }
        case .progress: lastProgress = e.bytes
        case .ready: readySeen = true
        case .chunk: chunks.append(e)
        case .log, .warning: messages.append(e)
        case .result: result = e
        case .error: error = e
        }
    }
}

/// Quotes a word for the remote shell that sshd runs the command with.
func shellQuote(_ s: String) -> String {
    if !s.isEmpty && s.allSatisfy({ $0.isLetter || $0.isNumber || "/._-+:=@".contains($0) }) { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
