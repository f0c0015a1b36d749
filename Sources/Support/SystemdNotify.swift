// sd_notify(3) without libsystemd: under `Type=notify`, systemd passes a datagram socket in
// $NOTIFY_SOCKET and waits for "READY=1" before it calls the service started (so
// `systemctl start` returns once the scheduler has loaded its inventory, opened its catalog
// and bound its listener, and fails if it never does). "RELOADING=1" and "STOPPING=1" show
// in `systemctl status` while a reload or a graceful stop goes on. Without the variable
// (not under systemd) nothing is sent.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

package enum SystemdNotify {
    /// Sends `state` (newline-separated assignments, e.g. "READY=1\nSTATUS=...") to the
    /// socket $NOTIFY_SOCKET names: a path, or "@name" in the abstract namespace. Returns
    /// whether it was sent. Never blocks (MSG_DONTWAIT): a full socket loses the message,
    /// which is how sd_notify behaves for a manager that does not read.
    @discardableResult
    package static func send(_ state: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let target = environment["NOTIFY_SOCKET"], target.hasPrefix("/") || target.hasPrefix("@") else { return false }
        var path = Array(target.utf8)
        if path[0] == UInt8(ascii: "@") { path[0] = 0 }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        guard path.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: path) }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        // The address's length counts the path's bytes only: an abstract name has no NUL.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (path[0] == 0 ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL), sa, length) }
            }
        }
        return sent == message.count
    }
}
