import Crypto
import Foundation
import Support
import Testing

@testable import Remote

/// The agent binary's hash, remembered in the state folder while the file stays the same.
@Suite struct AgentBinaryHashTests {
    func sha(_ bytes: [UInt8]) -> String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    @Test func theCacheLineReadsBackAndRefusesTornOrForeignText() throws {
        let id = HashCacheEntry.Identity(
            device: 2049, inode: 1234, size: 88_224_952, modified: timespec(tv_sec: 1_765_000_000, tv_nsec: 5),
            changed: timespec(tv_sec: 1_765_000_001, tv_nsec: 999_999_999))
        let e = HashCacheEntry(path: "/opt/stowage dir/stowage-agent", identity: id, sha256: String(repeating: "ab", count: 32))
        #expect(HashCacheEntry(line: e.line) == e)
        #expect(HashCacheEntry(line: String(e.line.dropLast())) == nil)  // torn: no newline
        #expect(HashCacheEntry(line: e.line + e.line) == nil)
        #expect(HashCacheEntry(line: e.line.uppercased()) == nil)
        #expect(HashCacheEntry(line: e.line.replacingOccurrences(of: ".999999999", with: ".1000000000")) == nil)
        #expect(HashCacheEntry(line: "garbage\n") == nil)
        #expect(HashCacheEntry(line: "") == nil)
    }

    @Test func aRememberedHashIsUsedOnlyWhileTheFileIsUnchanged() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-hash-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = "\(dir)/stowage-agent"
        let content = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        FileManager.default.createFile(atPath: binary, contents: Data(content))

        // Without a cache folder: hashed, nothing written.
        let plain = try AgentBinary.locate(binary, environment: [:])
        #expect(plain.sha256 == sha(content) && plain.size == Int64(content.count))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/\(HashCacheEntry.fileName)"))

        // Changed a moment ago: hashed but not remembered (a rewrite of the same size within
        // the file times' step would not show).
        #expect(try AgentBinary.locate(binary, environment: [:], hashCache: dir).sha256 == sha(content))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/\(HashCacheEntry.fileName)"))

        // First run with the cache (the file's age no longer matters here): hashed and remembered.
        let first = try AgentBinary.locate(binary, environment: [:], hashCache: dir, racyWindow: 0)
        #expect(first.sha256 == sha(content))
        let cacheFile = "\(dir)/\(HashCacheEntry.fileName)"
        let saved = try #require(HashCacheEntry(line: try String(contentsOfFile: cacheFile, encoding: .utf8)))
        #expect(saved.path == binary && saved.sha256 == sha(content) && saved.identity.size == Int64(content.count))
        let mode = try FileManager.default.attributesOfItem(atPath: cacheFile)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        // The next run reads it: a remembered value (here a made-up one) is what it returns.
        var forged = saved
        forged.sha256 = String(repeating: "0", count: 64)
        try forged.line.write(toFile: cacheFile, atomically: true, encoding: .utf8)
        #expect(try AgentBinary.locate(binary, environment: [:], hashCache: dir, racyWindow: 0).sha256 == forged.sha256)

        // Any change to the file (here one byte more) is hashed again and remembered anew.
        let handle = try #require(FileHandle(forWritingAtPath: binary))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([7]))
        try handle.close()
        let changed = try AgentBinary.locate(binary, environment: [:], hashCache: dir, racyWindow: 0)
        #expect(changed.sha256 == sha(content + [7]) && changed.size == Int64(content.count + 1))
        #expect(HashCacheEntry(line: try String(contentsOfFile: cacheFile, encoding: .utf8))?.sha256 == sha(content + [7]))

        // Another binary at another path does not take this one's entry.
        let other = "\(dir)/other-agent"
        FileManager.default.createFile(atPath: other, contents: Data(content))
        #expect(try AgentBinary.locate(other, environment: [:], hashCache: dir, racyWindow: 0).sha256 == sha(content))

        // A cache folder that cannot be written changes nothing but the speed.
        #expect(try AgentBinary.locate(binary, environment: [:], hashCache: "\(dir)/missing", racyWindow: 0).sha256 == sha(content + [7]))
    }

    @Test func aMissingBinaryIsAUsageErrorWithAHint() {
        do {
            _ = try AgentBinary.locate("/nonexistent/stowage-agent", environment: [:], hashCache: "/tmp")
            Issue.record("expected an error")
        } catch {
            #expect(error.status == .usage)
            #expect(error.message.contains("/nonexistent/stowage-agent"))
            #expect(error.hint?.contains("STOWAGE_AGENT_BINARY") == true)
        }
    }

    /// A missing binary, and one that cannot be read (a folder: tests run as root, who reads
    /// any file), are one-line usage errors naming the path, with a hint.
    @Test func aMissingOrUnreadableBinaryIsAUsageErrorWithAHint() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-hash-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (path, words) in [
            ("\(dir)/absent", "no stowage-agent binary at \(dir)/absent"), (dir, "cannot read the stowage-agent binary at \(dir): Is a directory"),
        ] {
            #expect {
                _ = try AgentBinary.locate(path, environment: [:])
            } throws: { error in
                guard let e = error as? StowageError else { return false }
                return e.status == .usage && e.message == words && e.hint?.isEmpty == false && !e.message.contains("\n")
            }
        }
    }
}
