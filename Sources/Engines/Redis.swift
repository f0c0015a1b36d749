// Redis wire pieces the agent needs without hiredis (it is a static binary that must run on
// any node): RESP encoding, an incremental reply parser, INFO fields and keyspace, cluster
// key slots. The coordinator's topology probes read INFO with the same parsers.

package indirect enum RESPValue: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8]?)
    case array([RESPValue]?)

    package var text: String? {
        switch self {
        case .simple(let s): s
        case .bulk(let b?): String(decoding: b, as: UTF8.self)
        default: nil
        }
    }
}

package enum RESP {
    /// A command as an array of bulk strings.
    package static func command(_ args: [[UInt8]]) -> [UInt8] {
        var out = Array("*\(args.count)\r\n".utf8)
        for a in args {
            out += Array("$\(a.count)\r\n".utf8)
            out += a
            out += [0x0D, 0x0A]
        }
        return out
    }

    package static func command(_ args: String...) -> [UInt8] { command(args.map { Array($0.utf8) }) }

    package enum ParseError: Error, Equatable { case malformed(String) }

    /// Parses one reply from `buf[start...]`: the value and where it ends, or nil when the
    /// buffer does not hold all of it yet.
    package static func parse(_ buf: UnsafeRawBufferPointer, from start: Int) throws(ParseError) -> (RESPValue, Int)? {
        guard start < buf.count else { return nil }
        guard let (line, next) = readLine(buf, start + 1) else { return nil }
        switch buf[start] {
        case UInt8(ascii: "+"): return (.simple(line), next)
        case UInt8(ascii: "-"): return (.error(line), next)
        case UInt8(ascii: ":"):
            guard let v = Int64(line) else { throw .malformed("integer '\(line)'") }
            return (.integer(v), next)
        case UInt8(ascii: "$"):
            guard let n = Int(line) else { throw .malformed("bulk length '\(line)'") }
            if n < 0 { return (.bulk(nil), next) }
            guard next + n + 2 <= buf.count else { return nil }
            return (.bulk(Array(UnsafeRawBufferPointer(rebasing: buf[next..<(next + n)]))), next + n + 2)
        case UInt8(ascii: "*"):
            guard let n = Int(line) else { throw .malformed("array length '\(line)'") }
            if n < 0 { return (.array(nil), next) }
            var items: [RESPValue] = []
            items.reserveCapacity(n)
            var at = next
            for _ in 0..<n {
                guard let (v, e) = try parse(buf, from: at) else { return nil }
                items.append(v)
                at = e
            }
            return (.array(items), at)
        default:
            throw .malformed("reply type byte \(buf[start])")
        }
    }

    static func readLine(_ buf: UnsafeRawBufferPointer, _ from: Int) -> (String, Int)? {
        var i = from
        while i + 1 < buf.count {
            if buf[i] == 0x0D && buf[i + 1] == 0x0A {
                return (String(decoding: UnsafeRawBufferPointer(rebasing: buf[from..<i]), as: UTF8.self), i + 2)
            }
            i += 1
        }
        return nil
    }

    /// An `INFO` reply as field → value (section headers and blank lines dropped): the one
    /// parser of INFO text, the topology probes' and the agent's. Redis ends lines with
    /// "\r\n", which Swift's Character treats as one grapheme: lines are split on
    /// `isNewline`, never on "\n".
    package static func infoFields(_ info: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in info.split(whereSeparator: \.isNewline) {
            let l = line.drop { $0 == " " || $0 == "\t" }
            if l.isEmpty || l.hasPrefix("#") { continue }
            guard let colon = l.firstIndex(of: ":") else { continue }
            var value = l[l.index(after: colon)...]
            while let last = value.last, last == " " || last == "\t" { value = value.dropLast() }
            out[String(l[..<colon])] = String(value)
        }
        return out
    }

    /// One field of an `INFO` reply, as a number.
    package static func infoNumber(_ info: String, _ field: String) -> Int64? {
        infoFields(info)[field].flatMap { Int64($0) }
    }

    /// `INFO keyspace` → keys per database ("db0": 12).
    package static func keyspace(_ info: String) -> [String: Int64] {
        var out: [String: Int64] = [:]
        for (field, value) in infoFields(info) where field.hasPrefix("db") {
            for kv in value.split(separator: ",") where kv.hasPrefix("keys=") {
                out[field] = Int64(kv.dropFirst(5))
            }
        }
        return out
    }
}

package enum RedisCluster {
    /// The hash slot of a key: CRC16 (XMODEM) of the key, or of its `{hash tag}` when it has
    /// a non-empty one, modulo 16384.
    package static func slot(_ key: [UInt8]) -> Int {
        key.withUnsafeBufferPointer { bytes in
            var part = bytes[...]
            if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
                let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
            {
                part = bytes[(open + 1)..<close]
            }
            // A byte at a time from a table: the bit loop was ~4% of a cluster restore's agent.
            return crc16Table.withUnsafeBufferPointer { t in
                var crc: UInt16 = 0
                for b in part { crc = (crc << 8) ^ t[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ b)] }
                return Int(crc) & 16383
            }
        }
    }

    /// CRC16-XMODEM (polynomial 0x1021) of each byte value.
    private static let crc16Table: [UInt16] = (0..<256).map { i in
        var crc = UInt16(i) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }

    /// `CLUSTER SLOTS` → (first, last, host, port) of every range.
    package static func slotRanges(_ reply: RESPValue) -> [(Int, Int, String, Int)] {
        guard case .array(let ranges?) = reply else { return [] }
        var out: [(Int, Int, String, Int)] = []
        for r in ranges {
            guard case .array(let f?) = r, f.count >= 3, case .integer(let a) = f[0], case .integer(let b) = f[1],
                case .array(let m?) = f[2], m.count >= 2, let host = m[0].text, case .integer(let port) = m[1]
            else { continue }
            out.append((Int(a), Int(b), host, Int(port)))
        }
        return out
    }
}

/// The master's side of one full resynchronisation, as the agent plays it to restore a Redis
/// server: the target, told `REPLICAOF` the agent's port, connects and sends `PING`, `AUTH`
/// (its `masterauth`, set to a one-off password for the restore), `REPLCONF`s and `PSYNC`;
/// the agent answers `+FULLRESYNC` and streams the backup's RDB in `$EOF:` framing (the
/// length is not known before the last chunk is fetched). Anything else, or anything before
/// the password, closes the connection: the password is what keeps another local process
/// from reading the backup here.
package struct RedisMasterHandshake {
    package enum Answer: Equatable {
        /// Send this and read the next command.
        case reply([UInt8])
        /// Send this and close the connection.
        case refuse([UInt8])
        /// Send this; the RDB follows, then `mark`.
        case start([UInt8])
    }

    private let password: [UInt8]
    package let replicationID: String
    package let mark: [UInt8]
    package private(set) var authenticated = false
    package private(set) var takesEOF = false

    /// `replicationID` and `mark`: 40 characters each (Redis' own sizes).
    package init(password: String, replicationID: String, mark: String) {
        self.password = Array(password.utf8)
        self.replicationID = replicationID
        self.mark = Array(mark.utf8)
    }

    package mutating func answer(_ command: [[UInt8]]) -> Answer {
        guard let first = command.first else { return .refuse(Array("-ERR empty command\r\n".utf8)) }
        let name = String(decoding: first, as: UTF8.self).uppercased()
        switch name {
        case "PING":
            return .reply(Array("+PONG\r\n".utf8))
        case "AUTH":
            // AUTH password, or AUTH user password (masteruser set): the password is last.
            guard command.count == 2 || command.count == 3, Self.same(command[command.count - 1], password) else {
                return .refuse(Array("-WRONGPASS invalid username-password pair\r\n".utf8))
            }
            authenticated = true
            return .reply(Array("+OK\r\n".utf8))
        default:
            break
        }
        guard authenticated else { return .refuse(Array("-NOAUTH Authentication required.\r\n".utf8)) }
        switch name {
        case "REPLCONF":
            // `capa eof` may come with other capabilities, in any order.
            let args = command.dropFirst().map { String(decoding: $0, as: UTF8.self).lowercased() }
            for i in args.indices where args[i] == "capa" && i + 1 < args.count && args[i + 1] == "eof" { takesEOF = true }
            return .reply(Array("+OK\r\n".utf8))
        case "PSYNC":
            guard takesEOF else { return .refuse(Array("-ERR this master streams the RDB with EOF framing only (REPLCONF capa eof)\r\n".utf8)) }
            return .start(Array("+FULLRESYNC \(replicationID) 0\r\n$EOF:".utf8) + mark + [0x0D, 0x0A])
        default:
            return .refuse(Array("-ERR unknown command '\(name.prefix(32))' during the restore's replication\r\n".utf8))
        }
    }

    /// Equal bytes, compared in time independent of where they differ.
    private static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// How a Redis target takes a restore's RDB from the agent (its `repl-diskless-load`). From
/// its disk (Redis' default): the replica writes the whole payload to a file, then loads it,
/// so the transfer and the load run one after the other. From the socket beside its old
/// data (`swapdb`): it parses the payload as it arrives, so the load overlaps the transfer
/// (a 283 MB RDB: 5.6 s against 4.8 s on the lab), needs no disk for a copy of the RDB, and
/// still keeps its old data when the transfer breaks off. But both datasets are in memory
/// until the end; a server that runs out is killed with both. So the socket only when the
/// new data fits beside the old one with room to spare.
package enum RedisLoad: Equatable, Sendable {
    case socket
    case disk(because: String)

    /// The room the load takes beyond the new data's own size (allocator slack, the
    /// replication buffers, the pages the parse touches): a quarter.
    package static let margin = 4

    /// - Parameters:
    ///   - incoming: the RDB's `used-mem` (what its data took on the server that saved it).
    ///   - used: the target's `used_memory` now; `maxmemory`: its limit (0: none).
    ///   - available: the memory its node can still give (MemAvailable, within any cgroup
    ///     limit of the server's process); nil when it cannot be read.
    package static func choose(incoming: Int64?, used: Int64, maxmemory: Int64, available: Int64?) -> RedisLoad {
        func mib(_ n: Int64) -> String { "\((n + (1 << 20) - 1) >> 20) MiB" }
        guard let incoming else { return .disk(because: "the backup's RDB does not record the memory its data took (used-mem)") }
        let need = incoming + incoming / Int64(margin)
        if maxmemory > 0 && used + need > maxmemory {
            return .disk(because: "the data held (\(mib(used))) and the backup's (\(mib(incoming))) do not fit together in maxmemory (\(mib(maxmemory)))")
        }
        guard let available else { return .disk(because: "the node's available memory could not be read") }
        if need > available {
            return .disk(because: "the node has \(mib(available)) available, the backup's data takes \(mib(incoming)) beside the data held")
        }
        return .socket
    }
}

/// Memory a node can still give, from Linux' own accounts (pure over their texts).
package enum NodeMemory {
    /// `MemAvailable` of /proc/meminfo, in bytes.
    package static func available(meminfo: String) -> Int64? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kb = Int64(parts[1]) else { return nil }
            return kb * 1024
        }
        return nil
    }

    /// The cgroup (v2) of a process, from /proc/PID/cgroup (`0::/path`).
    package static func cgroupPath(procCgroup: String) -> String? {
        for line in procCgroup.split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return nil
    }

    /// What a cgroup may still take: memory.max less memory.current; nil without a limit.
    package static func headroom(max: String, current: String) -> Int64? {
        func number(_ s: String) -> Int64? { Int64(s.split(whereSeparator: { $0 == " " || $0 == "\n" }).first ?? "") }
        // "max" when the cgroup has no limit.
        guard let limit = number(max), let used = number(current) else { return nil }
        return Swift.max(0, limit - used)
    }
}
