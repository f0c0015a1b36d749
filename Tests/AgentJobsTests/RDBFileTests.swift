// The agent's reading of an RDB file key by key through a window that is moved along and
// grown: the same keys whatever the window, and a file cut short is an error, not fewer keys.
import Engines
import Foundation
import TestSupport
import Testing

@testable import AgentJobs

@Suite struct RDBFileTests {
    let fixture = Repo.root.appendingPathComponent("fixtures/redis/keys.rdb").path

    func keys(_ path: String, window: Int) throws -> [String] {
        var out: [String] = []
        try RDBFile.forEach(path, window: window) { e, buf, version in
            #expect(version == 10)
            var payload: [UInt8] = []
            appendDumpPayload(type: e.type, UnsafeRawBufferPointer(rebasing: buf[e.value]), version: version, to: &payload)
            out.append("\(e.db)/\(String(decoding: e.key, as: UTF8.self))/\(payload.count)")
        }
        return out
    }

    @Test func theKeysAreTheSameWhateverTheWindow() throws {
        let whole = try keys(fixture, window: 4 << 20)
        #expect(whole.count == 22)
        // 16 bytes: the header alone does not fit; the largest key (a 600-field hash) needs
        // the window doubled again and again.
        for window in [16, 100, 4096] { #expect(try keys(fixture, window: window) == whole, "window \(window)") }
    }

    @Test func aFileCutShortIsAnError() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: fixture))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rdbfile-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cut = dir.appendingPathComponent("cut.rdb")
        try bytes.prefix(bytes.count / 2).write(to: cut)
        #expect(throws: RDBError.self) { _ = try keys(cut.path, window: 1024) }
    }
}
