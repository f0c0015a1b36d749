// The topology analysis: one pure function from what the probes saw to a `LayerTopology`.
// No I/O happens here, so every case (split brain, a detached replica, a broken link, a
// cluster with unassigned slots) is tested from recorded answers without a server.
//
// The rules follow the add-on's warning that everything runs on the layer's master node:
// Stowage finds the real primary instead, and says so where the add-on would be unsafe.
import Support

package struct AnalysisSettings: Sendable, Equatable {
    /// Replication lag above this is a warning.
    package var maxLagSeconds: Double

    package init(maxLagSeconds: Double = 60) { self.maxLagSeconds = maxLagSeconds }
}

package enum TopologyAnalysis {
    package static func analyze(_ obs: LayerObservation, settings: AnalysisSettings = .init()) -> LayerTopology {
        var a = Analyzer(obs: obs, settings: settings)
        return a.run()
    }
}

private struct Analyzer {
    let obs: LayerObservation
    let settings: AnalysisSettings
    var facts: [String: NodeFacts] = [:]
    var findings: [Finding] = []
    var statuses: [NodeStatus] = []

    init(obs: LayerObservation, settings: AnalysisSettings) {
        self.obs = obs
        self.settings = settings
    }

    var masterNode: String { (obs.nodes.first { $0.masterNode } ?? obs.nodes.first)?.name ?? "" }
    var reachable: [String] { obs.nodes.map(\.name).filter { facts[$0] != nil } }
    var notProbed: [String] { obs.nodes.map(\.name).filter { facts[$0] == nil } }

    mutating func run() -> LayerTopology {
        for node in obs.nodes { read(node) }

        var topo: LayerTopology
        if obs.engine == .redis, reachable.contains(where: { facts[$0]?.redisCluster != nil }) {
            topo = redisCluster()
        } else if obs.engine == .mysql, reachable.contains(where: { facts[$0]?.galera != nil }) {
            topo = galera()
        } else {
            topo = replication()
        }
        // Errors first, then warnings; within a severity, in node order.
        let order = Dictionary(uniqueKeysWithValues: obs.nodes.enumerated().map { ($1.name, $0) })
        topo.findings = findings.enumerated().sorted { l, r in
            if l.element.severity != r.element.severity { return l.element.severity > r.element.severity }
            let ln = l.element.node.flatMap { order[$0] } ?? -1, rn = r.element.node.flatMap { order[$0] } ?? -1
            return ln != rn ? ln < rn : l.offset < r.offset
        }.map(\.element)
        return topo
    }

    // MARK: reading each node

    mutating func read(_ node: NodeObservation) {
        let label = "\(node.name) (\(node.endpoint))"
        var status = NodeStatus(
            name: node.name, address: node.endpoint.description, masterNode: node.name == masterNode,
            role: .unknown, upstream: nil, state: "", lagSeconds: nil, lagBytes: nil, version: nil, detail: nil)
        if let failure = node.failure {
            switch failure.kind {
            case .unreachable, .timeout:
                status.role = .unreachable
                status.state = failure.kind == .timeout ? "timed out" : "unreachable"
                findings.append(Finding(.warning, .nodeUnreachable, node: node.name, "\(label) is unreachable: \(failure.message)"))
            case .authenticationFailed:
                status.state = "credentials rejected"
                findings.append(
                    Finding(
                        .error, .credentialsRejected, node: node.name,
                        "\(label) rejected the layer's credentials: \(failure.message)"))
            case .queryFailed:
                status.state = "probe failed"
                findings.append(Finding(.error, .probeFailed, node: node.name, "\(label): probe query failed: \(failure.message)"))
            }
            status.detail = failure.message
        } else if let raw = node.probe {
            do {
                let f = try interpret(raw, engine: obs.engine)
                facts[node.name] = f
                status.version = f.version
                status.detail = f.details.isEmpty ? nil : f.details.joined(separator: ", ")
            } catch {
                status.state = "probe failed"
                findings.append(Finding(.error, .probeFailed, node: node.name, "\(label): could not read the probe's answers (\(error))"))
            }
        } else {
            status.state = "not probed"
        }
        statuses.append(status)
    }

    // MARK: addresses

    /// The layer node at an endpoint. Port 0 means "any port" (PostgreSQL's client_addr
    /// carries the replica's outgoing port, not its server port), so the host must be unique.
    func nodeName(at ep: Endpoint) -> String? {
        let host = ep.host.lowercased()
        if ep.port != 0 {
            return obs.nodes.first { $0.endpoint.host.lowercased() == host && $0.endpoint.port == ep.port }?.name
        }
        let matches = obs.nodes.filter { $0.endpoint.host.lowercased() == host }
        return matches.count == 1 ? matches[0].name : nil
    }

    /// The entry in `upstream`'s replica list that is `replica`.
    func downstreamEntry(of upstream: String, for replica: String) -> DownstreamReplica? {
        guard let up = facts[upstream], let node = obs.nodes.first(where: { $0.name == replica }) else { return nil }
        if let byName = up.downstream.first(where: { $0.name == replica }) { return byName }
        return up.downstream.first { d in
            guard let ep = d.endpoint else { return false }
            if ep.port == 0 { return false }  // PostgreSQL: loopback clients all look alike; names only.
            return nodeName(at: ep) == node.name
        }
    }

    func related(_ a: String, _ b: String) -> Bool {
        guard let fa = facts[a], let fb = facts[b] else { return false }
        if let ia = fa.identity, let ib = fb.identity { return ia == ib }
        if let up = fa.upstream, nodeName(at: up) == b { return true }
        if let up = fb.upstream, nodeName(at: up) == a { return true }
        if downstreamEntry(of: a, for: b) != nil || downstreamEntry(of: b, for: a) != nil { return true }
        return !fa.lineage.isDisjoint(with: fb.lineage)
    }

    /// Reachable nodes grouped by shared replication history.
    func components() -> [[String]] {
        var groups: [[String]] = []
        for n in reachable {
            let joined = groups.indices.filter { i in groups[i].contains { related($0, n) } }
            var merged = [n]
            for i in joined.reversed() { merged = groups.remove(at: i) + merged }
            groups.append(merged)
        }
        let order = Dictionary(uniqueKeysWithValues: obs.nodes.enumerated().map { ($1.name, $0) })
        return groups.map { $0.sorted { order[$0]! < order[$1]! } }.sorted { order[$0[0]]! < order[$1[0]]! }
    }

    mutating func setStatus(_ name: String, _ change: (inout NodeStatus) -> Void) {
        if let i = statuses.firstIndex(where: { $0.name == name }) { change(&statuses[i]) }
    }

    func links() -> [ReplicationLink] {
        statuses.compactMap { s in
            guard let up = s.upstream, s.role == .replica || s.role == .clusterReplica else { return nil }
            return ReplicationLink(from: up, to: s.name, state: s.state, lagSeconds: s.lagSeconds, lagBytes: s.lagBytes)
        }
    }

    func topology(kind: LayerKind, primary: String?, shards: [ClusterShard]? = nil) -> LayerTopology {
        LayerTopology(
            environment: obs.environment, layer: obs.layer, engine: obs.engine, kind: kind,
            primary: primary, masterNode: masterNode, nodes: statuses, links: links(), shards: shards,
            findings: findings)
    }

    // MARK: primary-secondary, single node, non-clustered

    mutating func replication() -> LayerTopology {
        let groups = components()
        let hasReplica = reachable.contains { facts[$0]?.writable == false }
        let hasLink = groups.contains { $0.count > 1 }

        let kind: LayerKind
        if obs.nodes.count == 1 {
            kind = .singleNode
        } else if hasReplica || hasLink {
            kind = .primarySecondary
        } else if !notProbed.isEmpty {
            kind = .unknown
        } else {
            kind = .nonClustered
        }

        // Roles, upstreams, lag.
        for name in reachable {
            let f = facts[name]!
            if f.writable {
                let replicas = f.downstream.count
                setStatus(name) {
                    $0.role = (kind == .primarySecondary) ? .primary : .standalone
                    $0.state =
                        kind == .primarySecondary || replicas > 0
                        ? "\(replicas) replica\(replicas == 1 ? "" : "s") attached" : "standalone"
                }
                continue
            }
            let upName = f.upstream.flatMap { nodeName(at: $0) }
            let entry = upName.flatMap { downstreamEntry(of: $0, for: name) }
            let lagSeconds = f.lagSeconds ?? entry?.lagSeconds
            setStatus(name) {
                $0.role = .replica
                $0.upstream = upName ?? f.upstream?.description
                $0.state = f.linkState ?? "unknown"
                $0.lagSeconds = lagSeconds
                $0.lagBytes = entry?.lagBytes
            }
            let label = "\(name) (\(obs.nodes.first { $0.name == name }!.endpoint))"
            if let up = f.upstream, upName == nil {
                findings.append(
                    Finding(
                        .warning, .upstreamOutsideLayer, node: name,
                        "\(label) replicates from \(up), which is not a node of this layer"))
            }
            if let problem = f.linkProblem {
                let from = upName ?? f.upstream?.description ?? "its upstream"
                findings.append(
                    Finding(
                        .warning, .replicationBroken, node: name,
                        "\(label): replication from \(from) is broken: \(problem)"))
            } else if let lag = lagSeconds, lag > settings.maxLagSeconds {
                findings.append(
                    Finding(
                        .warning, .replicationLag, node: name,
                        "\(label) is \(formatDuration(lag)) behind \(upName ?? "its upstream") (limit \(formatDuration(settings.maxLagSeconds)))"))
            }
        }

        var primary: String?
        switch kind {
        case .singleNode:
            if let only = reachable.first, facts[only]!.writable {
                primary = only
            } else if let only = reachable.first {
                findings.append(
                    Finding(
                        .error, .noPrimary, node: only,
                        "the layer's only node \(only) is a replica: there is no primary in this layer to back up or restore"))
            } else if let only = obs.nodes.first, let failure = only.failure, failure.kind == .unreachable || failure.kind == .timeout {
                // Nothing else could stand in for it: the layer cannot be backed up or restored.
                findings.append(
                    Finding(
                        .error, .noPrimary, node: only.name,
                        "the layer's only node \(only.name) (\(only.endpoint)) is unreachable: \(failure.message); there is no primary to back up or restore"))
            }
        case .nonClustered:
            primary = masterNode
            let all = obs.nodes.map(\.name).joined(separator: ", ")
            findings.append(
                Finding(
                    .warning, .nonClustered, node: masterNode,
                    "\(obs.nodes.count) independent servers (\(all)) in one layer: a restore reaches the master node \(masterNode) only (use --all-nodes to restore every node)"
                ))
        case .unknown:
            let writable = reachable.filter { facts[$0]!.writable }
            primary = writable.count == 1 ? writable[0] : nil
        case .primarySecondary:
            primary = primarySecondary(groups: groups)
        default:
            break
        }
        return topology(kind: kind, primary: primary)
    }

    /// Finds the one primary of a primary-secondary layer, or says why there is none.
    mutating func primarySecondary(groups: [[String]]) -> String? {
        if groups.count > 1 {
            let described = groups.map { g -> String in
                let id = facts[g[0]]?.identity.map { " (system \($0))" } ?? ""
                return "{\(g.joined(separator: ", "))}\(id)"
            }.joined(separator: " and ")
            findings.append(
                Finding(
                    .error, .mixedClusters,
                    "nodes of \(groups.count) different clusters in one layer: \(described)"))
        }
        var primary: String?
        for group in groups {
            let writable = group.filter { facts[$0]!.writable }
            if writable.count > 1 {
                findings.append(
                    Finding(
                        .error, .splitBrain, node: writable.first,
                        "split brain: \(writable.count) nodes take writes (\(writable.joined(separator: ", ")))\(splitBrainCause(writable))"))
                for detached in detachedNodes(writable) {
                    findings.append(
                        Finding(
                            .warning, .replicationBroken, node: detached.node,
                            "\(detached.node) no longer replicates from \(detached.from): \(detached.how)"))
                }
            } else if writable.count == 1, groups.count == 1 || group.contains(masterNode) {
                primary = writable[0]
            }
        }
        if groups.count > 1 || reachable.filter({ facts[$0]!.writable }).count > 1 { primary = nil }

        if primary == nil, !findings.contains(where: { $0.code == .splitBrain || $0.code == .mixedClusters }) {
            let down = notProbed
            let why = down.isEmpty ? "every reachable node is a replica" : "not reachable: \(down.joined(separator: ", "))"
            findings.append(Finding(.error, .noPrimary, "no reachable primary (\(why))"))
        }
        if let p = primary, p != masterNode, reachable.contains(masterNode) || notProbed.contains(masterNode) {
            let role = facts[masterNode].map { $0.writable ? "a primary" : "a replica" } ?? "unreachable"
            findings.append(
                Finding(
                    .warning, .masterNotPrimary, node: masterNode,
                    "the layer's master node \(masterNode) is \(role); the primary is \(p): Stowage backs up and restores \(p), where the add-on would have used \(masterNode)"
                ))
        }
        return primary
    }

    func splitBrainCause(_ writable: [String]) -> String {
        let timelines = writable.compactMap { n in facts[n]?.timeline.map { (n, $0) } }
        if timelines.count == writable.count, let maxTL = timelines.map(\.1).max(), let minTL = timelines.map(\.1).min(), maxTL > minTL {
            let promoted = timelines.filter { $0.1 == maxTL }.map(\.0)
            return
                "; \(promoted.joined(separator: ", ")) moved to timeline \(maxTL): promoted (pg_promote or failover) while \(timelines.filter { $0.1 == minTL }.map(\.0).joined(separator: ", ")) still runs on timeline \(minTL)"
        }
        if !detachedNodes(writable).isEmpty { return "; a replica was detached or promoted" }
        return ""
    }

    /// Redis: a writable node whose previous replication ID is another writable node's current
    /// one left that node's replication (REPLICAOF NO ONE, or a failover).
    func detachedNodes(_ writable: [String]) -> [(node: String, from: String, how: String)] {
        writable.compactMap { n in
            guard let prev = facts[n]?.previousHistory else { return nil }
            guard let from = writable.first(where: { $0 != n && facts[$0]?.currentHistory == prev }) else { return nil }
            return (n, from, "it was a replica of \(from) and was detached or promoted (REPLICAOF NO ONE or failover); it now takes writes on its own")
        }
    }

    // MARK: Galera

    mutating func galera() -> LayerTopology {
        var synced: [String] = []
        let uuids = Set(reachable.compactMap { facts[$0]?.galera?.clusterStateUUID })
        for name in reachable {
            let f = facts[name]!
            guard let g = f.galera else {
                setStatus(name) {
                    $0.role = f.writable ? .standalone : .replica; $0.state = "not a Galera member"
                }
                findings.append(Finding(.error, .mixedClusters, node: name, "\(name) is not a member of the layer's Galera cluster"))
                continue
            }
            setStatus(name) {
                $0.role = .galeraMember
                $0.state = g.localState
                $0.detail = ["cluster size \(g.clusterSize)", "component \(g.clusterStatus)", $0.detail].compactMap { $0 }.joined(separator: ", ")
            }
            if g.clusterStatus != "Primary" {
                findings.append(
                    Finding(
                        .error, .splitBrain, node: name,
                        "\(name) is in a non-primary component (\(g.clusterStatus)): the Galera cluster is partitioned"))
            } else if g.localState != "Synced" {
                findings.append(Finding(.warning, .galeraNotSynced, node: name, "\(name) is \(g.localState), not Synced"))
            } else {
                synced.append(name)
            }
        }
        if uuids.count > 1 {
            findings.append(Finding(.error, .mixedClusters, "nodes report \(uuids.count) different Galera cluster state UUIDs"))
        }
        if let size = reachable.compactMap({ facts[$0]?.galera?.clusterSize }).max(), size < obs.nodes.count {
            findings.append(
                Finding(
                    .warning, .galeraNotSynced,
                    "the Galera cluster has \(size) members but the layer lists \(obs.nodes.count) nodes"))
        }
        let primary = synced.contains(masterNode) ? masterNode : synced.first
        if primary == nil, !findings.contains(where: { $0.severity == .error }) {
            findings.append(Finding(.error, .noPrimary, "no synced Galera member in the primary component"))
        }
        return topology(kind: .multiPrimary, primary: primary)
    }

    // MARK: Redis Cluster

    mutating func redisCluster() -> LayerTopology {
        // The union of every reachable node's view, keyed by node id.
        var view: [String: RedisClusterNode] = [:]
        var myIDs: [String: String] = [:]
        for name in reachable {
            guard let c = facts[name]?.redisCluster else {
                let writable = facts[name]!.writable
                setStatus(name) {
                    $0.role = writable ? .standalone : .replica; $0.state = "not in cluster mode"
                }
                findings.append(Finding(.error, .mixedClusters, node: name, "\(name) is not in cluster mode but the layer is a Redis Cluster"))
                continue
            }
            for n in c.nodes where view[n.id] == nil || n.isMyself { view[n.id] = n }
            if let me = c.myself { myIDs[name] = me.id }
            if c.state != "ok" {
                findings.append(Finding(.error, .clusterStateFail, node: name, "\(name) reports cluster_state:\(c.state)"))
            }
            if c.slotsAssigned < 16384 {
                findings.append(
                    Finding(
                        .error, .slotsUnassigned, node: name,
                        "\(16384 - c.slotsAssigned) of 16384 hash slots are not assigned to any master (seen by \(name)): keys in them can be neither written nor backed up"
                    ))
            }
        }
        // Nodes that do not know each other are in different clusters.
        let clustered = reachable.filter { myIDs[$0] != nil }
        for name in clustered {
            let others = clustered.filter { $0 != name }
            let known = Set(facts[name]!.redisCluster!.nodes.map(\.id))
            if let stranger = others.first(where: { !known.contains(myIDs[$0]!) }) {
                findings.append(Finding(.error, .mixedClusters, node: name, "\(name) and \(stranger) belong to different Redis Clusters"))
                break
            }
        }

        func label(_ n: RedisClusterNode) -> String { nodeName(at: n.endpoint) ?? n.endpoint.description }
        for name in clustered {
            guard let me = view[myIDs[name]!] else { continue }
            let upstream = me.masterID.flatMap { view[$0] }.map(label)
            let linkState = facts[name]?.linkState ?? "replica"
            setStatus(name) {
                if me.isMaster {
                    $0.role = .clusterMaster
                    $0.state = me.failing ? "failing" : (me.slotRanges.isEmpty ? "master without slots" : "serving slots")
                } else {
                    $0.role = .clusterReplica
                    $0.upstream = upstream
                    $0.state = linkState
                }
            }
            if me.failing {
                findings.append(
                    Finding(.warning, .nodeUnreachable, node: name, "the cluster marks \(name) as failing (\(me.flags.sorted().joined(separator: ",")))"))
            }
            if !me.isMaster, let problem = facts[name]?.linkProblem {
                findings.append(Finding(.warning, .replicationBroken, node: name, "\(name): replication is broken: \(problem)"))
            }
        }
        let masters = view.values.filter { $0.isMaster && !$0.slotRanges.isEmpty }
            .sorted { (firstSlot($0) ?? 0) < (firstSlot($1) ?? 0) }
        for m in masters where nodeName(at: m.endpoint) == nil {
            findings.append(
                Finding(
                    .warning, .clusterNodeNotInLayer,
                    "cluster master \(m.endpoint) (slots \(m.slotRanges.joined(separator: ","))) is not a node of this layer: its keys cannot be backed up through it"
                ))
        }
        for m in view.values where m.failing && nodeName(at: m.endpoint) == nil {
            findings.append(Finding(.warning, .nodeUnreachable, "the cluster marks \(m.endpoint) as failing"))
        }
        let shards = masters.map { m in
            ClusterShard(
                master: label(m), slots: m.slotRanges.joined(separator: ","),
                replicas: view.values.filter { $0.masterID == m.id }.map(label).sorted())
        }
        return topology(kind: .redisCluster, primary: nil, shards: shards)
    }

    func firstSlot(_ n: RedisClusterNode) -> Int? { n.slotRanges.first.flatMap { Int($0.split(separator: "-")[0]) } }
}
