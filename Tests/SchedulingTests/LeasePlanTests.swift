// Who owns which layer among the live coordinators (pure): everyone computes the same
// answer, the shares are even, and a coordinator leaving or joining moves only what it must.
import Foundation
import Testing

@testable import Scheduling

@Suite struct LeasePlanTests {
    let layers = (0..<10_000).map { "env\($0 % 40)/layer\($0)" }
    let three = ["a:1:x", "b:2:y", "c:3:z"]

    func owners(_ coordinators: [String]) -> [String: String] {
        Dictionary(uniqueKeysWithValues: layers.map { ($0, LeasePlan.owner(of: $0, among: coordinators)!) })
    }

    @Test func everyLayerHasOneOwnerAndTheSharesAreEven() {
        let o = owners(three)
        let counts = Dictionary(grouping: o.values, by: { $0 }).mapValues(\.count)
        for c in three { #expect(abs(counts[c, default: 0] - 3333) < 250, "\(counts)") }
        // The order coordinators are listed in does not matter; each computes its own share alike.
        #expect(owners(three.reversed()) == o)
        let shares = three.map { LeasePlan.share(of: $0, layers: layers, among: three) }
        #expect(shares.reduce(0) { $0 + $1.count } == layers.count)
        #expect(Set(shares.flatMap { $0 }).count == layers.count)
        #expect(LeasePlan.owner(of: "x/y", among: []) == nil)
    }

    @Test func onlyALeaversLayersMoveAndAJoinerTakesAFairPart() {
        let before = owners(three)
        let after = owners(Array(three.dropLast()))
        for l in layers where before[l] != "c:3:z" { #expect(after[l] == before[l]) }
        let joined = owners(three + ["d:4:w"])
        let moved = layers.filter { joined[$0] != before[$0] }
        #expect(moved.allSatisfy { joined[$0] == "d:4:w" })
        #expect(abs(moved.count - 2500) < 250, "\(moved.count)")
        // A coordinator not yet among the live ones counts itself in.
        #expect(LeasePlan.share(of: "d:4:w", layers: layers, among: three) == Set(moved))
    }
}
