// A PostgreSQL restore in several sessions (what `pg_restore -j` does for an archive, done
// for the plain script the repository holds): Engines' `PostgresScriptRouter` says where each
// part of the script goes; the pre-data runs in one psql, the tables load in up to `sessions`
// psql processes at once, each table whole and in its order, and the rest runs in one psql
// again once every table is in.
//
// The stream arrives in order, one table after the other, so loading two tables at once
// means holding the second while the first loads: table data is spooled to a file with no
// name (O_TMPFILE, on disk, not in /run's memory) that exists only while the agent holds it,
// so nothing of it outlives the job however it ends. Each session's thread follows the
// spool behind the stream, freeing what it has sent (hole punching), and the stream waits
// when what is spooled and not yet sent would pass the budget (a share of the free space),
// so a small disk makes the restore slower, never fail.
import AgentProtocol
import CAgentSys
import Engines
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// How a PostgreSQL restore is applied: one psql, or `sessions` loading tables at once.
final class ParallelToolSink: RestoreSink {
    private let command: [String]
    private let dir: PrivateDir
    private let sessions: Int
    private var filter: PostgresRestoreFilter
    private var router = PostgresScriptRouter()
    /// The ordered session under way: a psql fed like a single-session restore's.
    private var main: ToolSink?
    private var mainCount = 0
    /// What the next ordered session is sent first (the router's setup at the last table).
    private var mainSetup: [UInt8] = []
    private var loaders: TableLoaders?
    private var failure: (any Error)?
    private var done = false

    /// Spooled bytes not yet sent, at most; nil: half the spool's free space, at most 1 GiB.
    private let spoolBudget: Int64?

    init(_ command: [String], dir: PrivateDir, filter: PostgresRestoreFilter, sessions: Int, spoolBudget: Int64? = nil) {
        self.spoolBudget = spoolBudget
        self.command = command
        self.dir = dir
        self.filter = filter
        self.sessions = sessions
    }

    func write(_ plain: UnsafeRawBufferPointer) throws {
        var f = filter
        f.feed(plain) { routed in route(routed) }
        filter = f
        if let failure { throw failure }
    }

    /// The filter's output into the router, each step done; the first error is kept (the
    /// filter's callback cannot throw) and stops what follows.
    private func route(_ buf: UnsafeRawBufferPointer) {
        guard failure == nil else { return }
        do { try router.feed(buf) { try self.step($0) } } catch { failure = error }
    }

    private func step(_ s: PostgresScriptRouter.Step) throws {
        switch s {
        case .main(let b):
            if main == nil { try startMain() }
            try main?.write(b)
        case .dataBegins(let setup):
            try endMain()
            loaders = try TableLoaders(command: command, dir: dir, setup: setup, sessions: sessions, budget: spoolBudget)
        case .copyBegins(let header): try loaders?.begin(header)
        case .rows(let b): try loaders?.append(b)
        case .copyEnds: loaders?.end()
        case .dataEnds(let setup):
            mainSetup = setup
            let l = loaders
            loaders = nil
            try l?.finish()
        }
    }

    private func startMain() throws {
        mainCount += 1
        let m = try ToolSink(command, dir: dir, filter: nil, log: "stderr-\(mainCount)")
        main = m
        try mainSetup.withUnsafeBytes { try m.write($0) }
    }

    private func endMain() throws {
        guard let m = main else { return }
        main = nil
        _ = try m.finish()
    }

    func finish() throws -> [String: Int64]? {
        var f = filter
        f.finish { routed in route(routed) }
        filter = f
        if let failure { throw failure }
        try router.finish { try self.step($0) }
        try endMain()
        done = true
        return nil
    }

    func cancel() {
        guard !done else { return }
        done = true
        loaders?.cancel()
        loaders = nil
        main?.cancel()
        main = nil
    }
}

/// "psql ended with exit 3: ERROR: ..." from a tool's wait status and its stderr file.
func toolFailure(_ label: String, status: Int32, dir: PrivateDir, log: String) -> JobFailure {
    let why = dir.tail(log)
    return JobFailure(
        exit: .jobFailed, code: toolFailureCode(why),
        message: "\(label) ended with \(describeStatus(status))\(why.isEmpty ? "" : ": \(why)")")
}

/// The sessions loading tables, each on a thread of its own that follows the spool: a table
/// is taken by the first session free, whole.
final class TableLoaders: @unchecked Sendable {
    private struct Table {
        let header: [UInt8]
        let start: Int64
        var end: Int64
        var complete = false
    }

    private let command: [String]
    private let dir: PrivateDir
    private let setup: [UInt8]
    private let spool: Int32
    private let spoolPath: String
    private let budget: Int64
    private var mutex = pthread_mutex_t()
    private var changed = pthread_cond_t()
    // Guarded by `mutex`:
    private var tables: [Table] = []
    private var nextTable = 0
    private var written: Int64 = 0
    private var sent: Int64 = 0
    private var closed = false
    private var failed: JobFailure?
    private var children: [Child?]
    // The stream's thread only:
    private var threads: [WorkerThread] = []

    /// Where table data is spooled: on disk, not /run (memory).
    static let spoolDirs = ["/var/tmp", "/tmp"]

    /// Whether this node can spool (a file system taking unnamed files); if not, the
    /// restore takes one psql.
    static var canSpool: Bool {
        for d in spoolDirs where access(d, W_OK) == 0 {
            let fd = stowage_open_unnamed(d)
            if fd >= 0 {
                close(fd)
                return true
            }
        }
        return false
    }

    init(command: [String], dir: PrivateDir, setup: [UInt8], sessions: Int, budget: Int64? = nil) throws {
        self.command = command
        self.dir = dir
        self.setup = setup
        var fd: Int32 = -1
        var path = ""
        var why = "no folder to spool to"
        for d in Self.spoolDirs where access(d, W_OK) == 0 {
            fd = stowage_open_unnamed(d)
            if fd >= 0 {
                path = d
                break
            }
            why = "\(d): \(String(cString: strerror(errno)))"
        }
        guard fd >= 0 else {
            throw JobFailure(exit: .jobFailed, code: "spool", message: "cannot spool table data for a parallel restore (\(why)); restore with --jobs 1")
        }
        spool = fd
        spoolPath = path
        // At most 1 GiB, and at most half of what is free: beyond it the stream waits.
        var st = statvfs()
        let free = fstatvfs(fd, &st) == 0 ? Int64(st.f_bavail) * Int64(st.f_frsize) : 0
        self.budget = budget ?? max(8 << 20, min(1 << 30, free / 2))
        children = Array(repeating: nil, count: max(1, sessions))
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&changed, nil)
        for i in 0..<children.count {
            threads.append(WorkerThread { [self] in self.load(session: i) })
        }
    }

    deinit {
        close(spool)
        pthread_cond_destroy(&changed)
        pthread_mutex_destroy(&mutex)
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    // MARK: the stream's side

    func begin(_ header: [UInt8]) throws {
        try locked {
            if let failed { throw failed }
            tables.append(Table(header: header, start: written, end: written))
            pthread_cond_broadcast(&changed)
        }
    }

    func append(_ b: UnsafeRawBufferPointer) throws {
        guard !b.isEmpty else { return }
        try locked {
            while failed == nil && written - sent + Int64(b.count) > budget && written > sent {
                pthread_cond_wait(&changed, &mutex)
            }
            if let failed { throw failed }
        }
        // Only this thread writes; readers read below `end`, published after the write.
        let at = locked { written }
        var off = 0
        while off < b.count {
            let n = pwrite(spool, b.baseAddress! + off, b.count - off, off_t(at) + off_t(off))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let e = errno
                throw JobFailure(
                    exit: .jobFailed, code: e == ENOSPC ? "disk-full" : "spool",
                    message: "cannot spool table data to \(spoolPath): \(String(cString: strerror(e))); restore with --jobs 1")
            }
            off += n
        }
        locked {
            written += Int64(b.count)
            tables[tables.count - 1].end = written
            pthread_cond_broadcast(&changed)
        }
    }

    func end() {
        locked {
            tables[tables.count - 1].complete = true
            pthread_cond_broadcast(&changed)
        }
    }

    /// Every table sent and every session ended; the first session's failure, if any.
    func finish() throws {
        locked {
            closed = true
            pthread_cond_broadcast(&changed)
        }
        threads.forEach { $0.join() }
        threads = []
        if let failed = locked({ failed }) { throw failed }
    }

    func cancel() {
        locked {
            closed = true
            if failed == nil { failed = JobFailure(exit: .jobFailed, code: "cancelled", message: "the restore was stopped") }
            pthread_cond_broadcast(&changed)
            // A session blocked writing to its psql sees the pipe break; each session's
            // thread reaps its own psql.
            for c in children { if let c { kill(-c.pid, SIGTERM) } }
        }
        threads.forEach { $0.join() }
        threads = []
    }

    // MARK: a session's side

    private func fail(_ f: JobFailure) {
        locked {
            if failed == nil { failed = f }
            pthread_cond_broadcast(&changed)
        }
    }

    /// Session `i`: takes tables while there are any, sending each one's header, its rows
    /// as they reach the spool, and its end; a psql is started for the first table taken.
    private func load(session i: Int) {
        let chunk = 1 << 20
        var child: Child?
        let log = "stderr-load-\(i + 1)"
        func broken(_ c: Child) {
            c.closeInput()
            fail(toolFailure(command[0], status: c.wait(), dir: dir, log: log))
        }
        while true {
            let t: Int? = locked {
                while failed == nil && !closed && nextTable >= tables.count { pthread_cond_wait(&changed, &mutex) }
                guard failed == nil && nextTable < tables.count else { return nil }
                nextTable += 1
                return nextTable - 1
            }
            guard let t else { break }
            if child == nil {
                do {
                    let c = try Child(command, input: true, output: false, errorLog: "\(dir.path)/\(log)")
                    locked { children[i] = c }
                    child = c
                } catch {
                    fail(JobFailure(exit: .jobFailed, code: "spawn-failed", message: "cannot start \(command[0]): \(error)"))
                    break
                }
                guard writeAll(child!.stdin, setup) else { broken(child!); break }
            }
            let c = child!
            let (header, start) = locked { (tables[t].header, tables[t].start) }
            guard writeAll(c.stdin, header) else { broken(c); break }
            var at = start
            var freed = start
            var ok = true
            while ok {
                let (end, complete, stop) = locked {
                    while failed == nil && tables[t].end == at && !tables[t].complete { pthread_cond_wait(&changed, &mutex) }
                    return (tables[t].end, tables[t].complete, failed != nil)
                }
                if stop { ok = false; break }
                if at == end && complete { break }
                // Spliced: the pages go from the page cache into psql's pipe without a copy
                // through this process.
                var off = at
                let got = stowage_splice_to_pipe(spool, &off, c.stdin, Int(min(Int64(chunk), end - at)))
                if got < 0 && errno == EINTR { continue }
                guard got > 0 else {
                    if got < 0 && errno == EPIPE {
                        broken(c)
                    } else {
                        fail(
                            JobFailure(
                                exit: .jobFailed, code: "spool",
                                message: "cannot send the spooled table data in \(spoolPath): \(String(cString: strerror(errno)))"))
                    }
                    ok = false
                    break
                }
                at = off
                // A spliced page still in the pipe must stay in the file (a hole punched under
                // it would fail psql's read): holes only well behind what was sent.
                if at - freed >= 32 << 20 {
                    _ = stowage_punch_hole(spool, freed, at - freed - (16 << 20))
                    freed = at - (16 << 20)
                }
                locked {
                    sent += Int64(got)
                    pthread_cond_broadcast(&changed)
                }
            }
            guard ok else { break }
            guard writeAll(c.stdin, PostgresScriptRouter.endOfData) else { broken(c); break }
        }
        guard let c = child else { return }
        if locked({ failed }) != nil {
            c.closeInput()
            c.terminate(grace: 0.5)
            return
        }
        c.closeInput()
        let st = c.wait()
        if st != 0 { fail(toolFailure(command[0], status: st, dir: dir, log: log)) }
    }
}
