// Redis (and Redis Cluster): a snapshot taken through the replication handshake out; in, the
// server replicating from the agent itself, or (a cluster, a restore that keeps other keys)
// the RDB's keys sent as RESTOREs built from its own bytes (replicas follow, TTLs kept),
// routed by slot on a cluster; a scratch redis-server and DUMP only for an RDB the parser
// does not know.
import AgentProtocol
import Engines
import FoundationEssentials
import Repository

#if canImport(Glibc)
import Glibc
#endif

struct RedisDriver: EngineDriver {
    func dumpSource(_ db: DatabaseAccess, password: String?) throws -> StreamSource {
        try RedisSnapshotSource(db, password: password)
    }

    func restoreSink(_ db: DatabaseAccess, password: String?, dir: PrivateDir) throws -> RestoreSink {
        try RedisSink(db, password: password, dir: dir)
    }
}

/// A Redis snapshot: `SYNC`, as a replica would (the handshake `redis-cli --rdb` makes). The
/// replica announces `capa eof`, so a server with `repl-diskless-sync` (Redis 7's default)
/// streams the RDB from its fork straight to the socket, `$EOF:<40-byte mark>` then the
/// bytes then the mark, instead of writing the whole file to its disk first and sending it
/// as `$<length>` afterwards (half the wall time of a backup, measured). The keys per
/// database are read with INFO just before, on the same connection.
final class RedisSnapshotSource: StreamSource {
    let label: String
    private let conn: RedisConnection
    private let framing: RedisRDBFraming
    private var reader: RedisRDBReader
    private let counts: [String: Int64]

    init(_ db: DatabaseAccess, password: String?) throws {
        label = "redis snapshot of \(db.host):\(db.port)"
        conn = try RedisConnection(host: db.host, port: db.port, timeout: 60)
        try conn.auth(user: db.user, password: password)
        counts = RESP.keyspace(try conn.call("INFO", "keyspace").text ?? "")
        // Redis 7: a snapshot-only replica (no replication stream afterwards), able to take
        // a diskless transfer. Older servers answer errors, which change nothing.
        try conn.send(RESP.command("REPLCONF", "rdb-only", "1"))
        _ = try conn.reply()
        try conn.send(RESP.command("REPLCONF", "capa", "eof"))
        _ = try conn.reply()
        try conn.send(RESP.command("SYNC"))
        let line = try conn.preambleLine()
        if line.hasPrefix("-") {
            throw JobFailure(exit: .jobFailed, code: toolFailureCode(line), message: "redis \(conn.name): SYNC refused: \(line.dropFirst())")
        }
        guard let framing = RedisRDBFraming(preamble: line) else {
            throw JobFailure(exit: .jobFailed, code: "command-failed", message: "redis \(conn.name): unexpected answer to SYNC: \(line.prefix(80))")
        }
        self.framing = framing
        reader = RedisRDBReader(framing)
    }

    var pollFD: Int32 { conn.descriptor }
    var hasBuffered: Bool { !reader.done && conn.hasBuffered }
    func read(_ into: UnsafeMutableRawPointer, _ max: Int) -> Int {
        reader.read(into, max) { conn.readRaw($0, $1) }
    }

    func observe(_ bytes: UnsafeRawBufferPointer) {}
    func cancel() {}

    func finish(total: Int64) throws -> [String: Int64]? {
        guard reader.done else {
            let expected = if case .length(let n) = framing { "of \(n) bytes" } else { "before its end mark" }
            throw JobFailure(exit: .jobFailed, code: "command-failed", message: "\(label): the snapshot ended after \(total) bytes, \(expected)")
        }
        return counts
    }
}

/// How the server frames the RDB it sends after `SYNC`: `$<length>` (written to its disk
/// first), or `$EOF:<mark>` (diskless: the bytes end with the 40-byte mark).
enum RedisRDBFraming: Equatable {
    case length(Int64)
    case endMark([UInt8])

    init?(preamble line: String) {
        if line.hasPrefix("$EOF:") {
            let mark = Array(line.utf8.dropFirst(5))
            guard mark.count == 40 else { return nil }
            self = .endMark(mark)
        } else if line.hasPrefix("$"), let n = Int64(line.dropFirst()), n >= 0 {
            self = .length(n)
        } else {
            return nil
        }
    }
}

/// The RDB's bytes out of the replication stream: all of them, and nothing after (pure over
/// a `fill` function, so the framing is tested without a server). With an end mark the
/// last 40 bytes read are held back until more come: they may be the mark.
struct RedisRDBReader {
    private(set) var done = false
    private var remaining: Int64 = 0
    private let mark: [UInt8]
    private var tail: [UInt8] = []

    init(_ framing: RedisRDBFraming) {
        switch framing {
        case .length(let n):
            remaining = n
            mark = []
            done = n == 0
        case .endMark(let m):
            mark = m
        }
    }

    /// Up to `max` (at least 41) bytes of the RDB into `into`; 0 at its end or when the
    /// connection ended first (then `done` stays false).
    mutating func read(_ into: UnsafeMutableRawPointer, _ max: Int, fill: (UnsafeMutableRawPointer, Int) -> Int) -> Int {
        guard !done else { return 0 }
        if mark.isEmpty {
            let n = fill(into, Int(min(Int64(max), remaining)))
            if n > 0 { remaining -= Int64(n) }
            if remaining == 0 { done = true }
            return n
        }
        while true {
            // The held-back tail first, then what the connection has.
            tail.withUnsafeBytes { into.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            let held = tail.count
            let n = fill(into + held, max - held)
            if n <= 0 { return 0 }
            let have = held + n
            let bytes = UnsafeRawBufferPointer(start: into, count: have)
            // The mark ends the RDB wherever it is: whatever follows it is not the RDB's.
            if let at = Self.find(mark, in: bytes) {
                done = true
                tail = []
                return at
            }
            let keep = min(mark.count, have)
            tail = Array(bytes[(have - keep)...])
            if have - keep > 0 { return have - keep }
        }
    }

    /// Where `needle` first starts in `hay` (memchr for its first byte, then a compare).
    static func find(_ needle: [UInt8], in hay: UnsafeRawBufferPointer) -> Int? {
        guard !needle.isEmpty, hay.count >= needle.count, let base = hay.baseAddress else { return nil }
        let last = hay.count - needle.count
        var i = 0
        while i <= last {
            guard let p = memchr(base + i, Int32(needle[0]), last - i + 1) else { return nil }
            let at = base.distance(to: UnsafeRawPointer(p))
            if needle.withUnsafeBytes({ memcmp(p, $0.baseAddress!, needle.count) }) == 0 { return at }
            i = at + 1
        }
        return nil
    }
}

/// A Redis restore. A single server whose data is replaced whole takes the backup by
/// replication from the agent itself (`RedisReplicationRestore`): it loads the RDB as the
/// chunks arrive, at its own speed, and its replicas resync from it by themselves. A cluster
/// (which refuses REPLICAOF), a restore that keeps other keys, or a target that cannot
/// replicate from here: the RDB is written to the private folder and, once the whole stream
/// has arrived and matched its hash, read key by key (`RDBParser`): each key goes to its
/// master as a `RESTORE` whose payload is the RDB's own bytes for the value. Only an RDB the
/// parser does not know (module data, functions, a newer format) is loaded by a scratch
/// server listening on a socket there and its keys copied with DUMP/RESTORE.
final class RedisSink: RestoreSink {
    private let db: DatabaseAccess
    private let password: String?
    private let dir: PrivateDir
    private var fd: Int32 = -1
    private var scratch: Child?
    private var replication: RedisReplicationRestore?

    init(_ db: DatabaseAccess, password: String?, dir: PrivateDir) throws {
        self.db = db
        self.password = password
        self.dir = dir
        // Fail before the transfer when the target cannot be reached or refuses the password.
        let target = try connectTarget(db.host, db.port)
        if !(db.cluster ?? false) && (db.flush ?? true) {
            do {
                replication = try RedisReplicationRestore(target: target)
                return
            } catch is RedisReplicationRestore.Unavailable {
                // The target's data is untouched; the copy below replaces it.
            }
        }
        fd = open("\(dir.path)/dump.rdb", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw JobFailure(exit: .jobFailed, code: "private-dir", message: "cannot create \(dir.path)/dump.rdb: \(String(cString: strerror(errno)))")
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    func write(_ plain: UnsafeRawBufferPointer) throws {
        if let replication { return try replication.send(plain) }
        guard writeAll(fd, plain) else {
            throw JobFailure(exit: .jobFailed, code: "write-failed", message: "cannot write the RDB to \(dir.path): \(errnoText(errno))")
        }
    }

    func cancel() {
        replication?.abandon()
        scratch?.terminate(grace: 1)
    }

    private func connectTarget(_ host: String, _ port: Int) throws -> RedisConnection {
        let c = try RedisConnection(host: host, port: port, timeout: 60)
        try c.auth(user: db.user, password: password)
        return c
    }

    func finish() throws -> [String: Int64]? {
        if let replication { return try replication.finish() }
        close(fd)
        fd = -1
        if let counts = try restoreByParsing() { return counts }
        return try restoreByCopy()
    }

    /// The target's connections: one server, or every master of a cluster, and which of
    /// them owns each slot; flushed unless the restore keeps other keys.
    private func targets(_ loaded: [String: Int64]) throws -> (conns: [RedisConnection], slotOwner: [Int]) {
        var conns: [RedisConnection] = []
        var slotOwner = [Int](repeating: 0, count: 16384)
        let first = try connectTarget(db.host, db.port)
        if db.cluster ?? false {
            let ranges = RedisCluster.slotRanges(try first.call("CLUSTER", "SLOTS"))
            var index: [String: Int] = [:]
            for (a, b, host, port) in ranges {
                let key = "\(host):\(port)"
                if index[key] == nil {
                    index[key] = conns.count
                    conns.append(try connectTarget(host, port))
                }
                for s in a...b { slotOwner[s] = index[key]! }
            }
            guard !conns.isEmpty else {
                throw JobFailure(exit: .jobFailed, code: "redis", message: "redis \(first.name): CLUSTER SLOTS lists no master")
            }
            if let other = loaded.keys.first(where: { $0 != "db0" }) {
                throw JobFailure(exit: .jobFailed, code: "redis", message: "the backup has keys in \(other); a Redis Cluster has only db0")
            }
        } else {
            conns = [first]
        }
        if db.flush ?? true {
            for c in conns { try c.call("FLUSHALL") }
            // A cluster restore's other streams copy only after this (the coordinator ends
            // their inputs once it hears it).
            if db.cluster ?? false { Events.send(AgentEvent(event: .ready)) }
        }
        return (conns, slotOwner)
    }

    /// The RDB's keys as RESTOREs, pipelined: each master applies one batch while the next
    /// is built. A first pass reads every key before the target is touched; nil when this
    /// RDB holds what the parser does not know (then the scratch server reads it).
    private func restoreByParsing() throws -> [String: Int64]? {
        let path = "\(dir.path)/dump.rdb"
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nowMs = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
        var loaded: [String: Int64] = [:]
        do {
            // Keys that expired since the backup are not created: not counted either.
            try RDBFile.forEach(path) { e, _, _ in
                if (e.expireAt ?? .max) > nowMs { loaded["db\(e.db)", default: 0] += 1 }
            }
        } catch let e as RDBError {
            var note = AgentEvent(event: .log)
            note.message = "the backup's RDB is read by a scratch redis-server (\(e))"
            Events.send(note)
            return nil
        }
        let (conns, slotOwner) = try targets(loaded)
        let cluster = db.cluster ?? false
        var out = [[UInt8]](repeating: [], count: conns.count)
        var queued = [Int](repeating: 0, count: conns.count)
        var pending = [Int](repeating: 0, count: conns.count)
        for i in out.indices { out[i].reserveCapacity(Self.batchBytes + (64 << 10)) }
        func drain(_ i: Int) throws {
            try conns[i].readReplies(pending[i], of: "RESTORE")
            pending[i] = 0
        }
        func send(_ i: Int) throws {
            try drain(i)
            try conns[i].send(out[i])
            pending[i] = queued[i]
            queued[i] = 0
            out[i].removeAll(keepingCapacity: true)
        }
        var selected = 0
        try RDBFile.forEach(path) { e, window, version in
            let i = cluster ? slotOwner[RedisCluster.slot(e.key)] : 0
            if !cluster && e.db != selected {
                out[0] += RESP.command("SELECT", String(e.db))
                queued[0] += 1
                selected = e.db
            }
            appendRestoreCommand(e, value: UnsafeRawBufferPointer(rebasing: window[e.value]), version: version, to: &out[i])
            queued[i] += 1
            if out[i].count >= Self.batchBytes { try send(i) }
        }
        for i in conns.indices where queued[i] > 0 { try send(i) }
        for i in conns.indices { try drain(i) }
        return loaded
    }

    /// How much of RESTOREs a master is sent at once.
    static let batchBytes = 1 << 20

    private func restoreByCopy() throws -> [String: Int64]? {
        let child: Child
        do { child = try Child(ToolCommands.redisScratchServer(dir: dir.path), output: false, errorLog: "\(dir.path)/stderr") } catch {
            throw JobFailure(exit: .jobFailed, code: "tool-missing", message: "cannot start redis-server to read the RDB: \(error)")
        }
        scratch = child
        defer { child.terminate(grace: 2) }
        let src = try waitForScratch(child)
        let loaded = RESP.keyspace(try src.call("INFO", "keyspace").text ?? "")
        let (conns, slotOwner) = try targets(loaded)

        // Pipelined both ways: the scratch server scans the next batch while this one's
        // DUMPs are read, and each master applies a batch of RESTOREs while the next is
        // read; a master's replies are read just before its next batch is sent.
        var pending = [Int](repeating: 0, count: conns.count)
        func drain(_ i: Int) throws {
            try conns[i].readReplies(pending[i], of: "RESTORE")
            pending[i] = 0
        }
        for name in loaded.keys.sorted() {
            guard let index = Int(name.dropFirst(2)) else { continue }
            for i in conns.indices { try drain(i) }
            try src.call("SELECT", String(index))
            if !(db.cluster ?? false) { try conns[0].call("SELECT", String(index)) }
            try src.send(RESP.command("SCAN", "0", "COUNT", "1000"))
            var more = true
            while more {
                guard case .array(let r?) = try src.reply(), r.count == 2, let next = r[0].text, case .array(let items?) = r[1] else {
                    throw JobFailure(exit: .jobFailed, code: "redis", message: "scratch redis-server: unexpected SCAN reply")
                }
                more = next != "0"
                let keys: [[UInt8]] = items.compactMap { if case .bulk(let b?) = $0 { return b } else { return nil } }
                // DUMP and PTTL of the whole batch, then the next SCAN, in one write.
                var pipeline: [UInt8] = []
                for k in keys { pipeline += RESP.command([Array("DUMP".utf8), k]) + RESP.command([Array("PTTL".utf8), k]) }
                if more { pipeline += RESP.command("SCAN", next, "COUNT", "1000") }
                try src.send(pipeline)
                var perConn = [[UInt8]](repeating: [], count: conns.count)
                var sent = [Int](repeating: 0, count: conns.count)
                for k in keys {
                    let dump = try src.reply()
                    let ttl = try src.reply()
                    guard case .bulk(let payload?) = dump else { continue }  // expired since SCAN
                    var ms: Int64 = 0
                    if case .integer(let t) = ttl, t > 0 { ms = t }
                    let c = conns.count == 1 ? 0 : slotOwner[RedisCluster.slot(k)]
                    perConn[c] += RESP.command([Array("RESTORE".utf8), k, Array(String(ms).utf8), payload, Array("REPLACE".utf8)])
                    sent[c] += 1
                }
                for i in conns.indices where sent[i] > 0 {
                    try drain(i)
                    try conns[i].send(perConn[i])
                    pending[i] = sent[i]
                }
            }
        }
        for i in conns.indices { try drain(i) }
        return loaded
    }

    /// The scratch server is ready once it answers PING (not -LOADING).
    private func waitForScratch(_ child: Child, password: String? = nil) throws -> RedisConnection {
        let deadline = monotonicNow() + 300
        while monotonicNow() < deadline {
            if child.tryReap() {
                throw JobFailure(
                    exit: .jobFailed, code: "command-failed",
                    message: "redis-server could not load the backup's RDB (\(describeStatus(child.status))): \(dir.tail("redis.log"))")
            }
            if let c = try? RedisConnection(unixPath: "\(dir.path)/redis.sock", timeout: 60) {
                try c.auth(user: nil, password: password)
                try c.send(RESP.command("PING"))
                if case .simple = try c.reply() { return c }
            }
            usleep(50_000)
        }
        throw JobFailure(exit: .jobFailed, code: "timeout", message: "redis-server did not load the backup's RDB within 300 s")
    }
}

/// The keys of an RDB file, each handed to `body` with the buffer its value lies in and the
/// RDB's version: the file read through a window (4 MiB, doubled when one key does not fit).
enum RDBFile {
    static func forEach(_ path: String, window: Int = 4 << 20, _ body: (RDBEntry, UnsafeRawBufferPointer, Int) throws -> Void) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw JobFailure(exit: .jobFailed, code: "private-dir", message: "cannot read \(path): \(errnoText(errno))")
        }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: window)
        var start = 0, end = 0, eof = false, header = false
        var parser = RDBParser()
        while !parser.ended {
            var short = false
            try buf.withUnsafeBytes { all in
                let window = UnsafeRawBufferPointer(rebasing: all[start..<end])
                var at = 0
                do {
                    if !header {
                        at = try parser.header(window)
                        header = true
                    }
                    while let e = try parser.next(window, at: &at) { try body(e, window, parser.version) }
                } catch RDBError.short {
                    short = true
                }
                start += at
            }
            guard short else { continue }
            guard !eof else { throw RDBError.malformed("the RDB ends inside a key, at byte \(start)") }
            if start > 0 {
                buf.withUnsafeMutableBytes { b in _ = memmove(b.baseAddress!, b.baseAddress! + start, end - start) }
                end -= start
                start = 0
            }
            if end == buf.count { buf += [UInt8](repeating: 0, count: buf.count) }
            let n = buf.withUnsafeMutableBytes { b in read(fd, b.baseAddress! + end, b.count - end) }
            guard n >= 0 else { throw JobFailure(exit: .jobFailed, code: "private-dir", message: "cannot read \(path): \(errnoText(errno))") }
            if n == 0 { eof = true }
            end += n
        }
    }
}

/// The agent as the target's master for one full resynchronisation. The target gets a
/// one-off password as `masterauth` and `REPLICAOF 127.0.0.1 PORT` (a port the agent holds
/// open, so no other process can take it in between); when it connects and authenticates
/// (`RedisMasterHandshake`), the agent answers `PSYNC` with `FULLRESYNC` and streams the RDB
/// as the restore decrypts it, in `$EOF:` framing. A Redis replica keeps its old data until
/// the whole payload, mark included, has arrived, so a restore that fails before the end
/// (a damaged chunk, a lost coordinator) leaves the target as it was. Whether it parses the
/// payload from the socket beside its old data or writes it to its disk first is decided on
/// the RDB's first bytes (`RedisLoad`: its `used-mem` against the memory the node has), and
/// set for this transfer only. Every way out makes the target a master again and puts
/// `masterauth` and `repl-diskless-load` back; only a killed agent (SIGKILL) leaves it a
/// read-only replica of a closed port, which `REPLICAOF NO ONE` ends.
final class RedisReplicationRestore {
    /// Why the replication path was left before the target's data was touched.
    struct Unavailable: Error { var reason: String }

    private let target: RedisConnection
    private var listener: Int32
    private var replica: RedisConnection?
    private let linkPassword = randomHex(64)
    private let handshake: RedisMasterHandshake
    private let oldAuth: String
    /// The target's `repl-diskless-load` before the restore, and whether it was changed.
    private let oldLoad: String?
    private var loadChanged = false
    /// The answer to the replica's PSYNC, until the payload begins.
    private var start: [UInt8]?
    /// The target's memory when the restore began: `used_memory`, `maxmemory`, its pid.
    private let used: Int64, maxmemory: Int64, pid: Int64?
    private var settled = false

    init(target: RedisConnection) throws {
        self.target = target
        handshake = RedisMasterHandshake(password: linkPassword, replicationID: randomHex(40), mark: randomHex(40))
        let (listener, port) = try Self.listen()
        self.listener = listener
        // What the target authenticates to its master with: set for the restore, put back after.
        guard case .array(let r?) = try? target.call("CONFIG", "GET", "masterauth"), r.count == 2, let old = r[1].text else {
            close(listener)
            throw Unavailable(reason: "CONFIG GET refused")
        }
        oldAuth = old
        if case .array(let r?) = try? target.call("CONFIG", "GET", "repl-diskless-load"), r.count == 2 { oldLoad = r[1].text } else { oldLoad = nil }
        let memory = RESP.infoFields((try? target.call("INFO", "memory").text) ?? "")
        used = memory["used_memory"].flatMap { Int64($0) } ?? 0
        maxmemory = memory["maxmemory"].flatMap { Int64($0) } ?? 0
        pid = RESP.infoNumber((try? target.call("INFO", "server").text) ?? "", "process_id")
        let info = (try? target.call("INFO", "replication").text) ?? ""
        guard info.contains("role:master") else {
            close(listener)
            throw Unavailable(reason: "the target is not a master")
        }
        do {
            try target.call("CONFIG", "SET", "masterauth", linkPassword)
        } catch {
            close(listener)
            throw Unavailable(reason: "CONFIG SET refused")
        }
        do {
            try target.call("REPLICAOF", "127.0.0.1", String(port))
        } catch {
            settle()
            throw Unavailable(reason: "REPLICAOF refused")
        }
        do {
            try awaitReplica(deadline: monotonicNow() + 15)
        } catch {
            settle()
            throw error
        }
    }

    deinit {
        settle()
    }

    /// A listening socket on 127.0.0.1 at a port the kernel picks.
    private static func listen() throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Unavailable(reason: "socket: \(errnoText(errno))") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok, Glibc.listen(fd, 4) == 0 else {
            close(fd)
            throw Unavailable(reason: "cannot listen on 127.0.0.1: \(errnoText(errno))")
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// Accepts connections until one completes the handshake; any other is dropped.
    private func awaitReplica(deadline: Double) throws {
        while replica == nil {
            let left = deadline - monotonicNow()
            // Nothing reached the agent: the target cannot connect here (another network
            // namespace, say). Its data is untouched.
            guard left > 0 else { throw Unavailable(reason: "the target did not connect to 127.0.0.1 within 15 s") }
            var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(left * 1000) + 1) > 0 else { continue }
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let c = RedisConnection(accepted: fd, name: "the restore's replication link", timeout: 10)
            var h = handshake
            conversation: while true {
                guard case .array(let items?)? = try? c.reply() else { break }
                let args = items.compactMap { v -> [UInt8]? in if case .bulk(let b?) = v { return b } else { return nil } }
                switch h.answer(args) {
                case .reply(let bytes):
                    guard (try? c.send(bytes)) != nil else { break conversation }
                case .refuse(let bytes):
                    _ = try? c.send(bytes)
                    break conversation
                case .start(let bytes):
                    // Sent with the payload's first bytes: a replica decides how it will load
                    // when it reads the FULLRESYNC, and the choice needs those bytes
                    // (`chooseLoad`). It waits for the answer for its repl-timeout (60 s).
                    start = bytes
                    // The replica reads at its disk's pace; one that stops reading for two
                    // minutes has given up.
                    c.setTimeouts(120)
                    replica = c
                    break conversation
                }
            }
        }
        closeListener()
    }

    private func closeListener() {
        if listener >= 0 { close(listener) }
        listener = -1
    }

    func send(_ plain: UnsafeRawBufferPointer) throws {
        guard let replica else { return }
        do {
            try beginPayload(plain, replica)
            try replica.send(plain)
        } catch {
            throw JobFailure(
                exit: .jobFailed, code: "command-failed",
                message: "redis \(target.name): the server dropped the restore's transfer (\(error)); it keeps its previous data (see its log)")
        }
    }

    /// The end mark, then the target's load awaited; the keys it then holds.
    func finish() throws -> [String: Int64] {
        defer { settle() }
        guard let replica else { throw Unavailable(reason: "no replica") }
        do {
            try beginPayload(UnsafeRawBufferPointer(start: nil, count: 0), replica)
            try replica.send(handshake.mark)
        } catch {
            throw JobFailure(
                exit: .jobFailed, code: "command-failed",
                message: "redis \(target.name): the server dropped the restore's transfer at its end (\(error)); it keeps its previous data (see its log)")
        }
        // A replica loads the whole payload before it reports the link up. One whose load
        // fails drops its link to the agent: the connection closes. (Its INFO alone cannot
        // tell a failed load from one not yet begun: until it has read the FULLRESYNC, which
        // went out with the payload's first bytes, it shows the link down and no transfer.)
        while true {
            let r = try target.call("INFO", "replication").text ?? ""
            if r.contains("master_link_status:up") && !r.contains("master_sync_in_progress:1") { break }
            if Self.closedByPeer(replica.descriptor) {
                throw JobFailure(
                    exit: .jobFailed, code: "command-failed",
                    message: "redis \(target.name): the server could not load the backup's RDB (see its log: an RDB of a newer Redis, or too little memory?)")
            }
            usleep(20_000)
        }
        return RESP.keyspace(try target.call("INFO", "keyspace").text ?? "")
    }

    /// Whether the other end has closed `fd` (what it sent meanwhile, a replica's
    /// `REPLCONF ACK`s, is read and dropped).
    static func closedByPeer(_ fd: Int32) -> Bool {
        var scratch = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { continue }
            if n == 0 { return true }
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
        }
    }

    /// The transfer broken off before its end (the target keeps its old data).
    func abandon() {
        replica = nil
        settle()
    }

    /// Once, before the payload's first bytes (`head`; none for an empty stream): the load
    /// chosen, then the held answer to the replica's PSYNC sent.
    private func beginPayload(_ head: UnsafeRawBufferPointer, _ replica: RedisConnection) throws {
        guard let start else { return }
        chooseLoad(head)
        self.start = nil
        try replica.send(start)
    }

    /// Before the target hears FULLRESYNC (a replica reads the setting then): from the socket
    /// if the RDB's data (its `used-mem`, in its first bytes) fits beside the target's, else
    /// from its disk. Said in the job's log either way.
    private func chooseLoad(_ head: UnsafeRawBufferPointer) {
        let incoming = (try? RDBParser.auxiliaryFields(head)).flatMap(RDBParser.usedMemory)
        let choice = RedisLoad.choose(incoming: incoming, used: used, maxmemory: maxmemory, available: nodeAvailableMemory())
        // Set whichever way the server was configured: one set to load from the socket on
        // its own gets the disk when the memory says so.
        let setting = choice == .socket ? "swapdb" : "disabled"
        var note = AgentEvent(event: .log)
        switch choice {
        case .socket: note.message = "redis \(target.name) loads the backup from the replication socket beside its data (repl-diskless-load swapdb)"
        case .disk(let why): note.message = "redis \(target.name) loads the backup from its disk after the transfer: \(why)"
        }
        if oldLoad != setting {
            if (try? target.call("CONFIG", "SET", "repl-diskless-load", setting)) != nil {
                loadChanged = true
            } else {
                note.message = "redis \(target.name) loads the backup as its repl-diskless-load (\(oldLoad ?? "unknown")) says: CONFIG SET refused"
            }
        }
        Events.send(note)
    }

    /// What this node can still give the target: MemAvailable, and no more than the
    /// headroom of any cgroup above the server's process with a memory limit.
    private func nodeAvailableMemory() -> Int64? {
        guard var available = readSmallFile("/proc/meminfo").flatMap(NodeMemory.available) else { return nil }
        // The pid is the server's only if this node's /proc names it so (another PID
        // namespace would show another process under the same number).
        if let pid, readSmallFile("/proc/\(pid)/comm")?.hasPrefix("redis") == true,
            var path = readSmallFile("/proc/\(pid)/cgroup").flatMap(NodeMemory.cgroupPath)
        {
            while !path.isEmpty && path != "/" {
                let dir = "/sys/fs/cgroup" + path
                if let max = readSmallFile(dir + "/memory.max"), let current = readSmallFile(dir + "/memory.current"),
                    let room = NodeMemory.headroom(max: max, current: current)
                {
                    available = min(available, room)
                }
                path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            }
        }
        return available
    }

    /// The target a master again, its `masterauth` and `repl-diskless-load` as before.
    private func settle() {
        guard !settled else { return }
        settled = true
        replica = nil  // closed: a load from the socket ends at once
        // A replica parsing from the socket answers LOADING until it has seen the closed
        // connection and put its old data back (milliseconds, however large the data).
        let loadingUntil = monotonicNow() + 60
        while true {
            do {
                try target.call("REPLICAOF", "NO", "ONE")
                break
            } catch let e as JobFailure where e.message.contains("LOADING") && monotonicNow() < loadingUntil {
                usleep(20_000)
            } catch {
                break
            }
        }
        _ = try? target.call("CONFIG", "SET", "masterauth", oldAuth)
        if loadChanged, let oldLoad { _ = try? target.call("CONFIG", "SET", "repl-diskless-load", oldLoad) }
        closeListener()
    }
}

/// `count` random hexadecimal digits (`count` even).
func randomHex(_ count: Int) -> String {
    var g = SystemRandomNumberGenerator()
    return hexString((0..<count / 2).map { _ in UInt8.random(in: 0...255, using: &g) })
}
