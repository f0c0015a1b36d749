// Idle SSH connections kept for the next agent job on the same node.
//
// A backup makes a couple of dozen agent calls (repository open, locks, listings, the
// stream, puts, retention), most to the same two or three nodes; a fresh connection costs a
// TCP connect, a key exchange and a public-key signature each time. A connection whose job
// ended cleanly is parked here and the next job to that node opens its channel on it.
//
// Each connection is used by one thread at a time (libssh2 sessions are not thread-safe):
// `take` hands it out exclusively, `park` takes it back; the lock orders the hand-over.
import Fleet
import Foundation
import Glibc
import Support
import Topology

package final class SSHConnectionPool: @unchecked Sendable {
    package static let shared = SSHConnectionPool()

    /// A parked connection older than this is closed rather than reused, so a process that
    /// goes quiet does not hold sessions on its nodes.
    static let maxIdleSeconds = 15.0
    /// Per node; more parallel jobs than this open connections of their own.
    static let maxIdlePerTarget = 6

    private struct Parked {
        var connection: SSHConnection
        var since: Double
    }

    private let lock = NSCondition()
    private var idle: [String: [Parked]] = [:]
    /// Connections `prewarm` is still opening, per target.
    private var opening: [String: Int] = [:]
    private var reaperScheduled = false

    static func key(_ t: SSHTarget) -> String {
        "\(t.user)@\(t.host):\(t.port) \(t.identity) \(t.knownHosts)"
    }

    /// A parked connection to `target` that still looks alive and whose host key known_hosts
    /// still names, or nil. While `prewarm` is still connecting to the target, waits for
    /// that connection (up to the connect timeout) rather than opening one more.
    func take(_ target: SSHTarget) -> SSHConnection? {
        let k = Self.key(target)
        let deadline = Deadline(seconds: target.connectTimeout)
        lock.lock()
        defer { lock.unlock() }
        while true {
            while var list = idle[k], let p = list.popLast() {
                idle[k] = list.isEmpty ? nil : list
                if Deadline.now() - p.since > Self.maxIdleSeconds || !p.connection.looksIdle() || !p.connection.hostKeyStillTrusted() {
                    continue  // dropped: closes here
                }
                return p.connection
            }
            guard (opening[k] ?? 0) > 0, !deadline.expired else { return nil }
            _ = lock.wait(until: Date(timeIntervalSinceNow: 0.05))
        }
    }

    /// Takes back a connection whose channel ended cleanly.
    func park(_ c: SSHConnection) {
        // Beyond the limit `c` is not kept: it closes when the caller lets go of it.
        let schedule: Bool = lock.withLock {
            let k = Self.key(c.target)
            var list = idle[k] ?? []
            guard list.count < Self.maxIdlePerTarget else { return false }
            list.append(Parked(connection: c, since: Deadline.now()))
            idle[k] = list
            lock.broadcast()
            if reaperScheduled { return false }
            reaperScheduled = true
            return true
        }
        if schedule { scheduleReaper() }
    }

    /// Opens connections in the background, on threads of their own, and parks them, until
    /// each target has `count` parked: a run that knows which nodes it will talk to pays for
    /// the connections while it does other work (the topology check, the key derivation).
    /// Failures are dropped here: the job that needs the node connects again and reports.
    package func prewarm(_ targets: [SSHTarget], count: Int) {
        for t in targets {
            let k = Self.key(t)
            let missing: Int = lock.withLock {
                let n = max(0, count - (idle[k]?.count ?? 0) - (opening[k] ?? 0))
                opening[k, default: 0] += n
                return n
            }
            for _ in 0..<missing {
                let th = Thread { [self] in
                    let c = try? SSHConnection(t)
                    if let c {
                        Trace.log("\(t.node): connection opened ahead of its jobs")
                        park(c)
                    }
                    lock.withLock {
                        opening[k, default: 1] -= 1
                        lock.broadcast()
                    }
                }
                th.stackSize = 1 << 20
                th.start()
            }
        }
    }

    /// Closes every parked connection now (tests that need to start without any).
    func closeAll() {
        // Swapped out under the lock, closed after it.
        var all: [String: [Parked]] = [:]
        lock.withLock { swap(&all, &idle) }
    }

    /// When a job to the target last failed in transport (unreachable, timed out, cut).
    private var failures: [String: Double] = [:]

    func noteFailure(_ t: SSHTarget) { lock.withLock { failures[Self.key(t)] = Deadline.now() } }

    /// Whether a job to the target failed in transport since `since` (monotonic seconds).
    package func failed(_ t: SSHTarget, since: Double) -> Bool {
        lock.withLock { (failures[Self.key(t)] ?? -.infinity) >= since }
    }

    var parkedCount: Int { lock.withLock { idle.values.reduce(0) { $0 + $1.count } } }

    /// How many jobs ran on a parked connection (tests, the trace).
    var reuses: Int { lock.withLock { _reuses } }
    private var _reuses = 0
    func noteReuse() { lock.withLock { _reuses += 1 } }

    /// Closes connections idle for too long, on a timer of its own (never the cooperative pool).
    private func scheduleReaper() {
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + Self.maxIdleSeconds) { [self] in
            let now = Deadline.now()
            // Expired ones are swapped out under the lock and closed when `expired` goes.
            let (expired, more): ([Parked], Bool) = lock.withLock {
                var out: [Parked] = []
                for (k, list) in idle {
                    let keep = list.filter { now - $0.since <= Self.maxIdleSeconds }
                    out += list.filter { now - $0.since > Self.maxIdleSeconds }
                    idle[k] = keep.isEmpty ? nil : keep
                }
                reaperScheduled = !idle.isEmpty
                return (out, reaperScheduled)
            }
            _ = expired
            if more { scheduleReaper() }
        }
    }
}

extension SSHConnection {
    /// Whether the server still keeps the connection: end of stream or a socket error means it
    /// closed it (sshd restarted, the session killed). Bytes waiting are no sign of trouble
    /// (OpenSSH announces its host keys after authentication); libssh2 reads them with the
    /// next channel.
    func looksIdle() -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if n > 0 { return true }
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
    }
}
