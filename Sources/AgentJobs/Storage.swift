import AgentProtocol
import FoundationEssentials
// Storage-node jobs (docs/storage-format.md, "Writes"): every object is written to
// tmp/<random>, fsynced, renamed to its name, and its folder fsynced before the job reports
// success, so a file under a final name is always complete and a crash leaves only tmp/
// leftovers. Names are validated (relative, no "..") before anything touches the disk.
import Repository

#if canImport(Glibc)
import Glibc
#endif

/// The job's input as a byte stream (the frames' boundaries mean nothing to records).
struct InputBytes {
    private var reader: FrameReader
    private var buf: [UInt8] = []
    private var off = 0
    private var ended = false

    /// The job's input frames on `fd` (stdin in a session; a pipe in tests).
    init(fd: Int32 = 0) { reader = FrameReader(fd: fd) }

    /// Hands up to `max` bytes to `body`; returns how many (0 at the end of the input).
    mutating func read(max: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        if off >= buf.count {
            if ended { return 0 }
            var next: [UInt8] = []
            if try !reader.next({ next = Array($0) }) { ended = true; return 0 }
            buf = next
            off = 0
        }
        let k = min(max, buf.count - off)
        try buf.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[off..<(off + k)])) }
        off += k
        return k
    }

    /// The next object record's header (ObjectRecord's one reader), or nil at the end of the
    /// input; a malformed or cut header as the job's failure.
    mutating func recordHeader() throws -> (name: String, size: Int)? {
        do {
            return try ObjectRecord.readHeader { n in try readExactly(n) }
        } catch let m as MalformedRecord {
            throw JobFailure(exit: .badJob, code: "bad-record", message: m.description)
        } catch is RecordHeaderCut {
            throw JobFailure(exit: .inputCut, code: "input-cut", message: "input ended inside an object record's header")
        }
    }

    /// Exactly `n` bytes; nil when the input ends before the first; throws when it ends inside.
    mutating func readExactly(_ n: Int) throws -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(n)
        while out.count < n {
            let got = try read(max: n - out.count) { out.append(contentsOf: $0) }
            if got == 0 {
                if out.isEmpty { return nil }
                throw IOFailure.closed
            }
        }
        return out
    }
}

func errnoText(_ e: Int32) -> String {
    let names: [Int32: String] = [ENOSPC: "ENOSPC", EROFS: "EROFS", EACCES: "EACCES", EIO: "EIO", EDQUOT: "EDQUOT", ENOENT: "ENOENT"]
    return "\(String(cString: strerror(e)))\(names[e].map { " (\($0))" } ?? "")"
}

struct Store {
    let root: String

    init(root r: String) throws {
        guard r.hasPrefix("/"), !r.split(separator: "/").contains("..") else {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "a storage job needs an absolute root without '..'")
        }
        root = r.hasSuffix("/") && r.count > 1 ? String(r.dropLast()) : r
    }

    func checkName(_ n: String) throws {
        guard ObjectRecord.isValidName(n) else {
            throw JobFailure(exit: .badJob, code: "bad-object-name", message: "refused object name '\(n.prefix(100))'")
        }
    }

    func fail(_ what: String, _ name: String, _ e: Int32) -> JobFailure {
        JobFailure(
            exit: .jobFailed, code: e == ENOSPC || e == EDQUOT ? "no-space" : (e == EROFS ? "read-only" : "io-error"),
            message: "\(what) \(root)/\(name): \(errnoText(e))")
    }

    /// mkdir -p with mode 700; returns the folders it created (their parents need an fsync).
    func makeDirectories(_ path: String) throws -> [String] {
        var created: [String] = []
        var p = ""
        for part in path.split(separator: "/") {
            p += "/" + part
            if mkdir(p, 0o700) == 0 { created.append(p) } else if errno != EEXIST { throw fail("cannot create", p, errno) }
        }
        return created
    }

    func fsyncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    /// Removes tmp/ files older than an hour: leftovers of writers that crashed.
    func cleanTemporaries() {
        guard let d = opendir("\(root)/tmp") else { return }
        defer { closedir(d) }
        let now = time(nil)
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            var st = stat()
            let path = "\(root)/tmp/\(name)"
            if lstat(path, &st) == 0 && now - st.st_mtim.tv_sec > 3600 { unlink(path) }
        }
    }

    func put(_ input: inout InputBytes, replace: Bool = false) throws -> AgentEvent {
        var dirsToSync = Set<String>()
        for d in try makeDirectories("\(root)/tmp") { dirsToSync.insert(parent(d)) }
        cleanTemporaries()
        var stored = 0, existed = 0
        var bytes: Int64 = 0
        let block = 1 << 20
        while true {
            guard let header = try input.recordHeader() else { break }
            let name = header.name
            try checkName(name)
            let size = UInt64(header.size)
            let final = "\(root)/\(name)"
            var st = stat()
            if !replace && stat(final, &st) == 0 {
                // A chunk is named by its content: one of the same size is the same chunk.
                // A manifest is never replaced: a backup, once committed, does not change.
                if name.hasPrefix(RepositoryLayout.backupsPrefix + "/") {
                    throw JobFailure(exit: .jobFailed, code: "exists", message: "\(final) exists already; a committed backup is never overwritten")
                }
                if UInt64(st.st_size) == size {
                    try skip(&input, size)
                    existed += 1
                    continue
                }
            }
            let dir = parent(final)
            for d in try makeDirectories(dir) { dirsToSync.insert(parent(d)) }
            let tmp = "\(root)/tmp/\(UInt64.random(in: 0...UInt64.max))"
            let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw fail("cannot create", "tmp/ for \(name) in", errno) }
            var left = size
            do {
                while left > 0 {
                    let want = Int(min(UInt64(block), left))
                    guard let part = try input.readExactly(want) else { throw IOFailure.closed }
                    let ok = part.withUnsafeBytes { writeAll(fd, $0) }
                    if !ok { throw fail("cannot write", name + " in", errno) }
                    left -= UInt64(want)
                    bytes += Int64(want)
                }
                if fsync(fd) != 0 { throw fail("cannot fsync", name + " in", errno) }
                close(fd)
                if rename(tmp, final) != 0 { throw fail("cannot rename into", name + " in", errno) }
            } catch {
                close(fd)
                unlink(tmp)
                if case IOFailure.closed = error {
                    throw JobFailure(exit: .inputCut, code: "input-cut", message: "input ended inside \(name); nothing was stored under its name")
                }
                throw error
            }
            dirsToSync.insert(dir)
            stored += 1
        }
        // Renames are durable only once their folders are: sync them before saying "stored".
        for d in dirsToSync.sorted() { fsyncDirectory(d) }
        var e = AgentEvent(event: .result)
        e.stored = stored
        e.existed = existed
        e.bytes = bytes
        return e
    }

    private func skip(_ input: inout InputBytes, _ size: UInt64) throws {
        var left = size
        while left > 0 {
            let got = try input.read(max: Int(min(left, 1 << 20))) { _ in }
            if got == 0 { throw JobFailure(exit: .inputCut, code: "input-cut", message: "input ended inside an object") }
            left -= UInt64(got)
        }
    }

    func get(_ names: [String]) throws -> AgentEvent {
        var missing: [String] = []
        var found = 0
        var bytes: Int64 = 0
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        for name in names {
            try checkName(name)
            let fd = open("\(root)/\(name)", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == ENOENT { missing.append(name); continue }
                throw fail("cannot open", name + " in", errno)
            }
            defer { close(fd) }
            var st = stat()
            fstat(fd, &st)
            guard writeAll(1, ObjectRecord.header(name: name, size: Int(st.st_size))) else {
                throw JobFailure(exit: .outputClosed, code: "output-closed", message: "stdout closed")
            }
            var left = Int(st.st_size)
            while left > 0 {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, min($0.count, left)) }
                if n < 0 && errno == EINTR { continue }
                // A file that shrank while read cannot honour its header: fail rather than send a short object.
                guard n > 0 else { throw fail("cannot read", name + " in", n < 0 ? errno : EIO) }
                guard buf.withUnsafeBytes({ writeAll(1, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) else {
                    throw JobFailure(exit: .outputClosed, code: "output-closed", message: "stdout closed")
                }
                left -= n
                bytes += Int64(n)
            }
            found += 1
        }
        var e = AgentEvent(event: .result)
        e.stored = found
        e.missing = missing
        e.bytes = bytes
        return e
    }

    func list(_ prefix: String?) throws -> AgentEvent {
        if let prefix { try checkName(prefix) }
        var count = 0
        var out: [UInt8] = []
        func walk(_ rel: String) throws {
            let path = rel.isEmpty ? root : "\(root)/\(rel)"
            guard let d = opendir(path) else {
                if errno == ENOENT { return }
                throw fail("cannot list", rel, errno)
            }
            defer { closedir(d) }
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                let child = rel.isEmpty ? name : "\(rel)/\(name)"
                if rel.isEmpty && (name == "tmp" || name == "locks") { continue }
                var st = stat()
                guard lstat("\(root)/\(child)", &st) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    try walk(child)
                } else if (st.st_mode & S_IFMT) == S_IFREG {
                    out += Array("\(st.st_size) \(child)\n".utf8)
                    count += 1
                    if out.count > 1 << 20 { guard writeAll(1, out) else { throw IOFailure.closed }; out.removeAll(keepingCapacity: true) }
                }
            }
        }
        try walk(prefix ?? "")
        guard writeAll(1, out) else { throw JobFailure(exit: .outputClosed, code: "output-closed", message: "stdout closed") }
        var e = AgentEvent(event: .result)
        e.stored = count
        return e
    }

    func delete(_ names: [String]) throws -> AgentEvent {
        var missing: [String] = []
        var deleted = 0
        var dirs = Set<String>()
        for name in names {
            try checkName(name)
            if unlink("\(root)/\(name)") == 0 {
                deleted += 1; dirs.insert(parent("\(root)/\(name)"))
            } else if errno == ENOENT {
                missing.append(name)
            } else {
                throw fail("cannot delete", name + " in", errno)
            }
        }
        for d in dirs { fsyncDirectory(d) }
        var e = AgentEvent(event: .result)
        e.stored = deleted
        e.missing = missing
        return e
    }

    /// Holds the repository lock (`locks/.repository`: shared for backups and restores,
    /// exclusive for prune) and `locks/<layer>` exclusively for each layer, with flock, until
    /// stdin ends. The kernel releases them when this process exits or dies, so a crashed
    /// holder never blocks the next run.
    func lock(_ layers: [String], exclusive: Bool, owner: String?) throws -> AgentEvent {
        for l in layers where !ObjectRecord.isValidName(l) || l.contains("/") || l.hasPrefix(".") {
            throw JobFailure(exit: .badJob, code: "bad-job", message: "refused layer name '\(l.prefix(100))' in a lock job")
        }
        _ = try makeDirectories("\(root)/locks")
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        func take(_ name: String, _ op: Int32) throws -> Int32 {
            let fd = open("\(root)/locks/\(name)", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw fail("cannot open", "locks/\(name) in", errno) }
            fds.append(fd)
            if flock(fd, op | LOCK_NB) != 0 {
                guard errno == EWOULDBLOCK else { throw fail("cannot lock", "locks/\(name) in", errno) }
                // A layer is held by the one owner of its own lock file; the repository (wanted
                // exclusively) by every session holding a lock in it.
                let who = name == ".repository" ? holders() : holders(of: [name])
                throw JobFailure(
                    exit: .jobFailed, code: "locked", message: "\(name == ".repository" ? "the repository" : "layer \(name)") is busy: locked by \(who)")
            }
            return fd
        }
        let repoFD = try take(".repository", exclusive ? LOCK_EX : LOCK_SH)
        let text = Array((owner ?? "unknown").utf8.prefix(500))
        var owned: [Int32] = exclusive ? [repoFD] : []
        for l in layers { owned.append(try take(l, LOCK_EX)) }
        for fd in owned {
            ftruncate(fd, 0)
            _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }
            fsync(fd)
        }
        Events.send(AgentEvent(event: .ready))
        // Hold until the coordinator closes the session (or sends anything). A heartbeat every
        // 15 s: the coordinator gives up on a session silent for its I/O timeout (60 s), and a
        // backup may hold its lock for hours.
        var p = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        while true {
            let n = poll(&p, 1, 15_000)
            if n < 0 && errno == EINTR { continue }
            if n == 0 { Events.send(AgentEvent(event: .progress)); continue }
            break
        }
        for fd in owned { ftruncate(fd, 0) }
        return AgentEvent(event: .result)
    }

    /// Who holds the lock files `names` (every lock file of the repository when nil), from
    /// the owner texts the holders wrote. A file nobody holds any more (its holder was killed
    /// before it could clear its text) is left out: the kernel lets us lock it.
    func holders(of names: [String]? = nil) -> String {
        var files = names ?? []
        if names == nil, let d = opendir("\(root)/locks") {
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { files.append(name) }
            }
            closedir(d)
        }
        var out: [String] = []
        for name in files {
            let fd = open("\(root)/locks/\(name)", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { flock(fd, LOCK_UN); continue }
            var buf = [UInt8](repeating: 0, count: 512)
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 { out.append(String(decoding: buf[0..<n], as: UTF8.self)) }
        }
        return out.isEmpty ? "another process" : out.sorted().joined(separator: "; ")
    }

    func parent(_ p: String) -> String { String(p[..<(p.lastIndex(of: "/") ?? p.startIndex)]) }
}
