import Foundation
import Testing

@testable import Repository

@Suite struct BackupNameTests {
    @Test func formatsAndParsesUTCStamps() throws {
        let d = Date(timeIntervalSince1970: 1_795_230_000)  // date -u -d @1795230000: 2026-11-21 03:00:00
        let n = BackupName(date: d, kind: .auto)
        #expect(n.description == "2026-11-21T030000Z-auto")
        #expect(BackupName(n.description) == n)
        #expect(BackupName(date: Date(timeIntervalSince1970: 951_782_400), kind: .manual).description == "2000-02-29T000000Z-manual")
        #expect(BackupName(date: Date(timeIntervalSince1970: 0), kind: .auto).description == "1970-01-01T000000Z-auto")
    }

    @Test func readsTheStartTimeBack() throws {
        // Leap day, year ends, the epoch, and a time after 2038.
        for t in [1_795_230_000, 951_782_400, 0, 1_703_980_799, 1_704_067_200, 2_240_611_199] {
            let d = Date(timeIntervalSince1970: Double(t))
            #expect(BackupName(date: d, kind: .manual).date == d)
        }
        #expect(BackupName("2024-02-29T235959Z-auto")?.date == Date(timeIntervalSince1970: 1_709_251_199))
    }

    @Test(arguments: [
        "", "2026-11-21T030000Z", "2026-11-21T030000Z-weekly", "2026-11-21 030000Z-auto", "20261121T030000Z-auto", "2026-11-21T03000Z-auto",
        "../2026-11-21T030000Z-auto",
    ])
    func rejectsForeignNames(_ s: String) {
        #expect(BackupName(s) == nil)
    }

    @Test func sortsInTimeOrder() throws {
        let names = ["2026-11-21T030000Z-auto", "2026-11-20T230000Z-manual", "2026-11-21T030000Z-manual", "2025-12-31T235959Z-auto"]
            .compactMap(BackupName.init)
        #expect(
            names.sorted().map(\.description) == [
                "2025-12-31T235959Z-auto", "2026-11-20T230000Z-manual", "2026-11-21T030000Z-auto", "2026-11-21T030000Z-manual",
            ])
    }
}

@Suite struct RetentionTests {
    func ref(_ layer: String, _ day: Int, _ chunks: [String]) -> BackupRef {
        BackupRef(layer: layer, name: BackupName("2026-11-\(day < 10 ? "0" : "")\(day)T030000Z-auto")!, chunks: Set(chunks))
    }

    @Test func keepsTheNewestNOfTheLayerOnly() {
        let all = [ref("sqldb", 1, ["a"]), ref("sqldb", 3, ["b"]), ref("sqldb", 2, ["a", "b"]), ref("cache", 1, ["c"]), ref("sqldb", 4, ["d"])]
        let expired = Retention.expired(all, layer: "sqldb", keep: 2)
        #expect(expired.map(\.name.stamp) == ["2026-11-01T030000Z", "2026-11-02T030000Z"])
        #expect(Retention.expired(all, layer: "cache", keep: 2).isEmpty)
        // Never the last one.
        #expect(Retention.expired(all, layer: "sqldb", keep: 0).count == 3)
    }

    @Test func pruneDeletesOnlyChunksNoRemainingBackupNeeds() {
        let kept = [ref("sqldb", 3, ["b", "e"]), ref("cache", 1, ["c"])]
        let gone = Retention.unreferenced(allChunks: ["a", "b", "c", "d", "e"], remaining: kept)
        #expect(gone == ["a", "d"])
    }
}

@Suite struct QuorumTests {
    @Test func allNodesByDefault() {
        let ok = QuorumOutcome.decide(nodes: ["st1", "st2"], failures: [:], quorum: nil)
        #expect(ok.committed && ok.missing.isEmpty)
        let one = QuorumOutcome.decide(nodes: ["st1", "st2"], failures: ["st2": "unreachable"], quorum: nil)
        #expect(!one.committed)
        #expect(one.complete == ["st1"])
    }

    @Test func quorumOfOneCommitsDegraded() {
        let d = QuorumOutcome.decide(nodes: ["st1", "st2"], failures: ["st2": "ENOSPC"], quorum: 1)
        #expect(d.committed)
        #expect(d.missing == ["st2": "ENOSPC"])
        #expect(!QuorumOutcome.decide(nodes: ["st1", "st2"], failures: ["st1": "x", "st2": "y"], quorum: 1).committed)
    }
}
