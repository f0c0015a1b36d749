// /metrics from a snapshot, without a server: the Prometheus text has every series the
// alert rules in contrib/prometheus use, with their labels, and nothing for what is unknown.
import Foundation
import Service
import Testing

@testable import Scheduling

@Suite struct MetricsExporterTests {
    let snapshot = MetricsSnapshot(
        layers: [
            .init(
                layer: "shop/sqldb", storage: "lab", lastSuccess: Date(timeIntervalSince1970: 1_764_990_000), lastDuration: 1.5,
                lastRawBytes: 884_736, lastStoredBytes: 53_657, lastNewBytes: 1_024, runs: ["ok": 7, "failed": 1], restores: ["ok": 1],
                failuresSinceSuccess: 0, stale: false, age: 600, maxAge: 7200),
            .init(
                layer: "shop/cache", storage: "lab", lastSuccess: nil, lastDuration: nil, lastRawBytes: nil, lastStoredBytes: nil, lastNewBytes: nil,
                runs: ["failed": 3], restores: [:], failuresSinceSuccess: 3, stale: true, age: nil, maxAge: 3600),
        ],
        nodes: [
            .init(storage: "lab", node: "st1", up: true, freeBytes: 10 << 30, totalBytes: 20 << 30, checked: Date()),
            .init(storage: "lab", node: "st2", up: false, freeBytes: nil, totalBytes: nil, checked: Date()),
        ],
        topology: [.init(layer: "shop/sqldb", findings: ["warning": 1], probed: Date(timeIntervalSince1970: 1_764_990_050))],
        queued: 2, running: 1, started: Date(timeIntervalSince1970: 1_764_900_000), heartbeat: Date(timeIntervalSince1970: 1_764_990_100),
        coordination: .init(held: 7, live: 3, catalogUp: false))

    @Test func everySeriesTheRulesUseIsThere() throws {
        let text = MetricsExporter.render(snapshot)
        for line in [
            #"stowage_backup_last_success_timestamp_seconds{layer="shop/sqldb",storage="lab"} 1764990000.0"#,
            #"stowage_backup_runs{layer="shop/sqldb",storage="lab",outcome="ok"} 7.0"#,
            #"stowage_backup_runs{layer="shop/cache",storage="lab",outcome="failed"} 3.0"#,
            #"stowage_restores{layer="shop/sqldb",storage="lab",outcome="ok"} 1.0"#,
            #"stowage_backup_failures_since_success{layer="shop/cache",storage="lab"} 3.0"#,
            #"stowage_backup_stale{layer="shop/cache",storage="lab"} 1.0"#,
            #"stowage_backup_stale{layer="shop/sqldb",storage="lab"} 0.0"#,
            #"stowage_storage_node_up{storage="lab",node="st2"} 0.0"#,
            #"stowage_storage_node_free_bytes{storage="lab",node="st1"} 10737418240.0"#,
            #"stowage_backup_last_new_bytes{layer="shop/sqldb",storage="lab"} 1024.0"#,
            #"stowage_topology_findings{layer="shop/sqldb",severity="warning"} 1.0"#,
            #"stowage_topology_findings{layer="shop/sqldb",severity="error"} 0.0"#,
            #"stowage_topology_probe_timestamp_seconds{layer="shop/sqldb"} 1764990050.0"#,
            "stowage_scheduler_queued_runs 2.0", "stowage_scheduler_running_runs 1.0",
            "stowage_scheduler_heartbeat_timestamp_seconds 1764990100.0",
        ] {
            #expect(text.contains(line + "\n"), "\(line)\n---\n\(text)")
        }
        // What is not known is not invented: no last success for a layer that never had one.
        #expect(!text.contains(#"stowage_backup_last_success_timestamp_seconds{layer="shop/cache""#))
        #expect(text.contains("# TYPE stowage_backup_stale gauge"))
        #expect(text.contains("# HELP stowage_backup_stale "))
        // Every series the example alert rules name is exposed.
        let rules = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("contrib/prometheus/stowage.rules.yml"), encoding: .utf8)
        let names = Set(rules.matches(of: /stowage_[a-z_]+/).map { String($0.output) })
        for name in names { #expect(text.contains("# TYPE \(name) "), "\(name) is in the rules but not exposed") }
    }
}

extension MetricsExporterTests {
    @Test func aCoordinatorOfASharedFleetSaysWhatItHolds() {
        var alone = snapshot
        alone.coordination = nil
        #expect(!MetricsExporter.render(alone).contains("stowage_coordinator"))
        let text = MetricsExporter.render(snapshot)
        for line in ["stowage_coordinator_layers_held 7.0", "stowage_coordinators_live 3.0", "stowage_shared_catalog_up 0.0"] {
            #expect(text.contains(line + "\n"), "\(line)\n---\n\(text)")
        }
    }
}
