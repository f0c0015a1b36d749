// The digest a restore checks its chunks against (Repository/ChunkSequence.swift), and
// manifests with and without the whole-stream SHA-256 that older backups recorded.
import Foundation
import Repository
import Testing

@Suite struct ChunkSequenceTests {
    let ids = (0..<4).map { String(repeating: String($0), count: 64) }

    @Test func theDigestPinsTheIDsAndTheirOrder() {
        let d = ChunkSequence.digest(ids)
        var s = ChunkSequence()
        for id in ids { s.append(id) }
        #expect(s.hex == d && s.count == 4)
        #expect(d.count == 64)
        #expect(ChunkSequence.digest(ids) == d)
        #expect(ChunkSequence.digest(ids.dropLast()) != d)
        #expect(ChunkSequence.digest([ids[1], ids[0], ids[2], ids[3]]) != d)
        #expect(ChunkSequence.digest(ids + [ids[3]]) != d)
        // IDs run together differently are another sequence (each ends with a newline).
        #expect(ChunkSequence.digest([ids[0] + ids[1]]) != ChunkSequence.digest([ids[0], ids[1]]))
        #expect(ChunkSequence.digest([]) != ChunkSequence.digest([""]))
    }

    @Test func olderManifestsWithTheStreamsSHA256StillDecodeAndNewOnesLeaveItOut() throws {
        let old = #"{"name":"dump","rawBytes":3,"storedBytes":40,"sha256":"ab","chunks":[{"id":"c1","size":3,"stored":40}]}"#
        let s = try JSONDecoder().decode(ManifestStream.self, from: Data(old.utf8))
        #expect(s.sha256 == "ab" && s.chunks.map(\.id) == ["c1"])
        let new = ManifestStream(name: "dump", rawBytes: 3, storedBytes: 40, chunks: [.init(id: "c1", size: 3, stored: 40)])
        let json = String(decoding: try JSONEncoder().encode(new), as: UTF8.self)
        #expect(!json.contains("sha256"), "\(json)")
        #expect(try JSONDecoder().decode(ManifestStream.self, from: Data(json.utf8)) == new)
    }
}
