// The manifest: what a backup is (docs/storage-format.md, "Manifests"). Sealed under its
// object name (RepositoryLayout.manifest) and committed last: a backup exists once its
// manifest does.
import Foundation
import Repository
import Topology

/// The manifest: what a backup is (docs/storage-format.md, "Manifests").
package struct Manifest: Codable, Sendable, Equatable {
    package var format: Int
    package var environment: String
    package var layer: String
    package var name: String
    package var engine: String
    package var engineVersion: String?
    package var sourceNode: String
    package var sourceRole: String?
    package var topology: LayerTopology?
    package var started: String
    package var finished: String
    package var streams: [ManifestStream]
    package var rawBytes: Int64
    package var storedBytes: Int64
    package var newBytes: Int64

    package init(
        format: Int, environment: String, layer: String, name: String, engine: String, engineVersion: String?,
        sourceNode: String, sourceRole: String?, topology: LayerTopology?, started: String, finished: String,
        streams: [ManifestStream], rawBytes: Int64, storedBytes: Int64, newBytes: Int64
    ) {
        self.format = format
        self.environment = environment
        self.layer = layer
        self.name = name
        self.engine = engine
        self.engineVersion = engineVersion
        self.sourceNode = sourceNode
        self.sourceRole = sourceRole
        self.topology = topology
        self.started = started
        self.finished = finished
        self.streams = streams
        self.rawBytes = rawBytes
        self.storedBytes = storedBytes
        self.newBytes = newBytes
    }

    /// Every node a stream came from ("rc1,rc2,rc3" for a Redis Cluster).
    package var sourceNodes: String {
        let nodes = streams.compactMap(\.node)
        return nodes.isEmpty ? sourceNode : nodes.joined(separator: ",")
    }
}
