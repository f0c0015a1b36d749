// The scheduler's and the notifications' settings (the inventory's `scheduler:` and
// `notifications:` sections, docs/inventory.md).
import Foundation
import Support
import Topology

package struct SchedulerSettings: Sendable, Equatable {
    /// Runs at once, over the whole fleet.
    package var concurrency = 4
    /// Runs at once writing to one storage.
    package var perStorage = 2
    /// Each due run starts after a random delay of up to this many seconds, so that a fleet
    /// scheduled at one minute does not start at one instant.
    package var startDelay: Double = 60
    /// Retries of a run that failed for a transient reason (node unreachable, lock held,
    /// quorum not reached), with a delay that doubles from `retryDelay`.
    package var retries = 3
    package var retryDelay: Double = 60
    /// On SIGTERM: how long running backups may go on before they are cancelled.
    package var grace: Double = 600
    /// The run catalog (SQLite); default: beside the inventory, NAME.catalog.sqlite.
    package var catalog: String?

    package init() {}
}

package struct NotificationSettings: Sendable, Equatable {
    /// An http(s) URL that gets a JSON POST per event (docs/scheduler.md, "Notifications").
    package var webhook: String?
    /// A command run with the same JSON on its stdin.
    package var command: String?
    package var timeout: Double = 10

    package init() {}
}

extension Inventory {
    /// Where the run catalog is.
    package var catalogPath: String {
        scheduler.catalog ?? PolicyStore.sibling(of: path, suffix: ".catalog.sqlite")
    }
}
