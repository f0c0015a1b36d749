// The RDB out of Redis's replication stream, both framings, fed in pieces of every size:
// exactly the RDB's bytes come out, the end mark never does (even split over reads), and a
// stream cut before its end is not taken for a whole one.
import Testing

@testable import AgentJobs

#if canImport(Glibc)
import Glibc
#endif

@Suite struct RedisRDBReaderTests {
    let mark = Array("0123456789abcdef0123456789abcdef01234567".utf8)

    /// Everything the reader yields from `wire`, served `piece` bytes per fill.
    func drain(_ framing: RedisRDBFraming, _ wire: [UInt8], piece: Int, max: Int = 64) -> (out: [UInt8], done: Bool) {
        var reader = RedisRDBReader(framing)
        var pos = 0, out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: max)
        while true {
            let n = buf.withUnsafeMutableBytes { b in
                reader.read(b.baseAddress!, max) { into, room in
                    let k = min(room, piece, wire.count - pos)
                    wire.withUnsafeBytes { into.copyMemory(from: $0.baseAddress! + pos, byteCount: k) }
                    pos += k
                    return k
                }
            }
            if n == 0 { return (out, reader.done) }
            out += buf[0..<n]
        }
    }

    @Test func theFramingIsReadFromThePreamble() {
        #expect(RedisRDBFraming(preamble: "$1234") == .length(1234))
        #expect(RedisRDBFraming(preamble: "$EOF:" + String(decoding: mark, as: UTF8.self)) == .endMark(mark))
        #expect(RedisRDBFraming(preamble: "$EOF:short") == nil)
        #expect(RedisRDBFraming(preamble: "+FULLRESYNC x 0") == nil)
        #expect(RedisRDBFraming(preamble: "$-1") == nil)
    }

    @Test(arguments: [1, 7, 39, 40, 41, 63, 64, 1000]) func anEndMarkedStreamYieldsTheRDBAndNotTheMark(piece: Int) {
        let rdb = (0..<500).map { UInt8(truncatingIfNeeded: $0 &* 31) } + Array("REDIS".utf8)
        // Anything after the mark (the server's next replication bytes) is not read.
        let (out, done) = drain(.endMark(mark), rdb + mark + Array("*1\r\n$4\r\nPING\r\n".utf8), piece: piece)
        #expect(out == rdb)
        #expect(done)
    }

    @Test func aStreamCutBeforeItsMarkIsNotWhole() {
        let rdb = [UInt8](repeating: 7, count: 300)
        let (out, done) = drain(.endMark(mark), rdb + mark.prefix(20), piece: 50)
        #expect(!done)
        #expect(out.count <= rdb.count + 20)
        let empty = drain(.endMark(mark), [], piece: 50)
        #expect(empty.out.isEmpty && !empty.done)
    }

    @Test func aLengthFramedStreamYieldsExactlyItsLength() {
        let rdb = [UInt8](repeating: 9, count: 130)
        let whole = drain(.length(130), rdb + [1, 2, 3], piece: 17)
        #expect(whole.out == rdb && whole.done)
        let cut = drain(.length(130), Array(rdb.prefix(100)), piece: 17)
        #expect(cut.out.count == 100 && !cut.done)
        #expect(drain(.length(0), rdb, piece: 17) == ([], true))
    }
}

/// How the restore by replication tells a replica that gave up (it closes its link) from one
/// still loading or done (it keeps the link and sends acknowledgements).
@Suite struct ReplicaLinkTests {
    @Test func aLinkIsClosedOnlyOnceThePeerHasClosedIt() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]) }
        #expect(!RedisReplicationRestore.closedByPeer(fds[0]))
        // What a live replica sends is read and dropped.
        let ack = Array("*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n".utf8)
        #expect(ack.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) } == ack.count)
        #expect(!RedisReplicationRestore.closedByPeer(fds[0]))
        #expect(ack.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) } == ack.count)
        close(fds[1])
        #expect(RedisReplicationRestore.closedByPeer(fds[0]))
    }
}
