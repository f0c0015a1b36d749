// A layer that is non-clustered on purpose: its operator acknowledges the warning in the
// inventory, and the warning becomes a note (exit codes then mean something in automation),
// while errors are never silenced.
import Fleet
import Foundation
import Support
import TestSupport
import Testing
import Topology

@testable import Operations

@Suite struct AcknowledgeTests {
    let inventory = """
        environments:
          staging:
            layers:
              sqldb:
                engine: redis
                acknowledge: [non-clustered, split-brain]
                nodes: [ { name: pg3, db: 127.0.1.20 }, { name: pg4, db: 127.0.1.21 } ]
        """

    @Test func anAcknowledgedWarningIsANoteAndTheLayerIsHealthy() throws {
        let layer = try Inventory.parse(inventory, file: "i.yaml").layers[0]
        #expect(layer.acknowledged == [.nonClustered, .splitBrain])
        let analysed = TopologyAnalysis.analyze(try Fixtures.observation("healthy/staging-sqldb.json"), settings: AnalysisSettings(maxLagSeconds: 60))
        #expect(analysed.status == .warning)
        let t = TopologyCheck.acknowledging(analysed, layer.acknowledged)
        #expect(t.status == .ok)
        let f = try #require(t.findings.first { $0.code == .nonClustered })
        #expect(f.severity == .ok && f.message.hasPrefix("acknowledged: 2 independent servers"))
        #expect(TopologyCheck.exitStatus([t]) == .ok)
    }

    @Test func anErrorStaysAnErrorWhateverIsAcknowledged() throws {
        let t = LayerTopology.testValue(findings: [Finding(.error, .splitBrain, "split brain: 2 nodes take writes")])
        let after = TopologyCheck.acknowledging(t, [.splitBrain])
        #expect(after.status == .error && after.findings[0].message == "split brain: 2 nodes take writes")
        #expect(TopologyCheck.exitStatus([after]) == .unsafeTopology)
    }

    @Test func anUnknownCodeIsNamedWithItsLine() {
        let bad = inventory.replacingOccurrences(of: "[non-clustered, split-brain]", with: "[non-clusterd]")
        #expect {
            _ = try Inventory.parse(bad, file: "i.yaml")
        } throws: { error in
            guard let e = error as? StowageError else { return false }
            return e.message.hasPrefix("i.yaml:6:") && e.message.contains("layer staging/sqldb: unknown finding 'non-clusterd'")
                && e.hint?.contains("non-clustered") == true
        }
    }
}

extension LayerTopology {
    /// A topology holding only `findings` (for the acknowledgement rule, which looks at nothing else).
    static func testValue(findings: [Finding]) -> LayerTopology {
        var t = TopologyAnalysis.analyze(try! Fixtures.observation("healthy/staging-sqldb.json"), settings: AnalysisSettings(maxLagSeconds: 60))
        t.findings = findings
        return t
    }
}
