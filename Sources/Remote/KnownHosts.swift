// `stowage ssh trust NODE`: record a node's host key in the inventory's known_hosts, the
// only way a new or changed key is ever accepted.
import Fleet
import Foundation
import Support
import Topology

package enum TrustOutcome: Sendable, Equatable {
    case recorded(HostKey)
    case alreadyTrusted(HostKey)
    case replaced(HostKey)
}

package enum KnownHosts {
    /// The host-field of a known_hosts line for a target.
    static func hostField(_ t: SSHTarget) -> String { t.port == 22 ? t.host : "[\(t.host)]:\(t.port)" }

    /// Fetches the node's host key (no authentication) and records it.
    package static func trust(_ t: SSHTarget, replace: Bool) async throws(StowageError) -> TrustOutcome {
        let key: HostKey
        do {
            key = try await DedicatedThread.run("trust \(t.node)") { _ in
                try SSHConnection(t, verifyHostKey: false, authenticate: false).hostKey!
            }
        } catch let e as SSHError {
            throw StowageError.ssh(e, t)
        } catch {
            throw StowageError(.internalError, "\(t.node): \(error)")
        }
        return try record(key, for: t, replace: replace)
    }

    /// Adds the key to the file; an existing different key for the host is replaced only
    /// when asked, since a changed key is exactly what host-key checking exists to catch.
    static func record(_ key: HostKey, for t: SSHTarget, replace: Bool) throws(StowageError) -> TrustOutcome {
        let path = t.knownHosts
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let host = hostField(t)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        let forHost = lines.indices.filter { i in
            let f = lines[i].split(separator: " ")
            return f.count >= 3 && f[0].split(separator: ",").contains(Substring(host)) && !lines[i].hasPrefix("#")
        }
        if forHost.contains(where: { lines[$0].split(separator: " ")[1] == key.type && lines[$0].split(separator: " ")[2] == key.base64 }) {
            return .alreadyTrusted(key)
        }
        let sameType = forHost.filter { lines[$0].split(separator: " ")[1] == key.type }
        if !sameType.isEmpty && !replace {
            throw StowageError(
                .hostKeyRefused,
                "\(t.node) (\(host)): known_hosts has another \(key.type) key for this host; the node now offers \(key.fingerprint)",
                hint: "if the node was rebuilt and the fingerprint is right, run: stowage ssh trust \(t.node) --replace")
        }
        for i in sameType.reversed() { lines.remove(at: i) }
        lines.append(key.knownHostsLine(host: t.host, port: t.port))
        let out = lines.joined(separator: "\n") + "\n"
        let tmp = path + ".tmp.\(getpid())"
        do {
            try out.write(toFile: tmp, atomically: false, encoding: .utf8)
            let fd = open(tmp, O_RDONLY)
            if fd >= 0 { fsync(fd); close(fd) }
            guard rename(tmp, path) == 0 else { throw StowageError(.internalError, "rename: \(String(cString: strerror(errno)))") }
        } catch {
            unlink(tmp)
            throw StowageError(.invalidInventory, "cannot write \(path): \(error)", hint: "check ssh.known_hosts and its folder's permissions")
        }
        return sameType.isEmpty ? .recorded(key) : .replaced(key)
    }
}
