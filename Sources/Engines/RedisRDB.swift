// An RDB file read key by key, so a restore can send each key to its target as `RESTORE`
// without a scratch server loading the file and `DUMP`ing it again: a `DUMP` payload is the
// very bytes an RDB holds for the value (its type byte and encoding, as `rdbSaveObject`
// writes both), followed by the RDB version and a CRC-64 of the lot. So the parser decodes
// only what it must (the opcodes, the key, the expiry) and skips over each value by its
// encoding's lengths, leaving the value's bytes as they are. Pure: a buffer in, entries out;
// a buffer that ends inside an entry says `short`, and the caller reads more and asks again.
//
// Formats from Redis' rdb.h and rdb.c (RDB versions up to 11, Redis 7.2). What this does not
// know (modules' auxiliary data, functions, a newer value type) is `unsupported`: the caller
// then takes the slower road of a scratch server.

/// One key of an RDB.
package struct RDBEntry: Equatable {
    package var db: Int
    package var key: [UInt8]
    /// Absolute expiry in Unix milliseconds, if the key has one.
    package var expireAt: Int64?
    /// The value's type byte, and its encoding: `bytes[value]` of the buffer given to `next`.
    package var type: UInt8
    package var value: Range<Int>
}

package enum RDBError: Error, Equatable {
    /// The buffer ends inside this entry: read more and call again from the same place.
    case short
    case malformed(String)
    case unsupported(String)
}

package struct RDBParser {
    package private(set) var version = 0
    package private(set) var ended = false
    private var db = 0

    package init() {}

    /// The header (`REDIS` and four digits); where the first opcode starts.
    package mutating func header(_ buf: UnsafeRawBufferPointer) throws(RDBError) -> Int {
        guard buf.count >= 9 else { throw .short }
        guard Array(buf[0..<5]) == Array("REDIS".utf8), let v = Int(String(decoding: buf[5..<9], as: UTF8.self)) else {
            throw .malformed("not an RDB file (no REDIS header)")
        }
        guard v <= 11 else { throw .unsupported("RDB version \(v)") }
        version = v
        return 9
    }

    /// The next key from `at`, moving `at` past it; nil at the end of the file. On `short`
    /// nothing has changed. Auxiliary fields and database sizes are skipped.
    package mutating func next(_ buf: UnsafeRawBufferPointer, at: inout Int) throws(RDBError) -> RDBEntry? {
        var c = RDBCursor(buf: buf, pos: at)
        var db = self.db
        var expireAt: Int64?
        while true {
            let op = try c.byte()
            switch op {
            case 0xFF:  // EOF (a checksum follows, which the chunk IDs already cover)
                ended = true
                self.db = db
                at = c.pos
                return nil
            case 0xFE: db = Int(try c.length())  // SELECTDB
            case 0xFD: expireAt = Int64(try c.littleEndian(4)) * 1000  // EXPIRETIME (seconds)
            case 0xFC: expireAt = Int64(bitPattern: try c.littleEndian(8))  // EXPIRETIME_MS
            case 0xFB: _ = try c.length(); _ = try c.length()  // RESIZEDB
            case 0xFA: try c.skipString(); try c.skipString()  // AUX
            case 0xF9: try c.skip(1)  // FREQ (LFU)
            case 0xF8: _ = try c.length()  // IDLE (LRU)
            case 0xF4: _ = try c.length(); _ = try c.length(); _ = try c.length()  // SLOT_INFO
            case 0xF7: throw .unsupported("module auxiliary data")
            case 0xF5, 0xF6: throw .unsupported("functions")
            default:
                let key = try c.string()
                let start = c.pos
                try c.skipValue(type: op)
                self.db = db
                at = c.pos
                return RDBEntry(db: db, key: key, expireAt: expireAt, type: op, value: start..<c.pos)
            }
        }
    }
}

extension RDBParser {
    /// The auxiliary fields at the head of an RDB (`redis-ver`, `used-mem`, ...), up to the
    /// first opcode that is not one; `short` when `buf` ends among them.
    package static func auxiliaryFields(_ buf: UnsafeRawBufferPointer) throws(RDBError) -> [String: [UInt8]] {
        var p = RDBParser()
        var c = RDBCursor(buf: buf, pos: try p.header(buf))
        var fields: [String: [UInt8]] = [:]
        while try c.byte() == 0xFA {
            let key = String(decoding: try c.string(), as: UTF8.self)
            fields[key] = try c.string()
        }
        return fields
    }

    /// `used-mem`: the bytes the saving server's memory held when it wrote the RDB (its
    /// `used_memory`), what its data takes once loaded; nil when the RDB does not say.
    package static func usedMemory(_ fields: [String: [UInt8]]) -> Int64? {
        fields["used-mem"].flatMap { Int64(String(decoding: $0, as: UTF8.self)) }.flatMap { $0 >= 0 ? $0 : nil }
    }
}

/// The `DUMP` payload of a value (type byte and encoding, as in the RDB): both, the RDB
/// version (2 bytes) and the CRC-64 of the three (8 bytes, little-endian), appended to `out`.
package func appendDumpPayload(type: UInt8, _ value: UnsafeRawBufferPointer, version: Int, to out: inout [UInt8]) {
    let start = out.count
    out.append(type)
    out.append(contentsOf: value)
    out.append(UInt8(version & 0xFF))
    out.append(UInt8(version >> 8))
    let crc = out.withUnsafeBytes { CRC64.jones(UnsafeRawBufferPointer(rebasing: $0[start...])) }
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: crc >> (8 * UInt64(i)))) }
}

/// `RESTORE key ttl payload REPLACE [ABSTTL]` for one entry of an RDB, as RESP, appended to
/// `out` with the payload built in place (no copy of the value in between). The expiry goes
/// as an absolute time: a key that expired since the backup is not created (Redis' own rule
/// for `ABSTTL` in the past).
package func appendRestoreCommand(_ e: RDBEntry, value: UnsafeRawBufferPointer, version: Int, to out: inout [UInt8]) {
    // A million keys are a million of these: lengths written as digits in place and the
    // fixed words as constant bytes (a String per number was ~5% of a restoring agent).
    let ttl = e.expireAt.map { max($0, 1) } ?? 0
    out.append(contentsOf: ttl > 0 ? RESPWords.sixRestore : RESPWords.fiveRestore)
    out.append(UInt8(ascii: "$"))
    appendDecimal(e.key.count, to: &out)
    out.append(0x0D)
    out.append(0x0A)
    out.append(contentsOf: e.key)
    out.append(0x0D)
    out.append(0x0A)
    appendBulkDecimal(Int(ttl), to: &out)
    out.append(UInt8(ascii: "$"))
    appendDecimal(1 + value.count + 10, to: &out)
    out.append(0x0D)
    out.append(0x0A)
    appendDumpPayload(type: e.type, value, version: version, to: &out)
    out.append(0x0D)
    out.append(0x0A)
    out.append(contentsOf: ttl > 0 ? RESPWords.replaceAbsTTL : RESPWords.replace)
}

/// The constant words of `appendRestoreCommand`, as RESP.
private enum RESPWords {
    static let fiveRestore: [UInt8] = Array("*5\r\n$7\r\nRESTORE\r\n".utf8)
    static let sixRestore: [UInt8] = Array("*6\r\n$7\r\nRESTORE\r\n".utf8)
    static let replace: [UInt8] = Array("$7\r\nREPLACE\r\n".utf8)
    static let replaceAbsTTL: [UInt8] = Array("$7\r\nREPLACE\r\n$6\r\nABSTTL\r\n".utf8)
}

/// A non-negative integer's decimal digits, appended.
package func appendDecimal(_ value: Int, to out: inout [UInt8]) {
    withDecimalDigits(value) { out.append(contentsOf: $0) }
}

/// A non-negative integer as a RESP bulk string (`$2\r\n42\r\n`), appended.
package func appendBulkDecimal(_ value: Int, to out: inout [UInt8]) {
    withDecimalDigits(value) { d in
        out.append(UInt8(ascii: "$"))
        appendDecimal(d.count, to: &out)
        out.append(0x0D)
        out.append(0x0A)
        out.append(contentsOf: d)
        out.append(0x0D)
        out.append(0x0A)
    }
}

/// The digits of a non-negative integer, formatted on the stack.
private func withDecimalDigits(_ value: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
    precondition(value >= 0)
    var v = UInt64(value)
    var room: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: an Int has at most 19 digits
    withUnsafeMutableBytes(of: &room) { t in
        var i = t.count
        repeat {
            i -= 1
            t[i] = UInt8(ascii: "0") + UInt8(v % 10)
            v /= 10
        } while v > 0
        body(UnsafeRawBufferPointer(rebasing: t[i...]))
    }
}

private struct RDBCursor {
    let buf: UnsafeRawBufferPointer
    var pos: Int

    mutating func byte() throws(RDBError) -> UInt8 {
        guard pos < buf.count else { throw .short }
        defer { pos += 1 }
        return buf[pos]
    }

    mutating func skip(_ n: Int) throws(RDBError) {
        guard n >= 0 else { throw .malformed("a negative length") }
        guard n <= buf.count - pos else { throw .short }
        pos += n
    }

    mutating func littleEndian(_ n: Int) throws(RDBError) -> UInt64 {
        guard n <= buf.count - pos else { throw .short }
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(buf[pos + i]) << (8 * UInt64(i)) }
        pos += n
        return v
    }

    mutating func bigEndian(_ n: Int) throws(RDBError) -> UInt64 {
        guard n <= buf.count - pos else { throw .short }
        var v: UInt64 = 0
        for i in 0..<n { v = v << 8 | UInt64(buf[pos + i]) }
        pos += n
        return v
    }

    /// A length, or for a string the special encoding it announces (`encoded`).
    mutating func lengthOrEncoding() throws(RDBError) -> (UInt64, encoded: Bool) {
        let b = try byte()
        switch b >> 6 {
        case 0: return (UInt64(b & 0x3F), false)
        case 1: return (UInt64(b & 0x3F) << 8 | UInt64(try byte()), false)
        case 2:
            if b == 0x80 { return (try bigEndian(4), false) }
            if b == 0x81 { return (try bigEndian(8), false) }
            throw .malformed("length byte \(b)")
        default: return (UInt64(b & 0x3F), true)
        }
    }

    mutating func length() throws(RDBError) -> UInt64 {
        let (n, encoded) = try lengthOrEncoding()
        guard !encoded else { throw .malformed("an encoded string where a length belongs") }
        return n
    }

    mutating func count() throws(RDBError) -> Int {
        let n = try length()
        // Each counted item takes at least one byte: a count beyond the buffer is damage
        // or `short`, and either is found by the reads it leads to; only a count no
        // buffer could hold is refused here.
        guard n < 1 << 48 else { throw .malformed("a count of \(n)") }
        return Int(n)
    }

    mutating func skipString() throws(RDBError) {
        let (n, encoded) = try lengthOrEncoding()
        guard encoded else { return try skip(Int(clamping: n)) }
        switch n {
        case 0: try skip(1)
        case 1: try skip(2)
        case 2: try skip(4)
        case 3:
            let compressed = try length()
            _ = try length()
            try skip(Int(clamping: compressed))
        default: throw .malformed("string encoding \(n)")
        }
    }

    /// A string's bytes: integers written out in decimal, LZF expanded.
    mutating func string() throws(RDBError) -> [UInt8] {
        let (n, encoded) = try lengthOrEncoding()
        if !encoded {
            let start = pos
            try skip(Int(clamping: n))
            return Array(buf[start..<pos])
        }
        switch n {
        case 0: return Array(String(Int8(bitPattern: UInt8(try littleEndian(1)))).utf8)
        case 1: return Array(String(Int16(bitPattern: UInt16(try littleEndian(2)))).utf8)
        case 2: return Array(String(Int32(bitPattern: UInt32(try littleEndian(4)))).utf8)
        case 3:
            let compressed = Int(clamping: try length())
            let size = Int(clamping: try length())
            let start = pos
            try skip(compressed)
            guard let out = LZF.decompress(UnsafeRawBufferPointer(rebasing: buf[start..<pos]), size: size) else {
                throw .malformed("an LZF string that does not expand to \(size) bytes")
            }
            return out
        default: throw .malformed("string encoding \(n)")
        }
    }

    /// A double of the first sorted set format: a length byte, or 253-255 for NaN and ±inf.
    mutating func skipOldDouble() throws(RDBError) {
        let n = try byte()
        if n < 253 { try skip(Int(n)) }
    }

    mutating func skipValue(type: UInt8) throws(RDBError) {
        switch type {
        case 0, 9, 10, 11, 12, 13, 16, 17, 20:
            // A string, or one serialized blob (zipmap, ziplist, intset, listpack).
            try skipString()
        case 1, 2, 14:  // list, set: n strings; quicklist: n ziplists
            for _ in 0..<(try count()) { try skipString() }
        case 18:  // quicklist 2: n (container, listpack or plain node)
            for _ in 0..<(try count()) {
                _ = try length()
                try skipString()
            }
        case 3:  // sorted set, doubles as text
            for _ in 0..<(try count()) {
                try skipString()
                try skipOldDouble()
            }
        case 5:  // sorted set 2, binary doubles
            for _ in 0..<(try count()) {
                try skipString()
                try skip(8)
            }
        case 4:  // hash: n field/value pairs
            for _ in 0..<(try count()) {
                try skipString()
                try skipString()
            }
        case 15, 19, 21:
            try skipStream(type)
        case 7:
            try skipModule()
        default:
            throw .unsupported("value type \(type)")
        }
    }

    /// A stream (rdbSaveObject): its listpacks, its metadata, its consumer groups.
    mutating func skipStream(_ type: UInt8) throws(RDBError) {
        for _ in 0..<(try count()) {
            try skipString()  // the node's master ID
            try skipString()  // the listpack
        }
        _ = try length()  // entries
        _ = try length(); _ = try length()  // last ID
        if type >= 19 {
            _ = try length(); _ = try length()  // first ID
            _ = try length(); _ = try length()  // max deleted ID
            _ = try length()  // entries added
        }
        for _ in 0..<(try count()) {
            try skipString()  // name
            _ = try length(); _ = try length()  // last delivered ID
            if type >= 19 { _ = try length() }  // entries read
            for _ in 0..<(try count()) {  // pending entries: ID, delivery time, delivery count
                try skip(16 + 8)
                _ = try length()
            }
            for _ in 0..<(try count()) {  // consumers
                try skipString()
                try skip(8)  // seen time
                if type >= 21 { try skip(8) }  // active time
                for _ in 0..<(try count()) { try skip(16) }  // its pending IDs
            }
        }
    }

    /// A module value of the second format: the module's ID, then typed items to an end opcode.
    mutating func skipModule() throws(RDBError) {
        _ = try length()
        while true {
            switch try length() {
            case 0: return
            case 1, 2: _ = try length()
            case 3: try skip(4)
            case 4: try skip(8)
            case 5: try skipString()
            case let op: throw .malformed("module opcode \(op)")
            }
        }
    }
}

/// Redis' LZF (liblzf's format): literal runs and back references.
package enum LZF {
    package static func decompress(_ input: UnsafeRawBufferPointer, size: Int) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(size)
        var i = 0
        while i < input.count {
            let ctrl = Int(input[i])
            i += 1
            if ctrl < 32 {
                let n = ctrl + 1
                guard i + n <= input.count, out.count + n <= size else { return nil }
                out.append(contentsOf: input[i..<(i + n)])
                i += n
            } else {
                var n = ctrl >> 5
                if n == 7 {
                    guard i < input.count else { return nil }
                    n += Int(input[i])
                    i += 1
                }
                guard i < input.count else { return nil }
                let back = ((ctrl & 0x1F) << 8) + Int(input[i]) + 1
                i += 1
                n += 2
                guard back <= out.count, out.count + n <= size else { return nil }
                // Byte by byte: a reference may overlap what it writes.
                let from = out.count - back
                for k in 0..<n { out.append(out[from + k]) }
            }
        }
        return out.count == size ? out : nil
    }
}

/// The CRC-64 of Redis' `DUMP` payloads and RDB files: the Jones polynomial, reflected,
/// initial value 0 (crc64.c), eight bytes at a time ("slicing by 8").
package enum CRC64 {
    /// Eight tables of 256, one after another: table k advances a byte k places further.
    private static let table: [UInt64] = {
        let poly: UInt64 = 0x95AC_9329_AC4B_C9B5  // 0xad93d23594c935a9 reflected
        var t = [UInt64](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt64(i)
            for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ poly : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 { t[k * 256 + i] = t[Int(t[(k - 1) * 256 + i] & 0xFF)] ^ (t[(k - 1) * 256 + i] >> 8) }
        }
        return t
    }()

    package static func jones(_ data: UnsafeRawBufferPointer, crc start: UInt64 = 0) -> UInt64 {
        var crc = start
        return table.withUnsafeBufferPointer { t in
            var i = 0
            let n = data.count
            while n - i >= 8 {
                // One unaligned 8-byte load, not eight byte loads and shifts.
                let v = crc ^ UInt64(littleEndian: data.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                crc =
                    t[7 * 256 + Int(v & 0xFF)] ^ t[6 * 256 + Int((v >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((v >> 16) & 0xFF)] ^ t[4 * 256 + Int((v >> 24) & 0xFF)]
                    ^ t[3 * 256 + Int((v >> 32) & 0xFF)] ^ t[2 * 256 + Int((v >> 40) & 0xFF)]
                    ^ t[1 * 256 + Int((v >> 48) & 0xFF)] ^ t[Int(v >> 56)]
                i += 8
            }
            while i < n {
                crc = t[Int((crc ^ UInt64(data[i])) & 0xFF)] ^ (crc >> 8)
                i += 1
            }
            return crc
        }
    }
}
