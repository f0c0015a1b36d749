// The only file that talks to libssh2. It owns the socket, the session and the channels,
// drives them in non-blocking mode with poll(), and turns return codes into `SSHError`s.
//
// libssh2 blocks and is not thread-safe per session: every `SSHConnection` and its
// channels are used from one thread at a time (the thread of the job that holds it; between
// jobs a connection waits in `SSHConnectionPool`), never from Swift's cooperative pool.
import CLibSSH2
import Crypto
import Fleet
import Foundation
import Support
import Topology

/// libssh2_init is not thread-safe; a global `let` runs it exactly once.
private let libssh2Ready: Bool = libssh2_init(0) == 0

/// Everything needed to reach one node.
package struct SSHTarget: Sendable {
    package var node: String
    package var host: String
    package var port: Int
    package var user: String
    package var identity: String
    package var knownHosts: String
    package var connectTimeout: Double = 10
    /// A channel with no traffic in either direction for this long is dead.
    package var ioTimeout: Double = 60
    package var keepaliveInterval: Int = 10

    package init(node: String, host: String, port: Int, user: String, identity: String, knownHosts: String) {
        self.node = node
        self.host = host
        self.port = port
        self.user = user
        self.identity = identity
        self.knownHosts = knownHosts
    }

    package var address: String { port == 22 ? host : "[\(host)]:\(port)" }
}

/// A server's host key as seen during the handshake.
package struct HostKey: Sendable, Equatable {
    package var type: String
    package var blob: [UInt8]

    /// OpenSSH's fingerprint form: SHA256:base64-without-padding.
    package var fingerprint: String {
        let b64 = Data(SHA256.hash(data: blob)).base64EncodedString()
        return "SHA256:" + b64.replacingOccurrences(of: "=", with: "")
    }

    package var base64: String { Data(blob).base64EncodedString() }

    /// The known_hosts line for a host; `[host]:port` when the port is not 22, since
    /// libssh2 reads a bare host as matching any port.
    package func knownHostsLine(host: String, port: Int) -> String {
        "\(port == 22 ? host : "[\(host)]:\(port)") \(type) \(base64)"
    }
}

package enum SSHError: Error, Sendable, Equatable {
    case unreachable(String)
    case refused
    case timeout(String)
    case hostKeyUnknown(HostKey)
    case hostKeyChanged(HostKey)
    case knownHostsUnreadable(String)
    case rsaKey(String)
    case identityUnreadable(String)
    case authenticationFailed(String)
    case protocolError(String)
    case cancelled
}

/// One SSH connection: TCP socket + libssh2 session, handshaken, host key verified, authenticated.
final class SSHConnection {
    let target: SSHTarget
    let fd: Int32
    let session: OpaquePointer
    private(set) var hostKey: HostKey?

    /// Connects and, unless `verifyHostKey` is false (only `stowage ssh trust` does that, to
    /// show the key it is asked to record), checks the host key and authenticates.
    init(_ t: SSHTarget, verifyHostKey: Bool = true, authenticate: Bool = true) throws(SSHError) {
        guard libssh2Ready else { throw .protocolError("libssh2 could not initialise") }
        target = t
        fd = try Self.connect(t)
        guard let s = libssh2_session_init_ex(nil, nil, nil, nil) else {
            close(fd)
            throw .protocolError("libssh2 could not allocate a session")
        }
        session = s
        // From here on every stored property is set, so a throw below still runs deinit,
        // which frees the session and closes the socket: no cleanup here (it would be a double free).
        libssh2_session_set_blocking(session, 0)
        // libssh2's default cipher and MAC order is kept: on this hardware every pair it
        // supports costs the same (bench/results/transport-profile.md).
        let deadline = Deadline(seconds: t.connectTimeout)
        try retry(deadline, "SSH handshake") { libssh2_session_handshake(session, fd) }
        hostKey = try readHostKey()
        if verifyHostKey { try checkHostKey(hostKey!) }
        if authenticate { try auth(deadline) }
        libssh2_keepalive_config(session, 1, UInt32(t.keepaliveInterval))
    }

    deinit {
        // Disconnect may want to send; in non-blocking mode it gives up on EAGAIN, which is fine.
        _ = libssh2_session_disconnect_ex(session, SSH_DISCONNECT_BY_APPLICATION, "bye", "")
        libssh2_session_free(session)
        close(fd)
    }

    // MARK: connect

    private static func connect(_ t: SSHTarget) throws(SSHError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(t.host, String(t.port), &hints, &res)
        guard rc == 0, let ai = res else { throw .unreachable("cannot resolve \(t.host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(res) }
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
        guard fd >= 0 else { throw .unreachable("socket: \(String(cString: strerror(errno)))") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) != 0 && errno != EINPROGRESS {
            let e = errno
            close(fd)
            throw e == ECONNREFUSED ? .refused : .unreachable(String(cString: strerror(e)))
        }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let deadline = Deadline(seconds: t.connectTimeout)
        while true {
            let n = poll(&p, 1, deadline.remainingMilliseconds)
            if n > 0 { break }
            if n == 0 || deadline.expired {
                close(fd)
                throw .timeout("no answer to the TCP connection within \(formatDuration(t.connectTimeout))")
            }
            if errno != EINTR { close(fd); throw .unreachable(String(cString: strerror(errno))) }
        }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        if err != 0 {
            close(fd)
            throw err == ECONNREFUSED ? .refused : .unreachable(String(cString: strerror(err)))
        }
        return fd
    }

    // MARK: host key

    private func readHostKey() throws(SSHError) -> HostKey {
        var len = 0
        var type: Int32 = 0
        guard let key = libssh2_session_hostkey(session, &len, &type) else { throw .protocolError("the server sent no host key") }
        let blob = Array(UnsafeRawBufferPointer(start: key, count: len))
        let name: String
        switch type {
        case LIBSSH2_HOSTKEY_TYPE_ED25519: name = "ssh-ed25519"
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: name = "ecdsa-sha2-nistp256"
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: name = "ecdsa-sha2-nistp384"
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: name = "ecdsa-sha2-nistp521"
        case LIBSSH2_HOSTKEY_TYPE_RSA: name = "ssh-rsa"
        default: name = "unknown"
        }
        return HostKey(type: name, blob: blob)
    }

    /// Whether the key this connection was made with is still the one known_hosts names
    /// (before a parked connection is reused: an operator may have removed or replaced it).
    func hostKeyStillTrusted() -> Bool {
        guard let hostKey else { return false }
        return (try? checkHostKey(hostKey)) != nil
    }

    private func checkHostKey(_ key: HostKey) throws(SSHError) {
        guard let hosts = libssh2_knownhost_init(session) else { throw .protocolError("libssh2 could not allocate known hosts") }
        defer { libssh2_knownhost_free(hosts) }
        guard FileManager.default.isReadableFile(atPath: target.knownHosts) else { throw .knownHostsUnreadable(target.knownHosts) }
        if libssh2_knownhost_readfile(hosts, target.knownHosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0 {
            throw .knownHostsUnreadable(target.knownHosts)
        }
        let keyBit: Int32
        switch key.type {
        case "ssh-ed25519": keyBit = LIBSSH2_KNOWNHOST_KEY_ED25519
        case "ecdsa-sha2-nistp256": keyBit = LIBSSH2_KNOWNHOST_KEY_ECDSA_256
        case "ecdsa-sha2-nistp384": keyBit = LIBSSH2_KNOWNHOST_KEY_ECDSA_384
        case "ecdsa-sha2-nistp521": keyBit = LIBSSH2_KNOWNHOST_KEY_ECDSA_521
        default: keyBit = LIBSSH2_KNOWNHOST_KEY_SSHRSA
        }
        let mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | keyBit
        let rc = key.blob.withUnsafeBytes { b in
            libssh2_knownhost_checkp(hosts, target.host, Int32(target.port), b.baseAddress!.assumingMemoryBound(to: CChar.self), b.count, mask, nil)
        }
        switch rc {
        case LIBSSH2_KNOWNHOST_CHECK_MATCH: return
        case LIBSSH2_KNOWNHOST_CHECK_MISMATCH: throw .hostKeyChanged(key)
        case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND: throw .hostKeyUnknown(key)
        default: throw .protocolError("known-hosts check failed")
        }
    }

    // MARK: authentication

    private func auth(_ deadline: Deadline) throws(SSHError) {
        let identity = target.identity
        guard FileManager.default.isReadableFile(atPath: identity) else { throw .identityUnreadable(identity) }
        if Self.isRSAKey(identity) { throw .rsaKey(identity) }
        let pub = FileManager.default.isReadableFile(atPath: identity + ".pub") ? identity + ".pub" : nil
        let user = target.user
        do {
            try retry(deadline, "authentication") {
                libssh2_userauth_publickey_fromfile_ex(session, user, UInt32(user.utf8.count), pub, identity, nil)
            }
        } catch .protocolError(let m) {
            throw .authenticationFailed(m)
        }
    }

    /// An RSA key, by its public half or its PEM header. libssh2 1.10 signs RSA only with
    /// SHA-1, which OpenSSH 9 refuses: say so instead of a vague authentication failure.
    static func isRSAKey(_ identity: String) -> Bool {
        if let pub = try? String(contentsOfFile: identity + ".pub", encoding: .utf8) { return pub.hasPrefix("ssh-rsa ") }
        guard let text = try? String(contentsOfFile: identity, encoding: .utf8) else { return false }
        if text.contains("BEGIN RSA PRIVATE KEY") { return true }
        // OpenSSH format: the base64 body names the key type in clear once decoded.
        let body = text.split(whereSeparator: \.isNewline).filter { !$0.hasPrefix("-----") }.joined()
        if let data = Data(base64Encoded: body) { return data.range(of: Data("ssh-rsa".utf8)) != nil }
        return false
    }

    // MARK: non-blocking plumbing

    /// Calls `op` until it stops returning EAGAIN, waiting on the socket in between.
    func retry(_ deadline: Deadline, _ what: String, _ op: () -> Int32) throws(SSHError) {
        while true {
            let rc = op()
            if rc == 0 { return }
            if rc != LIBSSH2_ERROR_EAGAIN { throw lastError(what, rc) }
            try waitSocket(deadline, what)
        }
    }

    /// Waits until the socket is ready in the direction libssh2 is blocked on.
    /// `wake`: another descriptor that ends the wait when readable (a `Wakeup`'s eventfd).
    func waitSocket(_ deadline: Deadline, _ what: String, maxMilliseconds: Int32 = Int32.max, wake: Int32 = -1) throws(SSHError) {
        let dir = libssh2_session_block_directions(session)
        var events: Int16 = 0
        if dir & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { events |= Int16(POLLIN) }
        if dir & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
        if events == 0 { events = Int16(POLLIN) }
        // A negative fd is ignored by poll.
        var p = [pollfd(fd: fd, events: events, revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        let n = poll(&p, 2, min(deadline.remainingMilliseconds, maxMilliseconds))
        if wake >= 0 && p[1].revents & Int16(POLLIN) != 0 {
            // Consumed: the caller learns what changed from its own state, and the next
            // wait sleeps again.
            var v: UInt64 = 0
            _ = read(wake, &v, 8)
        }
        if n == 0 && deadline.expired { throw .timeout("\(what): no answer within the time limit") }
        if n < 0 && errno != EINTR { throw .unreachable("poll: \(String(cString: strerror(errno)))") }
    }

    func lastError(_ what: String, _ rc: Int32) -> SSHError {
        var msg: UnsafeMutablePointer<CChar>?
        var len: Int32 = 0
        libssh2_session_last_error(session, &msg, &len, 0)
        let text = msg.map { String(cString: $0) } ?? "error \(rc)"
        switch rc {
        case LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_SEND:
            return .unreachable("\(what): connection lost (\(text))")
        case LIBSSH2_ERROR_AUTHENTICATION_FAILED, LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
            return .authenticationFailed(text)
        case LIBSSH2_ERROR_FILE:
            return .identityUnreadable("\(target.identity): \(text)")
        default:
            return .protocolError("\(what): \(text)")
        }
    }

    /// Sends a keepalive when one is due; returns seconds until the next.
    func keepalive() -> Int32 {
        var next: Int32 = 0
        _ = libssh2_keepalive_send(session, &next)
        return next
    }
}

/// What a remote command ended with.
package struct RemoteExit: Sendable, Equatable {
    package var status: Int32
    /// "KILL", "TERM"... when the remote process died of a signal.
    package var signal: String?
}

/// An exec channel pumped in both directions by one loop on the connection's thread.
///
/// `input` is asked for more stdin bytes whenever the channel can take them (nil = no more,
/// send EOF); `stdout` and `stderr` receive what arrives. The loop ends when the remote
/// side closes the channel, or when `cancelled()` turns true: then the channel is closed
/// at once, which closes the remote process's stdin and stdout.
/// What a channel's input source hands the pump next.
package enum ChannelInput {
    case bytes([UInt8])
    /// Nothing now; ask again soon (a producer on another thread is behind).
    case later
    /// Nothing more, but keep stdin open (a job without input: closing it cancels).
    case hold
    case end
}

final class ExecChannel {
    typealias Input = ChannelInput

    let conn: SSHConnection
    let channel: OpaquePointer
    /// Both ends closed the channel: its connection can carry another one.
    private(set) var closedCleanly = false

    init(_ conn: SSHConnection, command: String, deadline: Deadline) throws(SSHError) {
        self.conn = conn
        var ch: OpaquePointer?
        while true {
            // A 4 MiB window (OpenSSH's own is 2 MiB): what the remote sshd may send ahead
            // is also what it holds in a buffer it grows by reallocation and frees with each
            // channel. At 16 MiB, the storage nodes' sshd spent half its CPU in the kernel
            // zeroing fresh pages for it while a restore read batches faster than this side
            // decrypts them (perf); a Redis restore took 5.0 s and 8.9 CPU-s against 3.7 s
            // and 6.6 CPU-s at 2 or 4 MiB; backups did not change. 4 MiB still fills 80 MB/s
            // at 50 ms of round trip.
            ch = libssh2_channel_open_ex(conn.session, "session", 7, 4 << 20, 32768, nil, 0)
            if ch != nil { break }
            let rc = libssh2_session_last_errno(conn.session)
            if rc != LIBSSH2_ERROR_EAGAIN { throw conn.lastError("opening a channel", rc) }
            try conn.waitSocket(deadline, "opening a channel")
        }
        channel = ch!
        do {
            try conn.retry(deadline, "starting the remote command") {
                libssh2_channel_process_startup(channel, "exec", 4, command, UInt32(command.utf8.count))
            }
        } catch {
            libssh2_channel_free(channel)
            throw error
        }
    }

    /// Opens an SCP upload channel for `size` bytes to `path`.
    init(scpTo path: String, mode: Int32, size: Int64, _ conn: SSHConnection, deadline: Deadline) throws(SSHError) {
        self.conn = conn
        var ch: OpaquePointer?
        while true {
            ch = libssh2_scp_send64(conn.session, path, mode, size, 0, 0)
            if ch != nil { break }
            let rc = libssh2_session_last_errno(conn.session)
            if rc != LIBSSH2_ERROR_EAGAIN { throw conn.lastError("starting the upload to \(path)", rc) }
            try conn.waitSocket(deadline, "starting the upload")
        }
        channel = ch!
    }

    deinit { libssh2_channel_free(channel) }

    /// `wake`: a descriptor (a `Wakeup`'s eventfd) that turns readable when `input` has
    /// something new to say (the end of a held lock's input), so the loop asks at once.
    func pump(
        input: () -> Input, stdout: (UnsafeRawBufferPointer) throws -> Void,
        stderr: (UnsafeRawBufferPointer) throws -> Void, cancelled: () -> Bool, wake: Int32 = -1
    ) throws -> RemoteExit {
        let ioTimeout = conn.target.ioTimeout
        var pending: [UInt8] = []
        var pendingOffset = 0
        var inputDone = false, eofSent = false, waitingForProducer = false
        var buf = [UInt8](repeating: 0, count: 256 << 10)
        var lastActivity = Deadline.now()

        while true {
            if cancelled() {
                _ = libssh2_channel_close(channel)
                throw SSHError.cancelled
            }
            var progressed = false
            waitingForProducer = false

            // stdin
            if !eofSent {
                if pendingOffset >= pending.count && !inputDone {
                    switch input() {
                    case .bytes(let b): pending = b; pendingOffset = 0
                    case .later: waitingForProducer = true
                    case .hold: break
                    case .end: inputDone = true
                    }
                }
                if pendingOffset < pending.count {
                    let n = pending.withUnsafeBytes { b in
                        libssh2_channel_write_ex(
                            channel, 0, b.baseAddress!.advanced(by: pendingOffset).assumingMemoryBound(to: CChar.self), b.count - pendingOffset)
                    }
                    if n > 0 {
                        pendingOffset += n; progressed = true
                    } else if n != Int(LIBSSH2_ERROR_EAGAIN) {
                        throw conn.lastError("sending to the remote command", Int32(n))
                    }
                } else if inputDone {
                    let rc = libssh2_channel_send_eof(channel)
                    if rc == 0 {
                        eofSent = true; progressed = true
                    } else if rc != LIBSSH2_ERROR_EAGAIN {
                        throw conn.lastError("closing the remote command's input", rc)
                    }
                }
            }

            // stdout, stderr
            for stream: Int32 in [0, 1] {
                while true {
                    let n = buf.withUnsafeMutableBytes { b in
                        libssh2_channel_read_ex(channel, stream, b.baseAddress!.assumingMemoryBound(to: CChar.self), b.count)
                    }
                    if n > 0 {
                        let chunk = buf.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[0..<n]) }
                        try (stream == 0 ? stdout : stderr)(chunk)
                        progressed = true
                        continue
                    }
                    if n == 0 || n == Int(LIBSSH2_ERROR_EAGAIN) { break }
                    throw conn.lastError("reading from the remote command", Int32(n))
                }
            }

            if libssh2_channel_eof(channel) == 1 { break }
            if progressed {
                lastActivity = Deadline.now()
                continue
            }
            if Deadline.now() - lastActivity > ioTimeout {
                throw SSHError.timeout("no data from the node for \(formatDuration(ioTimeout))")
            }
            let next = conn.keepalive()
            // Wait for the socket; briefly when a producer may have more input by then.
            // and at most 200 ms otherwise, so that cancellation is noticed promptly.
            let cap: Int32 = waitingForProducer ? 5 : min(200, max(1, next) * 1000)
            try conn.waitSocket(Deadline(seconds: ioTimeout), "waiting for the node", maxMilliseconds: cap, wake: wake)
        }

        // Drain and close.
        let deadline = Deadline(seconds: 10)
        let closed = (try? conn.retry(deadline, "closing the channel") { libssh2_channel_close(channel) }) != nil
        closedCleanly = closed && (try? conn.retry(deadline, "closing the channel") { libssh2_channel_wait_closed(channel) }) != nil
        var sig: UnsafeMutablePointer<CChar>?
        var sigLen = 0
        libssh2_channel_get_exit_signal(channel, &sig, &sigLen, nil, nil, nil, nil)
        let signal = sig.map { String(cString: $0) }
        if let sig { libssh2_free(conn.session, sig) }
        return RemoteExit(status: libssh2_channel_get_exit_status(channel), signal: signal)
    }
}
