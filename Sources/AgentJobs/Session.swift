// One agent session: handshake, one job, a result. Every way out of a job kills the
// processes the job started.
import AgentProtocol
import CAgentSys
import Crypto
import FoundationEssentials
import Repository

#if canImport(Glibc)
import Glibc
#endif

/// How a job ends when it does not succeed.
struct JobFailure: Error {
    var exit: AgentExit
    var code: String
    var message: String
}

package final class Session {
    package init() {}
    static let progressEvery: Int64 = 64 << 20

    package func run() -> AgentExit {
        // Two threads (the chunk loop and its sealer) need no more than two malloc arenas.
        // (Mapping every block of 1 MiB or more instead of reusing it cost a PostgreSQL
        // backup's agent 40% more CPU in page faults: measured, not taken.)
        _ = stowage_limit_malloc_arenas(2)
        Events.send(.hello(pid: getpid()))
        do {
            let job = try readJob()
            let result: AgentEvent
            switch job {
            case .check(let j): result = try check(j)
            case .sink: result = try sink()
            case .echo: result = try echo()
            case .source(let j): result = try source(j)
            case .put(let j):
                var input = InputBytes()
                result = try Store(root: j.root).put(&input, replace: j.replace ?? false)
            case .get(let j): result = try Store(root: j.root).get(j.names)
            case .list(let j): result = try Store(root: j.root).list(j.prefix)
            case .delete(let j): result = try Store(root: j.root).delete(j.names)
            case .lock(let j): result = try Store(root: j.root).lock(j.layers, exclusive: j.exclusive, owner: j.owner)
            case .chunk(let j): result = try chunk(j)
            case .restore(let j): result = try restore(j)
            }
            Events.send(result)
            return .ok
        } catch let f as JobFailure {
            Events.send(.error(f.code, f.message))
            return f.exit
        } catch IOFailure.closed {
            Events.send(.error("input-cut", "the input ended without its end frame"))
            return .inputCut
        } catch {
            Events.send(.error("internal", "\(error)"))
            return .jobFailed
        }
    }

    func readJob() throws -> AgentJob {
        let line: [UInt8]?
        do { line = try readJobLine() } catch {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "cannot read the job line: \(error)")
        }
        guard let line else { throw JobFailure(exit: .inputCut, code: "no-job", message: "stdin ended before a job arrived") }
        struct TypeOnly: Decodable { var type: String }
        let data = Data(line)
        guard let t = try? JSONDecoder().decode(TypeOnly.self, from: data) else {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "the job line is not a JSON object with a \"type\"")
        }
        guard AgentJob.Kind(rawValue: t.type) != nil else {
            throw JobFailure(
                exit: .badJob, code: "unknown-job",
                message:
                    "unknown job type '\(t.type)' (this agent, protocol \(AgentWire.protocolVersion), knows \(AgentJob.Kind.allCases.map(\.rawValue).joined(separator: ", ")))"
            )
        }
        do { return try JSONDecoder().decode(AgentJob.self, from: data) } catch {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "malformed \(t.type) job: \(error)")
        }
    }

    // MARK: jobs

    func sink() throws -> AgentEvent {
        var reader = FrameReader()
        var hash = SHA256()
        var total: Int64 = 0
        var nextProgress = Self.progressEvery
        do {
            while try reader.next({ buf in
                hash.update(bufferPointer: buf); total += Int64(buf.count)
            }) {
                if total >= nextProgress { Events.progress(total); nextProgress += Self.progressEvery }
            }
        } catch {
            throw JobFailure(exit: .inputCut, code: "input-cut", message: "input ended after \(total) bytes without its end frame")
        }
        return Self.result(total, hash)
    }

    func echo() throws -> AgentEvent {
        var reader = FrameReader()
        var hash = SHA256()
        var total: Int64 = 0
        var closed = false
        do {
            while try reader.next({ buf in
                hash.update(bufferPointer: buf)
                total += Int64(buf.count)
                if !writeAll(1, buf) { closed = true; throw IOFailure.closed }
            }) {}
        } catch {
            if closed { throw JobFailure(exit: .outputClosed, code: "output-closed", message: "stdout closed after \(total) bytes") }
            throw JobFailure(exit: .inputCut, code: "input-cut", message: "input ended after \(total) bytes without its end frame")
        }
        return Self.result(total, hash)
    }

    func source(_ job: SourceJob) throws -> AgentEvent {
        if let command = job.command, !command.isEmpty { return try sourceCommand(command) }
        guard let bytes = job.bytes, bytes >= 0 else {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "a source job needs bytes or command")
        }
        // Zeros, for transport tests and benchmarks: no disk, no tool in the way.
        let block = [UInt8](repeating: 0, count: 1 << 20)
        var hash = SHA256()
        var sent: Int64 = 0
        var nextProgress = Self.progressEvery
        while sent < bytes {
            if stdinClosed() { throw JobFailure(exit: .inputCut, code: "cancelled", message: "the coordinator closed the session after \(sent) bytes") }
            let n = Int(min(Int64(block.count), bytes - sent))
            let ok = block.withUnsafeBytes { b in
                let part = UnsafeRawBufferPointer(rebasing: b[0..<n])
                hash.update(bufferPointer: part)
                return writeAll(1, part)
            }
            if !ok { throw JobFailure(exit: .outputClosed, code: "output-closed", message: "stdout closed after \(sent) bytes") }
            sent += Int64(n)
            if sent >= nextProgress { Events.progress(sent); nextProgress += Self.progressEvery }
        }
        return Self.result(sent, hash)
    }

    func sourceCommand(_ command: [String]) throws -> AgentEvent {
        let child: Child
        do { child = try Child(command) } catch {
            throw JobFailure(exit: .jobFailed, code: "spawn-failed", message: "cannot start \(command[0]): \(error)")
        }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var hash = SHA256()
        var sent: Int64 = 0
        var nextProgress = Self.progressEvery
        var fds = [pollfd(fd: child.stdout, events: Int16(POLLIN), revents: 0), pollfd(fd: 0, events: Int16(POLLIN), revents: 0)]
        while true {
            for i in fds.indices { fds[i].revents = 0 }
            if poll(&fds, 2, -1) < 0 { if errno == EINTR { continue }; break }
            // Anything on stdin after the job line, or its end, means: stop.
            if fds[1].revents != 0 {
                child.terminate()
                throw JobFailure(exit: .inputCut, code: "cancelled", message: "the coordinator closed the session after \(sent) bytes; \(command[0]) stopped")
            }
            if fds[0].revents == 0 { continue }
            let n = buf.withUnsafeMutableBytes { read(child.stdout, $0.baseAddress!, $0.count) }
            if n < 0 { if errno == EINTR { continue }; break }
            if n == 0 { break }
            let ok = buf.withUnsafeBytes { b in
                let part = UnsafeRawBufferPointer(rebasing: b[0..<n])
                hash.update(bufferPointer: part)
                return writeAll(1, part)
            }
            if !ok {
                child.terminate()
                throw JobFailure(exit: .outputClosed, code: "output-closed", message: "stdout closed after \(sent) bytes; \(command[0]) stopped")
            }
            sent += Int64(n)
            if sent >= nextProgress { Events.progress(sent); nextProgress += Self.progressEvery }
        }
        let st = child.wait()
        guard st == 0 else {
            throw JobFailure(exit: .jobFailed, code: "command-failed", message: "\(command[0]) ended with \(describeStatus(st)) after \(sent) bytes")
        }
        return Self.result(sent, hash)
    }

    func check(_ job: CheckJob) throws -> AgentEvent {
        var e = AgentEvent(event: .result)
        var tools: [String: String] = [:]
        for t in job.tools ?? [] { tools[t] = toolVersion(t) ?? "missing" }
        e.tools = tools
        if let path = job.path {
            var p = path
            var st = statvfs()
            // The path may not exist yet (a storage root before the first backup): its
            // nearest existing parent is on the same file system in practice.
            while statvfs(p, &st) != 0 && p != "/" {
                p = String(p[..<(p.lastIndex(of: "/") ?? p.startIndex)])
                if p.isEmpty { p = "/" }
            }
            e.freeBytes = Int64(st.f_bavail) * Int64(st.f_frsize)
            e.totalBytes = Int64(st.f_blocks) * Int64(st.f_frsize)
            e.message = p
        }
        return e
    }

    /// The first line `TOOL --version` prints, or nil when the tool is not installed.
    func toolVersion(_ tool: String) -> String? {
        let dirs = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        guard dirs.contains(where: { access("\($0)/\(tool)", X_OK) == 0 }) else { return nil }
        guard let child = try? Child([tool, "--version"]) else { return nil }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonicNow() + 5
        var pfd = pollfd(fd: child.stdout, events: Int16(POLLIN), revents: 0)
        while out.count < 4096, monotonicNow() < deadline {
            if poll(&pfd, 1, 200) <= 0 { continue }
            let n = buf.withUnsafeMutableBytes { read(child.stdout, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        child.terminate(grace: 0.5)
        let line = String(decoding: out, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return line.isEmpty ? "unknown version" : line
    }

    /// True when stdin has ended or carries anything: for a job without input the
    /// coordinator sends nothing after the job line until it wants the job stopped.
    func stdinClosed() -> Bool {
        var p = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }

    static func result(_ bytes: Int64, _ hash: SHA256) -> AgentEvent {
        var e = AgentEvent(event: .result)
        e.bytes = bytes
        e.sha256 = hexString(hash.finalize())
        return e
    }
}
