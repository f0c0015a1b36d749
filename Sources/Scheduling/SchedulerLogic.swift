// The scheduler's decisions as pure functions (docs/scheduler.md): which slot was missed while
// it was down, how a run's exit is judged, when a retry starts, and which queued runs may
// start now under the concurrency limits. The daemon (Scheduler.swift) only applies them.
import Fleet
import Foundation
import Operations
import Remote
import Storage
import Support
import Topology

/// A run waiting to start: at most one per layer (a later slot replaces an earlier one).
package struct QueuedRun: Sendable, Equatable {
    package var layer: String
    package var storage: String
    /// The slot it is for (nil: not from the schedule).
    package var slot: Date?
    package var trigger: String
    package var attempt: Int
    /// Not before this instant: the slot plus the random start delay, or a retry's backoff.
    package var startAt: Date
    /// The API job that follows it (Backup Now), if any.
    package var job: String? = nil

    package init(layer: String, storage: String, slot: Date?, trigger: String, attempt: Int, startAt: Date) {
        self.layer = layer
        self.storage = storage
        self.slot = slot
        self.trigger = trigger
        self.attempt = attempt
        self.startAt = startAt
    }
}

package enum RunJudgement: Sendable, Equatable {
    case ok
    /// Committed with something to look at (a replica missed, retention failed, topology notes).
    case warnings
    /// May succeed later: retried with backoff.
    case transient
    /// Will fail the same way until someone acts: reported, not retried.
    case permanent
    case cancelled
    /// The slot was already backed up (by another coordinator): skipped, not retried, not reported.
    case alreadyDone
}

package enum SchedulerLogic {
    /// The slot a policy missed while no scheduler ran, if any: the latest slot after `since`
    /// (the policy's install, its last attempted slot, its newest backup on the storage, the
    /// latest of them) and not after `now`. One slot, however many passed: a layer down for a
    /// week is backed up once, not once per missed hour.
    package static func missedSlot(_ schedule: Schedule, since: Date, now: Date) -> Date? {
        guard let first = schedule.next(after: since), first <= now else { return nil }
        // Walk from as late a point as still finds a slot, so that a minutely schedule after a
        // year of downtime costs a few thousand steps, not half a million.
        var from = first
        for window: Double in [3600, 86400, 40 * 86400] {
            let start = now.addingTimeInterval(-window)
            if start > first, let n = schedule.next(after: start), n <= now { from = n; break }
        }
        var last = from
        while let n = schedule.next(after: last), n <= now { last = n }
        return last
    }

    /// How a `stowage backup` exit status is judged (docs/exit-codes.md). A child killed by a
    /// signal (`signal` non-nil) is transient unless the scheduler cancelled it.
    package static func judge(exitStatus: Int32?, signal: Int32?, cancelledByScheduler: Bool) -> RunJudgement {
        // A run that committed before the cancel reached it is a backup like any other.
        if signal == nil, exitStatus == ExitStatus.ok.rawValue { return .ok }
        if signal == nil, exitStatus == ExitStatus.warnings.rawValue { return .warnings }
        if cancelledByScheduler { return .cancelled }
        guard let exitStatus, signal == nil else { return .transient }
        guard let s = ExitStatus(rawValue: exitStatus) else { return .permanent }
        switch s {
        case .ok: return .ok
        case .warnings: return .warnings
        case .alreadyDone: return .alreadyDone
        case .nodeUnreachable, .remoteFailed, .locked, .quorumNotReached: return .transient
        case .cancelled: return .transient
        case .internalError, .unsafeTopology, .credentialsRejected, .hostKeyRefused, .sshAuthFailed, .agentMismatch,
            .toolsMissing, .repositoryDamaged, .restoreCheckFailed, .incompatibleBackup, .usage, .noInventory, .invalidInventory:
            return .permanent
        }
    }

    /// The delay before retry number `attempt` (2 = the first retry): base, 2×base, 4×base…
    /// capped at an hour.
    package static func retryDelay(attempt: Int, base: Double) -> Double {
        min(3600, base * pow(2, Double(max(0, attempt - 2))))
    }

    /// Whether a failed run is tried again: transient, retries left, and no later slot due
    /// before the retry would start (that slot's run covers it).
    package static func shouldRetry(_ j: RunJudgement, attempt: Int, retries: Int, retryAt: Date, nextSlot: Date?) -> Bool {
        guard j == .transient, attempt <= retries else { return false }
        if let nextSlot, nextSlot <= retryAt { return false }
        return true
    }

    /// The queued runs that may start now, in start order: due, their layer not running, and
    /// the fleet-wide and per-storage limits not reached (counting those started before them).
    package static func admissible(
        queue: [QueuedRun], running: [(layer: String, storage: String)], now: Date,
        concurrency: Int, perStorage: Int
    ) -> [QueuedRun] {
        var total = running.count
        var perStore: [String: Int] = [:]
        for r in running { perStore[r.storage, default: 0] += 1 }
        let busy = Set(running.map(\.layer))
        var out: [QueuedRun] = []
        for q in queue.sorted(by: { ($0.startAt, $0.layer) < ($1.startAt, $1.layer) }) where q.startAt <= now {
            guard total < concurrency else { break }
            guard !busy.contains(q.layer), perStore[q.storage, default: 0] < perStorage else { continue }
            out.append(q)
            total += 1
            perStore[q.storage, default: 0] += 1
        }
        return out
    }

    /// The random start delay of a due run, in [0, window].
    package static func startDelay(window: Double, random: Double) -> Double { max(0, window) * min(max(random, 0), 1) }
}
