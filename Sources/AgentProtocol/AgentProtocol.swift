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

/// A job description. Unknown fields are ignored; an unknown `type` is refused.
package struct AgentJob: Codable, Sendable, Equatable {
    package enum Kind: String, Codable, Sendable {
        /// Report tool versions and free space.
        case check
        /// Read the input frames, report their size and SHA-256.
        case sink
        /// Write a stream on stdout: `bytes` zero bytes, or a command's stdout.
        case source
        /// Copy the input frames to stdout.
        case echo
        /// Storage node: write the objects of the input (records) under `root`, atomically.
        case put
        /// Storage node: write the objects `names` under `root` to stdout, as records.
        case get
        /// Storage node: list the objects under `root`/`prefix` (stdout: "size name" lines).
        case list
        /// Storage node: remove the objects `names` under `root`.
        case delete
        /// Storage node: hold the repository lock (shared, or `exclusive`) and the exclusive
        /// locks of the layers `names` under `root` until the session ends.
        case lock
        /// Database node: run `command`, cut its stdout into chunks, compress and encrypt
        /// each with the keys in `secrets` (data key, ID key, chunker seed), write them as
        /// object records; one `chunk` event per chunk, in stream order.
        case chunk
        /// Database node: the input is a backup stream's sealed chunks as object records, in
        /// order; each is authenticated, decrypted and checked against its keyed ID here, and
        /// the plaintext applied to the database `database` (psql, mariadb, or for Redis a
        /// private redis-server whose keys are copied with DUMP/RESTORE).
        case restore
    }

    package var type: Kind
    package var bytes: Int64?
    /// For `source`: the program and arguments whose stdout is the stream.
    package var command: [String]?
    /// For `check`: tools to look for; a path whose free space to report.
    package var tools: [String]?
    package var path: String?
    /// Secrets a job needs (the repository's keys, the database password): kept out of argv
    /// and environment, typed.
    package var secrets: JobSecrets?
    /// Storage jobs: the repository folder (absolute), object names relative to it, a prefix.
    package var root: String?
    package var names: [String]?
    package var prefix: String?
    /// For `lock`: who holds it (coordinator host, pid, operation), shown to whoever waits,
    /// and whether the repository lock is exclusive (prune) or shared (backup, restore).
    package var owner: String?
    package var exclusive: Bool?
    /// For `chunk`: [min, avg, max] chunk sizes and the zstd level.
    package var chunkSizes: [Int]?
    package var zstdLevel: Int?
    /// For `chunk` (then `command` is not needed) and `restore`: the database to dump or
    /// restore; its password is `secrets.dbPassword`.
    package var database: DatabaseAccess?
    /// For `put`: every object of the input replaces the file of its name, if any (repair
    /// puts only copies it has authenticated over copies it found damaged).
    package var replace: Bool?

    package init(type: Kind, bytes: Int64? = nil, command: [String]? = nil, tools: [String]? = nil,
                path: String? = nil, secrets: JobSecrets? = nil, root: String? = nil,
                names: [String]? = nil, prefix: String? = nil, owner: String? = nil,
                chunkSizes: [Int]? = nil, zstdLevel: Int? = nil, exclusive: Bool? = nil,
                database: DatabaseAccess? = nil, replace: Bool? = nil) {
        self.type = type
        self.bytes = bytes
        self.command = command
        self.tools = tools
        self.path = path
        self.secrets = secrets
        self.root = root
        self.names = names
        self.prefix = prefix
        self.owner = owner
        self.chunkSizes = chunkSizes
        self.zstdLevel = zstdLevel
        self.exclusive = exclusive
        self.database = database
        self.replace = replace
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
    package var sha256: String?
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
