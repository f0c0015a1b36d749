import Fleet
// The scheduler's pure decisions, policies files and status ordering, without servers.
import Foundation
import Operations
import Support
import Testing

@testable import Scheduling

private func utc(_ s: String) -> Date { ISO8601DateFormatter().date(from: s)! }

@Suite struct SchedulerLogicTests {
    @Test func aMissedSlotIsMadeUpOnceWhateverTheDowntime() throws {
        let hourly = try Schedule.parse("hourly")
        // Down from 10:30 to 10:50: nothing was due.
        #expect(SchedulerLogic.missedSlot(hourly, since: utc("2026-11-22T10:30:00Z"), now: utc("2026-11-22T10:50:00Z")) == nil)
        // Down over one slot: that slot.
        #expect(SchedulerLogic.missedSlot(hourly, since: utc("2026-11-22T10:00:00Z"), now: utc("2026-11-22T11:20:00Z")) == utc("2026-11-22T11:00:00Z"))
        // Down three days: one make-up, for the latest slot.
        #expect(SchedulerLogic.missedSlot(hourly, since: utc("2026-11-19T10:00:00Z"), now: utc("2026-11-22T11:20:00Z")) == utc("2026-11-22T11:00:00Z"))
        // A minutely schedule down for a year: still the latest minute, found quickly.
        let minutely = try Schedule.parse("* * * * *")
        let started = Date()
        #expect(SchedulerLogic.missedSlot(minutely, since: utc("2025-11-22T10:00:00Z"), now: utc("2026-11-22T11:20:30Z")) == utc("2026-11-22T11:20:00Z"))
        #expect(Date().timeIntervalSince(started) < 5)
        // A slot exactly at `since` was attempted; exactly at `now` is due (not missed twice).
        #expect(SchedulerLogic.missedSlot(hourly, since: utc("2026-11-22T11:00:00Z"), now: utc("2026-11-22T11:59:59Z")) == nil)
        #expect(SchedulerLogic.missedSlot(hourly, since: utc("2026-11-22T10:00:00Z"), now: utc("2026-11-22T11:00:00Z")) == utc("2026-11-22T11:00:00Z"))
        // A monthly schedule: the 1st of this month.
        let monthly = try Schedule.parse("monthly")
        #expect(SchedulerLogic.missedSlot(monthly, since: utc("2026-09-15T00:00:00Z"), now: utc("2026-11-22T00:00:00Z")) == utc("2026-11-01T00:00:00Z"))
    }

    @Test func exitStatusesAreJudgedTransientOrPermanent() {
        func j(_ code: Int32?, signal: Int32? = nil, cancelled: Bool = false) -> RunJudgement {
            SchedulerLogic.judge(exitStatus: code, signal: signal, cancelledByScheduler: cancelled)
        }
        #expect(j(0) == .ok)
        #expect(j(2) == .warnings)
        for code: Int32 in [5, 9, 11, 12] { #expect(j(code) == .transient, "exit \(code)") }
        // A slot another coordinator already backed up: skipped, neither retried nor reported.
        #expect(j(16) == .alreadyDone)
        #expect(
            NotificationEvent.of(
                judgement: .alreadyDone, exitCode: 16, message: "done", hint: nil, layer: "a/b", storage: "s", attempt: 1, backup: nil,
                degraded: false, time: Date()) == nil)
        for code: Int32 in [1, 3, 4, 6, 7, 8, 10, 13, 64, 66, 78] { #expect(j(code) == .permanent, "exit \(code)") }
        #expect(j(nil, signal: 9) == .transient)
        #expect(j(nil, signal: 15, cancelled: true) == .cancelled)
        #expect(j(0, cancelled: true) == .ok)  // committed before the cancel reached it
        #expect(j(99) == .permanent)
    }

    @Test func retriesBackOffAndYieldToTheNextSlot() {
        #expect(SchedulerLogic.retryDelay(attempt: 2, base: 60) == 60)
        #expect(SchedulerLogic.retryDelay(attempt: 3, base: 60) == 120)
        #expect(SchedulerLogic.retryDelay(attempt: 4, base: 60) == 240)
        #expect(SchedulerLogic.retryDelay(attempt: 30, base: 60) == 3600)
        let now = utc("2026-11-22T10:00:00Z")
        #expect(SchedulerLogic.shouldRetry(.transient, attempt: 1, retries: 3, retryAt: now.addingTimeInterval(60), nextSlot: now.addingTimeInterval(3600)))
        #expect(!SchedulerLogic.shouldRetry(.transient, attempt: 4, retries: 3, retryAt: now.addingTimeInterval(60), nextSlot: nil))
        #expect(!SchedulerLogic.shouldRetry(.permanent, attempt: 1, retries: 3, retryAt: now.addingTimeInterval(60), nextSlot: nil))
        // The next slot comes first: its run covers this one.
        #expect(!SchedulerLogic.shouldRetry(.transient, attempt: 1, retries: 3, retryAt: now.addingTimeInterval(120), nextSlot: now.addingTimeInterval(60)))
    }

    @Test func admissionHonoursEveryLimit() {
        let now = utc("2026-11-22T10:00:00Z")
        func q(_ l: String, _ s: String, _ at: Double) -> QueuedRun {
            QueuedRun(layer: l, storage: s, slot: now, trigger: "schedule", attempt: 1, startAt: now.addingTimeInterval(at))
        }
        let queue = [q("e/a", "s1", -5), q("e/b", "s1", -4), q("e/c", "s1", -3), q("e/d", "s2", -2), q("e/e", "s2", 10), q("e/busy", "s2", -9)]
        // Global 3, 2 per storage, e/busy already running on s2.
        let started = SchedulerLogic.admissible(queue: queue, running: [("e/busy", "s2")], now: now, concurrency: 3, perStorage: 2)
        #expect(started.map(\.layer) == ["e/a", "e/b"])
        // Global limit reached: nothing.
        #expect(
            SchedulerLogic.admissible(queue: queue, running: [("x/1", "s3"), ("x/2", "s3"), ("x/3", "s3")], now: now, concurrency: 3, perStorage: 9).isEmpty)
        // Not yet due (start delay): not started.
        #expect(!SchedulerLogic.admissible(queue: queue, running: [], now: now, concurrency: 9, perStorage: 9).map(\.layer).contains("e/e"))
        #expect(SchedulerLogic.startDelay(window: 60, random: 0.5) == 30)
        #expect(SchedulerLogic.startDelay(window: 60, random: 2) == 60)
    }

    @Test func notificationsForEachKindOfTrouble() throws {
        func e(_ j: RunJudgement, _ code: Int32?, degraded: Bool = false) -> NotificationEvent.Kind? {
            NotificationEvent.of(
                judgement: j, exitCode: code, message: "m", hint: nil, layer: "shop/sqldb", storage: "s", attempt: 1,
                backup: nil, degraded: degraded, time: utc("2026-11-22T10:00:00Z"))?.event
        }
        // A good run is an event too; only targets that opt in get it (NotificationTarget.wants).
        #expect(e(.ok, 0) == .backupSucceeded)
        #expect(e(.ok, 0, degraded: true) == .storageDegraded)
        #expect(e(.permanent, 4) == .credentialsRejected)
        #expect(e(.permanent, 3) == .unsafeTopology)
        #expect(e(.transient, 12) == .runFailed)
        #expect(e(.cancelled, nil) == nil)
        let payload = try #require(
            NotificationEvent.of(
                judgement: .permanent, exitCode: 4, message: "DB credentials of shop/sqldb are incorrect",
                hint: "h", layer: "shop/sqldb", storage: "s", attempt: 2, backup: nil, degraded: false,
                time: utc("2026-11-22T10:00:00Z")))
        let obj = try #require(try JSONSerialization.jsonObject(with: payload.json) as? [String: Any])
        #expect(obj["event"] as? String == "credentials-rejected")
        #expect(obj["exitCode"] as? Int == 4)
        #expect(obj["time"] as? String == "2026-11-22T10:00:00Z")
        #expect(obj["version"] as? Int == 2)
    }
}

@Suite struct PolicyFileTests {
    let inventory = """
        storages:
          st: { password_env: X, nodes: [ { name: s1, ssh: root@10.0.0.9, root: /data } ] }
        environments:
          shop:
            layers:
              sqldb: { engine: postgresql, nodes: [ { name: a, db: 10.0.0.1 } ] }
              cache: { engine: redis, nodes: [ { name: b, db: 10.0.0.2 } ] }
        """

    @Test func roundTripsEverySchedulesKind() throws {
        let installed = utc("2026-11-22T09:00:00Z")
        let policies = [
            Policy(
                layer: "shop/sqldb", schedule: .custom(time: "09:00", days: "mon,wed,fri", timeZone: "Europe/Berlin"), storage: "st", keep: 7,
                credentials: CredentialsSpec(user: "webadmin", password: .file("/etc/stowage/pw"), location: ""), source: .replica, installed: installed),
            Policy(layer: "shop/cache", schedule: .expression("*/15 * * * *"), storage: "st", keep: 3, credentials: nil, enabled: false, installed: installed),
        ]
        let text = PolicyFile.render(policies)
        let back = try PolicyFile.parse(text, file: "p.yaml")
        #expect(back.map(\.withoutLocation) == policies.sorted { $0.layer < $1.layer }.map(\.withoutLocation))
        // And the inventory takes the policy's credentials for its layer.
        let inv = try Inventory.parse(inventory, file: "i.yaml", policies: back)
        #expect(inv.layers.first { $0.name == "sqldb" }?.credentials?.user == "webadmin")
    }

    @Test func aSQLLayerNeedsCredentialsFromTheInventoryOrItsPolicy() throws {
        do throws(StowageError) {
            _ = try Inventory.parse(inventory, file: "i.yaml")
            Issue.record("accepted a PostgreSQL layer without credentials")
        } catch {
            #expect(error.message.contains("layer shop/sqldb has no credentials"))
            #expect(error.hint?.contains("--db-user") == true)
        }
    }

    @Test(arguments: [
        ("policies:\n  shop/sqldb: { schedule: daily, storage: st, keep: 0 }\n", "p.yaml:2:", "keep must be at least 1"),
        ("policies:\n  shop/sqldb: { schedule: '0 0 31 2 *', storage: st, keep: 3 }\n", "p.yaml:2:", "never runs"),
        ("policies:\n  shop/sqldb: { schedule: { time: '09:00', tz: Mars/Base }, storage: st, keep: 3 }\n", "p.yaml:2:", "unknown time zone"),
        ("policies:\n  shop/sqldb: { schedule: daily, storage: st, keep: 3, credentials: { user: u, password: x } }\n", "p.yaml:2:", "plain-text passwords"),
        ("policies:\n  shop/sqldb: { schedule: daily, storge: st, keep: 3 }\n", "p.yaml:2:", "did you mean 'storage'"),
        ("policies:\n  sqldb: { schedule: daily, storage: st, keep: 3 }\n", "p.yaml:2:", "must be ENV/LAYER"),
        ("policies:\n  shop/sqldb: { schedule: daily, storage: st, keep: 3, installed: yesterday }\n", "p.yaml:2:", "installed must be a UTC time"),
        ("policies:\n  shop/sqldb: { schedule: daily\n", "p.yaml:", "YAML syntax error"),
    ])
    func handEditsAreValidatedWithFileAndLine(_ text: String, _ place: String, _ why: String) {
        do throws(StowageError) {
            _ = try PolicyFile.parse(text, file: "p.yaml")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.status == .invalidInventory)
            #expect(error.message.hasPrefix(place), "\(error.message)")
            #expect((error.message + " " + (error.hint ?? "")).contains(why), "\(error.message)")
        }
    }

    @Test func policiesMustNameKnownLayersAndStorages() throws {
        for (p, why) in [
            ("policies:\n  shop/nosuch: { schedule: daily, storage: st, keep: 3 }\n", "not a layer of i.yaml"),
            ("policies:\n  shop/cache: { schedule: daily, storage: other, keep: 3 }\n", "names storage 'other'"),
        ] {
            let policies = try PolicyFile.parse(p, file: "p.yaml")
            do throws(StowageError) {
                _ = try Inventory.parse(
                    inventory.replacingOccurrences(
                        of: "{ engine: postgresql, nodes: [ { name: a, db: 10.0.0.1 } ] }",
                        with: "{ engine: postgresql, nodes: [ { name: a, db: 10.0.0.1 } ], credentials: { user: u } }"),
                    file: "i.yaml", policies: policies)
                Issue.record("accepted \(p)")
            } catch {
                #expect(error.message.contains(why), "\(error.message)")
            }
        }
    }

    @Test func writesAreAtomicAndLeaveNoTemporaryFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("policies-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/stowage.policies.yaml"
        #expect(PolicyStore.defaultPath(forInventory: "\(dir)/stowage.yaml") == path)
        try PolicyStore.update(path) { (all: inout [Policy]) throws(StowageError) in
            all.append(
                Policy(layer: "shop/cache", schedule: .expression("daily"), storage: "st", keep: 2, credentials: nil, installed: utc("2026-11-22T00:00:00Z")))
        }
        // A change that throws writes nothing.
        let before = try String(contentsOfFile: path, encoding: .utf8)
        do throws(StowageError) {
            try PolicyStore.update(path) { (all: inout [Policy]) throws(StowageError) in
                all.removeAll()
                throw StowageError(.usage, "changed my mind")
            }
        } catch {
            #expect(error.message == "changed my mind")
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == before)
        #expect(try PolicyStore.read(path).map(\.layer) == ["shop/cache"])
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(left == ["stowage.policies.yaml", "stowage.policies.yaml.lock"])
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }
}

@Suite struct FleetStatusTests {
    @Test func failuresComeFirst() throws {
        let inv = try Inventory.parse(
            """
            environments:
              e:
                layers:
                  a: { engine: redis, nodes: [ { name: n1, db: h1 } ] }
                  b: { engine: redis, nodes: [ { name: n2, db: h2 } ] }
                  c: { engine: redis, nodes: [ { name: n3, db: h3 } ] }
            """, file: "i.yaml")
        let now = utc("2026-11-22T10:00:00Z")
        var failed = RunRecord(layer: "e/c", storage: "s", trigger: "schedule", scheduledFor: now, started: now, attempt: 1, schedulerPid: 1)
        failed.outcome = .failed
        failed.error = "DB credentials of e/c are incorrect"
        var warned = failed
        warned.layer = "e/b"
        warned.outcome = .warnings
        warned.error = "retention failed"
        let all = FleetStatus.ordered([
            FleetStatus.judge(layer: inv.layers[0], policy: nil, last: nil, stored: [], topology: nil, topologyError: nil, now: now),
            FleetStatus.judge(layer: inv.layers[1], policy: nil, last: warned, stored: [], topology: nil, topologyError: nil, now: now),
            FleetStatus.judge(layer: inv.layers[2], policy: nil, last: failed, stored: [], topology: nil, topologyError: nil, now: now),
        ])
        #expect(all.map(\.layer) == ["e/c", "e/b", "e/a"])
        #expect(all.map(\.health) == ["error", "warning", "ok"])
        #expect(all[0].problems.first?.message.contains("credentials") == true)
        #expect(
            FleetStatus.text(FleetReport(layers: all, scheduler: nil, problems: [])).contains(
                "error: e/c: last run failed: DB credentials of e/c are incorrect"))
    }
}
