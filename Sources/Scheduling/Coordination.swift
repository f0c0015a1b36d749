// One coordinator's part in a shared fleet (scheduler.shared_catalog): every `lease / 5`
// seconds it beats its heart in the catalog, reads who is alive, computes the layers that
// are its share (LeasePlan), and takes or renews their leases in one statement; layers no
// longer its share are given up at once (unless a run of them is underway: then when it
// ends). The scheduler starts a scheduled run only for a layer this says is held, and claims
// the slot in the catalog first.
//
// Why leases with an expiry and not only session advisory locks: a coordinator cut off from
// the catalog behind a frozen proxy keeps its server session (and such locks) alive
// indefinitely; an expiry in the server's clock does not wait for TCP to notice. A
// coordinator counts its hold as valid until `lease × 0.8` after it sent the renewal that
// granted it (its monotonic clock): it stops starting runs before the server lets anyone
// else take the layer (the server's expiry is at least `lease` after that same moment).
import Foundation
import Support

package actor Coordination {
    package let catalog: SharedCatalog
    package let me: CoordinatorIdentity
    let lease: Double
    let log: @Sendable (String, Bool) -> Void

    /// The layers with an enabled policy (the scheduler sets them at start and reload).
    var layers: [String] = []
    /// Layers with a run underway here: kept while it runs.
    var busy: Set<String> = []
    /// Layers held, and until when (monotonic) that hold is valid.
    private(set) var held: Set<String> = []
    private var validUntil: Double = 0
    /// At least one round has completed (until then, nothing is known to be this one's or not).
    private(set) var settled = false
    private var reachable = true
    private var retired = false
    private var migrated = false
    private var liveCount = 0
    private var lastHousekeeping: Double = -.infinity
    /// Layers taken since the scheduler last asked: it makes up their latest slot (claimed
    /// in the catalog, so it runs only if no one ran it).
    private var gained: Set<String> = []

    package init(catalog: SharedCatalog, me: CoordinatorIdentity = .make(), log: @escaping @Sendable (String, Bool) -> Void) {
        self.catalog = catalog
        self.me = me
        self.lease = catalog.spec.lease
        self.log = log
    }

    package var every: Double { lease / 5 }

    package func setLayers(_ l: [String]) { layers = l.sorted() }
    package func setBusy(_ layer: String, _ on: Bool) {
        if on { busy.insert(layer) } else { busy.remove(layer) }
    }

    package enum Standing: Sendable, Equatable {
        /// Held, and the hold is valid now.
        case mine
        /// Another coordinator's share (or this one's hold lapsed after a settled round).
        case notMine
        /// Not known yet (no round done), or the catalog cannot be reached: start nothing.
        case unknown
    }

    /// From the last round that reached the catalog, while it is fresh (within 0.8 lease of
    /// its renewal); after that nothing is known, whatever the reason (the catalog down, a
    /// round slow): a layer is neither started nor given up on until a round says.
    package func standing(_ layer: String) -> Standing {
        let fresh = settled && Deadline.now() < validUntil
        guard fresh else { return .unknown }
        return held.contains(layer) ? .mine : .notMine
    }

    /// One round; returns whether it reached the catalog.
    @discardableResult
    package func round() async -> Bool {
        guard !retired else { return false }
        let sent = Deadline.now()
        do throws(StowageError) {
            if !migrated {
                try await catalog.migrate()
                migrated = true
            }
            try await catalog.heartbeat(me, layers: held.count)
            let live = try await catalog.live(within: lease).map(\.id)
            liveCount = live.count
            let share = LeasePlan.share(of: me.id, layers: layers, among: live)
            let want = share.union(held.intersection(busy))
            let granted = try await catalog.hold(Array(want).sorted(), owner: me.id, lease: lease)
            let dropped = held.subtracting(want)
            if !dropped.isEmpty { try await catalog.release(Array(dropped).sorted(), owner: me.id) }
            let gained = granted.subtracting(held), lost = held.subtracting(granted).subtracting(dropped)
            if !gained.isEmpty || !dropped.isEmpty || !lost.isEmpty {
                log(
                    "coordinator \(me.id): holds \(granted.count) of \(layers.count) layers (\(live.count) live coordinators; +\(gained.count) -\(dropped.count + lost.count))",
                    false)
            }
            self.gained.formUnion(gained)
            held = granted
            validUntil = sent + lease * 0.8
            // Runs a coordinator that is gone left `running` are interrupted (fleet view).
            try await catalog.interruptRunsOfTheDead(within: lease)
            if sent - lastHousekeeping > 600 {
                lastHousekeeping = sent
                try await catalog.housekeep()
            }
            settled = true
            if !reachable { log("shared catalog \(catalog.address) reached again", false) }
            reachable = true
            return true
        } catch {
            if reachable { log("shared catalog unreachable: \(error.message); no scheduled run starts until it answers", true) }
            reachable = false
            return false
        }
    }

    /// What the metrics show of it.
    package struct Snapshot: Sendable, Equatable {
        package var held: Int
        package var live: Int
        package var catalogUp: Bool
    }

    package func snapshot() -> Snapshot { Snapshot(held: held.count, live: liveCount, catalogUp: reachable) }

    /// The layers taken since the last call.
    package func takeGained() -> Set<String> {
        defer { gained = [] }
        return gained
    }

    /// How far back a layer taken over has its latest slot made up (seconds): the time a
    /// takeover can take (the previous holder's lease running out, and a round or two).
    package var makeUpWindow: Double { lease * 3 }

    /// Claims a scheduled slot before its run starts (nil: the catalog did not answer).
    package func claim(layer: String, slot: Date) async -> (mine: Bool, by: String)? {
        do throws(StowageError) {
            return try await catalog.claim(layer: layer, slot: slot, owner: me.id)
        } catch {
            log("\(layer): the slot could not be claimed: \(error.message)", true)
            return nil
        }
    }

    package func record(_ r: RunRecord) async {
        do throws(StowageError) { try await catalog.record(r, coordinator: me.id) } catch {
            log("run not recorded in the shared catalog: \(error.message)", true)
        }
    }

    /// A clean stop: leases given up at once, so the others take over without waiting.
    package func retire() async {
        retired = true
        held = []
        try? await catalog.retire(me)
    }
}
