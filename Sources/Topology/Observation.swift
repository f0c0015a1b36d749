// What a probe brings back from one node, before any interpretation. Probes only gather
// these raw answers; `TopologyAnalysis` turns them into a `LayerTopology`. Keeping the raw
// form lets `fixtures/probes/` hold recorded answers of real servers (and of MySQL 8 and
// Galera, which the lab does not run) and replay them through the same analysis.
import Support

/// A database endpoint.
package struct Endpoint: Codable, Sendable, Hashable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A secret (password) that never prints itself.
package struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    package let value: String
    package init(_ value: String) { self.value = value }
    package var description: String { "<redacted>" }
    package var debugDescription: String { "<redacted>" }
}

/// Everything a probe needs to reach one node.
package struct ProbeTarget: Sendable {
    package var name: String
    package var endpoint: Endpoint
    package var engine: Engine
    package var user: String?
    package var password: Secret?
    package var connectTimeout: Double
    package var queryTimeout: Double

    package init(
        name: String, endpoint: Endpoint, engine: Engine, user: String?, password: Secret?,
        connectTimeout: Double, queryTimeout: Double
    ) {
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
package struct RawProbe: Codable, Sendable, Equatable {
    package typealias Row = [String: String]
    package var results: [String: [Row]]
    package var replies: [String: String]

    package init(results: [String: [Row]] = [:], replies: [String: String] = [:]) {
        self.results = results
        self.replies = replies
    }
}

/// Why a node could not be probed.
package struct ProbeFailure: Error, Codable, Sendable, Equatable {
    package enum Kind: String, Codable, Sendable {
        /// Connection refused, no route, host gone.
        case unreachable
        /// Connected (or tried to) but nothing answered within the timeout.
        case timeout
        case authenticationFailed = "authentication-failed"
        /// Connected and authenticated, but a query failed.
        case queryFailed = "query-failed"
    }

    package var kind: Kind
    /// The library's words, already free of secrets (libpq, libmariadb and hiredis never echo a password).
    package var message: String

    package init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}

/// One node of a layer with what its probe returned.
package struct NodeObservation: Codable, Sendable, Equatable {
    package var name: String
    package var endpoint: Endpoint
    package var masterNode: Bool
    package var probe: RawProbe?
    package var failure: ProbeFailure?

    package init(name: String, endpoint: Endpoint, masterNode: Bool, probe: RawProbe?, failure: ProbeFailure?) {
        self.name = name
        self.endpoint = endpoint
        self.masterNode = masterNode
        self.probe = probe
        self.failure = failure
    }
}

/// A whole layer's observations: the input of the analysis, and the format of the recorded
/// fixtures (`stowage topology --record DIR` writes one file per layer).
package struct LayerObservation: Codable, Sendable, Equatable {
    package var environment: String
    package var layer: String
    package var engine: Engine
    package var nodes: [NodeObservation]

    package init(environment: String, layer: String, engine: Engine, nodes: [NodeObservation]) {
        self.environment = environment
        self.layer = layer
        self.engine = engine
        self.nodes = nodes
    }
}
