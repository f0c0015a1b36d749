// When backups have stopped: the staleness limit a policy implies, the verdict on a layer's
// newest backup, the scheduler's heartbeat, and how status reports both (pure, no servers).
import Fleet
import Foundation
import Repository
import Scheduling
import Support
import Testing
import Topology

private func utc(_ s: String) -> Date { ISO8601DateFormatter().date(from: s)! }

private func policy(
    _ schedule: PolicySchedule, maxAge: Double? = nil, enabled: Bool = true,
    installed: String = "2026-11-01T00:00:00Z"
) -> Policy {
    var p = Policy(
        layer: "shop/sqldb", schedule: schedule, storage: "lab", keep: 3, credentials: nil, enabled: enabled,
        installed: utc(installed))
    p.maxAge = maxAge
    return p
}

@Suite struct StalenessTests {
    let now = utc("2026-11-25T12:00:00Z")  // a Wednesday

    @Test func theDefaultLimitIsTwiceTheLongestIntervalAndAtLeastAnHour() {
        #expect(Staleness.limit(policy(.expression("daily")), now: now) == 2 * 86400)
        #expect(Staleness.limit(policy(.expression("hourly")), now: now) == 2 * 3600)
        // Every minute: twice a minute is too jumpy; an hour at least.
        #expect(Staleness.limit(policy(.expression("* * * * *")), now: now) == 3600)
        // Weekdays only: the weekend is the longest gap (Friday 03:30 to Monday 03:30).
        #expect(Staleness.limit(policy(.custom(time: "03:30", days: "mon-fri", timeZone: "UTC")), now: now) == 2 * 3 * 86400)
        // The policy's own max_age wins.
        #expect(Staleness.limit(policy(.expression("daily"), maxAge: 26 * 3600), now: now) == 26 * 3600)
    }

    @Test func aBackupOlderThanTheLimitIsStale() throws {
        let p = policy(.expression("hourly"))
        let fresh = try #require(BackupName("2026-11-25T110000Z-auto"))
        let old = try #require(BackupName("2026-11-25T095900Z-auto"))
        #expect(Staleness.judge(policy: p, newest: fresh, now: now)?.stale == false)
        let v = try #require(Staleness.judge(policy: p, newest: old, now: now))
        #expect(v.stale)
        #expect(abs((v.age ?? 0) - 7260) < 0.001)
        #expect(v.message == "newest backup 2026-11-25T095900Z-auto is 2 h 1 min old; the policy allows 2h")
    }

    @Test func noBackupAtAllIsStaleOnlyOnceTheLimitHasPassedSinceInstall() throws {
        let justInstalled = policy(.expression("daily"), installed: "2026-11-25T06:00:00Z")
        #expect(Staleness.judge(policy: justInstalled, newest: nil, now: now)?.stale == false)
        let longAgo = policy(.expression("daily"), installed: "2026-11-20T06:00:00Z")
        let v = try #require(Staleness.judge(policy: longAgo, newest: nil, now: now))
        #expect(v.stale && v.age == nil)
        #expect(v.message.hasPrefix("no backup on lab in the "))
    }

    @Test func aPausedPolicyIsNeverStale() throws {
        let old = try #require(BackupName("2026-01-01T000000Z-auto"))
        #expect(Staleness.judge(policy: policy(.expression("hourly"), enabled: false), newest: old, now: now) == nil)
    }

    @Test func statusMarksAStaleLayerAsAnError() throws {
        let inv = try Inventory.parse(
            """
            environments:
              shop:
                layers:
                  sqldb: { engine: redis, nodes: [ { name: n1, db: h1 } ] }
            """, file: "i.yaml")
        let stored = [LayerStatus.Stored(storage: "lab", count: 3, newest: "2026-11-25T095900Z-auto", newestMissingOn: [], unreachable: [])]
        let s = FleetStatus.judge(
            layer: inv.layers[0], policy: policy(.expression("hourly")), last: nil, stored: stored,
            topology: nil, topologyError: nil, now: now)
        #expect(s.health == "error")
        #expect(s.staleness?.stale == true)
        #expect(s.problems.contains { $0.message.hasPrefix("stale: newest backup 2026-11-25T095900Z-auto") })
        // An hour later than that backup it was fine.
        let earlier = FleetStatus.judge(
            layer: inv.layers[0], policy: policy(.expression("hourly")), last: nil, stored: stored,
            topology: nil, topologyError: nil, now: utc("2026-11-25T10:30:00Z"))
        #expect(earlier.health == "ok" && earlier.staleness?.stale == false)
        // A storage that could not be read shows nothing: no verdict from it.
        let unread = [LayerStatus.Stored(storage: "lab", count: 0, newest: nil, newestMissingOn: [], unreachable: ["st1", "st2"])]
        #expect(
            FleetStatus.judge(
                layer: inv.layers[0], policy: policy(.expression("hourly")), last: nil, stored: unread,
                topology: nil, topologyError: nil, now: now
            ).staleness == nil)
    }
}

@Suite struct SchedulerHeartbeatTests {
    let now = utc("2026-11-25T12:00:00Z")

    @Test func aSchedulerHeardOfRecentlyRuns() {
        let beat = SchedulerBeat(host: "c1", pid: 42, started: utc("2026-11-25T08:00:00Z"), seen: now.addingTimeInterval(-20))
        let h = SchedulerHealth.judge([beat], now: now)
        #expect(h.state == .running && h.pid == 42)
        #expect(FleetStatus.schedulerProblems(h, policies: [policy(.expression("daily"))]).isEmpty)
    }

    @Test func oneThatStoppedReportingIsSilentAndAWarning() {
        let beat = SchedulerBeat(host: "c1", pid: 42, started: utc("2026-11-25T08:00:00Z"), seen: now.addingTimeInterval(-300))
        let h = SchedulerHealth.judge([beat], now: now)
        #expect(h.state == .silent)
        #expect(h.message.contains("stopped reporting 300 s ago") || h.message.contains("stopped reporting 5 min ago"), "\(h.message)")
        let problems = FleetStatus.schedulerProblems(h, policies: [policy(.expression("daily"))])
        #expect(problems.map(\.severity) == ["warning"])
        // Nothing is scheduled: no scheduler needed.
        #expect(FleetStatus.schedulerProblems(h, policies: [policy(.expression("daily"), enabled: false)]).isEmpty)
    }

    @Test func aCleanStopIsToldApartAndTheNewestSchedulerCounts() {
        let old = SchedulerBeat(host: "c1", pid: 41, started: utc("2026-11-24T08:00:00Z"), seen: utc("2026-11-24T09:00:00Z"))
        let stopped = SchedulerBeat(
            host: "c1", pid: 42, started: utc("2026-11-25T08:00:00Z"), seen: utc("2026-11-25T11:00:00Z"),
            stopped: utc("2026-11-25T11:00:00Z"))
        #expect(SchedulerHealth.judge([old, stopped], now: now).state == .stopped)
        #expect(SchedulerHealth.judge([], now: now).state == .never)
        let live = SchedulerBeat(host: "c2", pid: 7, started: now.addingTimeInterval(-30), seen: now.addingTimeInterval(-5))
        #expect(SchedulerHealth.judge([stopped, live], now: now).host == "c2")
    }
}
