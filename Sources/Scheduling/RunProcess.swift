// One scheduled backup as a child process: `stowage backup ENV/LAYER --policy --json`. A
// process per run keeps the scheduler small and alive whatever a run does (its memory is
// the run's, and ends with it), and cancelling one is a signal to its process group.
// Output goes to files (read when the run ends), so nothing has to drain pipes meanwhile.
import Fleet
import Foundation
import Operations
import Remote
import Storage
import Support
import Topology

package struct RunProcessResult: Sendable {
    package var exitStatus: Int32?
    package var signal: Int32?
    package var stdout: String
    package var stderr: String
}

package final class RunProcess: Sendable {
    package let pid: pid_t
    private let outPath: String
    private let errPath: String

    /// Starts `argv` (argv[0] an absolute path) in a process group of its own.
    package static func start(
        _ argv: [String], workDir: String, stdin: String = "/dev/null",
        environment extra: [String: String] = [:]
    ) throws(StowageError) -> RunProcess {
        let id = UUID().uuidString.prefix(8)
        let out = "\(workDir)/run-\(id).out", err = "\(workDir)/run-\(id).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // Its own process group, so cancelling reaches what it started too; default signal
        // dispositions, whatever the scheduler ignores.
        var def = sigset_t()
        sigemptyset(&def)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&def, s) }
        posix_spawnattr_setsigdefault(&attr, &def)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in extra { env[k] = v }
        let cenv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in cenv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cargs, cenv)
        guard rc == 0 else {
            throw StowageError(.internalError, "cannot start \(argv[0]): \(String(cString: strerror(rc)))")
        }
        return RunProcess(pid: pid, out: out, err: err)
    }

    private init(pid: pid_t, out: String, err: String) {
        self.pid = pid
        outPath = out
        errPath = err
    }

    /// Waits (on a thread of its own, not the cooperative pool) and collects the output.
    package func wait() async -> RunProcessResult {
        let pid = self.pid
        let status = await DedicatedThread.run("wait-\(pid)") { () -> Int32 in
            var st: Int32 = 0
            while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
            return st
        }
        func read(_ p: String) -> String {
            defer { unlink(p) }
            return String(decoding: FileManager.default.contents(atPath: p) ?? Data(), as: UTF8.self)
        }
        let termSig = status & 0x7f
        return RunProcessResult(
            exitStatus: termSig == 0 ? (status >> 8) & 0xff : nil,
            signal: termSig == 0 ? nil : termSig, stdout: read(outPath), stderr: read(errPath))
    }

    /// Signals the run's process group.
    package func signal(_ sig: Int32) { kill(-pid, sig) }
}
