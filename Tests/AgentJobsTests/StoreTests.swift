// The storage node's jobs without a node: objects written atomically under their names
// (tmp/, fsync, rename), present chunks skipped, committed manifests never replaced unless
// a repair replaces them, malformed records and names refused, a cut input leaving nothing
// under a final name.
import AgentProtocol
import Foundation
import Testing

@testable import AgentJobs

/// The job's input as the coordinator frames it: object records in frames, then the end frame
/// unless `cut` (the coordinator went away mid-object).
private func input(_ records: [[UInt8]], cut: Bool = false) throws -> Int32 {
    // Records do not respect frame boundaries: frames of 10,000 bytes here.
    let stream = records.flatMap { $0 }
    var bytes: [UInt8] = []
    for start in stride(from: 0, to: stream.count, by: 10_000) {
        let piece = Array(stream[start..<min(start + 10_000, stream.count)])
        bytes += Frame.header(piece.count) + piece
    }
    if cut { bytes.removeLast(3) } else { bytes += Frame.end }
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw POSIXError(.EMFILE) }
    // Small enough for the pipe's buffer: written whole before the job reads.
    precondition(bytes.count < 60_000)
    _ = bytes.withUnsafeBytes { write(fds[1], $0.baseAddress!, $0.count) }
    close(fds[1])
    return fds[0]
}

private func tempRoot() throws -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

private func put(_ root: String, _ records: [[UInt8]], cut: Bool = false, replace: Bool = false) throws -> AgentEvent {
    let fd = try input(records, cut: cut)
    defer { close(fd) }
    var bytes = InputBytes(fd: fd)
    return try Store(root: root).put(&bytes, replace: replace)
}

@Suite struct StoreTests {
    let chunk = "chunks/ab/ab" + String(repeating: "0", count: 62)
    let manifest = "backups/sqldb/2026-11-21T030000Z-auto"

    @Test func objectsLandWholeUnderTheirNamesAndPresentOnesAreSkipped() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let body = [UInt8](repeating: 7, count: 20_000)
        let first = try put(root, [ObjectRecord.encode(name: chunk, bytes: body), ObjectRecord.encode(name: manifest, bytes: [1, 2, 3])])
        #expect(first.stored == 2 && first.existed == 0 && first.bytes == 20_003)
        #expect(FileManager.default.contents(atPath: "\(root)/\(chunk)") == Data(body))
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(root)/tmp").isEmpty)
        let again = try put(root, [ObjectRecord.encode(name: chunk, bytes: body)])
        #expect(again.stored == 0 && again.existed == 1)
    }

    @Test func aCommittedManifestIsNeverReplacedExceptByRepair() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        _ = try put(root, [ObjectRecord.encode(name: manifest, bytes: [1, 2, 3])])
        #expect(throws: JobFailure.self) { try put(root, [ObjectRecord.encode(name: manifest, bytes: [9, 9, 9])]) }
        #expect(FileManager.default.contents(atPath: "\(root)/\(manifest)") == Data([1, 2, 3]))
        // A damaged chunk of the right size is replaced only when asked.
        _ = try put(root, [ObjectRecord.encode(name: chunk, bytes: [5, 5, 5, 5])])
        _ = try put(root, [ObjectRecord.encode(name: chunk, bytes: [6, 6, 6, 6])])
        #expect(FileManager.default.contents(atPath: "\(root)/\(chunk)") == Data([5, 5, 5, 5]))
        let r = try put(root, [ObjectRecord.encode(name: chunk, bytes: [6, 6, 6, 6]), ObjectRecord.encode(name: manifest, bytes: [4])], replace: true)
        #expect(r.stored == 2)
        #expect(FileManager.default.contents(atPath: "\(root)/\(chunk)") == Data([6, 6, 6, 6]))
        #expect(FileManager.default.contents(atPath: "\(root)/\(manifest)") == Data([4]))
    }

    @Test func aCutInputLeavesNothingUnderAFinalName() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        do {
            _ = try put(root, [ObjectRecord.encode(name: chunk, bytes: [UInt8](repeating: 1, count: 30_000))], cut: true)
            Issue.record("a cut input was stored")
        } catch let f as JobFailure {
            #expect(f.exit == .inputCut, "\(f)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(root)/\(chunk)"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(root)/tmp").isEmpty)
    }

    @Test(arguments: ["../escape", "/absolute", "chunks/../../x", ""])
    func namesOutsideTheRepositoryAreRefused(_ name: String) throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(throws: JobFailure.self) { try put(root, [ObjectRecord.encode(name: name, bytes: [1])]) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).allSatisfy { $0 == "tmp" })
    }

    @Test func aRecordWithAnOverlongNameIsMalformed() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let long = String(repeating: "a", count: ObjectRecord.maxName + 1)
        do {
            _ = try put(root, [ObjectRecord.encode(name: long, bytes: [1])])
            Issue.record("an overlong name was accepted")
        } catch let f as JobFailure {
            #expect(f.code == "bad-record", "\(f)")
        }
    }

    @Test func deleteReportsWhatWasThereAndRefusesEscapes() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        _ = try put(root, [ObjectRecord.encode(name: chunk, bytes: [1, 2])])
        let d = try Store(root: root).delete([chunk, "chunks/cd/none"])
        #expect(d.stored == 1 && d.missing == ["chunks/cd/none"])
        #expect(!FileManager.default.fileExists(atPath: "\(root)/\(chunk)"))
        #expect(throws: JobFailure.self) { try Store(root: root).delete(["../etc/passwd"]) }
    }

    @Test func aStorageJobNeedsAnAbsoluteRootWithoutDotDot() {
        #expect(throws: JobFailure.self) { try Store(root: "relative/root") }
        #expect(throws: JobFailure.self) { try Store(root: "/srv/../etc") }
    }
}
