// When a layer's backups have stopped: the pure decision behind `stowage status`'s "stale",
// the scheduler's `backup-stale` event and the metrics. It reads only what the storage proves
// (the newest backup's name carries its start time), so it holds whether or not any
// scheduler is running.
import Fleet
import Foundation
import Repository
import Support

package enum Staleness {
    /// The longest gap between two consecutive runs of `schedule` over the five weeks after
    /// `from` (a monthly cron's month, a weekday schedule's weekend); nil if it never runs.
    package static func longestInterval(_ schedule: Schedule, from: Date) -> Double? {
        var all = Array(schedule.nextRuns(after: from, count: 64).prefix { $0 <= from.addingTimeInterval(35 * 86400) })
        // Fewer than two runs in five weeks (a monthly schedule on the 31st, say): the gap
        // between the next two, however far apart.
        if all.count < 2 { all = schedule.nextRuns(after: from, count: 2) }
        guard all.count >= 2 else { return nil }
        return zip(all, all.dropFirst()).map { $1.timeIntervalSince($0) }.max()
    }

    /// The age past which the newest backup is stale: the policy's `max_age`, or twice the
    /// schedule's longest interval, and at least an hour.
    package static func limit(_ policy: Policy, now: Date) -> Double {
        if let m = policy.maxAge { return m }
        let interval = (try? policy.schedule.schedule()).flatMap { longestInterval($0, from: now) } ?? 86400
        return max(3600, 2 * interval)
    }

    package struct Verdict: Sendable, Equatable, Codable {
        package var stale: Bool
        /// How old the newest backup is (seconds); nil when there is none.
        package var age: Double?
        package var limit: Double
        /// For people: "newest backup 2026-11-22T030000Z-auto is 3 h 10 min old; the policy allows 26h".
        package var message: String
    }

    /// Judges a layer with a policy by its newest backup on the policy's storage. A layer
    /// without any backup is stale once `limit` has passed since the policy was installed
    /// (a fresh install is not an alarm). A disabled policy is never stale: nothing is due.
    package static func judge(policy: Policy, newest: BackupName?, now: Date) -> Verdict? {
        guard policy.enabled else { return nil }
        let limit = limit(policy, now: now)
        let allowed = Durations.format(limit)
        guard let newest else {
            let waited = now.timeIntervalSince(policy.installed)
            return Verdict(
                stale: waited > limit, age: nil, limit: limit,
                message: "no backup on \(policy.storage) in the \(formatDuration(max(0, waited))) since the add-on was installed; the policy allows \(allowed)")
        }
        let age = now.timeIntervalSince(newest.date)
        return Verdict(
            stale: age > limit, age: age, limit: limit,
            message: "newest backup \(newest) is \(formatDuration(max(0, age))) old; the policy allows \(allowed)")
    }
}

/// Whether a scheduler is looking after the fleet, from the heartbeats in the catalog.
package struct SchedulerHealth: Codable, Sendable, Equatable {
    package enum State: String, Codable, Sendable {
        /// Heard of within `silentAfter`.
        case running
        /// Ended cleanly (SIGTERM) and none runs since.
        case stopped
        /// Stopped reporting without saying goodbye: killed, crashed, hung, or its host down.
        case silent
        /// No scheduler has used this catalog.
        case never
    }

    package var state: State
    package var host: String?
    package var pid: Int?
    /// When it was last heard of (ISO 8601).
    package var seen: String?
    package var message: String

    /// A scheduler writes its heartbeat this often...
    package static let beatEvery: Double = 15
    /// ...and is silent once none came for this long.
    package static let silentAfter: Double = 60

    /// Judges the heartbeats (newest first or in any order) at `now` (pure).
    package static func judge(_ beats: [SchedulerBeat], now: Date) -> SchedulerHealth {
        let fmt = ISO8601DateFormatter()
        let byRecency = beats.sorted { $0.seen > $1.seen }
        if let live = byRecency.first(where: { $0.stopped == nil && now.timeIntervalSince($0.seen) <= silentAfter }) {
            return SchedulerHealth(
                state: .running, host: live.host, pid: live.pid, seen: fmt.string(from: live.seen),
                message:
                    "running on \(live.host) (pid \(live.pid)) since \(fmt.string(from: live.started)), heard of \(formatDuration(max(0, now.timeIntervalSince(live.seen)))) ago"
            )
        }
        guard let last = byRecency.first else {
            return SchedulerHealth(
                state: .never, message: "no scheduler has run with this catalog: scheduled backups are not being made (stowage scheduler, or its systemd unit)")
        }
        if let stopped = last.stopped {
            return SchedulerHealth(
                state: .stopped, host: last.host, pid: last.pid, seen: fmt.string(from: last.seen),
                message: "stopped on \(last.host) (pid \(last.pid)) at \(fmt.string(from: stopped)): scheduled backups are not being made")
        }
        return SchedulerHealth(
            state: .silent, host: last.host, pid: last.pid, seen: fmt.string(from: last.seen),
            message:
                "the scheduler on \(last.host) (pid \(last.pid)) stopped reporting \(formatDuration(now.timeIntervalSince(last.seen))) ago (killed, crashed or hung): scheduled backups are not being made"
        )
    }
}
