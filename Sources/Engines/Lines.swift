// Streaming line handling for dump text: the agent sees a dump as buffers of any size, and a
// line (a COPY row, an extended INSERT) can be megabytes long. Only a bounded head of each
// line is kept; the rest is passed through or counted without being copied.

#if canImport(Glibc)
import Glibc
#endif

/// Cuts a byte stream into lines. For every line, `line` gets its head (at most `keep`
/// bytes, without the newline) and whether it was cut; bytes of the line are also handed
/// to `bytes` as they arrive, for callers that scan whole lines. Newlines are found with
/// memchr, and a line that lies whole inside one buffer is handed over where it lies: only
/// a line split over two buffers is copied (its head), so a dump of short rows costs a scan.
package struct LineSplitter: Sendable {
    package let keep: Int
    private var head: [UInt8] = []
    private var cut = false

    package init(keep: Int = 64 << 10) { self.keep = keep }

    /// `bytes(segment, atLineStart)` sees every byte of the stream (newlines excluded);
    /// `line(head, wasCut)` runs at every newline (`head` is valid during the call only).
    package mutating func feed(
        _ buf: UnsafeRawBufferPointer,
        bytes: (UnsafeRawBufferPointer, Bool) -> Void = { _, _ in },
        line: (UnsafeRawBufferPointer, Bool) -> Void
    ) {
        guard let base = buf.baseAddress else { return }
        let n = buf.count
        var i = 0
        while i < n {
            let nl = memchr(base + i, 0x0A, n - i).map { base.distance(to: UnsafeRawPointer($0)) }
            let j = nl ?? n
            let seg = UnsafeRawBufferPointer(rebasing: buf[i..<j])
            let atStart = head.isEmpty && !cut
            bytes(seg, atStart)
            if atStart && nl != nil {
                // The whole line is here: handed over in place (at most `keep` of it).
                line(UnsafeRawBufferPointer(rebasing: seg.prefix(keep)), seg.count > keep)
            } else {
                if head.count < keep {
                    let take = min(keep - head.count, seg.count)
                    head.append(contentsOf: UnsafeRawBufferPointer(rebasing: seg[0..<take]))
                    if take < seg.count { cut = true }
                } else if !seg.isEmpty {
                    cut = true
                }
                if nl != nil { endLine(line) }
            }
            i = j + 1
        }
    }

    /// The last line, when the stream does not end with a newline.
    package mutating func finish(line: (UnsafeRawBufferPointer, Bool) -> Void) {
        if !head.isEmpty || cut { endLine(line) }
    }

    private mutating func endLine(_ line: (UnsafeRawBufferPointer, Bool) -> Void) {
        head.withUnsafeBytes { line($0, cut) }
        head.removeAll(keepingCapacity: true)
        cut = false
    }
}

extension RandomAccessCollection where Element == UInt8 {
    @inlinable func hasPrefix(_ s: String) -> Bool {
        let p = Array(s.utf8)
        return count >= p.count && prefix(p.count).elementsEqual(p)
    }

    @inlinable func hasSuffix(_ s: String) -> Bool {
        let p = Array(s.utf8)
        return count >= p.count && suffix(p.count).elementsEqual(p)
    }
}
