// SSH and agent failures as operator errors: one line naming node and cause, a hint, and
// an exit code (docs/exit-codes.md).
import Fleet
import Support
import Topology

extension StowageError {
    static func ssh(_ e: SSHError, _ t: SSHTarget) -> StowageError {
        let who = "\(t.node) (\(t.user)@\(t.address))"
        switch e {
        case .refused:
            return StowageError(
                .nodeUnreachable, "\(who): SSH connection refused",
                hint: "is sshd running on the node, and is the inventory's ssh address right?", retryable: true)
        case .unreachable(let why):
            return StowageError(
                .nodeUnreachable, "\(who): unreachable: \(why)", hint: "check the node is up and reachable from the coordinator", retryable: true)
        case .timeout(let why):
            return StowageError(.nodeUnreachable, "\(who): \(why)", hint: "the node or the network is down or overloaded", retryable: true)
        case .hostKeyUnknown(let k):
            return StowageError(
                .hostKeyRefused, "\(who): unknown host key \(k.type) \(k.fingerprint), not in \(t.knownHosts)",
                hint: "check the fingerprint on the node (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run: stowage ssh trust \(t.node)")
        case .hostKeyChanged(let k):
            return StowageError(
                .hostKeyRefused, "\(who): HOST KEY CHANGED: the node offers \(k.type) \(k.fingerprint), which does not match \(t.knownHosts)",
                hint:
                    "if the node was rebuilt, check the fingerprint and run: stowage ssh trust \(t.node) --replace; otherwise the connection may be intercepted"
            )
        case .knownHostsUnreadable(let path):
            return StowageError(
                .invalidInventory, "cannot read the known_hosts file \(path) (ssh.known_hosts)",
                hint: "create it (stowage ssh trust NODE records keys into it) or fix ssh.known_hosts")
        case .rsaKey(let path):
            return StowageError(
                .sshAuthFailed, "the SSH identity \(path) is an RSA key: libssh2 1.10 signs RSA only with SHA-1, which OpenSSH 9 refuses",
                hint: "use an ed25519 (or ecdsa) key: ssh-keygen -t ed25519, and add its .pub to the nodes' authorized_keys")
        case .identityUnreadable(let path):
            return StowageError(.invalidInventory, "cannot read the SSH identity \(path) (ssh.identity)", hint: "check the path and its permissions")
        case .authenticationFailed(let why):
            return StowageError(
                .sshAuthFailed, "\(who): SSH authentication with \(t.identity) failed (\(why))",
                hint: "add the identity's public key to \(t.user)'s authorized_keys on the node")
        case .protocolError(let why):
            return StowageError(.remoteFailed, "\(who): SSH error: \(why)", retryable: true)
        case .cancelled:
            return StowageError(.cancelled, "\(who): cancelled")
        }
    }
}
