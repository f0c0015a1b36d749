// The public values of the Topology module: what a probe saw on each node and what the
// analysis concluded for a layer. Everything here is a plain Codable value; the JSON these
// produce is the `stowage topology --json` schema documented in docs/topology-json.md.

/// A database engine family, as named in the inventory.
public enum Engine: String, Codable, Sendable, CaseIterable {
    case postgresql
    /// MySQL, MariaDB and Percona: one protocol, one client library.
    case mysql
    case redis

    public var displayName: String {
        switch self {
        case .postgresql: "PostgreSQL"
        case .mysql: "MySQL/MariaDB"
        case .redis: "Redis"
        }
    }
}

/// How a layer's nodes relate to each other.
public enum LayerKind: String, Codable, Sendable {
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
public enum NodeRole: String, Codable, Sendable {
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

public enum Severity: String, Codable, Sendable, Comparable {
    case ok, warning, error

    private var rank: Int {
        switch self {
        case .ok: 0
        case .warning: 1
        case .error: 2
        }
    }

    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// One conclusion of the analysis. `code` is stable and documented; `message` is for people.
public struct Finding: Codable, Sendable, Equatable {
    public var severity: Severity
    public var code: Code
    /// The node the finding is about, when it is about one.
    public var node: String?
    public var message: String

    public enum Code: String, Codable, Sendable {
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

    public init(_ severity: Severity, _ code: Code, node: String? = nil, _ message: String) {
        self.severity = severity
        self.code = code
        self.node = node
        self.message = message
    }
}

/// One node as the analysis sees it.
public struct NodeStatus: Codable, Sendable, Equatable {
    public var name: String
    /// The database endpoint, `host:port`.
    public var address: String
    /// The layer's master node: where the add-on would run everything.
    public var masterNode: Bool
    public var role: NodeRole
    /// The node (by name) or address this node replicates from.
    public var upstream: String?
    /// Replication or cluster state in a few words ("streaming", "stopped", "link down").
    public var state: String
    public var lagSeconds: Double?
    public var lagBytes: Int64?
    public var version: String?
    /// Engine details worth showing: timeline, read-only, slots.
    public var detail: String?
}

/// A replication edge between two nodes of a layer (or an upstream outside it).
public struct ReplicationLink: Codable, Sendable, Equatable {
    public var from: String
    public var to: String
    public var state: String
    public var lagSeconds: Double?
    public var lagBytes: Int64?
}

/// A Redis Cluster shard: one master, its slots and its replicas.
public struct ClusterShard: Codable, Sendable, Equatable {
    public var master: String
    public var slots: String
    public var replicas: [String]
}

/// The analysis of one layer: the value every backup and restore checks first.
public struct LayerTopology: Codable, Sendable, Equatable {
    public var environment: String
    public var layer: String
    public var engine: Engine
    public var kind: LayerKind
    /// The node that takes writes and that backups and restores use; for a non-clustered
    /// or single-node layer, the master node. Nil when none can be trusted (split brain,
    /// no reachable primary) and for a Redis Cluster (see `shards`).
    public var primary: String?
    public var masterNode: String
    public var nodes: [NodeStatus]
    public var links: [ReplicationLink]
    public var shards: [ClusterShard]?
    public var findings: [Finding]

    /// The worst severity among the findings; `.ok` when there are none.
    public var status: Severity { findings.map(\.severity).max() ?? .ok }

    public init(environment: String, layer: String, engine: Engine, kind: LayerKind, primary: String?,
                masterNode: String, nodes: [NodeStatus], links: [ReplicationLink], shards: [ClusterShard]?,
                findings: [Finding]) {
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

    public func node(_ name: String) -> NodeStatus? { nodes.first { $0.name == name } }
    public func findings(_ code: Finding.Code) -> [Finding] { findings.filter { $0.code == code } }
}
