// How a restore cuts a stream into fetches (pure: `BackupReader.batches` over a manifest
// stream, no storage). The first fetch is small so the target starts applying at once; the
// next ones double up to the budget; the chunks stay in stream order, each once.
import Repository
import Storage
import Testing

@Suite struct RestoreBatchTests {
    private func stream(_ storedMiB: [Int]) -> ManifestStream {
        ManifestStream(
            name: "s", rawBytes: 0, storedBytes: 0, sha256: nil,
            chunks: storedMiB.enumerated().map { ManifestStream.Chunk(id: "c\($0.offset)", size: $0.element << 20, stored: $0.element << 20) })
    }

    private func sizes(_ batches: [[ManifestStream.Chunk]]) -> [Int] { batches.map { $0.reduce(0) { $0 + $1.stored } >> 20 } }

    @Test func batchesRampFromTheFirstFetchAndDoubleUpToTheLimit() {
        let s = stream(Array(repeating: 1, count: 100))
        let batches = BackupReader.batches(s, limit: 32 << 20, rampFrom: 2 << 20)
        #expect(sizes(batches) == [2, 4, 8, 16, 32, 32, 6])
        #expect(batches.flatMap { $0 }.map(\.id) == s.chunks.map(\.id))
    }

    @Test func withoutARampEveryBatchFillsTheLimit() {
        #expect(sizes(BackupReader.batches(stream(Array(repeating: 1, count: 70)), limit: 32 << 20)) == [32, 32, 6])
    }

    @Test func aChunkLargerThanTheFirstFetchIsAFetchOfItsOwnAndTheRampGoesOn() {
        // An 8 MiB chunk first: alone in the first batch (a batch holds at least one chunk).
        let batches = BackupReader.batches(stream([8, 1, 1, 1, 1, 1, 1, 1]), limit: 32 << 20, rampFrom: 2 << 20)
        #expect(sizes(batches) == [8, 4, 3])
    }

    @Test func aRampAboveTheLimitIsTheLimit() {
        // A cluster restore shares the budget between its streams: the limit may be smaller.
        #expect(sizes(BackupReader.batches(stream(Array(repeating: 1, count: 10)), limit: 3 << 20, rampFrom: 8 << 20)) == [3, 3, 3, 1])
    }
}
