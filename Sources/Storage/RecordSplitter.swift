// Object records arriving as a byte stream (a get's output, a chunk job's output) cut back
// into whole records, with the one header reader the agent uses too (`ObjectRecord`).
import AgentProtocol

/// Splits a byte stream into whole object records, handing each (name, encoded record) on.
package final class RecordSplitter: @unchecked Sendable {
    package init() {}
    private var pending: [UInt8] = []
    private var start = 0
    private(set) var malformed = false
    package var complete: Bool { pending.count == start && !malformed }

    /// Hands each whole record on as (name, the encoded record, the offset of its payload in it).
    package func feed(_ b: UnsafeRawBufferPointer, _ each: (String, [UInt8], Int) -> Void) {
        pending.append(contentsOf: b)
        while !malformed {
            let p = start
            let header: (name: String, size: Int, payload: Int)?
            do throws(MalformedRecord) { header = try ObjectRecord.parseHeader(pending, at: p) } catch { malformed = true; return }
            guard let header, pending.count >= header.payload + header.size else { break }
            each(header.name, Array(pending[p..<(header.payload + header.size)]), header.payload - p)
            start = header.payload + header.size
        }
        // Drop consumed bytes once they dominate, so the buffer stays about one record long.
        if start > 0 && start >= pending.count / 2 {
            pending.removeFirst(start)
            start = 0
        }
    }
}
