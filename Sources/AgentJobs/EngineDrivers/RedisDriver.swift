// Redis (and Redis Cluster): a snapshot taken through the replication handshake out; in, the
// RDB loaded by a private redis-server and its keys copied into the target with
// DUMP/RESTORE (replicas follow, TTLs kept), routed by slot on a cluster.
import AgentProtocol
import Engines
import FoundationEssentials

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

/// A Redis restore: the RDB is written to the private folder, loaded by a scratch server
/// listening on a socket there, and its keys copied into the target.
final class RedisSink: RestoreSink {
    private let db: DatabaseAccess
    private let password: String?
    private let dir: PrivateDir
    private let fd: Int32
    private var scratch: Child?

    init(_ db: DatabaseAccess, password: String?, dir: PrivateDir) throws {
        self.db = db
        self.password = password
        self.dir = dir
        fd = open("\(dir.path)/dump.rdb", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw JobFailure(exit: .jobFailed, code: "private-dir", message: "cannot create \(dir.path)/dump.rdb: \(String(cString: strerror(errno)))")
        }
        // Fail before the transfer when the target cannot be reached or refuses the password.
        _ = try connectTarget(db.host, db.port)
    }

    deinit { if fd >= 0 { close(fd) } }

    func write(_ plain: UnsafeRawBufferPointer) throws {
        guard writeAll(fd, plain) else {
            throw JobFailure(exit: .jobFailed, code: "write-failed", message: "cannot write the RDB to \(dir.path): \(errnoText(errno))")
        }
    }

    func cancel() { scratch?.terminate(grace: 1) }

    private func connectTarget(_ host: String, _ port: Int) throws -> RedisConnection {
        let c = try RedisConnection(host: host, port: port, timeout: 60)
        try c.auth(user: db.user, password: password)
        return c
    }

    func finish() throws -> [String: Int64]? {
        // A single server whose data is replaced whole takes the backup by replication: it
        // becomes, for the restore, the replica of a scratch server holding the backup, so
        // it loads the RDB at its own speed (and its replicas resync from it by
        // themselves), instead of receiving every key again. A cluster (which refuses
        // REPLICAOF), a restore that keeps other keys, or a target that cannot replicate
        // from here falls back to copying keys.
        if !(db.cluster ?? false) && (db.flush ?? true) {
            do {
                return try restoreByReplication()
            } catch is ReplicationUnavailable {
                // The target's data is untouched; the copy below replaces it.
            }
        }
        return try restoreByCopy()
    }

    /// Why the replication path was left before the target's data was touched.
    struct ReplicationUnavailable: Error { var reason: String }

    /// A TCP port of 127.0.0.1 free now (the kernel's pick; the scratch server binds it a
    /// moment later, and a port taken in between fails its start, not the restore).
    private func freeLoopbackPort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        return ok ? Int(UInt16(bigEndian: addr.sin_port)) : nil
    }

    private func restoreByReplication() throws -> [String: Int64] {
        var secret = SystemRandomNumberGenerator()
        let password = (0..<4).map { _ in String(secret.next() as UInt64, radix: 16) }.joined()
        guard let port = freeLoopbackPort() else { throw ReplicationUnavailable(reason: "no free port on 127.0.0.1") }
        let conf = try dir.write("scratch.conf", ToolCommands.redisReplicationSourceConfig(dir: dir.path, port: port, password: password))
        let child: Child
        do { child = try Child(["redis-server", conf], output: false, errorLog: "\(dir.path)/stderr") } catch {
            throw JobFailure(exit: .jobFailed, code: "tool-missing", message: "cannot start redis-server to read the RDB: \(error)")
        }
        scratch = child
        defer { child.terminate(grace: 2) }
        let src: RedisConnection
        do { src = try waitForScratch(child, password: password) } catch {
            // Its port taken meanwhile, say; the copy loads the RDB again and reports what
            // is wrong with it, if anything is.
            throw ReplicationUnavailable(reason: "the scratch server did not start")
        }
        let loaded = RESP.keyspace(try src.call("INFO", "keyspace").text ?? "")

        let target = try connectTarget(db.host, db.port)
        // What the target authenticates to its master with: set for the restore, put back after.
        func config(_ key: String) -> String? {
            guard case .array(let r?) = try? target.call("CONFIG", "GET", key), r.count == 2 else { return nil }
            return r[1].text
        }
        guard let oldAuth = config("masterauth") else { throw ReplicationUnavailable(reason: "CONFIG GET refused") }
        let oldUser = config("masteruser")
        let info = try target.call("INFO", "replication").text ?? ""
        guard info.contains("role:master") else { throw ReplicationUnavailable(reason: "the target is not a master") }
        do {
            try target.call("CONFIG", "SET", "masterauth", password)
            if oldUser.map({ !$0.isEmpty }) ?? false { try target.call("CONFIG", "SET", "masteruser", "default") }
        } catch {
            throw ReplicationUnavailable(reason: "CONFIG SET refused")
        }
        func putBack() {
            _ = try? target.call("CONFIG", "SET", "masterauth", oldAuth)
            if let oldUser { _ = try? target.call("CONFIG", "SET", "masteruser", oldUser) }
        }
        do {
            try target.call("REPLICAOF", "127.0.0.1", String(port))
        } catch {
            putBack()
            throw ReplicationUnavailable(reason: "REPLICAOF refused")
        }
        // From here the target's data is being replaced: every way out makes it a master
        // again and puts its settings back.
        defer {
            _ = try? target.call("REPLICAOF", "NO", "ONE")
            putBack()
        }
        var linked = false
        let started = monotonicNow()
        // A transfer the target aborts (its repl-timeout) is retried by the target itself;
        // one that stays down this long is given up (the target keeps its old data until a
        // whole RDB has arrived).
        var downSince: Double?
        while true {
            if child.tryReap() {
                throw JobFailure(
                    exit: .jobFailed, code: "command-failed", message: "the scratch redis-server ended during the restore: \(dir.tail("redis.log"))")
            }
            let r = try target.call("INFO", "replication").text ?? ""
            let up = r.contains("master_link_status:up"), syncing = r.contains("master_sync_in_progress:1")
            linked = linked || up || syncing
            if up && !syncing { break }
            if !linked && monotonicNow() - started > 15 {
                // Nothing reached the target: it cannot connect here (another network
                // namespace, say). Its data is untouched.
                throw ReplicationUnavailable(reason: "the target did not connect to 127.0.0.1:\(port) within 15 s")
            }
            if linked && !up && !syncing {
                let since = downSince ?? monotonicNow()
                downSince = since
                if monotonicNow() - since > 120 {
                    throw JobFailure(
                        exit: .jobFailed, code: "command-failed",
                        message:
                            "redis \(target.name): the transfer from the restore's scratch server failed and did not resume within 120 s; the server keeps its previous data"
                    )
                }
            } else {
                downSince = nil
            }
            usleep(20_000)
        }
        return loaded
    }

    private func restoreByCopy() throws -> [String: Int64]? {
        let child: Child
        do { child = try Child(ToolCommands.redisScratchServer(dir: dir.path), output: false, errorLog: "\(dir.path)/stderr") } catch {
            throw JobFailure(exit: .jobFailed, code: "tool-missing", message: "cannot start redis-server to read the RDB: \(error)")
        }
        scratch = child
        defer { child.terminate(grace: 2) }
        let src = try waitForScratch(child)
        let loaded = RESP.keyspace(try src.call("INFO", "keyspace").text ?? "")

        // The target: one server, or every master of a cluster with its slots.
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
        }

        for name in loaded.keys.sorted() {
            guard let index = Int(name.dropFirst(2)) else { continue }
            try src.call("SELECT", String(index))
            if !(db.cluster ?? false) { try conns[0].call("SELECT", String(index)) }
            var cursor = "0"
            repeat {
                guard case .array(let r?) = try src.call("SCAN", cursor, "COUNT", "1000"), r.count == 2,
                    let next = r[0].text, case .array(let items?) = r[1]
                else {
                    throw JobFailure(exit: .jobFailed, code: "redis", message: "scratch redis-server: unexpected SCAN reply")
                }
                cursor = next
                let keys: [[UInt8]] = items.compactMap { if case .bulk(let b?) = $0 { return b } else { return nil } }
                if keys.isEmpty { continue }
                // DUMP and PTTL of the whole batch in one round trip.
                var pipeline: [UInt8] = []
                for k in keys { pipeline += RESP.command([Array("DUMP".utf8), k]) + RESP.command([Array("PTTL".utf8), k]) }
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
                for (i, c) in conns.enumerated() where sent[i] > 0 {
                    try c.send(perConn[i])
                    for _ in 0..<sent[i] {
                        if case .error(let e) = try c.reply() {
                            throw JobFailure(exit: .jobFailed, code: "redis", message: "redis \(c.name): RESTORE failed: \(e)")
                        }
                    }
                }
            } while cursor != "0"
        }
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
