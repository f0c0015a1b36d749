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
            throw JobFailure(
                exit: .jobFailed, code: toolFailureCode(why),
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
        || l.contains("wrongpass") || l.contains("noauth")
    {
        return "auth-failed"
    }
    return "command-failed"
}

extension Session {
    /// The stream of a `chunk` job: its `command`, or the dump of its `database` by the
    /// engine's driver (EngineDrivers/).
    func dumpSource(_ job: ChunkJob) throws -> StreamSource {
        if let command = job.command, !command.isEmpty { return try CommandSource(command, dir: nil) }
        guard let db = job.database else {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "a chunk job needs a command or a database")
        }
        return try engineDriver(db.engine).dumpSource(db, password: job.secrets.dbPassword)
    }
}

func credentials(_ make: () throws -> String) throws -> String {
    do { return try make() } catch {
        throw JobFailure(
            exit: .jobFailed, code: "bad-credentials", message: "the database password contains a line break, which the tools' password files cannot hold")
    }
}
