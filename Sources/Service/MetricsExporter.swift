// /metrics: the scheduler's snapshot in the Prometheus text format, through swift-prometheus.
// A registry is filled per scrape from the snapshot, so a layer that left the inventory
// leaves the metrics too, and nothing is counted twice.
import Foundation
import Prometheus
import Scheduling

package enum MetricsExporter {
    /// The text Prometheus scrapes (pure: the snapshot in, the exposition out).
    package static func render(_ s: MetricsSnapshot, now: Date = Date()) -> String {
        let r = PrometheusCollectorRegistry()
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
            r.makeGauge(name: name, labels: labels, help: help).set(value)
        }
        for l in s.layers {
            let labels = [("layer", l.layer), ("storage", l.storage)]
            if let t = l.lastSuccess {
                gauge(
                    "stowage_backup_last_success_timestamp_seconds", "When the layer's newest successful backup ended (Unix time).", labels,
                    t.timeIntervalSince1970)
            }
            if let d = l.lastDuration { gauge("stowage_backup_last_duration_seconds", "How long the newest successful backup run took.", labels, d) }
            if let b = l.lastRawBytes { gauge("stowage_backup_last_raw_bytes", "The newest successful backup's size before compression.", labels, Double(b)) }
            if let b = l.lastStoredBytes { gauge("stowage_backup_last_stored_bytes", "The newest successful backup's size as stored.", labels, Double(b)) }
            if let b = l.lastNewBytes {
                gauge(
                    "stowage_backup_last_new_bytes", "What the newest successful backup added to the storage (the rest was stored already).", labels, Double(b))
            }
            for outcome in ["ok", "warnings", "failed", "cancelled", "interrupted", "skipped"] {
                gauge("stowage_backup_runs", "Backup runs in the run catalog, by outcome.", labels + [("outcome", outcome)], Double(l.runs[outcome] ?? 0))
            }
            for outcome in ["ok", "warnings", "failed", "cancelled"] {
                gauge("stowage_restores", "Restores in the run catalog, by outcome.", labels + [("outcome", outcome)], Double(l.restores[outcome] ?? 0))
            }
            gauge("stowage_backup_failures_since_success", "Failed backup runs since the layer's last successful one.", labels, Double(l.failuresSinceSuccess))
            if let stale = l.stale {
                gauge("stowage_backup_stale", "1 when the newest backup is older than the policy's max_age.", labels, stale ? 1 : 0)
            }
            if let a = l.age { gauge("stowage_backup_age_seconds", "Age of the newest backup.", labels, a) }
            if let m = l.maxAge { gauge("stowage_backup_max_age_seconds", "The age past which the layer counts as stale.", labels, m) }
        }
        for t in s.topology {
            let labels = [("layer", t.layer)]
            for severity in ["error", "warning", "ok"] {
                gauge(
                    "stowage_topology_findings", "Findings of the layer's last topology probe, by severity (ok: notes and acknowledged warnings).",
                    labels + [("severity", severity)], Double(t.findings[severity] ?? 0))
            }
            gauge("stowage_topology_probe_timestamp_seconds", "When the layer's topology was last probed (Unix time).", labels, t.probed.timeIntervalSince1970)
        }
        for n in s.nodes {
            let labels = [("storage", n.storage), ("node", n.node)]
            gauge("stowage_storage_node_up", "1 when the storage node answered its last check.", labels, n.up ? 1 : 0)
            if let f = n.freeBytes { gauge("stowage_storage_node_free_bytes", "Free bytes where the node keeps its repositories.", labels, Double(f)) }
            if let t = n.totalBytes {
                gauge("stowage_storage_node_size_bytes", "Size of the file system the node keeps its repositories on.", labels, Double(t))
            }
        }
        gauge("stowage_scheduler_queued_runs", "Runs due and waiting for a slot.", [], Double(s.queued))
        gauge("stowage_scheduler_running_runs", "Runs going on.", [], Double(s.running))
        gauge("stowage_scheduler_start_timestamp_seconds", "When this scheduler started (Unix time).", [], s.started.timeIntervalSince1970)
        gauge(
            "stowage_scheduler_heartbeat_timestamp_seconds", "When this scheduler last wrote its heartbeat (Unix time).", [], s.heartbeat.timeIntervalSince1970)
        if let c = s.coordination {
            gauge("stowage_coordinator_layers_held", "Layers whose lease this coordinator holds (shared catalog).", [], Double(c.held))
            gauge("stowage_coordinators_live", "Live coordinators in the shared catalog, as this one last saw them.", [], Double(c.live))
            gauge("stowage_shared_catalog_up", "1 when this coordinator's last round reached the shared catalog.", [], c.catalogUp ? 1 : 0)
        }
        return r.emitToString()
    }
}
