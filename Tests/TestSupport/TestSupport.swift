// Shared by the test targets: where the repository, fixtures, lab and binaries are, and how
// to run a command and read what it printed.
import Foundation
import Topology

package enum Repo {
    /// The package root, found from this file's path (Tests/TestSupport/TestSupport.swift).
    package static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    package static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// The built `stowage` executable, beside the test bundle in .build/<config>/.
    package static var stowage: String {
        if let p = ProcessInfo.processInfo.environment["STOWAGE_BIN"] { return p }
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("stowage").path,
            path(".build/debug/stowage"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }
}

extension Repo {
    /// The built `stowage-agent` beside `stowage` (a debug build of this tree).
    package static var agent: String {
        URL(fileURLWithPath: stowage).deletingLastPathComponent().appendingPathComponent("stowage-agent").path
    }
}

package enum Fixtures {
    package static func observation(_ relative: String) throws -> LayerObservation {
        let data = try Data(contentsOf: URL(fileURLWithPath: Repo.path("fixtures/probes/\(relative)")))
        return try JSONDecoder().decode(LayerObservation.self, from: data)
    }
}

package struct CommandResult: Sendable {
    package var status: Int32
    package var stdout: String
    package var stderr: String
    package var seconds: Double
}

/// Runs a program to completion. Environment: this process's, changed by `env` (a nil value
/// removes). Output goes to temporary files, not pipes: the lab's heal steps start daemons
/// that inherit the child's descriptors and would hold a pipe open for their lifetime.
/// (Foundation's Process is avoided too: its waitUntilExit can hang on Linux.)
@discardableResult
package func runCommand(_ program: String, _ args: [String], env: [String: String?] = [:], cwd: String? = nil) throws -> CommandResult {
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    let dir = FileManager.default.temporaryDirectory.path
    let tag = "\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    let outPath = "\(dir)/stowage-test-out-\(tag)", errPath = "\(dir)/stowage-test-err-\(tag)"
    defer { unlink(outPath); unlink(errPath) }

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    // Glibc's addchdir_np is not visible from Swift: a shell changes directory, then execs.
    let command = cwd.map { ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", $0, program] + args } ?? [program] + args

    let argv = command.map { strdup($0) } + [nil]
    let envp = e.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    let start = Date()
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, command[0], &actions, nil, argv, envp)
    guard rc == 0 else { throw SpawnError(description: "cannot run \(program): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    // WIFEXITED / WEXITSTATUS, and 128+signal for a killed child as shells report it.
    let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    // Lossy: a tool's output may hold bytes that are not UTF-8 (a dump of binary columns).
    let out = FileManager.default.contents(atPath: outPath).map { String(decoding: $0, as: UTF8.self) } ?? ""
    let err = FileManager.default.contents(atPath: errPath).map { String(decoding: $0, as: UTF8.self) } ?? ""
    return CommandResult(status: code, stdout: out, stderr: err, seconds: Date().timeIntervalSince(start))
}

package struct SpawnError: Error, CustomStringConvertible {
    package var description: String
    package init(description: String) { self.description = description }
}

/// The lab started by fixtures/lab/lab.sh.
package enum Lab {
    package static let dir = ProcessInfo.processInfo.environment["STOWAGE_LAB_DIR"] ?? "/var/lib/stowage-lab"
    package static var inventory: String { "\(dir)/stowage.yaml" }
    /// The port every lab sshd listens on (fixtures/lab/lab.sh; not 22).
    package static let sshPort = Int(ProcessInfo.processInfo.environment["STOWAGE_LAB_SSH_PORT"] ?? "") ?? 4022
    /// How known_hosts and SSH messages name a lab node's address: `[127.0.9.1]:4022`.
    package static func sshHost(_ address: String) -> String { "[\(address)]:\(sshPort)" }
    package static func secret(_ name: String) throws -> String {
        try String(contentsOfFile: "\(dir)/secrets/\(name)", encoding: .utf8)
    }

    package struct NotRunning: Error, CustomStringConvertible {
        package var description: String
    }

    /// Fails (never skips) when the lab is down: integration tests must run wherever the suite runs.
    package static func require() throws {
        let r = try runCommand("/bin/bash", [Repo.path("fixtures/lab/lab.sh"), "status"], env: ["STOWAGE_LAB_DIR": dir])
        guard r.status == 0, FileManager.default.fileExists(atPath: inventory) else {
            throw NotRunning(description: "the lab is not running (\(dir)); start it with: bash fixtures/lab/lab.sh up\n\(r.stdout)")
        }
    }

    package static func fault(_ name: String, _ arg: String? = nil) throws { try lab(["fault", name] + (arg.map { [$0] } ?? [])) }
    package static func heal(_ name: String, _ arg: String? = nil) throws { try lab(["heal", name] + (arg.map { [$0] } ?? [])) }

    static func lab(_ args: [String]) throws {
        let r = try runCommand("/bin/bash", [Repo.path("fixtures/lab/lab.sh")] + args, env: ["STOWAGE_LAB_DIR": dir])
        guard r.status == 0 else { throw NotRunning(description: "lab.sh \(args.joined(separator: " ")) failed: \(r.stderr)") }
    }

    /// Runs `body` with a fault injected and always heals it afterwards.
    package static func with<T>(_ fault: String, _ arg: String? = nil, _ body: () async throws -> T) async throws -> T {
        try Lab.fault(fault, arg)
        do {
            let v = try await body()
            try Lab.heal(fault, arg)
            return v
        } catch {
            try? Lab.heal(fault, arg)
            throw error
        }
    }
}

/// Processes on this machine (every lab node runs on it), read from /proc.
package enum Procs {
    /// PIDs (other than this process) whose command line contains `needle`.
    package static func matching(_ needle: String) -> [Int32] { matching { cmd, _ in cmd.contains(needle) } }

    package static func matching(_ match: (String, Int32) -> Bool) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }.filter { pid in
            guard pid != getpid(), let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return match(String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self), pid)
        }
    }

    package static func parent(of pid: Int32) -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ").dropFirst().first.flatMap { Int32($0) }
    }

    package static func isDescendant(_ pid: Int32, of ancestor: Int32) -> Bool {
        var p: Int32? = pid
        for _ in 0..<10 {
            guard let cur = p, cur > 1 else { return false }
            if cur == ancestor { return true }
            p = parent(of: cur)
        }
        return false
    }

    /// Agent sessions (`stowage-agent-… serve`), on every node.
    package static func agentSessions() -> [Int32] { matching { cmd, _ in cmd.contains("stowage-agent-") && cmd.contains(" serve") } }

    /// The PID of a lab node's sshd listener.
    package static func sshdListener(_ node: String) throws -> Int32 {
        Int32(try String(contentsOfFile: "\(Lab.dir)/run/sshd-\(node).pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    /// Agent sessions served by one lab node's sshd.
    package static func agentSessions(on node: String) throws -> [Int32] {
        let l = try sshdListener(node)
        return agentSessions().filter { isDescendant($0, of: l) }
    }

    /// The per-connection sshd processes of one lab node (killing them drops its connections).
    package static func sshdSessions(_ node: String) throws -> [Int32] {
        let l = try sshdListener(node)
        return matching { _, pid in parent(of: pid) == l }
    }
}

/// Watches every process's /proc/PID/cmdline and environ, on a thread of its own, for any of
/// `secrets`, until stopped: proof that no password or key reaches argv or an environment
/// while a backup or restore runs (every lab node shares this machine's /proc).
package final class SecretScan: @unchecked Sendable {
    private let secrets: [(String, Data)]
    private let lock = NSLock()
    private var running = true
    private var found: [String] = []
    private var rounds = 0
    private var thread: Thread?

    package init(_ secrets: [String: String]) {
        self.secrets = secrets.filter { !$0.value.isEmpty }.map { ($0.key, Data($0.value.utf8)) }
        let t = Thread { [unowned self] in self.loop() }
        thread = t
        t.start()
    }

    private func loop() {
        while lock.withLock({ running }) {
            let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { Int32($0) != nil }
            for pid in pids where Int32(pid) != getpid() {
                for file in ["cmdline", "environ"] {
                    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/\(file)"), !data.isEmpty else { continue }
                    for (name, s) in secrets where data.range(of: s) != nil {
                        let cmd = String(
                            decoding: (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).prefix(80).map { $0 == 0 ? 0x20 : $0 },
                            as: UTF8.self)
                        lock.withLock { found.append("\(name) in /proc/\(pid)/\(file) (\(cmd))") }
                    }
                }
            }
            lock.withLock { rounds += 1 }
            usleep(5_000)
        }
    }

    /// Stops the scan: what it found, and how many full passes over /proc it made.
    package func stop() -> (found: [String], rounds: Int) {
        lock.withLock { running = false }
        while thread?.isFinished == false { usleep(1_000) }
        return lock.withLock { (Array(Set(found)).sorted(), rounds) }
    }
}

/// A program running in the background (a daemon under test), its output in a file.
package final class BackgroundProcess: @unchecked Sendable {
    package let pid: pid_t
    package let outputPath: String
    private var reaped: Int32?

    package init(_ program: String, _ args: [String], env: [String: String?] = [:], output: String) throws {
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([program] + args).map { strdup($0) } + [nil]
        let envp = e.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, program, &actions, nil, argv, envp)
        guard rc == 0 else { throw SpawnError(description: "cannot run \(program): \(String(cString: strerror(rc)))") }
        self.pid = pid
        outputPath = output
    }

    package var output: String { FileManager.default.contents(atPath: outputPath).map { String(decoding: $0, as: UTF8.self) } ?? "" }

    package func signal(_ s: Int32) { kill(pid, s) }

    /// Whether `text` appeared in the output within `timeout` s (polls; a loaded machine may
    /// take its time, a fixed sleep would make the test flaky).
    package func waitForOutput(_ text: String, timeout: Double = 30) async throws -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if output.contains(text) { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return output.contains(text)
    }

    /// The exit status (128+signal when killed), or nil if still running after `timeout` s.
    package func wait(timeout: Double) -> Int32? {
        if let reaped { return reaped }
        let end = Date().addingTimeInterval(timeout)
        repeat {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                reaped = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                return reaped
            }
            usleep(100_000)
        } while Date() < end
        return nil
    }

    deinit {
        if reaped == nil { kill(pid, SIGKILL); var s: Int32 = 0; waitpid(pid, &s, 0) }
    }
}
