// What the scheduler exposes to monitoring (the HTTP listener's /metrics): per layer its
// last successful backup and runs, whether it is stale; per storage node whether it answers
// and its free space; the scheduler's own queue and heartbeat. Gathered by the scheduler,
// rendered by the Service target; no I/O here.
import Foundation

package struct MetricsSnapshot: Sendable, Equatable {
    package struct Layer: Sendable, Equatable {
        package var layer: String
        package var storage: String
        package var lastSuccess: Date?
        package var lastDuration: Double?
        package var lastRawBytes: Int64?
        package var lastStoredBytes: Int64?
        package var lastNewBytes: Int64?
        /// Backup runs and restores in the catalog, by outcome.
        package var runs: [String: Int]
        package var restores: [String: Int]
        package var failuresSinceSuccess: Int
        package var stale: Bool?
        /// Age of the newest backup and the limit it is judged by (seconds).
        package var age: Double?
        package var maxAge: Double?
    }

    package struct Node: Sendable, Equatable {
        package var storage: String
        package var node: String
        package var up: Bool
        package var freeBytes: Int64?
        package var totalBytes: Int64?
        package var checked: Date
    }

    /// A layer's last topology probe: its findings counted by severity.
    package struct Topology: Sendable, Equatable {
        package var layer: String
        package var findings: [String: Int]
        package var probed: Date
    }

    package var layers: [Layer]
    package var nodes: [Node]
    package var topology: [Topology] = []
    package var queued: Int
    package var running: Int
    package var started: Date
    package var heartbeat: Date
    /// With scheduler.shared_catalog: this coordinator's part.
    package var coordination: Coordination.Snapshot? = nil
}
