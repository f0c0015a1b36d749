// Which live coordinator owns which layer, decided by each coordinator alone from the same
// two lists (the layers with a policy, the live coordinators in the shared catalog), so they
// agree without talking: rendezvous hashing (highest random weight). Each layer goes to the
// coordinator whose hash with it is highest; when one leaves, only its layers move (spread
// over the others), and one that joins takes about 1/n of every other's. Pure.
import Crypto
import Foundation

package enum LeasePlan {
    /// The coordinator that should own `layer`; nil when there is none.
    package static func owner(of layer: String, among coordinators: [String]) -> String? {
        coordinators.max { a, b in
            let wa = weight(layer, a), wb = weight(layer, b)
            return wa != wb ? wa < wb : a < b
        }
    }

    /// The layers `me` should own.
    package static func share(of me: String, layers: [String], among coordinators: [String]) -> Set<String> {
        let all = coordinators.contains(me) ? coordinators : coordinators + [me]
        return Set(layers.filter { owner(of: $0, among: all) == me })
    }

    static func weight(_ layer: String, _ coordinator: String) -> UInt64 {
        var h = SHA256()
        h.update(data: Data(layer.utf8))
        h.update(data: Data([0]))
        h.update(data: Data(coordinator.utf8))
        return h.finalize().withUnsafeBytes { raw in raw.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
    }
}
