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
        /// each with the keys in `secrets` (dataKey, idKey, chunkerSeed), write them as
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
    /// Secrets a job needs (database passwords, later keys): kept out of argv and environment.
    package var secrets: [String: String]?
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
    /// restore; its password is `secrets["dbPassword"]`.
    package var database: DatabaseAccess?
    /// For `put`: every object of the input replaces the file of its name, if any (repair
    /// puts only copies it has authenticated over copies it found damaged).
    package var replace: Bool?

    package init(type: Kind, bytes: Int64? = nil, command: [String]? = nil, tools: [String]? = nil,
                path: String? = nil, secrets: [String: String]? = nil, root: String? = nil,
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
