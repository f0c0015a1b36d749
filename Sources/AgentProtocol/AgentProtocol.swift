// The agent protocol (docs/agent-protocol.md): what travels between the coordinator and
// `stowage-agent` over one SSH exec channel. Shared by both sides so they cannot drift.
//
//   coordinator → agent stdin : one job as a JSON line, then input frames (u32 BE length +
//                               bytes; a zero length ends the input)
//   agent stdout → coordinator: the job's data stream, raw
//   agent stderr → coordinator: newline-delimited JSON events; the first is `hello`,
//                               the last `result` or `error`
//
// Secrets travel only inside the job line, on stdin.
import FoundationEssentials

package enum AgentWire {
    package static let agentName = "stowage-agent"
    /// Bumped on any incompatible change of jobs, events or framing.
    package static let protocolVersion = 1
    package static let version = "0.1.0"
    /// Largest input frame either side accepts.
    package static let maxFrame = 1 << 20
    /// Largest job line.
    package static let maxJobLine = 1 << 20
}

/// Exit statuses of `stowage-agent`.
package enum AgentExit: Int32, Sendable {
    case ok = 0
    case usage = 2
    /// The job line was not valid JSON, or named a job this agent does not know.
    case badJob = 3
    /// The job ran and failed (a tool exited non-zero, a file could not be read).
    case jobFailed = 4
    /// stdin ended without the end frame: the coordinator went away or cancelled.
    case inputCut = 5
    /// stdout was closed by the other side.
    case outputClosed = 6
}

/// A job: one kind, and only the fields that kind takes. On the wire it is one JSON object,
/// `type` naming the kind and the payload's fields beside it (docs/agent-protocol.md).
/// Unknown fields are ignored; an unknown `type` is refused, and so is a kind without a
/// field it requires.
package enum AgentJob: Sendable, Equatable {
    /// Report tool versions and free space.
    case check(CheckJob)
    /// Read the input frames, report their size and SHA-256.
    case sink
    /// Write a stream on stdout: `bytes` zero bytes, or a command's stdout.
    case source(SourceJob)
    /// Copy the input frames to stdout.
    case echo
    /// Storage node: write the objects of the input (records) under `root`, atomically.
    case put(PutJob)
    /// Storage node: write the objects `names` under `root` to stdout, as records.
    case get(GetJob)
    /// Storage node: list the objects under `root`/`prefix` (stdout: "size name" lines).
    case list(ListJob)
    /// Storage node: remove the objects `names` under `root`.
    case delete(DeleteJob)
    /// Storage node: hold the repository lock (shared, or exclusive) and the exclusive locks
    /// of the layers until the session's input ends.
    case lock(LockJob)
    /// Database node: run a command or dump a database, cut its stdout into chunks, compress
    /// and encrypt each with the keys in `secrets`, write them as object records; one `chunk`
    /// event per chunk, in stream order.
    case chunk(ChunkJob)
    /// Database node: the input is a backup stream's sealed chunks as object records, in
    /// order; each is authenticated, decrypted and checked against its keyed ID here, and
    /// the plaintext applied to the database (psql, mariadb, or for Redis a private
    /// redis-server whose keys are copied with DUMP/RESTORE).
    case restore(RestoreJob)

    package enum Kind: String, Codable, Sendable, CaseIterable {
        case check, sink, source, echo, put, get, list, delete, lock, chunk, restore
    }

    package var kind: Kind {
        switch self {
        case .check: .check
        case .sink: .sink
        case .source: .source
        case .echo: .echo
        case .put: .put
        case .get: .get
        case .list: .list
        case .delete: .delete
        case .lock: .lock
        case .chunk: .chunk
        case .restore: .restore
        }
    }
}

package struct CheckJob: Codable, Sendable, Equatable {
    /// Tools whose `--version` to report.
    package var tools: [String]?
    /// A path whose file system's free space to report.
    package var path: String?
    package init(tools: [String]? = nil, path: String? = nil) {
        self.tools = tools
        self.path = path
    }
}

package struct SourceJob: Codable, Sendable, Equatable {
    /// That many zero bytes (transport tests, benchmarks)...
    package var bytes: Int64?
    /// ...or this program's stdout.
    package var command: [String]?
    /// Secrets travel only here, never into the command's argv or environment (tests show it).
    package var secrets: JobSecrets?
    package init(bytes: Int64? = nil, command: [String]? = nil, secrets: JobSecrets? = nil) {
        self.bytes = bytes
        self.command = command
        self.secrets = secrets
    }
}

/// Storage jobs name the repository folder (absolute) and objects relative to it.
package struct PutJob: Codable, Sendable, Equatable {
    package var root: String
    /// Every object of the input replaces the file of its name, if any (repair puts only
    /// copies it has authenticated over copies it found damaged).
    package var replace: Bool?
    package init(root: String, replace: Bool = false) {
        self.root = root
        self.replace = replace ? true : nil
    }
}

package struct GetJob: Codable, Sendable, Equatable {
    package var root: String
    package var names: [String]
    package init(root: String, names: [String]) {
        self.root = root
        self.names = names
    }
}

package struct ListJob: Codable, Sendable, Equatable {
    package var root: String
    package var prefix: String?
    package init(root: String, prefix: String? = nil) {
        self.root = root
        self.prefix = prefix
    }
}

package struct DeleteJob: Codable, Sendable, Equatable {
    package var root: String
    package var names: [String]
    package init(root: String, names: [String]) {
        self.root = root
        self.names = names
    }
}

package struct LockJob: Codable, Sendable, Equatable {
    package var root: String
    /// The layers whose exclusive locks to take (none: the repository lock only).
    package var layers: [String]
    /// Who holds it (coordinator host, pid, operation), shown to whoever waits.
    package var owner: String?
    /// The repository lock exclusive (prune, repair, creation) instead of shared.
    package var exclusive: Bool

    enum CodingKeys: String, CodingKey { case root, layers = "names", owner, exclusive }

    package init(root: String, layers: [String], owner: String?, exclusive: Bool) {
        self.root = root
        self.layers = layers
        self.owner = owner
        self.exclusive = exclusive
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        root = try c.decode(String.self, forKey: .root)
        layers = try c.decodeIfPresent([String].self, forKey: .layers) ?? []
        owner = try c.decodeIfPresent(String.self, forKey: .owner)
        exclusive = try c.decodeIfPresent(Bool.self, forKey: .exclusive) ?? false
    }
}

package struct ChunkJob: Codable, Sendable, Equatable {
    /// The stream: a command's stdout (tests, benchmarks)...
    package var command: [String]?
    /// ...or the dump of this database (its password is `secrets.dbPassword`).
    package var database: DatabaseAccess?
    /// The repository's keys and chunker seed; the database password.
    package var secrets: JobSecrets
    /// [min, avg, max] chunk sizes, and the zstd level.
    package var chunkSizes: [Int]?
    package var zstdLevel: Int?
    /// The keys, chunk sizes and zstd level come later, as a `ChunkKeys` line on stdin: the
    /// agent starts the dump at once, and the dump tool connects and reads its catalogs (a
    /// pipe's worth ahead) while the coordinator opens the repository and takes its locks.
    package var keysFollow: Bool?

    package init(
        command: [String]? = nil, database: DatabaseAccess? = nil, secrets: JobSecrets = JobSecrets(),
        chunkSizes: [Int]? = nil, zstdLevel: Int? = nil, keysFollow: Bool? = nil
    ) {
        self.command = command
        self.keysFollow = keysFollow
        self.database = database
        self.secrets = secrets
        self.chunkSizes = chunkSizes
        self.zstdLevel = zstdLevel
    }
}

/// The second line of a chunk job with `keysFollow`: what the job line left out.
package struct ChunkKeys: Codable, Sendable, Equatable {
    /// `dataKey`, `idKey` and `chunkerSeed` (a `dbPassword` here is ignored: the dump has started).
    package var secrets: JobSecrets
    package var chunkSizes: [Int]?
    package var zstdLevel: Int?

    package init(secrets: JobSecrets, chunkSizes: [Int]?, zstdLevel: Int?) {
        self.secrets = secrets
        self.chunkSizes = chunkSizes
        self.zstdLevel = zstdLevel
    }

    /// The job line and this, as one job.
    package func completing(_ job: ChunkJob) -> ChunkJob {
        var j = job
        j.secrets.dataKey = secrets.dataKey
        j.secrets.idKey = secrets.idKey
        j.secrets.chunkerSeed = secrets.chunkerSeed
        j.chunkSizes = chunkSizes
        j.zstdLevel = zstdLevel
        j.keysFollow = nil
        return j
    }
}

package struct RestoreJob: Codable, Sendable, Equatable {
    package var database: DatabaseAccess
    /// The repository's data and ID keys; the database password.
    package var secrets: JobSecrets
    /// The `ChunkSequence` digest of the stream's chunk IDs, from the manifest: the agent
    /// compares the chunks it authenticated and applied, in order, before it lets the target
    /// commit (a Redis target loads nothing otherwise).
    package var chunkSequence: String?
    package init(database: DatabaseAccess, secrets: JobSecrets, chunkSequence: String? = nil) {
        self.database = database
        self.secrets = secrets
        self.chunkSequence = chunkSequence
    }
}

extension AgentJob: Codable {
    private enum TypeKey: String, CodingKey { case type }

    package init(from decoder: any Decoder) throws {
        let kind = try decoder.container(keyedBy: TypeKey.self).decode(Kind.self, forKey: .type)
        switch kind {
        case .check: self = .check(try CheckJob(from: decoder))
        case .sink: self = .sink
        case .source: self = .source(try SourceJob(from: decoder))
        case .echo: self = .echo
        case .put: self = .put(try PutJob(from: decoder))
        case .get: self = .get(try GetJob(from: decoder))
        case .list: self = .list(try ListJob(from: decoder))
        case .delete: self = .delete(try DeleteJob(from: decoder))
        case .lock: self = .lock(try LockJob(from: decoder))
        case .chunk: self = .chunk(try ChunkJob(from: decoder))
        case .restore: self = .restore(try RestoreJob(from: decoder))
        }
    }

    package func encode(to encoder: any Encoder) throws {
        // The payload's fields and `type` share one JSON object.
        switch self {
        case .check(let j): try j.encode(to: encoder)
        case .source(let j): try j.encode(to: encoder)
        case .put(let j): try j.encode(to: encoder)
        case .get(let j): try j.encode(to: encoder)
        case .list(let j): try j.encode(to: encoder)
        case .delete(let j): try j.encode(to: encoder)
        case .lock(let j): try j.encode(to: encoder)
        case .chunk(let j): try j.encode(to: encoder)
        case .restore(let j): try j.encode(to: encoder)
        case .sink, .echo: break
        }
        var c = encoder.container(keyedBy: TypeKey.self)
        try c.encode(kind, forKey: .type)
    }
}

/// The per-run secrets of a job, typed. They travel only inside the job line, on stdin,
/// never in argv or an environment; on the wire the keys are base64 (Data's encoding) under
/// the names below, and a job missing one it needs is refused as a bad job.
package struct JobSecrets: Codable, Sendable, Equatable {
    /// The repository's data key (AES-256-GCM) and keyed-ID key, 32 bytes each.
    package var dataKey: Data?
    package var idKey: Data?
    /// The chunker's gear-table seed.
    package var chunkerSeed: Data?
    /// The database password of a dump or restore.
    package var dbPassword: String?

    package init(dataKey: Data? = nil, idKey: Data? = nil, chunkerSeed: Data? = nil, dbPassword: String? = nil) {
        self.dataKey = dataKey
        self.idKey = idKey
        self.chunkerSeed = chunkerSeed
        self.dbPassword = dbPassword
    }

    /// Both keys, when each is 32 bytes.
    package var keys: (data: [UInt8], id: [UInt8])? {
        guard let d = dataKey, d.count == 32, let i = idKey, i.count == 32 else { return nil }
        return (Array(d), Array(i))
    }
}

/// One line on the agent's stderr.
package struct AgentEvent: Codable, Sendable, Equatable {
    package enum Kind: String, Codable, Sendable {
        /// The job reached the state it holds until the session ends (a lock is held).
        /// `chunk` job: one chunk of the stream (`id`, `bytes` raw, `stored`).
        case hello, progress, log, warning, ready, chunk, result, error
    }

    package var event: Kind
    // hello
    package var agent: String?
    package var `protocol`: Int?
    package var version: String?
    package var pid: Int32?
    // progress / result
    package var bytes: Int64?
    /// sink, source, echo: SHA-256 of the bytes.
    package var sha256: String?
    /// restore: the `ChunkSequence` digest of the chunks applied.
    package var chunkSequence: String?
    // log / warning / error
    package var message: String?
    package var code: String?
    // chunk
    package var id: String?
    // storage jobs
    package var stored: Int?
    package var existed: Int?
    package var missing: [String]?
    // check
    package var tools: [String: String]?
    package var freeBytes: Int64?
    package var totalBytes: Int64?
    // dump / restore: rows per database (SQL) or keys per database (Redis)
    package var counts: [String: Int64]?

    package init(event: Kind) { self.event = event }

    package static func hello(pid: Int32) -> AgentEvent {
        var e = AgentEvent(event: .hello)
        e.agent = AgentWire.agentName
        e.protocol = AgentWire.protocolVersion
        e.version = AgentWire.version
        e.pid = pid
        return e
    }

    package static func progress(_ bytes: Int64) -> AgentEvent {
        var e = AgentEvent(event: .progress)
        e.bytes = bytes
        return e
    }

    package static func error(_ code: String, _ message: String) -> AgentEvent {
        var e = AgentEvent(event: .error)
        e.code = code
        e.message = message
        return e
    }

    package func line() -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Plain values: encoding cannot fail.
        return Array(try! enc.encode(self)) + [0x0A]
    }
}

package enum Frame {
    /// The 4-byte big-endian header of a frame of `length` bytes.
    package static func header(_ length: Int) -> [UInt8] {
        let n = UInt32(length)
        return [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
    }

    package static let end: [UInt8] = header(0)
}

/// Objects on the wire (put input, get output): a 4-byte big-endian name length, the name
/// (UTF-8), an 8-byte big-endian size, then that many bytes.
package enum ObjectRecord {
    package static let maxName = 1024

    package static func header(name: String, size: Int) -> [UInt8] {
        let n = Array(name.utf8)
        var out = Frame.header(n.count) + n
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(size) >> UInt64(shift)) & 0xff)) }
        return out
    }

    package static func encode(name: String, bytes: [UInt8]) -> [UInt8] { header(name: name, size: bytes.count) + bytes }

    /// A relative object name with no empty, "." or ".." parts and only safe characters.
    package static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= maxName, !name.hasPrefix("/") else { return false }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        return parts.allSatisfy { p in
            !p.isEmpty && p != "." && p != ".." && p.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
        }
    }
}

/// A record that cannot be one: a name of 0 or more than `ObjectRecord.maxName` bytes, or an
/// object over `ObjectRecord.maxSize`.
package struct MalformedRecord: Error, Equatable, CustomStringConvertible {
    package var description: String
}

/// The stream ended inside a record's header.
package struct RecordHeaderCut: Error, Equatable {}

extension ObjectRecord {
    /// The largest object a record carries: a sealed chunk (at most 64 MiB of plaintext, the
    /// chunker's largest maximum, plus the envelope); manifests and key files are far smaller.
    package static let maxSize = 128 << 20

    /// The one decoder of record headers, for both sides. `bytes(n)` hands out exactly `n`
    /// more bytes of the stream, or nil when it ends before the first of them; the result is
    /// nil when the stream ends cleanly before a record. The object's bytes follow.
    package static func readHeader(_ bytes: (Int) throws -> [UInt8]?) throws -> (name: String, size: Int)? {
        guard let len = try bytes(4) else { return nil }
        let nameLen = Int(len[0]) << 24 | Int(len[1]) << 16 | Int(len[2]) << 8 | Int(len[3])
        guard nameLen > 0, nameLen <= maxName else { throw MalformedRecord(description: "malformed object record (a name of \(nameLen) bytes)") }
        guard let name = try bytes(nameLen), let sizeBytes = try bytes(8) else { throw RecordHeaderCut() }
        let size = sizeBytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard size <= UInt64(maxSize) else { throw MalformedRecord(description: "object record of \(size) bytes (at most \(maxSize))") }
        return (String(decoding: name, as: UTF8.self), Int(size))
    }

    /// The same for bytes already in memory: the header at `offset` of `buffer`, and where its
    /// object starts; nil when the buffer does not hold the whole header yet.
    package static func parseHeader(_ buffer: [UInt8], at offset: Int) throws(MalformedRecord) -> (name: String, size: Int, payload: Int)? {
        var p = offset
        func take(_ n: Int) -> [UInt8]? {
            guard buffer.count - p >= n else { return nil }
            defer { p += n }
            return Array(buffer[p..<(p + n)])
        }
        do {
            guard let h = try readHeader(take) else { return nil }
            return (h.name, h.size, p)
        } catch let e as MalformedRecord {
            throw e
        } catch {
            // A header cut short in a buffer only means more bytes are to come.
            return nil
        }
    }
}
