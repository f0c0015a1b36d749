// Starting the tools a job runs (dump tools later; any program whose stdout is a stream now)
// so that they can never outlive the agent.
//
// A child is started as `stowage-agent __child PROGRAM ARGS...`: that first step asks the
// kernel to SIGKILL it when the agent dies (PR_SET_PDEATHSIG survives exec), checks the
// agent is still alive, then execs the program. So even an agent killed with SIGKILL
// leaves nothing behind. Each child leads its own process group, and cancellation signals
// the whole group.
import CAgentSys
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

package enum ChildLauncher {
    package static let marker = "__child"

    package static func execChild(_ argv: [String]) -> Never {
        _ = stowage_set_parent_death_signal(SIGKILL)
        // The agent may have died between fork and prctl: then our parent is no longer it.
        if let expected = ProcessInfoLite.env("STOWAGE_AGENT_PID").flatMap({ Int32($0) }), getppid() != expected { exit(125) }
        guard let prog = argv.first else { exit(125) }
        var cargs = argv.map { strdup($0) } + [nil]
        execvp(prog, &cargs)
        let msg = "stowage-agent: cannot run \(prog): \(String(cString: strerror(errno)))\n"
        writeAll(2, Array(msg.utf8))
        exit(127)
    }
}

enum ProcessInfoLite {
    static func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}

final class Child {
    /// The program that starts children with the first step above: the agent itself. Tests
    /// that run jobs inside the test process point it at a built `stowage-agent` (the test
    /// binary does not know `__child`); nothing else changes it.
    nonisolated(unsafe) static var launcher = "/proc/self/exe"

    let pid: pid_t
    /// The read end of the child's stdout.
    let stdout: Int32
    private var reaped = false
    private(set) var status: Int32 = 0

    /// The write end of the child's stdin, when it was started with `input`.
    private(set) var stdin: Int32 = -1

    /// Starts `argv`. stdin is /dev/null, or a pipe (`input`); stdout a pipe, or /dev/null
    /// when `output` is false; stderr goes to the file `errorLog` (its tail explains a
    /// failure) or /dev/null: never to the agent's stderr, which carries the events.
    /// F_SETPIPE_SZ (Linux; not exported by Glibc's module without _GNU_SOURCE).
    static let setPipeSize: Int32 = 1031
    static let pipeBytes: Int32 = 1 << 20

    init(_ argv: [String], input: Bool = false, output: Bool = true, errorLog: String? = nil) throws(IOFailure) {
        var fds: [Int32] = [-1, -1]
        var ins: [Int32] = [-1, -1]
        if output {
            guard pipe(&fds) == 0 else { throw .errno(errno) }
            fds.forEach { _ = fcntl($0, F_SETFD, FD_CLOEXEC) }
            // A 1 MiB pipe (Linux's default ceiling for any user) instead of 64 KiB: the tool
            // keeps writing while the agent cuts, compresses and seals the chunk it has.
            // Best effort: a system with a lower ceiling keeps its default.
            _ = fcntl(fds[0], Self.setPipeSize, Self.pipeBytes)
        }
        if input {
            // Close-on-exec: a later child must not hold this pipe open (its reader would
            // never see the end of its input).
            guard pipe(&ins) == 0 else {
                let e = errno
                if output { close(fds[0]); close(fds[1]) }
                throw .errno(e)
            }
            ins.forEach { _ = fcntl($0, F_SETFD, FD_CLOEXEC) }
            // 1 MiB here too: the tool (psql, mariadb) reads on while the agent decrypts.
            _ = fcntl(ins[1], Self.setPipeSize, Self.pipeBytes)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input {
            posix_spawn_file_actions_adddup2(&actions, ins[0], 0)
            posix_spawn_file_actions_addclose(&actions, ins[0])
            posix_spawn_file_actions_addclose(&actions, ins[1])
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        if output {
            posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
            posix_spawn_file_actions_addclose(&actions, fds[0])
            posix_spawn_file_actions_addclose(&actions, fds[1])
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 2, errorLog ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o600)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attr, 0)
        var def = sigset_t()
        sigemptyset(&def)
        sigaddset(&def, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &def)

        let selfExe = Child.launcher
        let full = [selfExe, ChildLauncher.marker] + argv
        let cargs = full.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        // A minimal environment: no secret ever travels through it.
        let envList = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8", "STOWAGE_AGENT_PID=\(getpid())",
        ]
        let cenv = envList.map { strdup($0) } + [nil]
        defer { cenv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, selfExe, &actions, &attr, cargs, cenv)
        if output { close(fds[1]) }
        if input { close(ins[0]) }
        guard rc == 0 else {
            if output { close(fds[0]) }
            if input { close(ins[1]) }
            throw .errno(rc)
        }
        self.pid = pid
        self.stdout = fds[0]
        self.stdin = ins[1]
    }

    /// Ends the child's input (it sees EOF).
    func closeInput() {
        if stdin >= 0 { close(stdin); stdin = -1 }
    }

    /// SIGTERM to the child's process group, SIGKILL if it is still there after `grace`.
    func terminate(grace: Double = 2) {
        guard !reaped else { return }
        kill(-pid, SIGTERM)
        let deadline = monotonicNow() + grace
        while monotonicNow() < deadline {
            if tryReap() { return }
            usleep(20_000)
        }
        kill(-pid, SIGKILL)
        _ = wait()
    }

    func tryReap() -> Bool {
        if reaped { return true }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid { status = st; reaped = true }
        return reaped
    }

    @discardableResult
    func wait() -> Int32 {
        if reaped { return status }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        status = st
        reaped = true
        return st
    }

    deinit {
        if stdout >= 0 { close(stdout) }
        closeInput()
    }
}

func monotonicNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// "exit 3" or "killed by signal KILL" from a wait status.
func describeStatus(_ st: Int32) -> String {
    if st & 0x7f == 0 { return "exit \((st >> 8) & 0xff)" }
    let sig = st & 0x7f
    let names: [Int32: String] = [SIGKILL: "KILL", SIGTERM: "TERM", SIGSEGV: "SEGV", SIGPIPE: "PIPE", SIGINT: "INT", SIGABRT: "ABRT"]
    return "killed by signal \(names[sig] ?? String(sig))"
}
