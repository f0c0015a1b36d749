// The `restore` job: the database node's half of a restore. Sealed chunks arrive in stream
// order; each is authenticated and decrypted here and checked against its keyed ID, so
// plaintext exists only on this node, and the stream is applied to the database: psql or
// mariadb read it on stdin; a Redis RDB is loaded into a private redis-server whose keys
// are copied into the live server with DUMP/RESTORE (its replicas follow, TTLs kept).
import AgentProtocol
@preconcurrency import Crypto
import Engines
import FoundationEssentials
import Repository

#if canImport(Glibc)
import Glibc
#endif

/// Where a restore's plaintext goes.
protocol RestoreSink: AnyObject {
    func write(_ plain: UnsafeRawBufferPointer) throws
    /// The stream is complete: apply what is left; the counts the target now holds.
    func finish() throws -> [String: Int64]?
    func cancel()
}

/// A tool reading the script on stdin (psql, mariadb), through an optional line filter.
final class ToolSink: RestoreSink {
    private let child: Child
    private let label: String
    private let dir: PrivateDir
    private var filter: (any ScriptFilter)?
    private var out: [UInt8] = []
    private var done = false

    init(_ command: [String], dir: PrivateDir, filter: (any ScriptFilter)?) throws {
        label = command[0]
        self.dir = dir
        self.filter = filter
        do { child = try Child(command, input: true, output: false, errorLog: "\(dir.path)/stderr") } catch {
            throw JobFailure(exit: .jobFailed, code: "spawn-failed", message: "cannot start \(command[0]): \(error)")
        }
        out.reserveCapacity(512 << 10)
    }

    func write(_ plain: UnsafeRawBufferPointer) throws {
        if var f = filter {
            f.feed(plain) { out.append(contentsOf: $0) }
            filter = f
        } else {
            out.append(contentsOf: plain)
        }
        if out.count >= 256 << 10 { try flush() }
    }

    private func flush() throws {
        guard !out.isEmpty else { return }
        guard writeAll(child.stdin, out) else {
            // The tool stopped reading: it failed (ON_ERROR_STOP) or was killed.
            child.closeInput()
            throw failure(child.wait())
        }
        out.removeAll(keepingCapacity: true)
    }

    func finish() throws -> [String: Int64]? {
        if var f = filter {
            f.finish { out.append(contentsOf: $0) }
            filter = f
        }
        try flush()
        child.closeInput()
        let st = child.wait()
        done = true
        guard st == 0 else { throw failure(st) }
        return nil
    }

    private func failure(_ st: Int32) -> JobFailure {
        done = true
        let why = dir.tail("stderr")
        return JobFailure(exit: .jobFailed, code: toolFailureCode(why),
                          message: "\(label) ended with \(describeStatus(st))\(why.isEmpty ? "" : ": \(why)")")
    }

    func cancel() {
        if !done { child.closeInput(); child.terminate() }
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
                      let next = r[0].text, case .array(let items?) = r[1] else {
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
    private func waitForScratch(_ child: Child) throws -> RedisConnection {
        let deadline = monotonicNow() + 300
        while monotonicNow() < deadline {
            if child.tryReap() {
                throw JobFailure(exit: .jobFailed, code: "command-failed",
                                 message: "redis-server could not load the backup's RDB (\(describeStatus(child.status))): \(dir.tail("redis.log"))")
            }
            if let c = try? RedisConnection(unixPath: "\(dir.path)/redis.sock", timeout: 60) {
                try c.send(RESP.command("PING"))
                if case .simple = try c.reply() { return c }
            }
            usleep(50_000)
        }
        throw JobFailure(exit: .jobFailed, code: "timeout", message: "redis-server did not load the backup's RDB within 300 s")
    }
}

extension Session {
    func restore(_ job: AgentJob) throws -> AgentEvent {
        guard let k = job.secrets?.keys else {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "a restore job needs dataKey and idKey secrets")
        }
        guard let db = job.database else { throw JobFailure(exit: .badJob, code: "bad-job", message: "a restore job needs a database") }
        let keys = RepositoryKeys(data: SymmetricKey(data: k.data), id: SymmetricKey(data: k.id), chunkerSeed: [])
        let password = job.secrets?.dbPassword
        let dir = try PrivateDir()
        let sink: RestoreSink
        switch db.engine {
        case .postgresql:
            let passfile = try password.map { p in try dir.write("pgpass", try credentials { try CredentialFiles.pgpass(password: p) }) }
            sink = try ToolSink(ToolCommands.psqlApply(host: db.host, port: db.port, user: db.user, passfile: passfile), dir: dir,
                                filter: PostgresRestoreFilter(keepRoles: db.keepRoles ?? [db.user ?? "postgres", "postgres"]))
        case .mysql:
            guard let tool = findTool(["mariadb", "mysql"]) else {
                throw JobFailure(exit: .jobFailed, code: "tool-missing", message: "neither mariadb nor mysql is installed on this node")
            }
            let options = try dir.write("client.cnf", try credentials { try CredentialFiles.mysqlOptions(user: db.user, password: password ?? "") })
            sink = try ToolSink(ToolCommands.mysqlApply(program: tool, optionsFile: options, host: db.host, port: db.port), dir: dir,
                                filter: MySQLRestoreFilter())
        case .redis:
            sink = try RedisSink(db, password: password, dir: dir)
        }
        var finished = false
        defer { if !finished { sink.cancel() } }

        var input = InputBytes()
        var hash = SHA256()
        var total: Int64 = 0
        var chunks = 0
        var nextProgress = Self.progressEvery
        do {
            while let (name, sealed) = try readRecord(&input) {
                let id = String(name.split(separator: "/").last ?? "")
                let plain: [UInt8]
                do { plain = try Envelope.open(sealed, key: keys.data, aad: id) } catch {
                    throw JobFailure(exit: .jobFailed, code: "damaged", message: "chunk \(id) (\(chunks + 1) of the stream) does not authenticate: \(error)")
                }
                try plain.withUnsafeBytes { p in
                    guard keys.chunkID(p) == id else {
                        throw JobFailure(exit: .jobFailed, code: "damaged", message: "chunk \(id) does not match its ID")
                    }
                    hash.update(bufferPointer: p)
                    try sink.write(p)
                }
                total += Int64(plain.count)
                chunks += 1
                if total >= nextProgress { Events.progress(total); nextProgress += Self.progressEvery }
            }
        } catch IOFailure.closed {
            throw JobFailure(exit: .inputCut, code: "input-cut", message: "the input ended after \(chunks) chunks without its end frame; the restore was stopped")
        }
        let counts = try sink.finish()
        finished = true
        var e = Self.result(total, hash)
        e.stored = chunks
        e.counts = counts
        return e
    }

    /// One object record of the input, or nil at its end.
    func readRecord(_ input: inout InputBytes) throws -> (String, [UInt8])? {
        guard let header = try input.recordHeader() else { return nil }
        guard let bytes = try input.readExactly(header.size) else {
            throw JobFailure(exit: .inputCut, code: "input-cut", message: "input ended inside \(header.name)")
        }
        return (header.name, bytes)
    }
}
