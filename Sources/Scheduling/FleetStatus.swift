// `stowage status`: per layer its policy, last run, next run, the backups the storage holds
// and the topology's findings, failures first. The run catalog gives the last run (a cache);
// the storage gives the backups (the truth: listed by name, nothing decrypted); the
// topology is probed now, all layers at once.
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Storage
import Support
import Topology

package struct LayerStatus: Codable, Sendable, Equatable {
    package struct PolicyInfo: Codable, Sendable, Equatable {
        package var schedule: String
        package var storage: String
        package var keep: Int
        package var source: String
        package var enabled: Bool
    }

    package struct LastRun: Codable, Sendable, Equatable {
        package var started: String
        /// schedule, make-up, retry (the scheduler's) or manual.
        package var trigger: String
        package var outcome: String
        package var seconds: Double?
        package var backup: String?
        package var sourceNode: String?
        package var storedBytes: Int64?
        package var rawBytes: Int64?
        package var error: String?
    }

    package struct Stored: Codable, Sendable, Equatable {
        package var storage: String
        package var count: Int
        package var newest: String?
        /// Reachable storage nodes without the newest backup's manifest.
        package var newestMissingOn: [String]
        package var unreachable: [String]
        /// A node this coordinator is not set up for (host key refused...): an error, not "down".
        package var setupFault: String? = nil

        package init(storage: String, count: Int, newest: String?, newestMissingOn: [String], unreachable: [String], setupFault: String? = nil) {
            self.storage = storage
            self.count = count
            self.newest = newest
            self.newestMissingOn = newestMissingOn
            self.unreachable = unreachable
            self.setupFault = setupFault
        }
    }

    /// A live coordinator of a shared fleet.
    package struct Coordinator: Codable, Sendable, Equatable {
        package var id: String
        package var host: String
        package var pid: Int
        /// Seconds since its last heartbeat.
        package var heartbeatAge: Double
        package var layers: Int
    }

    package struct Problem: Codable, Sendable, Equatable {
        package var severity: String
        package var message: String
    }

    package var layer: String
    package var engine: String
    /// ok, warning or error: the worst of the last run, the topology and the storage.
    package var health: String
    package var problems: [Problem]
    package var policy: PolicyInfo?
    package var lastRun: LastRun?
    package var nextRun: String?
    package var backups: [Stored]
    package var topology: String
    package var findings: [String]
    /// Whether the newest backup is older than the policy allows (layers with an enabled policy).
    package var staleness: Staleness.Verdict? = nil
    /// Each node as the probe found it (nil when not probed).
    package var nodes: [NodeView]? = nil
    /// With scheduler.shared_catalog: the coordinator that holds the layer's lease.
    package var owner: String? = nil

    /// A node in the fleet view: its role, and whether backups and restores use it.
    package struct NodeView: Codable, Sendable, Equatable {
        package var name: String
        package var role: String
        /// The node backups and restores use (the primary; for a Redis Cluster, every master).
        package var primary: Bool
        package var state: String
        package var lagSeconds: Double?
    }
}

/// `stowage status` as a whole: every selected layer, and whether a scheduler looks after them.
package struct FleetReport: Codable, Sendable, Equatable {
    package var layers: [LayerStatus]
    /// With scheduler.shared_catalog: the live coordinators (docs/coordinators.md).
    package var coordinators: [LayerStatus.Coordinator]?
    /// Nil when no catalog exists yet (nothing was ever run through the scheduler or a policy).
    package var scheduler: SchedulerHealth?
    /// Fleet-wide problems (the scheduler), besides each layer's.
    package var problems: [LayerStatus.Problem]

    package var healthy: Bool { layers.allSatisfy { $0.health == "ok" } && problems.isEmpty }
}

package enum FleetStatus {
    /// Judges one layer from what was gathered (pure).
    package static func judge(
        layer: LayerSpec, policy: Policy?, last: RunRecord?, stored: [LayerStatus.Stored], topology: LayerTopology?,
        topologyError: String?, now: Date
    ) -> LayerStatus {
        var problems: [(Severity, String)] = []
        if let last {
            switch last.outcome {
            case .failed, .interrupted, .cancelled:
                problems.append((.error, "last run \(last.outcome.rawValue): \(last.error ?? "no detail")"))
            case .warnings:
                problems.append((.warning, "last run had warnings: \(last.error ?? "see stowage backups")"))
            case .ok, .running, .skipped: break
            }
        }
        if let topology {
            for f in topology.findings where f.severity != .ok { problems.append((f.severity, "topology: \(f.message)")) }
        } else if let topologyError {
            problems.append((.error, "topology: \(topologyError)"))
        }
        for s in stored {
            if !s.newestMissingOn.isEmpty {
                problems.append(
                    (
                        .warning,
                        "storage \(s.storage) degraded: newest backup missing on \(s.newestMissingOn.joined(separator: ", ")) (stowage storage repair \(s.storage))"
                    ))
            }
            if let fault = s.setupFault {
                problems.append((.error, "storage \(s.storage): \(fault)"))
            } else if !s.unreachable.isEmpty {
                problems.append((.warning, "storage \(s.storage): \(s.unreachable.joined(separator: ", ")) unreachable"))
            }
        }
        var staleness: Staleness.Verdict?
        if let policy, let onStorage = stored.first(where: { $0.storage == policy.storage }) {
            // Judged on what the storage showed: a storage that could not be read whole and
            // showed no backup proves nothing (its unreachable nodes are a problem of their own).
            if onStorage.setupFault == nil && (onStorage.count > 0 || onStorage.unreachable.isEmpty) {
                staleness = Staleness.judge(policy: policy, newest: onStorage.newest.flatMap(BackupName.init), now: now)
            }
            if let v = staleness, v.stale { problems.append((.error, "stale: \(v.message)")) }
        }
        if let policy, policy.enabled, staleness?.stale != true, stored.first(where: { $0.storage == policy.storage })?.count == 0,
            let first = (try? policy.schedule.schedule())?.next(after: policy.installed), first < now.addingTimeInterval(-3600)
        {
            problems.append((.warning, "no backup on \(policy.storage) although one was due at \(stamp(first))"))
        }
        let health = problems.map(\.0).max() ?? .ok
        var info: LayerStatus.PolicyInfo?
        var next: String?
        if let policy {
            info = .init(
                schedule: policy.schedule.description, storage: policy.storage, keep: policy.keep, source: policy.source.rawValue,
                enabled: policy.enabled)
            if policy.enabled, let n = (try? policy.schedule.schedule())?.next(after: now) { next = stamp(n) }
        }
        return LayerStatus(
            layer: layer.id, engine: layer.engine.rawValue, health: health.rawValue, problems: problems.map { .init(severity: $0.0.rawValue, message: $0.1) },
            policy: info,
            lastRun: last.map {
                .init(
                    started: stamp($0.started), trigger: $0.trigger, outcome: $0.outcome.rawValue, seconds: $0.seconds, backup: $0.backup,
                    sourceNode: $0.sourceNode, storedBytes: $0.storedBytes, rawBytes: $0.rawBytes, error: $0.error)
            },
            nextRun: next, backups: stored, topology: topology.map { "\($0.kind.rawValue), primary \($0.primary ?? "none")" } ?? "not probed",
            findings: topology?.findings.filter { $0.severity != .ok }.map(\.message) ?? [], staleness: staleness,
            nodes: topology.map { t in
                t.nodes.map {
                    .init(
                        name: $0.name, role: $0.role.rawValue, primary: $0.name == t.primary || $0.role == .clusterMaster, state: $0.state,
                        lagSeconds: $0.lagSeconds)
                }
            })
    }

    /// Failures first, then warnings, then the rest; by layer within each.
    package static func ordered(_ s: [LayerStatus]) -> [LayerStatus] {
        func rank(_ h: String) -> Int { h == "error" ? 0 : h == "warning" ? 1 : 2 }
        return s.sorted { (rank($0.health), $0.layer) < (rank($1.health), $1.layer) }
    }

    /// Gathers and judges the selected layers.
    package static func gather(
        _ layers: [LayerSpec], inventory inv: Inventory, agent: AgentBinary, probe: Bool = true,
        now: Date = Date()
    ) async throws(StowageError) -> FleetReport {
        var lastRuns: [String: RunRecord] = [:]
        var scheduler: SchedulerHealth?
        if FileManager.default.fileExists(atPath: inv.catalogPath) {
            let catalog = try await RunCatalog.open(path: inv.catalogPath)
            lastRuns = try await catalog.lastRuns()
            scheduler = SchedulerHealth.judge(try await catalog.schedulers(), now: now)
        }
        // A shared fleet: every coordinator's runs, who owns which layer, and the live
        // coordinators stand for "the scheduler" (any of them running is running).
        var owners: [String: String] = [:]
        var coordinators: [LayerStatus.Coordinator]?
        var sharedProblems: [LayerStatus.Problem] = []
        if let spec = inv.scheduler.sharedCatalog {
            do throws(StowageError) {
                let shared = try SharedCatalog(spec)
                let live = try await shared.live(within: spec.lease)
                let leases = try await shared.leases().filter { $0.remaining > 0 }
                for l in leases { owners[l.layer] = l.owner }
                coordinators = live.map { c in
                    .init(id: c.id, host: c.host, pid: c.pid, heartbeatAge: c.heartbeatAge, layers: leases.filter { $0.owner == c.id }.count)
                }
                for r in try await shared.latestRuns() where (lastRuns[r.layer]?.started ?? .distantPast) < r.started {
                    lastRuns[r.layer] = r.record(storage: inv.policy(for: r.layer)?.storage ?? "")
                }
                scheduler = SchedulerHealth.judge(
                    live.map {
                        SchedulerBeat(
                            host: "\($0.host) (coordinator \($0.id))", pid: $0.pid, started: $0.started, seen: now.addingTimeInterval(-$0.heartbeatAge))
                    },
                    now: now)
            } catch {
                sharedProblems.append(.init(severity: Severity.warning.rawValue, message: "\(error.message)"))
            }
        }
        // Backups per storage and environment, by name only.
        var stored: [String: [LayerStatus.Stored]] = [:]
        let envs = Set(layers.map(\.environment))
        for spec in inv.storages {
            for env in envs.sorted() {
                let storage = try ReplicatedStorage(spec, inventory: inv, agent: agent, environment: env)
                let held = await storage.listBackups()
                for l in layers where l.environment == env {
                    let mine = held.holders[l.name] ?? [:]
                    let newest = held.newest(l.name)
                    guard !mine.isEmpty || inv.policy(for: l.id)?.storage == spec.name else { continue }
                    let missing = newest.map { n in held.reachable.filter { !(mine[n]?.contains($0) ?? false) } } ?? []
                    stored[l.id, default: []].append(
                        .init(
                            storage: spec.name, count: mine.count, newest: newest?.description,
                            newestMissingOn: missing, unreachable: held.unreachable,
                            setupFault: held.setupFault?.message))
                }
            }
        }
        var topologies: [String: LayerTopology] = [:]
        var topologyErrors: [String: String] = [:]
        if probe {
            // Layers whose secrets cannot be read are reported, not fatal to the others.
            var probed: [LayerSpec] = []
            for l in layers {
                do throws(StowageError) { _ = try TopologyCheck.members(of: l, settings: inv.probe); probed.append(l) } catch {
                    topologyErrors[l.id] = error.message
                }
            }
            for t in try await TopologyCheck.run(probed, settings: inv.probe) { topologies["\(t.environment)/\(t.layer)"] = t }
        }
        let judged = ordered(
            layers.map { l in
                var s = judge(
                    layer: l, policy: inv.policy(for: l.id), last: lastRuns[l.id], stored: stored[l.id] ?? [], topology: topologies[l.id],
                    topologyError: topologyErrors[l.id], now: now)
                s.owner = owners[l.id]
                return s
            })
        return FleetReport(
            layers: judged, coordinators: coordinators, scheduler: scheduler,
            problems: sharedProblems + schedulerProblems(scheduler, policies: layers.compactMap { inv.policy(for: $0.id) }))
    }

    /// A fleet with enabled policies and no scheduler running needs a look (pure).
    package static func schedulerProblems(_ s: SchedulerHealth?, policies: [Policy]) -> [LayerStatus.Problem] {
        guard policies.contains(where: \.enabled) else { return [] }
        let health = s ?? SchedulerHealth.judge([], now: Date())
        guard health.state != .running else { return [] }
        return [.init(severity: Severity.warning.rawValue, message: "scheduler: \(health.message)")]
    }

    package static func text(_ report: FleetReport) -> String {
        let all = report.layers
        guard !all.isEmpty else { return "no layers\n" }
        let shared = report.coordinators != nil
        var rows = [["LAYER", "HEALTH", "POLICY", "LAST RUN", "NEXT RUN", "BACKUPS"] + (shared ? ["OWNER"] : [])]
        for s in all {
            let policy = s.policy.map { "\($0.schedule), keep \($0.keep) on \($0.storage)\($0.enabled ? "" : " (paused)")" } ?? "none"
            let last =
                s.lastRun.map { r in
                    "\(r.started) \(r.outcome)" + (r.seconds.map { String(format: " %.0fs", $0) } ?? "") + (r.storedBytes.map { " " + formatBytes($0) } ?? "")
                } ?? "never"
            let backups = s.backups.map { "\($0.count) on \($0.storage)" + ($0.newest.map { ", newest \($0)" } ?? "") }.joined(separator: "; ")
            rows.append([s.layer, s.health, policy, last, s.nextRun ?? "-", backups.isEmpty ? "none" : backups] + (shared ? [s.owner ?? "-"] : []))
        }
        var t = textTable(rows, indent: "") + "\n"
        for s in all where !s.problems.isEmpty {
            for p in s.problems { t += "\(p.severity): \(s.layer): \(p.message)\n" }
        }
        for p in report.problems { t += "\(p.severity): \(p.message)\n" }
        if let cs = report.coordinators {
            t +=
                "coordinators: \(cs.count) live"
                + cs.map { " \($0.id) (\($0.layers) layers, heard of \(String(format: "%.0f", $0.heartbeatAge)) s ago)" }.joined(separator: ",") + "\n"
        }
        if let s = report.scheduler, report.problems.isEmpty { t += "scheduler: \(s.message)\n" }
        return t
    }
}
