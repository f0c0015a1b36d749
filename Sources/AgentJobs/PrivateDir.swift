// A folder only this agent's user can enter, for the files a job must not expose: credential
// files for the tools, a Redis restore's RDB and scratch server. Removed with everything in
// it when the job ends, however it ends (the agent's exit paths all run deinit).
import AgentProtocol
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

final class PrivateDir {
    let path: String

    init() throws {
        let base = access("/run", W_OK) == 0 ? "/run" : "/tmp"
        var template = Array("\(base)/stowage-agent.XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw JobFailure(
                exit: .jobFailed, code: "private-dir", message: "cannot create a private folder under \(base): \(String(cString: strerror(errno)))")
        }
        path = String(cString: p)
        chmod(path, 0o700)
    }

    /// Writes `text` to a new file of mode 0600 and returns its path.
    func write(_ name: String, _ text: String) throws -> String {
        let file = "\(path)/\(name)"
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw JobFailure(exit: .jobFailed, code: "private-dir", message: "cannot write \(file): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        guard writeAll(fd, Array(text.utf8)) else {
            throw JobFailure(exit: .jobFailed, code: "private-dir", message: "cannot write \(file): \(String(cString: strerror(errno)))")
        }
        return file
    }

    /// The last `max` bytes of a file here, as one line (a tool's stderr, for its error).
    func tail(_ name: String, max: Int = 600) -> String {
        let fd = open("\(path)/\(name)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        let start = Swift.max(0, Int(size) - max)
        lseek(fd, off_t(start), SEEK_SET)
        var buf = [UInt8](repeating: 0, count: max)
        let n = read(fd, &buf, max)
        guard n > 0 else { return "" }
        return String(decoding: buf[0..<n], as: UTF8.self)
            .split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.suffix(3).joined(separator: " / ")
    }

    deinit {
        // One level deep is all a job creates.
        if let d = opendir(path) {
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                if name != "." && name != ".." { unlink("\(path)/\(name)") }
            }
            closedir(d)
        }
        rmdir(path)
    }
}

/// The first of `names` found in PATH (the agent's children get the standard one).
func findTool(_ names: [String]) -> String? {
    let dirs = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    for n in names { for d in dirs where access("\(d)/\(n)", X_OK) == 0 { return n } }
    return nil
}
