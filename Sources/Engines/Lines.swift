// Streaming line handling for dump text: the agent sees a dump as buffers of any size, and a
// line (a COPY row, an extended INSERT) can be megabytes long. Only a bounded head of each
// line is kept; the rest is passed through or counted without being copied.

/// Cuts a byte stream into lines. For every line, `line` gets its head (at most `keep`
/// bytes, without the newline) and whether it was cut; bytes of the line are also handed
/// to `bytes` as they arrive, for callers that scan whole lines.
package struct LineSplitter: Sendable {
    package let keep: Int
    private var head: [UInt8] = []
    private var cut = false

    package init(keep: Int = 64 << 10) { self.keep = keep }

    /// `bytes(segment, atLineStart)` sees every byte of the stream (newlines excluded);
    /// `line(head, wasCut)` runs at every newline.
    package mutating func feed(
        _ buf: UnsafeRawBufferPointer,
        bytes: (UnsafeRawBufferPointer, Bool) -> Void = { _, _ in },
        line: ([UInt8], Bool) -> Void
    ) {
        var i = 0
        let n = buf.count
        while i < n {
            var j = i
            while j < n && buf[j] != 0x0A { j += 1 }
            let seg = UnsafeRawBufferPointer(rebasing: buf[i..<j])
            let atStart = head.isEmpty && !cut
            bytes(seg, atStart)
            if head.count < keep {
                let take = min(keep - head.count, seg.count)
                head.append(contentsOf: UnsafeRawBufferPointer(rebasing: seg[0..<take]))
                if take < seg.count { cut = true }
            } else if !seg.isEmpty {
                cut = true
            }
            if j < n {
                line(head, cut)
                head.removeAll(keepingCapacity: true)
                cut = false
                j += 1
            }
            i = j
        }
    }

    /// The last line, when the stream does not end with a newline.
    package mutating func finish(line: ([UInt8], Bool) -> Void) {
        if !head.isEmpty || cut { line(head, cut) }
        head.removeAll()
        cut = false
    }
}

extension Array where Element == UInt8 {
    @inlinable func hasPrefix(_ s: String) -> Bool {
        let p = Array(s.utf8)
        return count >= p.count && self[0..<p.count].elementsEqual(p)
    }

    @inlinable func hasSuffix(_ s: String) -> Bool {
        let p = Array(s.utf8)
        return count >= p.count && self[(count - p.count)...].elementsEqual(p)
    }
}
