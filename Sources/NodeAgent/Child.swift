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

enum ChildLauncher {
    static let marker = "__child"

    static func execChild(_ argv: [String]) -> Never {
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
    let pid: pid_t
    /// The read end of the child's stdout.
    let stdout: Int32
    private var reaped = false
    private(set) var status: Int32 = 0

    /// Starts `argv` with stdin from /dev/null and stdout on a pipe; stderr is the agent's
    /// own (the coordinator reads it as log lines only when they are not JSON).
    init(_ argv: [String]) throws(IOFailure) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw .errno(errno) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        // Tool output on stderr would corrupt the events channel: send it to /dev/null for
        // now; the dump issue gives tools a stderr pipe of their own.
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attr, 0)
        var def = sigset_t()
        sigemptyset(&def)
        sigaddset(&def, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &def)

        let selfExe = "/proc/self/exe"
        let full = [selfExe, ChildLauncher.marker] + argv
        let cargs = full.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        // A minimal environment: no secret ever travels through it.
        let envList = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "LANG=C.UTF-8", "STOWAGE_AGENT_PID=\(getpid())"]
        let cenv = envList.map { strdup($0) } + [nil]
        defer { cenv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, selfExe, &actions, &attr, cargs, cenv)
        close(fds[1])
        guard rc == 0 else { close(fds[0]); throw .errno(rc) }
        self.pid = pid
        self.stdout = fds[0]
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

    deinit { close(stdout) }
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
