// The public values of the Topology module: what a probe saw on each node and what the
// analysis concluded for a layer. Everything here is a plain Codable value; the JSON these
// produce is the `stowage topology --json` schema documented in docs/topology-json.md.
import Support

/// A database engine family, as named in the inventory.
package enum Engine: String, Codable, Sendable, CaseIterable {
    case postgresql
    /// MySQL, MariaDB and Percona: one protocol, one client library.
    case mysql
    case redis

    package var displayName: String {
        switch self {
        case .postgresql: "PostgreSQL"
        case .mysql: "MySQL/MariaDB"
        case .redis: "Redis"
        }
    }
}

/// How a layer's nodes relate to each other.
package enum LayerKind: String, Codable, Sendable {
    case singleNode = "single-node"
    case primarySecondary = "primary-secondary"
    /// Galera: every synced node takes writes.
    case multiPrimary = "multi-primary"
    case redisCluster = "redis-cluster"
    /// Several independent servers: the add-on restores only the master node.
    case nonClustered = "non-clustered"
    /// Not enough nodes answered to tell.
    case unknown
}

/// What one node is within its layer.
package enum NodeRole: String, Codable, Sendable {
    case primary
    case replica
    case standalone
    case galeraMember = "galera-member"
    case clusterMaster = "cluster-master"
    case clusterReplica = "cluster-replica"
    case unreachable
    /// Reached but not understood (credentials rejected, a query failed).
    case unknown
}

package enum Severity: String, Codable, Sendable, Comparable {
    case ok, warning, error

    private var rank: Int {
        switch self {
        case .ok: 0
        case .warning: 1
        case .error: 2
        }
    }

    package static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// One conclusion of the analysis. `code` is stable and documented; `message` is for people.
package struct Finding: Codable, Sendable, Equatable {
    package var severity: Severity
    package var code: Code
    /// The node the finding is about, when it is about one.
    package var node: String?
    package var message: String

    package enum Code: String, Codable, Sendable, CaseIterable {
        case splitBrain = "split-brain"
        case noPrimary = "no-primary"
        case mixedClusters = "mixed-clusters"
        case slotsUnassigned = "slots-unassigned"
        case clusterStateFail = "cluster-state-fail"
        case credentialsRejected = "credentials-rejected"
        case probeFailed = "probe-failed"
        case nonClustered = "non-clustered"
        case masterNotPrimary = "master-not-primary"
        case replicationBroken = "replication-broken"
        case replicationLag = "replication-lag"
        case nodeUnreachable = "node-unreachable"
        case upstreamOutsideLayer = "upstream-outside-layer"
        case clusterNodeNotInLayer = "cluster-node-not-in-layer"
        case galeraNotSynced = "galera-not-synced"
    }

    package init(_ severity: Severity, _ code: Code, node: String? = nil, _ message: String) {
        self.severity = severity
        self.code = code
        self.node = node
        self.message = message
    }
}

/// One node as the analysis sees it.
package struct NodeStatus: Codable, Sendable, Equatable {
    package var name: String
    /// The database endpoint, `host:port`.
    package var address: String
    /// The layer's master node: where the add-on would run everything.
    package var masterNode: Bool
    package var role: NodeRole
    /// The node (by name) or address this node replicates from.
    package var upstream: String?
    /// Replication or cluster state in a few words ("streaming", "stopped", "link down").
    package var state: String
    package var lagSeconds: Double?
    package var lagBytes: Int64?
    package var version: String?
    /// Engine details worth showing: timeline, read-only, slots.
    package var detail: String?
}

/// A replication edge between two nodes of a layer (or an upstream outside it).
package struct ReplicationLink: Codable, Sendable, Equatable {
    package var from: String
    package var to: String
    package var state: String
    package var lagSeconds: Double?
    package var lagBytes: Int64?
}

/// A Redis Cluster shard: one master, its slots and its replicas.
package struct ClusterShard: Codable, Sendable, Equatable {
    package var master: String
    package var slots: String
    package var replicas: [String]
}

/// The analysis of one layer: the value every backup and restore checks first.
package struct LayerTopology: Codable, Sendable, Equatable {
    package var environment: String
    package var layer: String
    package var engine: Engine
    package var kind: LayerKind
    /// The node that takes writes and that backups and restores use; for a non-clustered
    /// or single-node layer, the master node. Nil when none can be trusted (split brain,
    /// no reachable primary) and for a Redis Cluster (see `shards`).
    package var primary: String?
    package var masterNode: String
    package var nodes: [NodeStatus]
    package var links: [ReplicationLink]
    package var shards: [ClusterShard]?
    package var findings: [Finding]

    /// The worst severity among the findings; `.ok` when there are none.
    package var status: Severity { findings.map(\.severity).max() ?? .ok }

    package init(
        environment: String, layer: String, engine: Engine, kind: LayerKind, primary: String?,
        masterNode: String, nodes: [NodeStatus], links: [ReplicationLink], shards: [ClusterShard]?,
        findings: [Finding]
    ) {
        self.environment = environment
        self.layer = layer
        self.engine = engine
        self.kind = kind
        self.primary = primary
        self.masterNode = masterNode
        self.nodes = nodes
        self.links = links
        self.shards = shards
        self.findings = findings
    }

    package func node(_ name: String) -> NodeStatus? { nodes.first { $0.name == name } }
    package func findings(_ code: Finding.Code) -> [Finding] { findings.filter { $0.code == code } }
}
