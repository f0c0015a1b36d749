// The `restore` job: the database node's half of a restore. Sealed chunks arrive in stream
// order; each is authenticated and decrypted here and checked against its keyed ID, so
// plaintext exists only on this node, and the stream is applied to the database: psql or
// mariadb read it on stdin; a Redis server replicates the RDB from the agent itself, and a
// cluster gets each key as a RESTORE built from the RDB's own bytes (replicas follow, TTLs
// kept). The chunk IDs applied, in order, are compared with the manifest's
// (`ChunkSequence`) before the target is let commit.
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
/// The tool is fed by a thread of its own: the restore loop authenticates, decompresses and
/// checks the next chunk while the tool reads the last one. Written inline, the tool (and
/// the server behind it) waited for each chunk's decryption, with a 64 KiB pipe between.
final class ToolSink: RestoreSink {
    private let child: Child
    private let label: String
    private let dir: PrivateDir
    /// The tool's stderr, in `dir`: its tail explains a failure.
    private let log: String
    private var filter: (any ScriptFilter)?
    private var out: [UInt8] = []
    private let writer: ToolFeeder
    private var done = false

    init(_ command: [String], dir: PrivateDir, filter: (any ScriptFilter)?, log: String = "stderr") throws {
        label = command[0]
        self.dir = dir
        self.log = log
        self.filter = filter
        do { child = try Child(command, input: true, output: false, errorLog: "\(dir.path)/\(log)") } catch {
            throw JobFailure(exit: .jobFailed, code: "spawn-failed", message: "cannot start \(command[0]): \(error)")
        }
        writer = ToolFeeder(fd: child.stdin)
        out.reserveCapacity(Self.piece + (64 << 10))
    }

    /// What is handed to the feeding thread at once; up to `ToolFeeder.depth` wait there.
    static let piece = 512 << 10

    func write(_ plain: UnsafeRawBufferPointer) throws {
        if var f = filter {
            f.feed(plain) { out.append(contentsOf: $0) }
            filter = f
        } else {
            out.append(contentsOf: plain)
        }
        if out.count >= Self.piece { try flush() }
    }

    private func flush() throws {
        guard !out.isEmpty else { return }
        guard writer.send(out) else {
            // The tool stopped reading: it failed (ON_ERROR_STOP) or was killed.
            writer.finish()
            child.closeInput()
            throw failure(child.wait())
        }
        out = []
        out.reserveCapacity(Self.piece + (64 << 10))
    }

    func finish() throws -> [String: Int64]? {
        if var f = filter {
            f.finish { out.append(contentsOf: $0) }
            filter = f
        }
        try flush()
        let fed = writer.finish()
        child.closeInput()
        let st = child.wait()
        done = true
        guard st == 0, fed else { throw failure(st) }
        return nil
    }

    private func failure(_ st: Int32) -> JobFailure {
        done = true
        return toolFailure(label, status: st, dir: dir, log: log)
    }

    func cancel() {
        guard !done else { return }
        done = true
        // The child first: a feeding thread blocked on a full pipe sees it break.
        child.closeInput()
        child.terminate()
        writer.finish(discarding: true)
    }
}

/// A thread writing buffers to a tool's stdin in order.
final class ToolFeeder: @unchecked Sendable {
    static let depth = 4
    private let queue = BlockingQueue<[UInt8]>(capacity: ToolFeeder.depth)
    private var thread: WorkerThread?
    private let failed = BlockingQueue<Bool>(capacity: 1)
    private var broken = false

    init(fd: Int32) {
        let queue = self.queue
        let failed = self.failed
        thread = WorkerThread {
            var ok = true
            while let b = queue.take() {
                // After a failed write the rest is dropped: the tool is gone.
                if ok && !writeAll(fd, b) {
                    ok = false
                    failed.put(true)
                    queue.close(discarding: true)
                }
            }
        }
    }

    /// Queues `bytes`, waiting while `depth` buffers are queued; false once a write failed.
    func send(_ bytes: [UInt8]) -> Bool {
        if broken || failed.take(wait: false) != nil {
            broken = true
            return false
        }
        guard queue.put(bytes) else {
            broken = true
            return false
        }
        return true
    }

    /// Waits until everything queued is written (or dropped, `discarding`); whether every
    /// write succeeded.
    @discardableResult
    func finish(discarding: Bool = false) -> Bool {
        queue.close(discarding: discarding)
        thread?.join()
        thread = nil
        if failed.take(wait: false) != nil { broken = true }
        return !broken
    }

    deinit { finish(discarding: true) }
}

extension Session {
    func restore(_ job: RestoreJob) throws -> AgentEvent {
        guard let k = job.secrets.keys else {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "a restore job needs dataKey and idKey secrets")
        }
        let db = job.database
        let keys = RepositoryKeys(data: SymmetricKey(data: k.data), id: SymmetricKey(data: k.id), chunkerSeed: [])
        let sink = try engineDriver(db.engine).restoreSink(db, password: job.secrets.dbPassword, dir: try PrivateDir())
        var input = InputBytes()
        return try applyStream(&input, keys: keys, expecting: job.chunkSequence, to: sink)
    }

    /// The restore loop: each sealed chunk of `input` authenticated, decrypted and checked
    /// against its keyed ID, its plaintext handed to `sink` in order; the sink is cancelled
    /// on any failure (what the tool applied before stays applied). `expecting`: the
    /// manifest's `ChunkSequence` digest, compared before the sink may commit.
    func applyStream(
        _ input: inout InputBytes, keys: RepositoryKeys, expecting sequence: String? = nil, to sink: RestoreSink,
        events: (AgentEvent) -> Void = Events.send
    ) throws -> AgentEvent {
        var finished = false
        defer { if !finished { sink.cancel() } }
        var applied = ChunkSequence()
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
                    applied.append(id)
                    try sink.write(p)
                }
                total += Int64(plain.count)
                chunks += 1
                if total >= nextProgress { events(.progress(total)); nextProgress += Self.progressEvery }
            }
        } catch IOFailure.closed {
            throw JobFailure(
                exit: .inputCut, code: "input-cut", message: "the input ended after \(chunks) chunks without its end frame; the restore was stopped")
        }
        var e = AgentEvent(event: .result)
        e.bytes = total
        e.chunkSequence = applied.hex
        if let sequence, e.chunkSequence != sequence {
            // An input that ended early, chunks out of order, or a manifest of another
            // stream: nothing more is committed; a Redis target keeps its data.
            throw JobFailure(
                exit: .jobFailed, code: "damaged",
                message:
                    "the \(chunks) chunks (\(total) bytes) applied are not the stream's chunks in its order (chunk sequence \(e.chunkSequence!), the manifest's \(sequence)); the restore was stopped before its end"
            )
        }
        let counts = try sink.finish()
        finished = true
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
