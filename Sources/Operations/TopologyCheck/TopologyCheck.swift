// The topology check every backup and restore runs first, and `stowage topology` runs on
// its own: probe every node of the selected layers (all layers and all nodes at once), then
// analyse each layer.
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package enum TopologyCheck {
    /// The probe targets of a layer. Reads the layer's password now, so a missing secret is
    /// reported before any connection is made.
    package static func members(
        of layer: LayerSpec, settings: ProbeSettings,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(StowageError) -> [LayerProbe.Member] {
        let password = try layer.credentials?.resolvePassword(layer: layer.id, environment: environment)
        return layer.nodes.map { n in
            LayerProbe.Member(
                target: ProbeTarget(
                    name: n.name, endpoint: n.db!, engine: layer.engine,
                    user: layer.credentials?.user, password: password,
                    connectTimeout: settings.connectTimeout, queryTimeout: settings.queryTimeout),
                masterNode: n.name == layer.masterNode)
        }
    }

    /// Observes the layers (all at once) without analysing them.
    package static func observe(
        _ layers: [LayerSpec], settings: ProbeSettings,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws(StowageError) -> [LayerObservation] {
        var planned: [(LayerSpec, [LayerProbe.Member])] = []
        for l in layers { planned.append((l, try members(of: l, settings: settings, environment: environment))) }
        return await withTaskGroup(of: (Int, LayerObservation).self) { group in
            for (i, (l, members)) in planned.enumerated() {
                group.addTask {
                    (i, await LayerProbe.observe(environment: l.environment, layer: l.name, engine: l.engine, members: members))
                }
            }
            var out: [(Int, LayerObservation)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    package static func analyze(_ obs: LayerObservation, layer: LayerSpec) -> LayerTopology {
        acknowledging(TopologyAnalysis.analyze(obs, settings: AnalysisSettings(maxLagSeconds: layer.maxLagSeconds)), layer.acknowledged)
    }

    /// The layer's acknowledged warnings turned into notes (pure): still shown, prefixed
    /// "acknowledged:", but no longer warnings. Errors stay errors whatever is acknowledged.
    package static func acknowledging(_ t: LayerTopology, _ codes: [Finding.Code]) -> LayerTopology {
        guard !codes.isEmpty else { return t }
        var out = t
        out.findings = t.findings.map { f in
            guard f.severity == .warning, codes.contains(f.code) else { return f }
            var n = f
            n.severity = .ok
            n.message = "acknowledged: " + f.message
            return n
        }
        return out
    }

    /// Probes and analyses the layers.
    package static func run(
        _ layers: [LayerSpec], settings: ProbeSettings,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws(StowageError) -> [LayerTopology] {
        let obs = try await observe(layers, settings: settings, environment: environment)
        return zip(obs, layers).map { analyze($0, layer: $1) }
    }

    /// The exit status for a set of analysed layers: rejected credentials first (the
    /// operator must fix them before anything else can be judged), then errors, then warnings.
    package static func exitStatus(_ topologies: [LayerTopology]) -> ExitStatus {
        let all = topologies.flatMap(\.findings)
        if all.contains(where: { $0.code == .credentialsRejected }) { return .credentialsRejected }
        if all.contains(where: { $0.severity == .error }) { return .unsafeTopology }
        if all.contains(where: { $0.severity == .warning }) { return .warnings }
        return .ok
    }
}
