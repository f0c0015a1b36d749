// The agent binary this coordinator installs and runs. Each build has its own path on the
// nodes (its SHA-256 is in the name), so a coordinator always runs exactly the agent it was
// built with, and two coordinator versions sharing a node do not trample each other.
import AgentProtocol
import Crypto
import Fleet
import Foundation
import Repository
import Support
import Topology

package struct AgentBinary: Sendable, Equatable {
    /// The agent's folder on a node: /var/lib/stowage/agent for root; for any other SSH
    /// user `.local/lib/stowage/agent` in its home (a relative path: SSH sessions start in
    /// the login's home, and scp and the shell resolve it alike), so an unprivileged
    /// account needs no folder made for it by root.
    package static func remoteDirectory(user: String) -> String {
        user == "root" ? "/var/lib/stowage/agent" : ".local/lib/stowage/agent"
    }

    package var localPath: String
    package var sha256: String
    package var size: Int64

    /// This build's path on a node reached as `user`.
    package func remotePath(user: String) -> String {
        "\(Self.remoteDirectory(user: user))/stowage-agent-\(AgentWire.version)-p\(AgentWire.protocolVersion)-\(sha256.prefix(16))"
    }

    /// `explicit`, else $STOWAGE_AGENT_BINARY, else `stowage-agent` beside the running executable.
    /// With `hashCache` (a folder: the coordinator's state folder), the binary's SHA-256 is
    /// remembered there and read again while the file is the same one, unchanged
    /// (`HashCacheEntry`): hashing the tens of MB of a static agent was about 0.1 s of every
    /// command's start.
    package static func locate(
        _ explicit: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        hashCache: String? = nil, racyWindow: Double = 2
    ) throws(StowageError) -> AgentBinary {
        let exeDir = URL(fileURLWithPath: currentExecutablePath() ?? CommandLine.arguments[0])
            .deletingLastPathComponent().path
        let path = explicit ?? environment["STOWAGE_AGENT_BINARY"] ?? "\(exeDir)/stowage-agent"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno != ENOENT {
                throw StowageError(
                    .usage, "cannot open the stowage-agent binary at \(path): \(String(cString: strerror(errno)))", hint: Self.unreadableHint)
            }
            throw StowageError(
                .usage, "no stowage-agent binary at \(path)",
                hint: "build it (scripts/setup.sh builds a static one into .build-agent/release/) and pass --agent-binary or set STOWAGE_AGENT_BINARY")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw StowageError(
                .usage, "cannot read the stowage-agent binary at \(path): \(String(cString: strerror(errno)))", hint: Self.unreadableHint)
        }
        let identity = HashCacheEntry.Identity(st)
        let cacheFile = hashCache.map { "\($0)/\(HashCacheEntry.fileName)" }
        if let cacheFile, let text = try? String(contentsOfFile: cacheFile, encoding: .utf8),
            let hit = HashCacheEntry(line: text), hit.path == path, hit.identity == identity
        {
            return AgentBinary(localPath: path, sha256: hit.sha256, size: identity.size)
        }
        // Hashed in 1 MiB reads: the binary is tens of MB, and the coordinator's memory
        // should not grow with it.
        var hash = SHA256()
        var size: Int64 = 0
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw StowageError(
                    .usage, "cannot read the stowage-agent binary at \(path): \(String(cString: strerror(errno)))", hint: Self.unreadableHint)
            }
            if n == 0 { break }
            buf.withUnsafeBytes { hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            size += Int64(n)
        }
        let hex = hexString(hash.finalize())
        // Remembered only when the file did not change while it was read, and not when it
        // changed within the last `racyWindow` seconds: file times tick in steps of a few
        // milliseconds, so a rewrite of the same size right after would look unchanged (git's
        // "racily clean" entries). A cache that cannot be written costs the next command the
        // hashing again, nothing else.
        var after = stat()
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let age = Double(now.tv_sec - identity.changed.tv_sec) + Double(now.tv_nsec - identity.changed.tv_nsec) / 1e9
        if let cacheFile, fstat(fd, &after) == 0, HashCacheEntry.Identity(after) == identity, size == identity.size, age >= racyWindow {
            let line = HashCacheEntry(path: path, identity: identity, sha256: hex).line
            let tmp = "\(cacheFile).\(getpid()).tmp"
            if FileManager.default.createFile(atPath: tmp, contents: Data(line.utf8), attributes: [.posixPermissions: 0o600]) {
                if rename(tmp, cacheFile) != 0 { unlink(tmp) }
            }
        }
        return AgentBinary(localPath: path, sha256: hex, size: size)
    }

    static let unreadableHint = "the coordinator's user must be able to read it: check its permissions, or pass --agent-binary with a readable copy"
}

/// The agent binary's hash as remembered in the state folder, and the file it was taken
/// of. A file with the same device, inode, size, modification and change time is taken to
/// hold the same bytes (git's index and rsync trust less): any write, truncation, chmod or
/// replacement moves the change time, which no program can set back.
package struct HashCacheEntry: Equatable {
    package static let fileName = "agent-binary.sha256"

    package struct Identity: Equatable {
        package var device: UInt64
        package var inode: UInt64
        package var size: Int64
        package var modified: timespec
        package var changed: timespec

        package init(device: UInt64, inode: UInt64, size: Int64, modified: timespec, changed: timespec) {
            self.device = device
            self.inode = inode
            self.size = size
            self.modified = modified
            self.changed = changed
        }

        init(_ st: stat) {
            self.init(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size), modified: st.st_mtim, changed: st.st_ctim)
        }

        package static func == (a: Identity, b: Identity) -> Bool {
            a.device == b.device && a.inode == b.inode && a.size == b.size
                && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
                && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
        }
    }

    package var path: String
    package var identity: Identity
    package var sha256: String

    package init(path: String, identity: Identity, sha256: String) {
        self.path = path
        self.identity = identity
        self.sha256 = sha256
    }

    /// `sha256 device inode size mtime.ns ctime.ns path` (the path last: it may hold spaces).
    package var line: String {
        let i = identity
        return "\(sha256) \(i.device) \(i.inode) \(i.size) \(i.modified.tv_sec).\(i.modified.tv_nsec) \(i.changed.tv_sec).\(i.changed.tv_nsec) \(path)\n"
    }

    /// nil for anything but one well-formed line (a torn or foreign file is a miss).
    package init?(line text: String) {
        guard text.hasSuffix("\n"), text.filter({ $0 == "\n" }).count == 1 else { return nil }
        let f = text.dropLast().split(separator: " ", maxSplits: 6, omittingEmptySubsequences: false)
        func time(_ s: Substring) -> timespec? {
            let p = s.split(separator: ".", omittingEmptySubsequences: false)
            guard p.count == 2, let sec = Int(p[0]), let ns = Int(p[1]), (0..<1_000_000_000).contains(ns) else { return nil }
            return timespec(tv_sec: sec, tv_nsec: ns)
        }
        guard f.count == 7, f[0].count == 64, f[0].allSatisfy({ $0.isHexDigit && !$0.isUppercase }),
            let dev = UInt64(f[1]), let ino = UInt64(f[2]), let size = Int64(f[3]), let m = time(f[4]), let c = time(f[5]), !f[6].isEmpty
        else { return nil }
        self.init(path: String(f[6]), identity: Identity(device: dev, inode: ino, size: size, modified: m, changed: c), sha256: String(f[0]))
    }
}

/// A node as the agent commands see it: where it is, and what it is for.
package struct AgentNode: Sendable {
    package var spec: NodeSpec
    package var target: SSHTarget
    /// The layer's engine, for database nodes.
    package var engine: Engine?
    package var layer: String?
    /// The repository folder, for storage nodes.
    package var storageRoot: String?
    package var storage: String?

    /// Tools the agent must find on this node.
    package var tools: [String] {
        switch engine {
        case .postgresql: ["pg_dump", "pg_dumpall", "psql"]
        case .mysql: ["mariadb-dump", "mariadb", "mysqldump", "mysql"]
        case .redis: ["redis-cli", "redis-server"]
        case nil: []
        }
    }

    /// Where free space matters: the storage root, or the agent's own folder.
    package var workPath: String { storageRoot ?? AgentBinary.remoteDirectory(user: target.user) }
}

extension Inventory {
    /// SSH settings of a node, or an error naming what the inventory lacks.
    package func sshTarget(_ node: NodeSpec) throws(StowageError) -> SSHTarget {
        guard let addr = node.ssh else {
            throw StowageError(
                .invalidInventory, "node \(node.name) has no ssh address (\(node.location))",
                hint: "add ssh: root@HOST to the node")
        }
        guard let identity = ssh.identity else {
            throw StowageError(
                .invalidInventory, "\(path): no ssh.identity", hint: "set ssh: { identity: /path/to/id_ed25519, known_hosts: /path/to/known_hosts }")
        }
        guard let known = ssh.knownHosts else {
            throw StowageError(.invalidInventory, "\(path): no ssh.known_hosts", hint: "set ssh.known_hosts; stowage ssh trust NODE fills it")
        }
        var t = SSHTarget(node: node.name, host: addr.host, port: addr.port, user: addr.user, identity: identity, knownHosts: known)
        t.connectTimeout = probe.connectTimeout
        return t
    }

    /// The nodes a command names: a storage, an environment or layer, or (nil) every node.
    package func agentNodes(_ selection: String?) throws(StowageError) -> [AgentNode] {
        var out: [AgentNode] = []
        // Buckets run no agent: only SSH storage nodes are listed here.
        if let s = selection, let st = storage(s) {
            for n in st.nodes where n.bucket == nil { out.append(try storageNode(n, st)) }
            return out
        }
        for l in try LayerSelection(parsing: selection).layers(in: self) {
            for n in l.nodes {
                out.append(AgentNode(spec: n, target: try sshTarget(n), engine: l.engine, layer: l.id, storageRoot: nil, storage: nil))
            }
        }
        if selection == nil {
            for st in storages { for n in st.nodes where n.bucket == nil { out.append(try storageNode(n, st)) } }
        }
        return out
    }

    func storageNode(_ n: NodeSpec, _ st: StorageSpec) throws(StowageError) -> AgentNode {
        AgentNode(spec: n, target: try sshTarget(n), engine: nil, layer: nil, storageRoot: n.root ?? st.root, storage: st.name)
    }

    /// One node by name, anywhere in the inventory.
    package func agentNode(named name: String) throws(StowageError) -> AgentNode {
        if let n = try agentNodes(nil).first(where: { $0.spec.name == name }) { return n }
        let all = layers.flatMap { $0.nodes.map(\.name) } + storages.flatMap { $0.nodes.map(\.name) }
        throw StowageError(
            .usage, "unknown node '\(name)' in \(path)",
            hint: "nodes: \(all.prefix(20).joined(separator: ", "))\(all.count > 20 ? ", ..." : "")")
    }
}
