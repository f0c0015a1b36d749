// The decisions a backup and a restore make from a layer's topology, as pure functions:
// where to dump, where to restore, what to refuse and what to warn about. Tested from
// recorded topologies, without servers (Tests/CoordinatorTests/PlanTests.swift).
import AgentProtocol
import Fleet
import Remote
import Repository
import Storage
import Support
import Topology

package struct PlannedStream: Sendable, Equatable {
    /// The node to dump (or restore) through.
    package var node: String
    package var role: NodeRole
    /// Redis Cluster: the master's slots.
    package var slots: String?
}

package struct BackupPlan: Sendable, Equatable {
    package var streams: [PlannedStream]
    /// What the operator should know (the master node is a replica, a non-clustered layer).
    package var notes: [String]
    package var fromReplica: Bool
}

package struct RestorePlan: Sendable, Equatable {
    /// The nodes whose data is replaced; for a Redis Cluster, the masters (keys are routed
    /// by slot from the first).
    package var targets: [PlannedStream]
    package var warnings: [String]
    /// What the operator should know that is not a risk (how a cluster restore routes keys).
    package var notes: [String] = []
}

package enum Plans {
    /// The checks every run makes first: credentials, split brain, a trustworthy primary.
    static func refuseUnsafe(_ t: LayerTopology, action: String) throws(StowageError) {
        if let f = t.findings(.credentialsRejected).first {
            throw StowageError(
                .credentialsRejected, "DB credentials of \(t.environment)/\(t.layer) are incorrect: \(f.message)",
                hint: "fix the layer's credentials in the inventory; no \(action) was started")
        }
        for code in [Finding.Code.splitBrain, .mixedClusters, .slotsUnassigned, .clusterStateFail] {
            if let f = t.findings(code).first {
                throw StowageError(
                    .unsafeTopology, "\(t.environment)/\(t.layer): \(f.message); \(action) refused",
                    hint: "stowage topology \(t.environment)/\(t.layer) shows the layer; fix the replication first")
            }
        }
    }

    /// The primary the topology found, or the refusal naming why there is none.
    static func requirePrimary(_ t: LayerTopology, action: String) throws(StowageError) -> String {
        guard let primary = t.primary else {
            let id = "\(t.environment)/\(t.layer)"
            // Name the nodes and why they could not be asked, not only that no primary answered.
            let unreachable = t.findings(.nodeUnreachable).map(\.message)
            let why =
                t.findings.first { $0.severity == .error }?.message
                ?? (unreachable.isEmpty ? "no primary is reachable" : "no primary is reachable (\(unreachable.joined(separator: "; ")))")
            throw StowageError(.unsafeTopology, "\(id): \(why); \(action) refused", hint: "stowage topology \(id) shows the layer")
        }
        return primary
    }

    package static func backup(_ t: LayerTopology, from: DumpPreference) throws(StowageError) -> BackupPlan {
        try refuseUnsafe(t, action: "backup")
        let id = "\(t.environment)/\(t.layer)"
        var notes: [String] = []
        if t.kind == .redisCluster {
            guard let shards = t.shards, !shards.isEmpty else {
                throw StowageError(.unsafeTopology, "\(id): no Redis Cluster master answered; backup refused", hint: "stowage topology \(id)")
            }
            var streams: [PlannedStream] = []
            for s in shards {
                if from == .replica {
                    guard let r = s.replicas.first(where: { t.node($0)?.role == .clusterReplica && healthy(t, $0) }) else {
                        throw StowageError(
                            .unsafeTopology, "\(id): the shard of \(s.master) (slots \(s.slots)) has no healthy replica to dump from",
                            hint: "dump the masters instead: --from primary")
                    }
                    streams.append(PlannedStream(node: r, role: .clusterReplica, slots: s.slots))
                } else {
                    streams.append(PlannedStream(node: s.master, role: .clusterMaster, slots: s.slots))
                }
            }
            return BackupPlan(streams: streams, notes: notes, fromReplica: from == .replica)
        }
        let primary = try requirePrimary(t, action: "backup")
        if primary != t.masterNode && t.kind == .primarySecondary {
            notes.append("the master node \(t.masterNode) is a replica: dumping from the primary \(primary)")
        }
        if t.kind == .nonClustered {
            let others = t.nodes.map(\.name).filter { $0 != primary }
            notes.append("non-clustered layer: dumping the master node \(primary) only; \(others.joined(separator: ", ")) hold data of their own")
        }
        if from == .replica {
            let candidates = t.nodes.filter { $0.role == .replica && $0.upstream == primary && healthy(t, $0.name) }
            guard let r = candidates.min(by: { ($0.lagSeconds ?? 0) < ($1.lagSeconds ?? 0) }) else {
                throw StowageError(
                    .unsafeTopology, "\(id): no replica of \(primary) is streaming within the lag limit; backup refused",
                    hint: "dump the primary instead: --from primary")
            }
            notes.append("dumping the replica \(r.name)\(r.lagSeconds.map { " (lag \(Int($0)) s)" } ?? "") of \(primary)")
            return BackupPlan(streams: [PlannedStream(node: r.name, role: .replica, slots: nil)], notes: notes, fromReplica: true)
        }
        let role = t.node(primary)?.role ?? .primary
        return BackupPlan(streams: [PlannedStream(node: primary, role: role, slots: nil)], notes: notes, fromReplica: false)
    }

    /// A node with no warning or error about it (lag over the limit, broken replication).
    static func healthy(_ t: LayerTopology, _ node: String) -> Bool {
        !t.findings.contains { $0.node == node && $0.severity != .ok }
    }

    package static func restore(_ t: LayerTopology, manifest: Manifest, node: String?, allNodes: Bool) throws(StowageError) -> RestorePlan {
        let id = "\(t.environment)/\(t.layer)"
        guard manifest.engine == t.engine.rawValue else {
            throw StowageError(
                .incompatibleBackup,
                "backup \(manifest.name) of \(manifest.environment)/\(manifest.layer) is a \(manifest.engine) backup; \(id) is \(t.engine.rawValue)",
                hint: "pick a backup of a \(t.engine.displayName) layer (stowage backups)")
        }
        try refuseUnsafe(t, action: "restore")
        var warnings: [String] = []
        var notes: [String] = []
        let targets: [PlannedStream]
        if t.kind == .redisCluster {
            guard let shards = t.shards, !shards.isEmpty else {
                throw StowageError(.unsafeTopology, "\(id): no Redis Cluster master answered; restore refused", hint: "stowage topology \(id)")
            }
            notes.append("keys are routed by slot to the cluster's current masters (\(shards.map(\.master).joined(separator: ", ")))")
            targets = shards.map { PlannedStream(node: $0.master, role: .clusterMaster, slots: $0.slots) }
        } else if let node {
            guard let n = t.node(node) else {
                throw StowageError(.usage, "\(node) is not a node of \(id)", hint: "nodes: \(t.nodes.map(\.name).joined(separator: ", "))")
            }
            switch n.role {
            case .replica, .clusterReplica:
                throw StowageError(
                    .unsafeTopology, "\(node) is a replica\(n.upstream.map { " of \($0)" } ?? ""); restoring onto a replica is refused",
                    hint: "restore the primary\(t.primary.map { " \($0)" } ?? ""); replicas follow it")
            case .unreachable, .unknown:
                throw StowageError(.unsafeTopology, "\(node) cannot be used: \(n.state); restore refused", hint: "stowage topology \(id)")
            default:
                targets = [PlannedStream(node: node, role: n.role, slots: nil)]
            }
        } else {
            let primary = try requirePrimary(t, action: "restore")
            if primary != t.masterNode && t.kind == .primarySecondary {
                warnings.append("the master node \(t.masterNode) is a replica: restoring the primary \(primary) instead")
            }
            if t.kind == .nonClustered {
                if allNodes {
                    if let down = t.nodes.first(where: { $0.role == .unreachable || $0.role == .unknown }) {
                        throw StowageError(
                            .unsafeTopology, "\(id): \(down.name) cannot be reached; --all-nodes restore refused",
                            hint: "bring \(down.name) back, or restore the master node alone (without --all-nodes)")
                    }
                    targets = t.nodes.map { PlannedStream(node: $0.name, role: $0.role, slots: nil) }
                } else {
                    let others = t.nodes.map(\.name).filter { $0 != primary }
                    warnings.append(
                        "non-clustered layer: only the master node \(primary) gets the data; \(others.joined(separator: ", ")) keep theirs (--all-nodes restores every node)"
                    )
                    targets = [PlannedStream(node: primary, role: t.node(primary)?.role ?? .standalone, slots: nil)]
                }
            } else {
                if allNodes && t.kind == .primarySecondary {
                    warnings.append("--all-nodes: replicas are not written to; they follow the primary \(primary)")
                }
                targets = [PlannedStream(node: primary, role: t.node(primary)?.role ?? .primary, slots: nil)]
            }
        }
        // A dump of a newer major version may use what an older server lacks.
        for target in targets {
            if let have = t.node(target.node)?.version, let made = manifest.engineVersion,
                let a = majorVersion(made, engine: t.engine), let b = majorVersion(have, engine: t.engine), a.lexicographicallyPrecedes(b) == false, a != b
            {
                throw StowageError(
                    .incompatibleBackup,
                    "backup \(manifest.name) comes from \(t.engine.displayName) \(made); \(target.node) runs \(have), an older major version",
                    hint: "restore into a server of version \(a.map(String.init).joined(separator: ".")) or newer")
            }
        }
        return RestorePlan(targets: targets, warnings: warnings, notes: notes)
    }

    /// The part of a version that decides compatibility: PostgreSQL's major ("15"),
    /// MariaDB/MySQL and Redis major.minor ("10.11", "7.0").
    package static func majorVersion(_ v: String, engine: Engine) -> [Int]? {
        let digits = v.split(whereSeparator: { !$0.isNumber && $0 != "." }).first.map(String.init) ?? ""
        let parts = digits.split(separator: ".").compactMap { Int($0) }
        guard !parts.isEmpty else { return nil }
        switch engine {
        case .postgresql: return parts[0] >= 10 ? [parts[0]] : Array(parts.prefix(2))
        case .mysql, .redis: return Array(parts.prefix(2))
        }
    }
}

extension Engine {
    /// The zstd level a dump of this engine is written with, unless the storage's
    /// `zstd_level` or `--zstd-level` says otherwise. Measured on the bench's dumps
    /// (bench/zstd-levels.sh, 2 MiB blocks): on SQL text level 1 stores *less* than level 3
    /// (PostgreSQL 24.6 against 26.4 MiB, MariaDB 24.0 against 25.9) at twice the speed
    /// (1,285 against 632 MB/s, 560 against 234); an RDB, already LZF-compressed, grows 3%
    /// at level 1 (193.3 against 187.5 MiB), so Redis keeps level 3.
    package var defaultZstdLevel: Int {
        switch self {
        case .postgresql, .mysql: 1
        case .redis: 3
        }
    }

    /// The engine as agent jobs name it.
    package var wire: DatabaseEngine {
        switch self {
        case .postgresql: .postgresql
        case .mysql: .mysql
        case .redis: .redis
        }
    }
}
