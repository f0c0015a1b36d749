// The scheduler's and the notifications' settings (the inventory's `scheduler:` and
// `notifications:` sections, docs/inventory.md).
import Foundation

public struct SchedulerSettings: Sendable, Equatable {
    /// Runs at once, over the whole fleet.
    public var concurrency = 4
    /// Runs at once writing to one storage.
    public var perStorage = 2
    /// Each due run starts after a random delay of up to this many seconds, so that a fleet
    /// scheduled at one minute does not start at one instant.
    public var startDelay: Double = 60
    /// Retries of a run that failed for a transient reason (node unreachable, lock held,
    /// quorum not reached), with a delay that doubles from `retryDelay`.
    public var retries = 3
    public var retryDelay: Double = 60
    /// On SIGTERM: how long running backups may go on before they are cancelled.
    public var grace: Double = 600
    /// The run catalog (SQLite); default: beside the inventory, NAME.catalog.sqlite.
    public var catalog: String?

    public init() {}
}

public struct NotificationSettings: Sendable, Equatable {
    /// An http(s) URL that gets a JSON POST per event (docs/scheduler.md, "Notifications").
    public var webhook: String?
    /// A command run with the same JSON on its stdin.
    public var command: String?
    public var timeout: Double = 10

    public init() {}
}

extension Inventory {
    /// Where the run catalog is.
    public var catalogPath: String {
        scheduler.catalog ?? PolicyStore.sibling(of: path, suffix: ".catalog.sqlite")
    }
}
