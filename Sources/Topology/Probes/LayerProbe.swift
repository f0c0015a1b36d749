import Support

/// Probes every node of a layer at once, each on a thread of its own, and returns what they
/// said. Never throws: a node that cannot be probed is an observation too.
package enum LayerProbe {
    package struct Member: Sendable {
        package var target: ProbeTarget
        package var masterNode: Bool
        package init(target: ProbeTarget, masterNode: Bool) {
            self.target = target
            self.masterNode = masterNode
        }
    }

    package static func observe(environment: String, layer: String, engine: Engine, members: [Member]) async -> LayerObservation {
        let results = await withTaskGroup(of: (Int, NodeObservation).self) { group in
            for (i, m) in members.enumerated() {
                group.addTask {
                    let result: Result<RawProbe, ProbeFailure> = await DedicatedThread.run("probe \(m.target.name)") {
                        Result { () throws(ProbeFailure) -> RawProbe in try probe(m.target) }
                    }
                    let t = m.target
                    switch result {
                    case .success(let raw):
                        return (i, NodeObservation(name: t.name, endpoint: t.endpoint, masterNode: m.masterNode, probe: raw, failure: nil))
                    case .failure(let f):
                        return (i, NodeObservation(name: t.name, endpoint: t.endpoint, masterNode: m.masterNode, probe: nil, failure: f))
                    }
                }
            }
            var out: [(Int, NodeObservation)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }.map(\.1)
        }
        return LayerObservation(environment: environment, layer: layer, engine: engine, nodes: results)
    }

    static func probe(_ t: ProbeTarget) throws(ProbeFailure) -> RawProbe {
        switch t.engine {
        case .postgresql: try PostgresProbe.probe(t)
        case .mysql: try MySQLProbe.probe(t)
        case .redis: try RedisProbe.probe(t)
        }
    }
}
