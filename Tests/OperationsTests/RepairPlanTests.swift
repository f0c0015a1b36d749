import Fleet
import Support
// Repair's decision, from a scan's per-node states: which good copy goes where, and what
// has no good copy at all (pure; the lab tests run the same through real nodes).
import Testing

@testable import Operations
@testable import Storage

@Suite struct RepairPlanTests {
    typealias State = RepairPlan.NodeState
    let damaged = CopyProblem(kind: .damaged, detail: "authentication failed")
    let missing = CopyProblem(kind: .missing)

    @Test func eachBadCopyComesFromANodeWhoseCopyAuthenticated() {
        let st1 = State(node: "st1", problems: ["chunks/aa/a": damaged, "backups/db/x": missing], verified: ["chunks/bb/b", "chunks/cc/c"], unread: [])
        let st2 = State(node: "st2", problems: ["chunks/bb/b": CopyProblem(kind: .wrongSize)], verified: ["chunks/aa/a", "backups/db/x"], unread: [])
        let plan = RepairPlan.decide([st1, st2], writable: ["st1", "st2"])
        #expect(plan.unrepairable.isEmpty)
        #expect(
            Set(plan.copies.map { "\($0.object) \($0.from)->\($0.to)" })
                == ["chunks/aa/a st2->st1", "backups/db/x st2->st1", "chunks/bb/b st1->st2"])
    }

    @Test func noGoodCopyAnywhereIsNamedAndNothingIsCopied() {
        let st1 = State(node: "st1", problems: ["chunks/aa/a": damaged], verified: [], unread: [])
        let st2 = State(node: "st2", problems: ["chunks/aa/a": damaged], verified: [], unread: [])
        let plan = RepairPlan.decide([st1, st2], writable: ["st1", "st2"])
        #expect(plan.copies.isEmpty)
        #expect(plan.unrepairable["chunks/aa/a"] == "no good copy on any reachable node (bad on st1, st2)")
        let gone = RepairPlan.decide(
            [
                State(node: "st1", problems: ["chunks/dd/d": missing], verified: [], unread: []),
                State(node: "st2", problems: ["chunks/dd/d": missing], verified: [], unread: []),
            ], writable: ["st1", "st2"])
        #expect(gone.unrepairable["chunks/dd/d"] == "no reachable node holds a copy")
    }

    @Test func aVerifiedCopyIsPreferredToAnUnreadOneAndUnwritableNodesAreLeft() {
        let st1 = State(node: "st1", problems: [:], verified: [], unread: ["chunks/aa/a"])
        let st2 = State(node: "st2", problems: [:], verified: ["chunks/aa/a"], unread: [])
        let st3 = State(node: "st3", problems: ["chunks/aa/a": missing], verified: [], unread: [])
        let plan = RepairPlan.decide([st1, st2, st3], writable: ["st1", "st2", "st3"])
        #expect(plan.copies.map(\.from) == ["st2"])
        #expect(RepairPlan.decide([st1, st2, st3], writable: ["st1", "st2"]).copies.isEmpty)
    }
}
