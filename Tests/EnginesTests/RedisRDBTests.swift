// The RDB parser against a file Redis wrote (fixtures/redis/record.sh: every value type in
// each of its encodings, expiries, two databases): each key's DUMP payload, built from the
// RDB's bytes, must equal what the same server's DUMP answered, byte for byte; and a buffer
// cut anywhere gives `short`, never a wrong key.
import Engines
import Foundation
import Repository
import Testing

private let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures/redis")

struct RecordedRDBKeys: Decodable {
    struct Key: Decodable {
        var db: Int
        var key: String
        var dump: String
        var expireAt: Int64
        var type: String
        var encoding: String
    }
    var redis: String
    var keys: [Key]
}

private func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = s.startIndex
    while i < s.endIndex {
        let j = s.index(i, offsetBy: 2)
        out.append(UInt8(s[i..<j], radix: 16)!)
        i = j
    }
    return out
}

/// Every entry of `rdb`, read the way the agent reads a file: a window that grows by `step`
/// bytes whenever the parser says `short`.
private func entries(_ rdb: [UInt8], step: Int) throws -> (RDBParser, [(RDBEntry, [UInt8])]) {
    var p = RDBParser()
    var have = min(step, rdb.count)
    var at = -1
    var out: [(RDBEntry, [UInt8])] = []
    while !p.ended {
        do {
            try rdb[0..<have].withUnsafeBytes { b in
                if at < 0 { at = try p.header(b) }
                while let e = try p.next(b, at: &at) {
                    var payload: [UInt8] = []
                    appendDumpPayload(type: e.type, UnsafeRawBufferPointer(rebasing: b[e.value]), version: p.version, to: &payload)
                    out.append((e, payload))
                }
            }
        } catch RDBError.short {
            #expect(have < rdb.count, "short at the end of the whole file")
            if have == rdb.count { break }
            have = min(rdb.count, have + step)
        }
    }
    return (p, out)
}

@Suite struct RedisRDBTests {
    let rdb = try! Array(Data(contentsOf: dir.appendingPathComponent("keys.rdb")))
    let recorded = try! JSONDecoder().decode(RecordedRDBKeys.self, from: Data(contentsOf: dir.appendingPathComponent("keys.json")))

    @Test func auxiliaryFieldsAtTheHeadSayWhatTheDataTookInMemory() throws {
        let fields = try rdb.withUnsafeBytes { try RDBParser.auxiliaryFields($0) }
        #expect(fields["redis-ver"] == Array("7.0.15".utf8))
        // Saved as a 32-bit integer encoding (C2 40 29 14 00).
        #expect(RDBParser.usedMemory(fields) == 1_321_280)
        #expect(fields["aof-base"] == Array("0".utf8))
        // Cut inside the fields: short, so the caller can tell it from an RDB without them.
        #expect(throws: RDBError.short) { try rdb.prefix(40).withUnsafeBytes { try RDBParser.auxiliaryFields($0) } }
        // A value beyond 32 bits is saved as its digits.
        var big = Array("REDIS0010".utf8) + [0xFA, 8] + Array("used-mem".utf8) + [10] + Array("5368709120".utf8) + [0xFE, 0]
        #expect(RDBParser.usedMemory(try big.withUnsafeBytes { try RDBParser.auxiliaryFields($0) }) == 5_368_709_120)
        big = Array("REDIS0006".utf8) + [0xFE, 0]
        #expect(RDBParser.usedMemory(try big.withUnsafeBytes { try RDBParser.auxiliaryFields($0) }) == nil)
    }

    @Test func crc64IsRedisOwn() {
        // crc64.c's own test vector.
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC64.jones($0) } == 0xE9C6_D914_C4B8_D9CA)
        // The RDB file's footer is the CRC-64 of everything before it.
        let body = rdb.dropLast(8)
        var footer: UInt64 = 0
        for (i, b) in rdb.suffix(8).enumerated() { footer |= UInt64(b) << (8 * UInt64(i)) }
        #expect(Array(body).withUnsafeBytes { CRC64.jones($0) } == footer)
    }

    @Test func crc64ReadsAnyOffsetAndLengthAsTheBitwiseDefinition() {
        // The 8-byte loads are unaligned and the tail goes byte by byte: every start and
        // length around them against the polynomial applied bit by bit.
        func bitwise(_ bytes: ArraySlice<UInt8>) -> UInt64 {
            var crc: UInt64 = 0
            for b in bytes {
                crc ^= UInt64(b)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x95AC_9329_AC4B_C9B5 : crc >> 1 }
            }
            return crc
        }
        let data = rdb.prefix(300)
        for start in 0..<9 {
            for length in [0, 1, 7, 8, 9, 15, 16, 17, 100, 291 - start] {
                let slice = data[start..<(start + length)]
                #expect(Array(slice).withUnsafeBytes { CRC64.jones($0) } == bitwise(slice), "start \(start) length \(length)")
                #expect(data.withUnsafeBytes { CRC64.jones(UnsafeRawBufferPointer(rebasing: $0[start..<(start + length)])) } == bitwise(slice))
            }
        }
    }

    @Test func numbersGoAsTheirDigits() {
        for n in [0, 7, 9, 10, 99, 100, 12345, 1_765_000_000_000, Int.max] {
            var out: [UInt8] = [1]
            appendDecimal(n, to: &out)
            #expect(out == [1] + Array(String(n).utf8))
            var bulk: [UInt8] = []
            appendBulkDecimal(n, to: &bulk)
            #expect(bulk == Array("$\(String(n).count)\r\n\(n)\r\n".utf8))
        }
    }

    @Test(arguments: [1, 7, 64, 1 << 20])
    func everyKeysDumpPayloadIsTheServersOwn(step: Int) throws {
        let (p, got) = try entries(rdb, step: step)
        #expect(p.ended && p.version == 10)
        #expect(got.count == recorded.keys.count)
        // Every type and encoding the fixture was made to hold is there.
        let kinds = Set(recorded.keys.map { "\($0.type)/\($0.encoding)" })
        for k in [
            "string/int", "string/raw", "list/quicklist", "set/intset", "set/hashtable", "zset/listpack", "zset/skiplist",
            "hash/listpack", "hash/hashtable", "stream/stream",
        ] {
            #expect(kinds.contains(k), "\(k)")
        }
        let byKey = Dictionary(uniqueKeysWithValues: got.map { ("\($0.0.db)/\(hexString($0.0.key))", $0) })
        for r in recorded.keys {
            let e = try #require(byKey["\(r.db)/\(r.key)"], "\(r.db) \(r.key)")
            let same = e.1 == hex(r.dump)
            #expect(same, "\(String(decoding: hex(r.key), as: UTF8.self)): \(e.1.count) bytes, DUMP gave \(hex(r.dump).count)")
            #expect(e.0.expireAt == (r.expireAt < 0 ? nil : r.expireAt), "\(r.key)")
        }
        // Integer-encoded and LZF-compressed keys come out as their text.
        #expect(byKey["0/\(hexString(Array("98765".utf8)))"] != nil)
        #expect(byKey["0/\(hexString(Array("-7".utf8)))"] != nil)
        #expect(got.contains { $0.0.key == Array(("k:" + String(repeating: "abc", count: 40)).utf8) })
    }

    @Test func restoreCommandsCarryTheServersPayloadAndTheExpiryAsAbsoluteTime() throws {
        var p = RDBParser()
        var commands: [[RESPValue]] = []
        try rdb.withUnsafeBytes { b in
            var at = try p.header(b)
            while let e = try p.next(b, at: &at) {
                var out: [UInt8] = []
                appendRestoreCommand(e, value: UnsafeRawBufferPointer(rebasing: b[e.value]), version: p.version, to: &out)
                let parsed = try out.withUnsafeBytes { try RESP.parse($0, from: 0) }
                #expect(parsed?.1 == out.count)
                if case .array(let items?)? = parsed?.0 { commands.append(items) }
            }
        }
        #expect(commands.count == recorded.keys.count)
        for r in recorded.keys {
            let c = try #require(commands.first { $0[1] == .bulk(hex(r.key)) && $0[3] == .bulk(hex(r.dump)) }, "\(r.key)")
            #expect(c[0] == .bulk(Array("RESTORE".utf8)) && c[4] == .bulk(Array("REPLACE".utf8)))
            if r.expireAt > 0 {
                #expect(c.count == 6 && c[2] == .bulk(Array(String(r.expireAt).utf8)) && c[5] == .bulk(Array("ABSTTL".utf8)))
            } else {
                #expect(c.count == 5 && c[2] == .bulk(Array("0".utf8)))
            }
        }
    }

    @Test func whatItDoesNotKnowIsUnsupportedAndGarbageIsMalformed() throws {
        var p = RDBParser()
        var at = 0
        // A function library (opcode 0xF5) after the header.
        let functions = Array("REDIS0010".utf8) + [0xF5, 0x01, 0x41]
        try functions.withUnsafeBytes { b in at = try p.header(b) }
        #expect(throws: RDBError.unsupported("functions")) {
            try functions.withUnsafeBytes { b in _ = try p.next(b, at: &at) }
        }
        let newer = Array("REDIS0099".utf8)
        #expect(throws: RDBError.unsupported("RDB version 99")) { try newer.withUnsafeBytes { b in _ = try p.header(b) } }
        let other = Array("PGDMP0010".utf8)
        #expect(throws: RDBError.malformed("not an RDB file (no REDIS header)")) { try other.withUnsafeBytes { b in _ = try p.header(b) } }
        // A key of an unknown value type.
        let unknown = Array("REDIS0010".utf8) + [0x3F, 0x01, 0x6B, 0x00]
        at = 9
        #expect(throws: RDBError.unsupported("value type 63")) { try unknown.withUnsafeBytes { b in _ = try p.next(b, at: &at) } }
        #expect(at == 9)
    }

    @Test func lzfExpandsWhatRedisCompressedAndRefusesAShortOne() {
        // "abcabcabcabc": three literals, then a back reference of 9 bytes to 3 back.
        let packed: [UInt8] = [0x02, 0x61, 0x62, 0x63, 0xE0, 0x00, 0x02]
        #expect(packed.withUnsafeBytes { LZF.decompress($0, size: 12) } == Array("abcabcabcabc".utf8))
        #expect(packed.withUnsafeBytes { LZF.decompress($0, size: 11) } == nil)
        #expect(packed.dropLast().withUnsafeBytes { LZF.decompress($0, size: 12) } == nil)
    }
}
