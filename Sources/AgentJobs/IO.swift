// Raw descriptor I/O for the agent: no buffering layers between the pipes and the job.
import AgentProtocol
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

enum IOFailure: Error {
    /// The other end closed (EOF on read where more was expected, EPIPE on write).
    case closed
    case errno(Int32)
}

/// Writes every byte, retrying short writes and EINTR.
@discardableResult
package func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { writeAll(fd, $0) }
}

@discardableResult
func writeAll(_ fd: Int32, _ buf: UnsafeRawBufferPointer) -> Bool {
    var off = 0
    while off < buf.count {
        let n = write(fd, buf.baseAddress! + off, buf.count - off)
        if n > 0 { off += n; continue }
        if n < 0 && errno == EINTR { continue }
        return false
    }
    return true
}

/// Reads exactly `count` bytes into `buf`; false on EOF before the first byte.
func readExactly(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int) throws(IOFailure) -> Bool {
    var off = 0
    while off < count {
        let n = read(fd, buf + off, count - off)
        if n > 0 { off += n; continue }
        if n == 0 { if off == 0 { return false }; throw .closed }
        if errno == EINTR { continue }
        throw .errno(errno)
    }
    return true
}

/// Reads the job line: bytes up to the first newline, at most `AgentWire.maxJobLine`.
/// Reads one byte at a time so that nothing after the newline (the input frames) is consumed.
func readJobLine() throws(IOFailure) -> [UInt8]? {
    var line: [UInt8] = []
    var b: UInt8 = 0
    while true {
        let n = read(0, &b, 1)
        if n == 0 { return line.isEmpty ? nil : line }
        if n < 0 { if errno == EINTR { continue }; throw .errno(errno) }
        if b == 0x0A { return line }
        line.append(b)
        if line.count > AgentWire.maxJobLine { throw .errno(EMSGSIZE) }
    }
}

/// The events channel: one JSON object per line on stderr.
enum Events {
    static func send(_ e: AgentEvent) { writeAll(2, e.line()) }

    static func progress(_ bytes: Int64) {
        var e = AgentEvent(event: .progress)
        e.bytes = bytes
        send(e)
    }
}

/// Reads input frames from stdin (or another descriptor) into a reusable buffer.
struct FrameReader {
    private var buffer = [UInt8](repeating: 0, count: AgentWire.maxFrame)
    let fd: Int32

    init(fd: Int32 = 0) { self.fd = fd }

    /// Hands the next frame's bytes to `body`; false at the end frame. Throws `.closed` when
    /// stdin ends without the end frame: the coordinator went away, the input is incomplete.
    mutating func next(_ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        var header = [UInt8](repeating: 0, count: 4)
        guard try header.withUnsafeMutableBytes({ try readExactly(fd, $0.baseAddress!, 4) }) else { throw IOFailure.closed }
        let len = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        if len == 0 { return false }
        guard len <= AgentWire.maxFrame else { throw IOFailure.errno(EMSGSIZE) }
        return try buffer.withUnsafeMutableBytes { buf in
            guard try readExactly(fd, buf.baseAddress!, len) else { throw IOFailure.closed }
            try body(UnsafeRawBufferPointer(start: buf.baseAddress, count: len))
            return true
        }
    }
}

/// A backup's agent works behind the database it backs up: its loop and sealer run at this
/// nice value, the dump tool and the server at theirs. On a database node the server's own
/// work (and the dump, whose client and server wait on each other) comes first; the agent
/// takes what they leave, with a pipe and two chunks of room to fall behind into. Measured
/// on the lab's two cores (MariaDB, 8 alternating rounds): 4.22 → 3.93 s median; PostgreSQL
/// and Redis, whose dumps wait on the agent less, unchanged within the noise.
let backupThreadNice: Int32 = 10

/// Lowers the calling thread's priority to `nice`. Linux keeps a nice value per thread: the
/// agent's other threads, and children started before, keep theirs; children started by
/// this thread afterwards inherit it. Best effort (an unprivileged process may always lower
/// its own priority; nothing is lost if it cannot).
func lowerThreadPriority(to nice: Int32) {
    _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice)
}

/// A file of /proc or /sys (whose size stat reports as 0): up to 64 KiB of it, as text.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while out.count < 64 << 10 {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}
