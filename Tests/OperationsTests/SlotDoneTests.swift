// Whether a scheduled slot is already done on the storage (pure; the lab tests run two
// coordinators and two racing runs of one slot against real nodes).
import Foundation
import Repository
import Testing

@testable import Operations

@Suite struct SlotDoneTests {
    let slot = BackupName("2026-12-07T030000Z-auto")!.date
    func n(_ s: String) -> BackupName { BackupName(s)! }

    @Test func aBackupCommittedAtOrAfterTheSlotDoesIt() {
        let at = n("2026-12-07T030000Z-auto"), after = n("2026-12-07T030012Z-auto"), before = n("2026-12-07T025959Z-auto")
        // Before the slot: not this slot's.
        #expect(BackupWriter.slotDoneBy(manifests: ["st1": [before], "st2": [before]], slot: slot, quorum: nil, nodes: 2) == nil)
        // At the slot's second, or after it: done; the newest is named.
        #expect(BackupWriter.slotDoneBy(manifests: ["st1": [before, at], "st2": [at]], slot: slot, quorum: nil, nodes: 2) == at)
        #expect(
            BackupWriter.slotDoneBy(manifests: ["st1": [at, after], "st2": [at, after]], slot: slot, quorum: nil, nodes: 2) == after)
        // A manual backup taken since the slot counts too.
        let manual = n("2026-12-07T031500Z-manual")
        #expect(BackupWriter.slotDoneBy(manifests: ["st1": [manual], "st2": [manual]], slot: slot, quorum: nil, nodes: 2) == manual)
    }

    @Test func onlyACommittedBackupCounts() {
        let b = n("2026-12-07T030005Z-auto")
        // A manifest on one node of three with quorum 2: a write that did not commit.
        #expect(BackupWriter.slotDoneBy(manifests: ["st1": [b], "st2": [], "sw1": []], slot: slot, quorum: 2, nodes: 3) == nil)
        #expect(BackupWriter.slotDoneBy(manifests: ["st1": [b], "st2": [], "sw1": [b]], slot: slot, quorum: 2, nodes: 3) == b)
        // Without a quorum every node must hold it...
        #expect(BackupWriter.slotDoneBy(manifests: ["st1": [b], "st2": []], slot: slot, quorum: nil, nodes: 2) == nil)
        // ...of those that answered: with st2 unreachable, st1's copy is all there is to see.
        #expect(BackupWriter.slotDoneBy(manifests: ["st1": [b]], slot: slot, quorum: nil, nodes: 2) == b)
        // Nothing answered: nothing is known to be done.
        #expect(BackupWriter.slotDoneBy(manifests: [:], slot: slot, quorum: nil, nodes: 2) == nil)
    }
}
