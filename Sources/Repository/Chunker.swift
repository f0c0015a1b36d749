// Content-defined chunking (FastCDC with normalised chunking, level 2), as specified in
// docs/storage-format.md. Boundaries depend only on the bytes near them, so an insert near
// the start of a dump changes the first chunk or two and leaves the rest, and their IDs,
// as they were: that is what makes the next day's backup cost only what changed.
@preconcurrency import Crypto

package struct ChunkerParameters: Sendable, Equatable, Codable {
    package var min: Int
    package var avg: Int
    package var max: Int

    package static let standard = ChunkerParameters(min: 512 << 10, avg: 2 << 20, max: 8 << 20)

    package init(min: Int, avg: Int, max: Int) {
        precondition(min > 0 && min < avg && avg < max && avg & (avg - 1) == 0, "chunker sizes must be min < avg < max, avg a power of two")
        self.min = min
        self.avg = avg
        self.max = max
    }
}

package struct Chunker: Sendable {
    package let parameters: ChunkerParameters
    let gear: [UInt64]
    let maskSmall: UInt64
    let maskLarge: UInt64

    /// The gear table comes from the repository's secret seed, so that chunk boundaries (and
    /// therefore chunk sizes) do not reveal content to someone who knows the algorithm.
    package init(seed: [UInt8], parameters: ChunkerParameters = .standard) {
        self.parameters = parameters
        let key = SymmetricKey(data: seed)
        gear = (0...255).map { (i: Int) -> UInt64 in
            let mac = Array(HMAC<SHA256>.authenticationCode(for: [UInt8(i)], using: key))
            return (0..<8).reduce(UInt64(0)) { $0 | UInt64(mac[$1]) << (8 * UInt64($1)) }
        }
        let bits = parameters.avg.trailingZeroBitCount
        // Top bits: the low bits of the rolling value depend only on the last few bytes.
        maskSmall = ~UInt64(0) << UInt64(64 - (bits + 2))
        maskLarge = ~UInt64(0) << UInt64(64 - (bits - 2))
    }

    /// The length of the first chunk in `buf`, or nil when `buf` may not hold a whole chunk
    /// yet (more data is coming and no boundary was found before the end of `buf`).
    package func cut(_ buf: UnsafeRawBufferPointer, atEnd: Bool) -> Int? {
        let n = buf.count
        let p = parameters
        if n <= p.min { return atEnd && n > 0 ? n : (n == 0 ? nil : nil) }
        let end = Swift.min(n, p.max)
        let normal = Swift.min(end, p.avg)
        var fp: UInt64 = 0
        var i = p.min
        return gear.withUnsafeBufferPointer { g -> Int? in
            let bytes = buf.bindMemory(to: UInt8.self)
            while i < normal {
                fp = (fp &<< 1) &+ g[Int(bytes[i])]
                if fp & maskSmall == 0 { return i + 1 }
                i += 1
            }
            while i < end {
                fp = (fp &<< 1) &+ g[Int(bytes[i])]
                if fp & maskLarge == 0 { return i + 1 }
                i += 1
            }
            if end == p.max { return p.max }
            return atEnd ? n : nil
        }
    }

    /// Every chunk length of a whole buffer (for tests and tools; the agent streams).
    package func split(_ data: [UInt8]) -> [Int] {
        var out: [Int] = []
        var off = 0
        data.withUnsafeBytes { all in
            while off < all.count {
                let rest = UnsafeRawBufferPointer(rebasing: all[off...])
                let len = cut(rest, atEnd: true)!
                out.append(len)
                off += len
            }
        }
        return out
    }
}
