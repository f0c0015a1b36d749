// Redis wire pieces the agent needs without hiredis (it is a static binary that must run on
// any node): RESP encoding, an incremental reply parser, INFO keyspace, cluster key slots.

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

    /// `INFO keyspace` → keys per database ("db0": 12).
    package static func keyspace(_ info: String) -> [String: Int64] {
        var out: [String: Int64] = [:]
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("db") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            for kv in parts[1].split(separator: ",") where kv.hasPrefix("keys=") {
                out[String(parts[0])] = Int64(kv.dropFirst(5))
            }
        }
        return out
    }
}

package enum RedisCluster {
    /// The hash slot of a key: CRC16 (XMODEM) of the key, or of its `{hash tag}` when it has
    /// a non-empty one, modulo 16384.
    package static func slot<C: Collection>(_ key: C) -> Int where C.Element == UInt8 {
        let bytes = Array(key)
        var part = bytes[...]
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
            let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        {
            part = bytes[(open + 1)..<close]
        }
        var crc: UInt16 = 0
        for b in part {
            crc ^= UInt16(b) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return Int(crc) & 16383
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
