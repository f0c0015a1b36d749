// The database node's half of a restore without a node: sealed chunks arrive as framed
// object records, each is authenticated and checked against its keyed ID, and the plaintext
// goes to a real tool through the restore sink (here a shell that stores its stdin, since
// what the sink must get right is the stream, its filter and the tool's exit). A damaged or
// substituted chunk stops the tool; a cut input is reported as such.
import AgentProtocol
@preconcurrency import Crypto
import Engines
import Foundation
import Repository
import TestSupport
import Testing

@testable import AgentJobs

/// The job's input as the coordinator frames it (frames of 64 KiB), in a file.
private func framedInput(_ records: [[UInt8]], cut: Bool = false) throws -> Int32 {
    let stream = records.flatMap { $0 }
    var bytes: [UInt8] = []
    for start in stride(from: 0, to: stream.count, by: 64 << 10) {
        let piece = Array(stream[start..<min(start + (64 << 10), stream.count)])
        bytes += Frame.header(piece.count) + piece
    }
    if cut { bytes.removeLast(5) } else { bytes += Frame.end }
    let p = FileManager.default.temporaryDirectory.appendingPathComponent("restore-in-\(UUID().uuidString)").path
    FileManager.default.createFile(atPath: p, contents: Data(bytes))
    defer { unlink(p) }
    return open(p, O_RDONLY)
}

@Suite struct RestoreSinkTests {
    let keys = RepositoryKeys.generate()

    /// A stream's chunks as the storage holds them: sealed, named by keyed ID.
    func sealed(_ pieces: [[UInt8]]) -> [[UInt8]] {
        pieces.map { p in
            let id = p.withUnsafeBytes { keys.chunkID($0) }
            return ObjectRecord.encode(name: RepositoryLayout.chunk(id), bytes: Envelope.seal(p, key: keys.data, aad: id))
        }
    }

    func apply(
        _ records: [[UInt8]], cut: Bool = false, filter: (any ScriptFilter)? = nil, expecting sha256: String? = nil,
        tool: (String) -> [String] = { ["sh", "-c", "cat > '\($0)'"] }
    ) throws -> (AgentEvent, [UInt8]) {
        try useBuiltAgentAsLauncher()
        let dir = try PrivateDir()
        let out = "\(dir.path)/applied"
        let sink = try ToolSink(tool(out), dir: dir, filter: filter)
        let fd = try framedInput(records, cut: cut)
        defer { close(fd) }
        var input = InputBytes(fd: fd)
        let result = try Session().applyStream(&input, keys: keys, expecting: sha256, to: sink, events: { _ in })
        return (result, Array((try? Data(contentsOf: URL(fileURLWithPath: out))) ?? Data()))
    }

    @Test func theToolGetsThePlaintextInOrder() throws {
        let pieces = (0..<5).map { i in Array("-- part \(i)\n".utf8) + [UInt8](repeating: UInt8(65 + i), count: 300_000) }
        let (result, applied) = try apply(sealed(pieces))
        #expect(applied == pieces.flatMap { $0 })
        #expect(result.bytes == Int64(applied.count))
        #expect(result.stored == 5)
        #expect(result.chunkSequence == ChunkSequence.digest(pieces.map { p in p.withUnsafeBytes { keys.chunkID($0) } }))
    }

    @Test func theFilterRewritesTheScriptOnItsWay() throws {
        // The MariaDB filter holds mysql.procs_priv rows back until after the whole script.
        let script = """
            USE `mysql`;
            INSERT INTO `procs_priv` VALUES ('localhost','shop','app','total','PROCEDURE','root@localhost','Execute','2026-01-01 00:00:00');
            USE `shop`;
            CREATE TABLE t (a int);

            """
        let (_, applied) = try apply(sealed([Array(script.utf8)]), filter: MySQLRestoreFilter())
        let text = String(decoding: applied, as: UTF8.self)
        let create = try #require(text.range(of: "CREATE TABLE t"))
        let grant = try #require(text.range(of: "procs_priv", options: .backwards))
        #expect(create.lowerBound < grant.lowerBound, "\(text)")
        #expect(text.contains("FLUSH PRIVILEGES"))
    }

    @Test func aDamagedChunkStopsTheRestore() throws {
        var records = sealed([Array("first\n".utf8), Array("second\n".utf8)])
        records[1][records[1].count - 3] ^= 0x40
        #expect {
            _ = try apply(records)
        } throws: { error in
            guard let f = error as? JobFailure else { return false }
            return f.code == "damaged" && f.message.contains("2 of the stream") && f.message.contains("does not authenticate")
        }
    }

    @Test func aChunkUnderAnotherChunksNameIsRefused() throws {
        // Sealed under its own ID's name as AAD, but presented as another chunk: the keyed
        // ID of its plaintext does not match the name it came under.
        let a = Array("a\n".utf8), b = Array("b\n".utf8)
        let idA = a.withUnsafeBytes { keys.chunkID($0) }
        let swapped = ObjectRecord.encode(name: RepositoryLayout.chunk(idA), bytes: Envelope.seal(b, key: keys.data, aad: idA))
        #expect {
            _ = try apply([swapped])
        } throws: { error in
            (error as? JobFailure)?.message.contains("does not match its ID") == true
        }
    }

    /// The coordinator's end frame after fewer chunks than the backup has (a reader that
    /// stopped), or the stream's chunks out of order: the chunk sequence differs from the
    /// manifest's, and the job fails before the sink's `finish` (the Redis sink would send
    /// its end mark there). Each chunk on its own authenticates.
    @Test func aStreamEndingEarlyOrOutOfOrderIsStoppedBeforeTheSinkFinishes() throws {
        let pieces = (0..<3).map { i in [UInt8](repeating: UInt8(97 + i), count: 200_000) }
        let sequence = ChunkSequence.digest(pieces.map { p in p.withUnsafeBytes { keys.chunkID($0) } })
        let (ok, applied) = try apply(sealed(pieces), expecting: sequence)
        #expect(ok.chunkSequence == sequence)
        #expect(applied == pieces.flatMap { $0 })
        for wrong in [Array(pieces.prefix(2)), [pieces[1], pieces[0], pieces[2]]] {
            try useBuiltAgentAsLauncher()
            let sink = RecordingSink()
            let fd = try framedInput(sealed(wrong))
            defer { close(fd) }
            var input = InputBytes(fd: fd)
            #expect {
                _ = try Session().applyStream(&input, keys: keys, expecting: sequence, to: sink, events: { _ in })
            } throws: { error in
                guard let f = error as? JobFailure else { return false }
                return f.code == "damaged" && f.message.contains("\(wrong.count) chunks") && f.message.contains("the manifest's \(sequence)")
            }
            #expect(sink.written == wrong.flatMap { $0 }, "each chunk authenticates on its own and was applied")
            #expect(!sink.finished && sink.cancelled)
        }
    }

    @Test func aCutInputIsReportedAsCut() throws {
        #expect {
            _ = try apply(sealed([[UInt8](repeating: 1, count: 100_000)]), cut: true)
        } throws: { error in
            (error as? JobFailure)?.exit == .inputCut
        }
    }

    /// A tool that stops reading at once (psql at its first error): the feeding thread's
    /// write fails, and the restore stops with the tool's words, not a broken pipe.
    @Test func aToolThatStopsReadingStopsTheRestore() throws {
        let pieces = (0..<8).map { i in [UInt8](repeating: UInt8(65 + i), count: 1 << 20) }
        #expect {
            _ = try apply(sealed(pieces), tool: { _ in ["sh", "-c", "echo 'ERROR:  syntax error at or near \"x\"' >&2; exit 3"] })
        } throws: { error in
            guard let f = error as? JobFailure else { return false }
            return f.message.hasPrefix("sh ended with exit 3: ERROR:  syntax error")
        }
    }

    @Test func aFailingToolFailsTheRestoreWithItsOwnWords() throws {
        #expect {
            _ = try apply(sealed([Array("SELECT 1;\n".utf8)]), tool: { _ in ["sh", "-c", "cat >/dev/null; echo 'ERROR 1045: access denied' >&2; exit 1"] })
        } throws: { error in
            guard let f = error as? JobFailure else { return false }
            return f.code == "auth-failed" && f.message.contains("access denied")
        }
    }
}

/// A sink that keeps what it was given and whether it was finished or cancelled.
private final class RecordingSink: RestoreSink {
    var written: [UInt8] = []
    var finished = false, cancelled = false
    func write(_ plain: UnsafeRawBufferPointer) throws { written += plain }
    func finish() throws -> [String: Int64]? {
        finished = true
        return nil
    }
    func cancel() { cancelled = true }
}
