// Where a `chunk` job's stream comes from: a command's stdout, or a database dump that the
// agent starts itself (pg_dumpall, mariadb-dump, or a Redis snapshot taken through the
// replication handshake), with the dump's row or key counts taken as it streams.
import AgentProtocol
import Engines
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

protocol StreamSource: AnyObject {
    /// What is producing the stream, for messages ("pg_dumpall").
    var label: String { get }
    /// The descriptor to poll for more bytes.
    var pollFD: Int32 { get }
    /// Bytes are ready without polling (already buffered).
    var hasBuffered: Bool { get }
    /// > 0 bytes read, 0 at the end of the stream, < 0 on an error.
    func read(_ into: UnsafeMutableRawPointer, _ max: Int) -> Int
    /// Sees every byte of the stream, in order (counting).
    func observe(_ bytes: UnsafeRawBufferPointer)
    func cancel()
    /// After the end of the stream: whether it is whole, and what it counted.
    func finish(total: Int64) throws -> [String: Int64]?
}

/// A program's stdout; its stderr is kept in the private folder, for the error.
final class CommandSource: StreamSource {
    let label: String
    let child: Child
    let dir: PrivateDir?
    private var pgCounter: PostgresDumpCounter?
    private var myCounter: MySQLDumpCounter?
    /// Runs when the dump does not complete (cancelled, failed): undo what the tool would
    /// have undone at its end.
    var afterFailure: (() -> Void)?

    init(_ command: [String], dir: PrivateDir?, counting engine: String? = nil) throws {
        label = command[0]
        self.dir = dir
        do { child = try Child(command, errorLog: dir.map { "\($0.path)/stderr" }) } catch {
            throw JobFailure(exit: .jobFailed, code: "spawn-failed", message: "cannot start \(command[0]): \(error)")
        }
        if engine == "postgresql" { pgCounter = PostgresDumpCounter() }
        if engine == "mysql" { myCounter = MySQLDumpCounter() }
    }

    var pollFD: Int32 { child.stdout }
    var hasBuffered: Bool { false }
    func read(_ into: UnsafeMutableRawPointer, _ max: Int) -> Int {
        while true {
            let n = Glibc.read(child.stdout, into, max)
            if n < 0 && errno == EINTR { continue }
            return n
        }
    }

    func observe(_ bytes: UnsafeRawBufferPointer) {
        pgCounter?.feed(bytes)
        myCounter?.feed(bytes)
    }

    func cancel() {
        child.terminate()
        afterFailure?()
    }

    func finish(total: Int64) throws -> [String: Int64]? {
        let st = child.wait()
        guard st == 0 else {
            afterFailure?()
            let why = dir?.tail("stderr") ?? ""
            throw JobFailure(exit: .jobFailed, code: toolFailureCode(why),
                             message: "\(label) ended with \(describeStatus(st)) after \(total) bytes\(why.isEmpty ? "" : ": \(why)")")
        }
        if pgCounter != nil { return pgCounter!.finish() }
        if myCounter != nil { return myCounter!.finish() }
        return nil
    }
}

/// "auth-failed" when a tool's words say the credentials were refused.
func toolFailureCode(_ stderr: String) -> String {
    let l = stderr.lowercased()
    if l.contains("password authentication failed") || l.contains("access denied") || l.contains("no password supplied")
        || l.contains("wrongpass") || l.contains("noauth") {
        return "auth-failed"
    }
    return "command-failed"
}

/// A Redis snapshot: `SYNC` makes the server write an RDB and send it as `$<length>` and
/// the bytes (the replication handshake, as `redis-cli --rdb` does). The keys per database
/// are read with INFO just before, on the same connection.
final class RedisSnapshotSource: StreamSource {
    let label: String
    private let conn: RedisConnection
    private var remaining: Int64
    private let length: Int64
    private let counts: [String: Int64]

    init(_ db: DatabaseAccess, password: String?) throws {
        label = "redis snapshot of \(db.host):\(db.port)"
        conn = try RedisConnection(host: db.host, port: db.port, timeout: 60)
        try conn.auth(user: db.user, password: password)
        counts = RESP.keyspace(try conn.call("INFO", "keyspace").text ?? "")
        // Redis 7: a snapshot-only replica (no replication stream afterwards). Older servers
        // answer an error, which changes nothing.
        try conn.send(RESP.command("REPLCONF", "rdb-only", "1"))
        _ = try conn.reply()
        try conn.send(RESP.command("SYNC"))
        let line = try conn.preambleLine()
        if line.hasPrefix("-") {
            throw JobFailure(exit: .jobFailed, code: toolFailureCode(line), message: "redis \(conn.name): SYNC refused: \(line.dropFirst())")
        }
        guard line.hasPrefix("$"), let n = Int64(line.dropFirst()), n >= 0 else {
            throw JobFailure(exit: .jobFailed, code: "command-failed", message: "redis \(conn.name): unexpected answer to SYNC: \(line.prefix(80))")
        }
        length = n
        remaining = n
    }

    var pollFD: Int32 { conn.descriptor }
    var hasBuffered: Bool { remaining > 0 && conn.hasBuffered }
    func read(_ into: UnsafeMutableRawPointer, _ max: Int) -> Int {
        guard remaining > 0 else { return 0 }
        let n = conn.readRaw(into, Int(min(Int64(max), remaining)))
        if n > 0 { remaining -= Int64(n) }
        return n
    }

    func observe(_ bytes: UnsafeRawBufferPointer) {}
    func cancel() {}

    func finish(total: Int64) throws -> [String: Int64]? {
        guard remaining == 0 else {
            throw JobFailure(exit: .jobFailed, code: "command-failed", message: "\(label): the snapshot ended after \(total) of \(length) bytes")
        }
        return counts
    }
}

extension Session {
    /// The stream of a `chunk` job: its `command`, or the dump of its `database`.
    func dumpSource(_ job: AgentJob, dir: inout PrivateDir?) throws -> StreamSource {
        if let command = job.command, !command.isEmpty { return try CommandSource(command, dir: nil) }
        guard let db = job.database else {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "a chunk job needs a command or a database")
        }
        let password = job.secrets?.dbPassword
        switch db.engine {
        case .postgresql:
            let d = try PrivateDir()
            dir = d
            let passfile = try password.map { p in try d.write("pgpass", try credentials { try CredentialFiles.pgpass(password: p) }) }
            return try CommandSource(ToolCommands.pgDumpall(host: db.host, port: db.port, user: db.user, passfile: passfile),
                                     dir: d, counting: "postgresql")
        case .mysql:
            guard let tool = findTool(["mariadb-dump", "mysqldump"]) else {
                throw JobFailure(exit: .jobFailed, code: "tool-missing", message: "neither mariadb-dump nor mysqldump is installed on this node")
            }
            let d = try PrivateDir()
            dir = d
            let options = try d.write("client.cnf", try credentials { try CredentialFiles.mysqlOptions(user: db.user, password: password ?? "") })
            let source = try CommandSource(ToolCommands.mysqlDump(program: tool, optionsFile: options, host: db.host, port: db.port,
                                                                  fromReplica: db.fromReplica ?? false),
                                           dir: d, counting: "mysql")
            if db.fromReplica ?? false, let client = findTool(["mariadb", "mysql"]) {
                // --dump-slave stops the replica's SQL thread for the dump and starts it at
                // the end; a dump that does not reach its end leaves it stopped. The plan
                // only dumps a replica that was replicating, so start it again.
                source.afterFailure = {
                    guard let c = try? Child(ToolCommands.mysqlApply(program: client, optionsFile: options, host: db.host, port: db.port)
                                             + ["--execute=START SLAVE SQL_THREAD"], output: false) else { return }
                    let deadline = monotonicNow() + 10
                    while !c.tryReap() && monotonicNow() < deadline { usleep(20_000) }
                    c.terminate(grace: 0.5)
                }
            }
            return source
        case .redis:
            return try RedisSnapshotSource(db, password: password)
        }
    }
}

func credentials(_ make: () throws -> String) throws -> String {
    do { return try make() } catch {
        throw JobFailure(exit: .jobFailed, code: "bad-credentials", message: "the database password contains a line break, which the tools' password files cannot hold")
    }
}
