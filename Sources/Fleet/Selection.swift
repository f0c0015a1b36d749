/// What a command names on its command line: everything, an environment, or one layer.
import Support
import Topology

package struct LayerSelection: Sendable, Equatable, CustomStringConvertible {
    package var environment: String?
    package var layer: String?

    package static let all = LayerSelection(environment: nil, layer: nil)

    package init(environment: String?, layer: String?) {
        self.environment = environment
        self.layer = layer
    }

    /// "ENV", "ENV/LAYER" or nil for all.
    package init(parsing s: String?) throws(StowageError) {
        guard let s, !s.isEmpty else { self = .all; return }
        let parts = s.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2, !parts.contains(where: \.isEmpty) else {
            throw StowageError(.usage, "'\(s)' is not ENV or ENV/LAYER", hint: "e.g. shop or shop/sqldb")
        }
        environment = parts[0]
        layer = parts.count == 2 ? parts[1] : nil
    }

    package var description: String { [environment, layer].compactMap { $0 }.joined(separator: "/") }

    /// The selected layers, or an error naming what is unknown and listing what exists.
    package func layers(in inv: Inventory) throws(StowageError) -> [LayerSpec] {
        guard let environment else { return inv.layers }
        guard let env = inv.environment(environment) else {
            throw StowageError(
                .usage, "unknown environment '\(environment)' in \(inv.path)",
                hint: "environments: \(inv.environments.map(\.name).joined(separator: ", "))")
        }
        guard let layer else { return env.layers }
        guard let l = env.layers.first(where: { $0.name == layer }) else {
            throw StowageError(
                .usage, "unknown layer '\(layer)' in environment \(environment) (\(inv.path))",
                hint: "layers of \(environment): \(env.layers.map(\.name).joined(separator: ", "))")
        }
        return [l]
    }
}
