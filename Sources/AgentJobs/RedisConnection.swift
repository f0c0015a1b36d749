// A blocking Redis client for the agent's Redis jobs (snapshot through the replication
// handshake, restore through DUMP/RESTORE): plain sockets with timeouts and the RESP parser
// of the Engines module. The agent is a static binary, so no hiredis here.
import AgentProtocol
import Engines
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

final class RedisConnection {
    let name: String
    private let fd: Int32
    private var buf: [UInt8] = []
    private var pos = 0

    init(host: String, port: Int, timeout: Double = 30) throws {
        name = "\(host):\(port)"
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let ai = res else {
            throw JobFailure(exit: .jobFailed, code: "unreachable", message: "redis \(host):\(port): cannot resolve \(host)")
        }
        defer { freeaddrinfo(res) }
        let s = Glibc.socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw JobFailure(exit: .jobFailed, code: "unreachable", message: "redis \(name): socket: \(String(cString: strerror(errno)))") }
        fd = s
        try connectWithTimeout(ai.pointee.ai_addr, ai.pointee.ai_addrlen, timeout)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        setTimeouts(timeout)
    }

    init(unixPath: String, timeout: Double = 30) throws {
        name = unixPath
        let s = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw JobFailure(exit: .jobFailed, code: "redis", message: "socket: \(String(cString: strerror(errno)))") }
        fd = s
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(unixPath.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.prefix(p.count - 1).enumerated() { p[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw JobFailure(exit: .jobFailed, code: "redis", message: "\(unixPath): \(String(cString: strerror(e)))")
        }
        setTimeouts(timeout)
    }

    /// A connection accepted on a listening socket (the restore's replication source).
    init(accepted: Int32, name: String, timeout: Double) {
        self.name = name
        fd = accepted
        setTimeouts(timeout)
    }

    deinit { close(fd) }

    private func connectWithTimeout(_ addr: UnsafeMutablePointer<sockaddr>, _ len: socklen_t, _ timeout: Double) throws {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if connect(fd, addr, len) != 0 {
            guard errno == EINPROGRESS else {
                let e = errno
                close(fd)
                throw JobFailure(exit: .jobFailed, code: "unreachable", message: "redis \(name): \(String(cString: strerror(e)))")
            }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let n = poll(&p, 1, Int32(timeout * 1000))
            var err: Int32 = 0
            var l = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l)
            if n <= 0 || err != 0 {
                close(fd)
                throw JobFailure(
                    exit: .jobFailed, code: "unreachable",
                    message: "redis \(name): \(n <= 0 ? "no connection within \(Int(timeout)) s" : String(cString: strerror(err)))")
            }
        }
        _ = fcntl(fd, F_SETFL, flags)
    }

    func setTimeouts(_ t: Double) {
        var tv = timeval(tv_sec: Int(t), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try send($0) }
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        guard writeAll(fd, bytes) else {
            throw JobFailure(exit: .jobFailed, code: "redis", message: "redis \(name): write failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Reads more bytes into the buffer; throws at EOF or a timeout.
    private func fill() throws {
        if pos > 0 && pos >= buf.count / 2 {
            buf.removeFirst(pos)
            pos = 0
        }
        var tmp = [UInt8](repeating: 0, count: 256 << 10)
        while true {
            let n = read(fd, &tmp, tmp.count)
            if n > 0 { buf += tmp[0..<n]; return }
            if n < 0 && errno == EINTR { continue }
            let why = n == 0 ? "connection closed" : (errno == EAGAIN ? "no answer (timeout)" : String(cString: strerror(errno)))
            throw JobFailure(exit: .jobFailed, code: "redis", message: "redis \(name): \(why)")
        }
    }

    func reply() throws -> RESPValue {
        while true {
            let parsed: (RESPValue, Int)?
            do {
                parsed = try buf.withUnsafeBytes { try RESP.parse($0, from: pos) }
            } catch {
                throw JobFailure(exit: .jobFailed, code: "redis", message: "redis \(name): \(error)")
            }
            if let (v, end) = parsed {
                pos = end
                return v
            }
            try fill()
        }
    }

    /// The replies to `count` pipelined commands named `command`; the first error is thrown.
    func readReplies(_ count: Int, of command: String) throws {
        for _ in 0..<count {
            if case .error(let e) = try reply() {
                throw JobFailure(exit: .jobFailed, code: "redis", message: "redis \(name): \(command) failed: \(e)")
            }
        }
    }

    /// One command; an error reply is thrown.
    @discardableResult
    func call(_ args: [[UInt8]]) throws -> RESPValue {
        try send(RESP.command(args))
        let r = try reply()
        if case .error(let e) = r {
            throw JobFailure(exit: .jobFailed, code: "redis", message: "redis \(name): \(String(decoding: args[0], as: UTF8.self)): \(e)")
        }
        return r
    }

    @discardableResult
    func call(_ args: String...) throws -> RESPValue { try call(args.map { Array($0.utf8) }) }

    func auth(user: String?, password: String?) throws {
        guard let password else { return }
        var args = [Array("AUTH".utf8)]
        if let user { args.append(Array(user.utf8)) }
        args.append(Array(password.utf8))
        try send(RESP.command(args))
        if case .error(let e) = try reply() {
            // The server's words only: they never contain the password.
            throw JobFailure(exit: .jobFailed, code: "auth-failed", message: "redis \(name): authentication failed: \(e)")
        }
    }

    /// A line of the replication preamble, skipping the newlines a master sends while it
    /// prepares the snapshot.
    func preambleLine() throws -> String {
        while true {
            while pos < buf.count && buf[pos] == 0x0A { pos += 1 }
            if let nl = buf[pos...].firstIndex(of: 0x0A) {
                let line = String(decoding: buf[pos..<nl], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                pos = nl + 1
                return line
            }
            try fill()
        }
    }

    /// Raw bytes after the preamble: what is buffered first, then the socket.
    func readRaw(_ into: UnsafeMutableRawPointer, _ max: Int) -> Int {
        if pos < buf.count {
            let k = min(max, buf.count - pos)
            buf.withUnsafeBytes { into.copyMemory(from: $0.baseAddress! + pos, byteCount: k) }
            pos += k
            return k
        }
        while true {
            let n = read(fd, into, max)
            if n < 0 && errno == EINTR { continue }
            return n
        }
    }

    var hasBuffered: Bool { pos < buf.count }
    var descriptor: Int32 { fd }
}
