import Testing

@testable import Repository

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
func pseudoRandom(_ count: Int, seed: UInt64) -> [UInt8] {
    var x = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { b in
        var i = 0
        while i + 8 <= count {
            x ^= x >> 12; x ^= x << 25; x ^= x >> 27
            b.storeBytes(of: (x &* 2685821657736338717).littleEndian, toByteOffset: i, as: UInt64.self)
            i += 8
        }
    }
    return out
}

/// SQL-dump-like text: repetitive lines with varying numbers.
func dumpLike(_ rows: Int, seed: UInt64) -> [UInt8] {
    var s = "COPY public.pgbench_accounts (aid, bid, abalance, filler) FROM stdin;\n"
    var x = seed | 1
    for i in 0..<rows {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27
        s += "\(i)\t\(x % 1000)\t\(Int64(bitPattern: x) % 100000)\t                                                                                    \n"
    }
    return Array(s.utf8)
}

@Suite struct ChunkerTests {
    let seed: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]

    @Test func sizesStayWithinBoundsAndAverageNearTheTarget() {
        let p = ChunkerParameters(min: 64 << 10, avg: 256 << 10, max: 1 << 20)
        let c = Chunker(seed: seed, parameters: p)
        let data = pseudoRandom(32 << 20, seed: 42)
        let sizes = c.split(data)
        #expect(sizes.reduce(0, +) == data.count)
        #expect(sizes.dropLast().allSatisfy { $0 >= p.min && $0 <= p.max })
        let mean = Double(data.count) / Double(sizes.count)
        // Normalised chunking keeps the mean near avg (a little above: min is never cut).
        #expect(mean > Double(p.avg) * 0.8 && mean < Double(p.avg) * 1.6, "mean \(mean)")
    }

    @Test func boundariesAreStableAfterAnInsertNearTheStart() {
        let p = ChunkerParameters(min: 64 << 10, avg: 256 << 10, max: 1 << 20)
        let c = Chunker(seed: seed, parameters: p)
        let original = pseudoRandom(16 << 20, seed: 7)
        var edited = original
        edited.insert(contentsOf: Array("a new row in the first table\n".utf8), at: 1000)

        func chunks(_ d: [UInt8]) -> [[UInt8]] {
            var off = 0
            return c.split(d).map { len in
                defer { off += len }; return Array(d[off..<(off + len)])
            }
        }
        let a = chunks(original), b = chunks(edited)
        let shared = Set(a.map { $0.hashValue }).intersection(b.map { $0.hashValue })
        // Only the chunk holding the insert (and at most the next) differ.
        #expect(a.count >= 30)
        #expect(shared.count >= a.count - 2, "\(shared.count) of \(a.count) chunks unchanged")
        #expect(Array(a.suffix(a.count - 2)) == Array(b.suffix(a.count - 2)))
    }

    @Test func theSeedSelectsTheBoundaries() {
        let p = ChunkerParameters(min: 16 << 10, avg: 64 << 10, max: 256 << 10)
        let data = dumpLike(100_000, seed: 3)
        let one = Chunker(seed: seed, parameters: p).split(data)
        #expect(one == Chunker(seed: seed, parameters: p).split(data))
        #expect(one != Chunker(seed: [9, 9, 9, 9, 9, 9, 9, 9], parameters: p).split(data))
    }

    @Test func streamingCutNeedsMoreDataUntilABoundaryOrTheEnd() {
        let p = ChunkerParameters(min: 16 << 10, avg: 64 << 10, max: 256 << 10)
        let c = Chunker(seed: seed, parameters: p)
        let data = [UInt8](repeating: 0, count: 100 << 10)
        data.withUnsafeBytes { b in
            // Zeros never match a mask: no boundary before max, so the cut waits for more data...
            #expect(c.cut(b, atEnd: false) == nil)
            // ...or takes everything at the end of the stream.
            #expect(c.cut(b, atEnd: true) == 100 << 10)
            #expect(c.cut(UnsafeRawBufferPointer(rebasing: b[0..<100]), atEnd: true) == 100)
        }
        let big = [UInt8](repeating: 0, count: 300 << 10)
        big.withUnsafeBytes { #expect(c.cut($0, atEnd: false) == p.max) }
    }
}
