// What a probe brings back from one node, before any interpretation. Probes only gather
// these raw answers; `TopologyAnalysis` turns them into a `LayerTopology`. Keeping the raw
// form lets `fixtures/probes/` hold recorded answers of real servers (and of MySQL 8 and
// Galera, which the lab does not run) and replay them through the same analysis.

/// A database endpoint.
public struct Endpoint: Codable, Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A secret (password) that never prints itself.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}

/// Everything a probe needs to reach one node.
public struct ProbeTarget: Sendable {
    public var name: String
    public var endpoint: Endpoint
    public var engine: Engine
    public var user: String?
    public var password: Secret?
    public var connectTimeout: Double
    public var queryTimeout: Double

    public init(name: String, endpoint: Endpoint, engine: Engine, user: String?, password: Secret?,
                connectTimeout: Double, queryTimeout: Double) {
        self.name = name
        self.endpoint = endpoint
        self.engine = engine
        self.user = user
        self.password = password
        self.connectTimeout = connectTimeout
        self.queryTimeout = queryTimeout
    }
}

/// The raw answers of one node. SQL results are rows of column → text value (a NULL is an
/// absent key); Redis replies are kept as the text the server sent.
public struct RawProbe: Codable, Sendable, Equatable {
    public typealias Row = [String: String]
    public var results: [String: [Row]]
    public var replies: [String: String]

    public init(results: [String: [Row]] = [:], replies: [String: String] = [:]) {
        self.results = results
        self.replies = replies
    }
}

/// Why a node could not be probed.
public struct ProbeFailure: Error, Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// Connection refused, no route, host gone.
        case unreachable
        /// Connected (or tried to) but nothing answered within the timeout.
        case timeout
        case authenticationFailed = "authentication-failed"
        /// Connected and authenticated, but a query failed.
        case queryFailed = "query-failed"
    }

    public var kind: Kind
    /// The library's words, already free of secrets (libpq, libmariadb and hiredis never echo a password).
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}

/// One node of a layer with what its probe returned.
public struct NodeObservation: Codable, Sendable, Equatable {
    public var name: String
    public var endpoint: Endpoint
    public var masterNode: Bool
    public var probe: RawProbe?
    public var failure: ProbeFailure?

    public init(name: String, endpoint: Endpoint, masterNode: Bool, probe: RawProbe?, failure: ProbeFailure?) {
        self.name = name
        self.endpoint = endpoint
        self.masterNode = masterNode
        self.probe = probe
        self.failure = failure
    }
}

/// A whole layer's observations: the input of the analysis, and the format of the recorded
/// fixtures (`stowage topology --record DIR` writes one file per layer).
public struct LayerObservation: Codable, Sendable, Equatable {
    public var environment: String
    public var layer: String
    public var engine: Engine
    public var nodes: [NodeObservation]

    public init(environment: String, layer: String, engine: Engine, nodes: [NodeObservation]) {
        self.environment = environment
        self.layer = layer
        self.engine = engine
        self.nodes = nodes
    }
}
