// The policies file on disk: read, and changed under an exclusive flock with a write to a
// temporary file, fsync and rename, so that a crash or a concurrent `addon configure` never
// leaves a half-written or lost update (the rename is atomic; the lock orders writers).
import Foundation
import Support
import Topology

package enum PolicyStore {
    /// stowage.yaml → stowage.policies.yaml, in the inventory's folder.
    /// The policies file of an inventory: NAME.policies.yaml in the state folder (which is
    /// the inventory's own folder unless installed, see `Inventory.stateDirectory`).
    package static func defaultPath(forInventory path: String, stateDirectory: String? = nil) -> String {
        sibling(of: path, suffix: ".policies.yaml", in: stateDirectory)
    }

    /// NAME + suffix for the inventory NAME.yaml, in `folder` (default: the inventory's).
    static func sibling(of path: String, suffix: String, in folder: String? = nil) -> String {
        let url = URL(fileURLWithPath: path)
        let base = url.deletingPathExtension().lastPathComponent
        let dir = folder.map { URL(fileURLWithPath: $0) } ?? url.deletingLastPathComponent()
        return dir.appendingPathComponent(base + suffix).path
    }

    /// The policies in the file; none if it does not exist.
    package static func read(_ path: String) throws(StowageError) -> [Policy] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StowageError(.invalidInventory, "cannot read the policies file \(path)", hint: "check the file's permissions")
        }
        return try PolicyFile.parse(String(decoding: data, as: UTF8.self), file: path)
    }

    /// Reads the policies, lets `change` edit them, and writes the result atomically, all
    /// under an exclusive lock. Nothing is written if `change` throws.
    package static func update<T>(_ path: String, _ change: (inout [Policy]) throws(StowageError) -> T) throws(StowageError) -> T {
        let lockPath = path + ".lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StowageError(.invalidInventory, "cannot open \(lockPath): \(String(cString: strerror(errno)))", hint: "check the folder's permissions")
        }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else {
            throw StowageError(.internalError, "cannot lock \(lockPath): \(String(cString: strerror(errno)))")
        }
        var policies = try read(path)
        let result = try change(&policies)
        try writeAtomically(path, PolicyFile.render(policies))
        return result
    }

    static func writeAtomically(_ path: String, _ text: String) throws(StowageError) {
        let tmp = path + ".tmp.\(getpid())"
        func fail(_ what: String) -> StowageError {
            StowageError(
                .invalidInventory, "cannot write the policies file \(path): \(what): \(String(cString: strerror(errno)))",
                hint: "check the folder's permissions and free space; the previous file is unchanged")
        }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw fail("create \(tmp)") }
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; close(fd); unlink(tmp); throw fail("write") }
            off += n
        }
        guard fsync(fd) == 0 else { close(fd); unlink(tmp); throw fail("fsync") }
        close(fd)
        guard rename(tmp, path) == 0 else { unlink(tmp); throw fail("rename") }
        // The rename is durable once the folder is.
        let dir = open(URL(fileURLWithPath: path).deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY)
        if dir >= 0 { fsync(dir); close(dir) }
    }
}
