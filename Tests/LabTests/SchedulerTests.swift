// The scheduler daemon on the lab: a fleet of 22 layers (20 standalone Redis nodes, the shop's
// PostgreSQL and MariaDB) every minute with concurrency 4; a held lock retried; wrong
// credentials reported; SIGTERM; and a SIGKILL mid-run with a restart that recovers.
// Each test has an inventory of its own (its own storage folders, catalog and policies) on
// the lab's nodes.
@preconcurrency import Crypto
import Foundation
import Support
import TestSupport
import Testing

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Scheduling
@testable import Storage

/// A fleet inventory in a folder of its own.
struct FleetLab {
    let dir: String
    var inventory: String { "\(dir)/stowage.yaml" }
    var catalog: String { "\(dir)/stowage.catalog.sqlite" }
    var notes: String { "\(dir)/notes.jsonl" }
    var webhookLog: String { "\(dir)/webhook.jsonl" }

    static let fleetNodes = (1...20).map { String(format: "fl%02d", $0) }

    /// `sshUser`: the account every node is entered as (the lab's sshds also let in the
    /// unprivileged `stowage-backup`).
    /// `extraStorageNodes`: more nodes of fleet-storage (buckets), and its `quorum`.
    init(
        fleet: [String], shop: Bool, scheduler: String, webhookPort: Int? = nil, notifications: String? = nil, sshUser: String = "root",
        extraStorageNodes: [String] = [], quorum: Int? = nil
    ) throws {
        dir = "\(Lab.dir)/work/sched-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var t = """
            ssh: { identity: \(Lab.dir)/ssh/id_ed25519, known_hosts: \(Lab.dir)/ssh/known_hosts }
            probe: { connect_timeout: 3s, query_timeout: 5s }
            storages:
              fleet-storage:
                password_file: \(Lab.dir)/secrets/storage-password
                nodes:
                  - { name: st1, ssh: \(sshUser)@127.0.9.1:\(Lab.sshPort), root: \(dir)/st1 }
                  - { name: st2, ssh: \(sshUser)@127.0.9.2:\(Lab.sshPort), root: \(dir)/st2 }
            \(extraStorageNodes.map { "      - \($0)\n" }.joined())\(quorum.map { "    quorum: \($0)\n" } ?? "")scheduler: { \(scheduler) }

            """
        t +=
            notifications ?? """
                notifications:
                  command: "cat >> \(dir)/notes.jsonl; echo >> \(dir)/notes.jsonl"

                """
        if let webhookPort { t += "  webhook: http://127.0.0.1:\(webhookPort)/hook\n" }
        t += "environments:\n  fleet:\n    layers:\n"
        for n in fleet {
            let i = Int(n.dropFirst(2))!
            t +=
                "      r\(n.dropFirst(2)): { engine: redis, nodes: [ { name: \(n), ssh: \(sshUser)@127.0.5.\(i):\(Lab.sshPort), db: 127.0.5.\(i):6379 } ], credentials: { password_file: \(Lab.dir)/secrets/redis-password } }\n"
        }
        if shop {
            t += """
                  shop:
                    layers:
                      sqldb:
                        engine: postgresql
                        nodes: [ { name: pg1, ssh: root@127.0.1.10:\(Lab.sshPort), db: 127.0.1.10:5432 }, { name: pg2, ssh: root@127.0.1.11:\(Lab.sshPort), db: 127.0.1.11:5432 } ]
                        credentials: { user: webadmin, password_file: \(Lab.dir)/secrets/db-password }
                      mariadb:
                        engine: mysql
                        nodes: [ { name: my1, ssh: root@127.0.2.10:\(Lab.sshPort), db: 127.0.2.10:3306 }, { name: my2, ssh: root@127.0.2.11:\(Lab.sshPort), db: 127.0.2.11:3306 } ]
                        credentials: { user: webadmin, password_file: \(Lab.dir)/secrets/db-password }

                """
        }
        try t.write(toFile: inventory, atomically: true, encoding: .utf8)
    }

    func writePolicies(_ policies: [Policy]) throws {
        try PolicyFile.render(policies).write(toFile: PolicyStore.defaultPath(forInventory: inventory), atomically: true, encoding: .utf8)
    }

    func startScheduler(log: String = "scheduler") throws -> BackgroundProcess {
        try BackgroundProcess(Repo.stowage, ["scheduler", "--config", inventory], output: "\(dir)/\(log).log")
    }

    func runs() async throws -> [RunRecord] { try await RunCatalog(path: catalog).runs() }

    func backups(_ selection: String) throws -> [BackupEntry] {
        let r = try runCommand(Repo.stowage, ["backups", selection, "--json", "--config", inventory])
        guard r.status == 0 else { throw SpawnError(description: "backups: \(r.stderr)") }
        try JSONSchema.validate(r.stdout, schema: "backups")
        return try JSONDecoder().decode([BackupEntry].self, from: Data(r.stdout.utf8))
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    /// Fills a fleet node so that its dump streams for seconds (800,000 keys of 600 bytes).
    /// Enough data that a backup of the node streams for a while (800,000 keys of 600 B).
    /// `slowSnapshot`: fewer keys, and Redis's own test knob makes it sleep 1 µs per key while
    /// it writes the RDB (about 90 µs with the kernel's timer slack, so about 7 s for 80,000
    /// keys): a backup is then certainly still dumping whenever the test acts, however fast
    /// the rest of the path is.
    static func fill(_ node: String, slowSnapshot: Bool = false) throws {
        _ = try redis(node, ["CONFIG", "SET", "maxmemory", "0"])
        _ = try redis(node, ["DEBUG", "POPULATE", slowSnapshot ? "80000" : "800000", "big", "600"])
        if slowSnapshot { _ = try redis(node, ["CONFIG", "SET", "rdb-key-save-delay", "1"]) }
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) a fleet node's Redis server.
    static func freeze(_ node: String, _ frozen: Bool) throws {
        let pid = Int32(try String(contentsOfFile: "\(Lab.dir)/run/\(node).pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))!
        kill(pid, frozen ? SIGSTOP : SIGCONT)
    }

    static func empty(_ node: String) {
        _ = try? redis(node, ["FLUSHALL"])
        _ = try? redis(node, ["CONFIG", "SET", "maxmemory", "64mb"])
        _ = try? redis(node, ["CONFIG", "SET", "rdb-key-save-delay", "0"])
        try? freeze(node, false)
    }

    /// Waits (up to 30 s) until `count` chunk files have landed on st1: a backup is
    /// mid-stream. (Files, not entries: each chunk's folder counted too once made a backup of
    /// one or two chunks, as the chunker's random cut points allow, never seen.)
    func waitForChunks(_ count: Int = 2) async throws -> Bool {
        let chunks = "\(dir)/st1/fleet/chunks"
        for _ in 0..<600 {
            var files = 0
            if let e = FileManager.default.enumerator(atPath: chunks) {
                while e.nextObject() != nil { if e.fileAttributes?[.type] as? FileAttributeType == .typeRegular { files += 1 } }
            }
            if files >= count { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// The scheduled runs of this lab and the agent sessions on `node` still alive after up
    /// to 10 s.
    func leftovers(on node: String) async throws -> [Int32] {
        var left: [Int32] = []
        for _ in 0..<100 {
            left = Procs.matching("--policy --json --config \(inventory)") + (try Procs.agentSessions(on: node))
            if left.isEmpty { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        return left
    }

    static func redis(_ node: String, _ args: [String]) throws -> String {
        let i = Int(node.dropFirst(2))!
        let r = try runCommand("/usr/bin/redis-cli", ["-h", "127.0.5.\(i)", "-p", "6379"] + args, env: ["REDISCLI_AUTH": try Lab.secret("redis-password")])
        guard r.status == 0 else { throw SpawnError(description: "redis-cli \(args): \(r.stderr)") }
        return r.stdout
    }
}

/// Records the bodies of POST requests (the webhook's receiving end), one JSON per line.
final class WebhookReceiver: @unchecked Sendable {
    let process: BackgroundProcess
    let port: Int

    /// `hang`: accepts a request and never answers (a receiver that is down in the worst way).
    init(log: String, hang: Bool = false) throws {
        port = Int.random(in: 20000...29999)
        let script = """
            import http.server, sys, time
            class H(http.server.BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers['Content-Length']))
                    if sys.argv[3] == 'hang':
                        time.sleep(3600)
                    with open(sys.argv[2], 'ab') as f: f.write(body + b'\\n')
                    with open(sys.argv[2] + '.sig', 'a') as f: f.write((self.headers['X-Stowage-Signature'] or '-') + '\\n')
                    self.send_response(204); self.end_headers()
                def log_message(self, *a): pass
            http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
            """
        process = try BackgroundProcess("/usr/bin/python3", ["-c", script, String(port), log, hang ? "hang" : "answer"], output: "/dev/null")
        // Listening before the test goes on (python may take a while to start on a busy machine).
        for _ in 0..<100 where !Self.listening(port) { usleep(100_000) }
    }

    deinit { process.signal(SIGKILL) }

    static func listening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// The highest number of intervals open at one instant.
func peakOverlap(_ intervals: [(Date, Date)]) -> Int {
    var events: [(Date, Int)] = []
    for (a, b) in intervals { events.append((a, 1)); events.append((b, -1)) }
    var cur = 0, peak = 0
    for (_, d) in events.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) { cur += d; peak = max(peak, cur) }
    return peak
}

extension LabSuites {
    @Suite(.serialized) struct SchedulerDaemon {
        init() throws { try Lab.require() }

        @Test func aFleetOfTwentyTwoLayersEveryMinuteWithConcurrencyFour() async throws {
            let hook = try FileManager.default.temporaryDirectory.appendingPathComponent("webhook-\(UUID().uuidString).jsonl").path
            let receiver = try WebhookReceiver(log: hook)
            defer { unlink(hook) }
            let fleet = Array(FleetLab.fleetNodes.prefix(19)) + ["fl20"]
            let lab = try FleetLab(
                fleet: fleet, shop: true,
                scheduler: "concurrency: 4, per_storage: 4, start_delay: 10s, retries: 4, retry_delay: 3s, grace: 60s",
                webhookPort: receiver.port)
            defer { lab.cleanup() }
            for n in fleet { _ = try FleetLab.redis(n, ["SET", "fleet:\(n)", String(repeating: n, count: 1000)]) }
            let wrong = "\(lab.dir)/wrong-password"
            try "not-the-password\n".write(toFile: wrong, atomically: true, encoding: .utf8)
            let now = Date()
            var policies = fleet.map { n in
                Policy(
                    layer: "fleet/r\(n.dropFirst(2))", schedule: .expression("* * * * *"), storage: "fleet-storage", keep: 3, credentials: nil, installed: now)
            }
            // fl20's policy carries a wrong password: its runs fail for good and are reported.
            policies[policies.count - 1].credentials = CredentialsSpec(user: nil, password: .file(wrong), location: "")
            policies += ["shop/sqldb", "shop/mariadb"].map {
                Policy(layer: $0, schedule: .expression("* * * * *"), storage: "fleet-storage", keep: 3, credentials: nil, installed: now)
            }
            try lab.writePolicies(policies)
            let good = policies.map(\.layer).filter { $0 != "fleet/r20" }

            let daemon = try lab.startScheduler()
            let first = try #require(try Schedule.parse("* * * * *").next(after: now))
            let second = first.addingTimeInterval(60)
            // While the second slot comes due, another coordinator holds r02's lock: its run
            // fails with "locked" (transient) and is retried until the lock is gone.
            let inv = try Inventory.load(path: lab.inventory)
            while Date() < second.addingTimeInterval(-3) { try await Task.sleep(for: .milliseconds(200)) }
            let storage = try ReplicatedStorage(try inv.requireStorage(nil), inventory: inv, agent: try AgentBinary.locate(nil), environment: "fleet")
            let held = try await LayerLock.acquire(storage.nodes[0], layer: "r02", operation: "another coordinator's backup")
            // Held until r02's run for the second slot has failed on it (its start depends on the
            // random delay and on how fast the wave ahead of it drains), at most 60 s.
            let holdUntil = Date().addingTimeInterval(60)
            while Date() < holdUntil {
                let r02 = try await lab.runs().filter { $0.layer == "fleet/r02" && $0.scheduledFor == second }
                if r02.contains(where: { $0.outcome == .failed }) { break }
                try await Task.sleep(for: .milliseconds(300))
            }
            await held.release()

            // Every good layer has a successful run for both slots, or the test waits up to 60 s for it.
            let deadline = second.addingTimeInterval(75)
            var rows: [RunRecord] = []
            while Date() < deadline {
                rows = try await lab.runs()
                let done = good.allSatisfy { l in
                    [first, second].allSatisfy { s in rows.contains { $0.layer == l && $0.scheduledFor == s && $0.outcome == .ok } }
                }
                if done && !rows.contains(where: { $0.outcome == .running }) { break }
                try await Task.sleep(for: .seconds(1))
            }
            daemon.signal(SIGTERM)
            let exit = daemon.wait(timeout: 60)
            #expect(exit == 0, "scheduler exit \(String(describing: exit)):\n\(daemon.output.suffix(3000))")
            #expect(daemon.output.contains("scheduler stopped"))
            rows = try await lab.runs()
            let log = daemon.output

            // Every due run happened, once, and succeeded (retries aside); none for a slot that was not due.
            for l in good {
                for s in [first, second] {
                    let ok = rows.filter { $0.layer == l && $0.scheduledFor == s && $0.outcome == .ok }
                    #expect(ok.count == 1, "\(l) at \(s): \(rows.filter { $0.layer == l }.map { "\($0.outcome) \($0.error ?? "")" })\n\(log.suffix(2000))")
                }
                #expect(!rows.contains { $0.layer == l && $0.outcome == .skipped }, "\(l) skipped a slot")
                #expect(rows.filter { $0.layer == l }.allSatisfy { [first, second, second.addingTimeInterval(60)].contains($0.scheduledFor!) })
            }
            // None overlapped: per layer, runs one after another; fleet-wide at most 4 at once (and
            // the limit was used); each start within the 10 s delay window, or waiting for a slot.
            for l in policies.map(\.layer) {
                let mine = rows.filter { $0.layer == l && $0.ended != nil }.map { ($0.started, $0.ended!) }
                #expect(peakOverlap(mine) <= 1, "\(l) overlapped itself")
            }
            let all = rows.filter { $0.ended != nil && $0.outcome != .skipped }.map { ($0.started, $0.ended!) }
            let peak = peakOverlap(all)
            #expect(peak <= 4 && peak >= 2, "peak concurrency \(peak)")
            for r in rows where r.trigger == "schedule" { #expect(r.started >= r.scheduledFor!, "\(r.layer) started before its slot") }
            let firstStarts = rows.filter { $0.trigger == "schedule" && $0.attempt == 1 }.map { $0.started.timeIntervalSince($0.scheduledFor!) }
            #expect(Set(firstStarts.map { Int($0) }).count > 3, "starts were not spread: \(firstStarts)")

            // The held lock: r02's second slot failed with exit 11 at least once, then succeeded, unreported.
            let r02 = rows.filter { $0.layer == "fleet/r02" && $0.scheduledFor == second }.sorted { $0.attempt < $1.attempt }
            #expect(r02.first?.outcome == .failed && r02.first?.exitCode == 11, "\(r02.map { "\($0.attempt) \($0.outcome) \($0.exitCode ?? -1)" })")
            #expect(r02.last?.outcome == .ok && (r02.last?.attempt ?? 0) >= 2)
            #expect(r02.dropLast().allSatisfy { $0.error?.contains("another coordinator's backup") == true })

            // Wrong credentials: failed, never retried, reported by the command and the webhook.
            let r20 = rows.filter { $0.layer == "fleet/r20" }
            #expect(!r20.isEmpty && r20.allSatisfy { $0.outcome == .failed && $0.exitCode == 4 && $0.attempt == 1 })
            let notes = try String(contentsOfFile: lab.notes, encoding: .utf8).split(separator: "\n").map { Data($0.utf8) }
            for n in notes { try JSONSchema.validate(String(decoding: n, as: UTF8.self), schema: "notification") }
            struct Note: Decodable { var event: String; var layer: String; var exitCode: Int?; var message: String }
            let decoded = try notes.map { try JSONDecoder().decode(Note.self, from: $0) }
            #expect(decoded.count == r20.count, "\(decoded.map { "\($0.layer) \($0.event)" })")
            #expect(decoded.allSatisfy { $0.layer == "fleet/r20" && $0.event == "credentials-rejected" && $0.exitCode == 4 })
            #expect(decoded.first?.message.contains("DB credentials of fleet/r20 are incorrect") == true)
            let hooked = try String(contentsOfFile: hook, encoding: .utf8).split(separator: "\n").map {
                try JSONDecoder().decode(Note.self, from: Data($0.utf8))
            }
            #expect(hooked.map(\.layer) == decoded.map(\.layer))

            // The storage proves it: a backup per successful run (two, or three if the third slot
            // came before the scheduler stopped), on both nodes.
            let stored = try lab.backups("fleet") + (try lab.backups("shop"))
            for l in good {
                let mine = stored.filter { "\($0.environment)/\($0.layer)" == l }
                #expect(mine.count >= 2 && mine.count == rows.filter { $0.layer == l && $0.outcome == .ok }.count, "\(l): \(mine.map(\.name))")
                #expect(mine.allSatisfy { $0.replicas == ["st1", "st2"] && $0.name.hasSuffix("-auto") })
            }

            // status: failures first, from the catalog and the storage.
            let status = try runCommand(Repo.stowage, ["status", "--json", "--config", lab.inventory])
            #expect(status.status == 2)
            try JSONSchema.validate(status.stdout, schema: "status")
            struct S: Decodable { var layer: String; var health: String; var lastRun: L?; var backups: [B]; var nextRun: String? }
            struct L: Decodable { var outcome: String }
            struct B: Decodable { var count: Int }
            struct Report: Decodable { var layers: [S]; var scheduler: H? }
            struct H: Decodable { var state: String }
            let report = try JSONDecoder().decode(Report.self, from: Data(status.stdout.utf8))
            let st = report.layers
            // The scheduler said goodbye when it stopped.
            #expect(report.scheduler?.state == "stopped", "\(status.stdout)")
            #expect(st.first?.layer == "fleet/r20" && st.first?.health == "error")
            #expect(st.first { $0.layer == "fleet/r01" }?.lastRun?.outcome == "ok")
            #expect((st.first { $0.layer == "fleet/r01" }?.backups.first?.count ?? 0) >= 2)
            #expect(st.allSatisfy { $0.nextRun != nil })
            for n in fleet { _ = try FleetLab.redis(n, ["DEL", "fleet:\(n)"]) }
            _ = receiver
        }

        @Test func killedMidRunThenRestartedItRecoversAndLeavesNothingPartial() async throws {
            let lab = try FleetLab(fleet: ["fl01"], shop: false, scheduler: "concurrency: 2, start_delay: 0s, retries: 2, retry_delay: 2s, grace: 30s")
            defer { lab.cleanup() }
            // Enough data that the dump is still streaming when the scheduler is killed.
            try FleetLab.fill("fl01")
            defer { FleetLab.empty("fl01") }
            // Installed three hours ago, hourly: the last slot was missed, so it runs at once.
            let installed = Date().addingTimeInterval(-3 * 3600)
            try lab.writePolicies([
                Policy(
                    layer: "fleet/r01", schedule: .expression("hourly"), storage: "fleet-storage", keep: 2,
                    credentials: nil, installed: installed)
            ])
            let slot = try #require(SchedulerLogic.missedSlot(try Schedule.parse("hourly"), since: installed, now: Date()))

            let daemon = try lab.startScheduler()
            // Mid-run: the dump is streaming and chunks are landing on the storage; the server
            // is then frozen, so the stream cannot end before the scheduler is killed.
            #expect(try await lab.waitForChunks(), "no chunks arrived: \(daemon.output)")
            try FleetLab.freeze("fl01", true)
            let agents = try Procs.agentSessions(on: "fl01")
            #expect(!agents.isEmpty, "no agent running on fl01")
            daemon.signal(SIGKILL)
            #expect(daemon.wait(timeout: 10) == 128 + SIGKILL)
            try FleetLab.freeze("fl01", false)

            // The run dies with its scheduler, its agents end, and nothing was committed.
            let left = try await lab.leftovers(on: "fl01")
            #expect(left.isEmpty, "still running: \(left)")
            #expect(try lab.backups("fleet").isEmpty)
            let before = try await lab.runs()
            #expect(before.count == 1 && before[0].outcome == .running && before[0].scheduledFor == slot)

            // Restarted: the interrupted row is marked, the slot made up once, and it commits.
            let again = try lab.startScheduler(log: "restarted")
            var rows: [RunRecord] = []
            for _ in 0..<120 {
                rows = try await lab.runs()
                if rows.contains(where: { $0.outcome == .ok }) { break }
                try await Task.sleep(for: .seconds(1))
            }
            again.signal(SIGTERM)
            #expect(again.wait(timeout: 40) == 0, "\(again.output)")
            rows = try await lab.runs()
            #expect(rows.count == 2, "\(rows.map { "\($0.trigger) \($0.outcome)" })")
            let interrupted = rows.first { $0.id == before[0].id }
            #expect(interrupted?.outcome == .interrupted)
            let madeUp = rows.first { $0.id != before[0].id }
            #expect(madeUp?.outcome == .ok && madeUp?.trigger == "make-up" && madeUp?.scheduledFor == slot, "\(again.output)")
            #expect(again.output.contains("was interrupted"))
            #expect(again.output.contains("making it up once"))
            let stored = try lab.backups("fleet")
            #expect(stored.count == 1 && stored.first?.replicas == ["st1", "st2"])
            // Every chunk the backup references is there and sound, on both nodes.
            let verify = try runCommand(
                Repo.stowage,
                [
                    "storage", "verify", "fleet-storage", "--environment", "fleet", "--read-data-subset", "100%",
                    "--config", lab.inventory,
                ])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
            #expect(!verify.stdout.contains("foreign"))
        }

        @Test func restartAfterAFinishedRunDoesNotRunAgain() async throws {
            // The storage, not the catalog, says what ran: with the catalog deleted, a slot whose
            // backup is on the storage is not made up.
            let lab = try FleetLab(fleet: ["fl02"], shop: false, scheduler: "start_delay: 0s, grace: 10s")
            defer { lab.cleanup() }
            let installed = Date().addingTimeInterval(-2 * 3600)
            try lab.writePolicies([
                Policy(
                    layer: "fleet/r02", schedule: .expression("hourly"), storage: "fleet-storage", keep: 2,
                    credentials: nil, installed: installed)
            ])
            let d1 = try lab.startScheduler()
            var rows: [RunRecord] = []
            for _ in 0..<60 {
                rows = try await lab.runs()
                if rows.contains(where: { $0.outcome == .ok }) { break }
                try await Task.sleep(for: .seconds(1))
            }
            d1.signal(SIGTERM)
            #expect(d1.wait(timeout: 20) == 0)
            #expect(rows.filter { $0.outcome == .ok }.count == 1)
            for suffix in ["", "-wal", "-shm"] { unlink(lab.catalog + suffix) }
            let d2 = try lab.startScheduler(log: "restarted")
            // Its make-up decisions are taken, and logged, before it says it started: once it
            // has, a slot it would make up is already in its output (and nothing else is due
            // before the next hour).
            #expect(try await d2.waitForOutput("scheduler started"), "\(d2.output)")
            #expect(!d2.output.contains("making it up"), "\(d2.output)")
            d2.signal(SIGTERM)
            #expect(d2.wait(timeout: 20) == 0)
            #expect(try await lab.runs().isEmpty, "\(d2.output)")
            #expect(!d2.output.contains("making it up"))
            #expect(try lab.backups("fleet").count == 1)
        }
    }
}

extension LabSuites.SchedulerDaemon {
    @Test func sigtermLetsRunsFinishWithinGraceThenCancelsThem() async throws {
        let lab = try FleetLab(fleet: ["fl03"], shop: false, scheduler: "start_delay: 0s, grace: 0s")
        defer { lab.cleanup() }
        try FleetLab.fill("fl03", slowSnapshot: true)
        defer { FleetLab.empty("fl03") }
        try lab.writePolicies([
            Policy(
                layer: "fleet/r03", schedule: .expression("hourly"), storage: "fleet-storage", keep: 2,
                credentials: nil, installed: Date().addingTimeInterval(-3 * 3600))
        ])
        let daemon = try lab.startScheduler()
        // Mid-run: the node's agent is dumping (the snapshot takes seconds).
        var dumping = false
        for _ in 0..<300 where !dumping {
            dumping = !(try Procs.agentSessions(on: "fl03")).isEmpty
            if !dumping { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(dumping, "no agent ran on fl03: \(daemon.output)")
        try await Task.sleep(for: .milliseconds(500))
        daemon.signal(SIGTERM)
        let exit = daemon.wait(timeout: 30)
        #expect(exit == 0, "\(daemon.output)")
        #expect(daemon.output.contains("cancelling the run (grace period over)"), "\(daemon.output)")
        let rows = try await lab.runs()
        // Cancelled mid-dump: nothing committed.
        let stored = try lab.backups("fleet")
        #expect(rows.count == 1, "\(rows.map { "\($0.outcome) \($0.error ?? "")" })")
        #expect(stored.isEmpty, "\(stored.map(\.name))")
        #expect(rows.first?.outcome == .cancelled, "\(rows.map { "\($0.outcome) \($0.error ?? "")" })")
        let left = try await lab.leftovers(on: "fl03")
        #expect(left.isEmpty)
    }

    @Test func sighupReloadsAndABrokenFileKeepsThePreviousPolicies() async throws {
        let lab = try FleetLab(fleet: ["fl04", "fl05"], shop: false, scheduler: "start_delay: 0s, grace: 5s")
        defer { lab.cleanup() }
        let installed = Date()
        try lab.writePolicies([
            Policy(layer: "fleet/r04", schedule: .expression("daily"), storage: "fleet-storage", keep: 2, credentials: nil, installed: installed)
        ])
        let daemon = try lab.startScheduler()
        #expect(try await daemon.waitForOutput("1 enabled policy of 1"), "\(daemon.output)")
        try lab.writePolicies([
            Policy(layer: "fleet/r04", schedule: .expression("daily"), storage: "fleet-storage", keep: 2, credentials: nil, installed: installed),
            Policy(layer: "fleet/r05", schedule: .expression("weekly"), storage: "fleet-storage", keep: 2, credentials: nil, installed: installed),
        ])
        daemon.signal(SIGHUP)
        #expect(try await daemon.waitForOutput("reloaded \(lab.inventory): 2 enabled policies"), "\(daemon.output)")
        try "policies:\n  fleet/r04: { schedule: '0 0 31 2 *', storage: fleet-storage, keep: 2 }\n"
            .write(toFile: PolicyStore.defaultPath(forInventory: lab.inventory), atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(try await daemon.waitForOutput("reload failed, keeping the previous policies:"), "\(daemon.output)")
        #expect(daemon.output.contains("never runs"))
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
        #expect(try await lab.runs().isEmpty)
    }
}

extension LabSuites {
    @Suite(.serialized) struct AddonCLI {
        init() throws { try Lab.require() }

        @Test func installChecksFirstConfigureChangesUninstallKeepsBackups() throws {
            let dir = "\(Lab.dir)/work/addon-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            // The lab inventory plus a storage whose only node has no sshd.
            let inventory = "\(dir)/stowage.yaml"
            var text = try String(contentsOfFile: Lab.inventory, encoding: .utf8)
            text = text.replacingOccurrences(
                of: "storages:\n",
                with:
                    "storages:\n  gone:\n    password_file: \(Lab.dir)/secrets/storage-password\n    nodes: [ { name: st9, ssh: root@127.0.9.99:\(Lab.sshPort), root: \(dir)/st9 } ]\n"
            )
            try text.write(toFile: inventory, atomically: true, encoding: .utf8)
            let policies = "\(dir)/stowage.policies.yaml"
            func stowage(_ args: String...) throws -> CommandResult { try runCommand(Repo.stowage, args + ["--config", inventory]) }
            let wrong = "\(dir)/wrong"
            try "nope\n".write(toFile: wrong, atomically: true, encoding: .utf8)

            let badCreds = try stowage(
                "addon", "install", "shop/sqldb", "--schedule", "daily", "--keep", "7", "--storage", "lab-storage",
                "--db-user", "webadmin", "--db-password-file", wrong)
            #expect(badCreds.status == 4, "\(badCreds.stderr)")
            #expect(badCreds.stderr.contains("DB credentials of shop/sqldb are incorrect"))
            #expect(badCreds.stderr.contains("nothing was installed"))
            #expect(!FileManager.default.fileExists(atPath: policies))

            let unreachable = try stowage("addon", "install", "shop/cache", "--schedule", "daily", "--keep", "7", "--storage", "gone")
            #expect(unreachable.status == 5, "\(unreachable.stderr)")
            #expect(unreachable.stderr.contains("st9"))
            #expect(!FileManager.default.fileExists(atPath: policies))

            let badSchedule = try stowage("addon", "install", "shop/cache", "--schedule", "0 0 31 2 *", "--keep", "7", "--storage", "lab-storage")
            #expect(badSchedule.status == 64)
            #expect(badSchedule.stderr.contains("never runs: day 31 does not exist in Feb"))

            let ok = try stowage(
                "addon", "install", "shop/cache", "--time", "09:00", "--days", "mon-fri", "--tz", "Europe/Berlin", "--keep", "2",
                "--storage", "lab-storage", "--json")
            #expect(ok.status == 0, "\(ok.stderr)")
            try JSONSchema.validate(ok.stdout, schema: "addon")
            #expect(ok.stdout.contains(#""schedule" : "09:00 mon-fri Europe/Berlin""#) && ok.stdout.contains(#""action" : "installed""#), "\(ok.stdout)")
            let mode = try FileManager.default.attributesOfItem(atPath: policies)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            #expect(try PolicyStore.read(policies).map(\.layer) == ["shop/cache"])

            let again = try stowage("addon", "install", "shop/cache", "--schedule", "daily", "--keep", "2", "--storage", "lab-storage")
            #expect(again.status == 64)
            #expect(again.stderr.contains("already installed"))

            let conf = try stowage("addon", "configure", "shop/cache", "--keep", "5", "--disable", "--json")
            #expect(conf.status == 0, "\(conf.stderr)")
            try JSONSchema.validate(conf.stdout, schema: "addon")
            struct Recorded: Decodable {
                struct P: Decodable { var keep: Int; var enabled: Bool; var storage: String }
                var layer: String; var action: String; var policy: P; var nextRun: String?; var policiesFile: String
            }
            let recorded = try JSONDecoder().decode(Recorded.self, from: Data(conf.stdout.utf8))
            #expect(recorded.layer == "shop/cache" && recorded.action == "configured" && recorded.policy.keep == 5 && !recorded.policy.enabled)
            #expect(recorded.nextRun == nil && recorded.policiesFile == policies, "\(conf.stdout)")
            let p = try #require(try PolicyStore.read(policies).first)
            #expect(p.keep == 5 && !p.enabled && p.schedule == .custom(time: "09:00", days: "mon-fri", timeZone: "Europe/Berlin"))

            // A hand edit with a mistake: every command names the file and line.
            let good = try String(contentsOfFile: policies, encoding: .utf8)
            try good.replacingOccurrences(of: "keep: 5", with: "keep: five").write(toFile: policies, atomically: true, encoding: .utf8)
            let broken = try stowage("status", "--no-probe")
            #expect(broken.status == 78)
            #expect(broken.stderr.contains("\(policies):"), "\(broken.stderr)")
            #expect(broken.stderr.contains("must be a whole number"))
            try good.write(toFile: policies, atomically: true, encoding: .utf8)

            // A backup, then uninstall: the policy goes, the backup stays.
            let b = try stowage("backup", "shop/cache", "--storage", "lab-storage", "--json")
            #expect(b.status == 0, "\(b.stderr)")
            try JSONSchema.validate(b.stdout, schema: "backup")
            let status = try stowage("status", "shop/cache", "--json", "--no-probe")
            try JSONSchema.validate(status.stdout, schema: "status")
            #expect(status.stdout.contains("\"schedule\" : \"09:00 mon-fri Europe/Berlin\""), "\(status.stdout)")
            let un = try stowage("addon", "uninstall", "shop/cache", "--json")
            #expect(un.status == 0)
            try JSONSchema.validate(un.stdout, schema: "addon-uninstall")
            #expect(un.stdout.contains(#""storage" : "lab-storage""#), "\(un.stdout)")
            #expect(try PolicyStore.read(policies).isEmpty)
            let listed = try stowage("backups", "shop/cache", "--storage", "lab-storage")
            struct Summary: Decodable { var backup: String }
            let name = try JSONDecoder().decode(Summary.self, from: Data(b.stdout.utf8)).backup
            #expect(listed.stdout.contains(name))
            let none = try stowage("addon", "uninstall", "shop/cache")
            #expect(none.status == 64)
        }
    }
}

extension LabSuites.SchedulerDaemon {
    @Test func fourFirstBackupsAtOnceCreateOneRepository() async throws {
        // The scheduler starts a fleet's first backups together: without the creation lock
        // each wrote a key of its own and some backups became unreadable.
        let nodes = ["fl06", "fl07", "fl08", "fl09"]
        let lab = try FleetLab(fleet: nodes, shop: false, scheduler: "start_delay: 0s")
        defer { lab.cleanup() }
        let results = await withTaskGroup(of: CommandResult?.self) { group in
            for n in nodes {
                group.addTask { try? runCommand(Repo.stowage, ["backup", "fleet/r\(n.dropFirst(2))", "--config", lab.inventory, "--json"]) }
            }
            var out: [CommandResult?] = []
            for await r in group { out.append(r) }
            return out
        }
        #expect(results.allSatisfy { $0?.status == 0 }, "\(results.map { $0?.stderr ?? "spawn failed" })")
        for st in ["st1", "st2"] {
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(lab.dir)/\(st)/fleet/keys").count == 1)
        }
        // Every backup reads back with the repository's one key.
        let listed = try lab.backups("fleet")
        #expect(listed.count == 4 && Set(listed.map(\.layer)) == Set(nodes.map { "r\($0.dropFirst(2))" }))
    }
}

extension LabSuites.SchedulerDaemon {
    @Test func aLayerWithoutAFreshBackupIsReportedStaleAndTheSchedulerIsSeen() async throws {
        let lab = try FleetLab(fleet: ["fl04"], shop: false, scheduler: "start_delay: 0s, grace: 5s")
        defer { lab.cleanup() }
        // Due once a year (nothing is due now), installed a day ago, allowed to be an hour
        // old: a layer whose backups stopped, as the scheduler finds it.
        var p = Policy(
            layer: "fleet/r04", schedule: .expression("0 0 1 1 *"), storage: "fleet-storage", keep: 2, credentials: nil,
            installed: Date().addingTimeInterval(-86400))
        p.maxAge = 3600
        try lab.writePolicies([p])
        let daemon = try lab.startScheduler()
        #expect(try await daemon.waitForOutput("fleet/r04: backups are stale"), "\(daemon.output)")
        // The notification (the inventory's command appends it to notes.jsonl), once.
        struct Note: Decodable { var event: String; var layer: String; var message: String }
        var notes: [Note] = []
        for _ in 0..<100 where notes.isEmpty {
            let text = (try? String(contentsOfFile: lab.notes, encoding: .utf8)) ?? ""
            notes = text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Note.self, from: Data($0.utf8)) }
            if notes.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(notes.map(\.event) == ["backup-stale"], "\(notes)")
        #expect(notes.first?.message.contains("no backup on fleet-storage") == true)

        struct Report: Decodable { var layers: [L]; var scheduler: H?; var problems: [P] }
        struct L: Decodable { var layer: String; var health: String; var staleness: S? }
        struct S: Decodable { var stale: Bool; var limit: Double }
        struct H: Decodable { var state: String; var pid: Int? }
        struct P: Decodable { var severity: String; var message: String }
        func status() throws -> (Int32, Report) {
            let r = try runCommand(Repo.stowage, ["status", "fleet/r04", "--json", "--no-probe", "--config", lab.inventory])
            try JSONSchema.validate(r.stdout, schema: "status")
            return (r.status, try JSONDecoder().decode(Report.self, from: Data(r.stdout.utf8)))
        }
        let (code, stale) = try status()
        #expect(code == 2)
        #expect(stale.layers.first?.health == "error" && stale.layers.first?.staleness?.stale == true && stale.layers.first?.staleness?.limit == 3600)
        #expect(stale.scheduler?.state == "running" && stale.scheduler?.pid == Int(daemon.pid), "\(String(describing: stale.scheduler))")
        #expect(stale.problems.isEmpty)

        // A backup now, by hand: the storage shows it, and the layer is fresh again.
        let b = try runCommand(Repo.stowage, ["backup", "fleet/r04", "--storage", "fleet-storage", "--config", lab.inventory])
        #expect(b.status == 0, "\(b.stderr)")
        let (_, fresh) = try status()
        #expect(fresh.layers.first?.staleness?.stale == false && fresh.layers.first?.health == "ok", "\(fresh.layers)")

        // A stopped scheduler is visible, and with an enabled policy it needs a look.
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 20) == 0)
        let (after, stopped) = try status()
        #expect(after == 2)
        #expect(stopped.scheduler?.state == "stopped")
        #expect(stopped.problems.first?.message.hasPrefix("scheduler: stopped on") == true, "\(stopped.problems)")
    }
}

extension LabSuites.SchedulerDaemon {
    @Test func webhooksAreSignedAReceiverThatHangsIsRetriedWithoutHoldingRunsAndManualRunsReport() async throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("hooks-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let good = try WebhookReceiver(log: "\(tmp)/good.jsonl")
        let hanging = try WebhookReceiver(log: "\(tmp)/hanging.jsonl", hang: true)
        let secret = "a webhook secret"
        try (secret + "\n").write(toFile: "\(tmp)/hook-secret", atomically: true, encoding: .utf8)
        let lab = try FleetLab(
            fleet: ["fl05", "fl06"], shop: false, scheduler: "concurrency: 1, start_delay: 0s, grace: 5s",
            notifications: """
                notifications:
                  timeout: 2s
                  retries: 2
                  retry_delay: 1s
                  routes:
                    - { webhook: "http://127.0.0.1:\(good.port)/hook", secret_file: \(tmp)/hook-secret, events: [backup-succeeded, restore-completed] }
                    - { match: fleet/r05, webhook: "http://127.0.0.1:\(hanging.port)/hook", events: [backup-succeeded] }

                """)
        defer { lab.cleanup() }
        let installedAgents = try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory])
        #expect(installedAgents.status == 0, "\(installedAgents.stderr)")
        // Both hourly, installed two hours ago: each makes its missed slot up at once, one
        // after the other (concurrency 1).
        let installed = Date().addingTimeInterval(-2 * 3600)
        try lab.writePolicies(
            ["fleet/r05", "fleet/r06"].map {
                Policy(layer: $0, schedule: .expression("hourly"), storage: "fleet-storage", keep: 3, credentials: nil, installed: installed)
            })
        let daemon = try lab.startScheduler()
        defer { daemon.signal(SIGKILL) }
        // r05's success goes to the hanging receiver too: three attempts of 2 s plus 1 s and
        // 2 s between them, about 9 s. Runs do not wait for that.
        #expect(try await daemon.waitForOutput("not delivered after 3 attempts", timeout: 60), "\(daemon.output)")
        var rows: [RunRecord] = []
        for _ in 0..<100 {
            rows = try await lab.runs()
            if rows.filter({ $0.outcome == .ok }).count == 2 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let r05 = try #require(rows.first { $0.layer == "fleet/r05" && $0.outcome == .ok })
        let r06 = try #require(rows.first { $0.layer == "fleet/r06" && $0.outcome == .ok })
        let (first, second) = r05.started < r06.started ? (r05, r06) : (r06, r05)
        let gap = second.started.timeIntervalSince(first.ended ?? first.started)
        #expect(gap < 3, "the second run started \(gap) s after the first ended: a notification held it up")
        let failedAt = try #require(daemon.output.split(separator: "\n").first { $0.contains("not delivered after 3 attempts") })
        #expect(failedAt.contains("fleet/r05"), "\(failedAt)")

        // The good receiver got both successes, each signed with the shared secret.
        func received() throws -> [(body: String, signature: String)] {
            let bodies = ((try? String(contentsOfFile: "\(tmp)/good.jsonl", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            let sigs = ((try? String(contentsOfFile: "\(tmp)/good.jsonl.sig", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            return Array(zip(bodies, sigs))
        }
        var got = try received()
        for _ in 0..<50 where got.count < 2 {
            try await Task.sleep(for: .milliseconds(200))
            got = try received()
        }
        #expect(got.count == 2)
        for (body, signature) in got {
            let mac = HMAC<SHA256>.authenticationCode(for: Data(body.utf8), using: SymmetricKey(data: Array(secret.utf8)))
            #expect(signature == "sha256=" + mac.map { String(format: "%02x", $0) }.joined(), "\(body)")
            #expect(body.contains(#""event":"backup-succeeded""#))
        }
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 30) == 0)

        // By hand: a backup and a restore are recorded in the catalog and reported too.
        let b = try runCommand(Repo.stowage, ["backup", "fleet/r06", "--storage", "fleet-storage", "--json", "--config", lab.inventory])
        #expect(b.status == 0, "\(b.stderr)")
        try JSONSchema.validate(b.stdout, schema: "backup")
        let r = try runCommand(
            Repo.stowage,
            [
                "restore", "fleet/r06", "--storage", "fleet-storage", "--backup", "latest", "--yes",
                "--config", lab.inventory,
            ])
        #expect(r.status == 0, "\(r.stderr)")
        let manual = try await lab.runs().filter { $0.trigger == "manual" || $0.trigger == "restore" }
        #expect(manual.map(\.trigger).sorted() == ["manual", "restore"] && manual.allSatisfy { $0.outcome == .ok && $0.layer == "fleet/r06" })
        let events = try received().map(\.body)
        #expect(events.count == 4, "\(events)")
        #expect(events.last?.contains(#""event":"restore-completed""#) == true, "\(events)")
        #expect(events.dropLast().last?.contains(#""event":"backup-succeeded""#) == true)
        // status's last run is the backup, not the restore.
        let status = try runCommand(Repo.stowage, ["status", "fleet/r06", "--json", "--no-probe", "--config", lab.inventory])
        try JSONSchema.validate(status.stdout, schema: "status")
        #expect(status.stdout.contains(#""outcome" : "ok""#))
        _ = (good, hanging)
    }
}

extension LabSuites.SchedulerDaemon {
    @Test func aPasswordChangeReportsItsRepositoriesAsJSON() async throws {
        let lab = try FleetLab(fleet: ["fl08"], shop: false, scheduler: "start_delay: 0s")
        defer { lab.cleanup() }
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory]).status == 0)
        let b = try runCommand(Repo.stowage, ["backup", "fleet/r08", "--storage", "fleet-storage", "--config", lab.inventory])
        #expect(b.status == 0, "\(b.stderr)")
        // This lab's storage roots are its own: changing its password touches no other test.
        try "another storage password\n".write(toFile: "\(lab.dir)/new-password", atomically: true, encoding: .utf8)
        let r = try runCommand(
            Repo.stowage,
            [
                "storage", "passwd", "fleet-storage", "--new-password-file", "\(lab.dir)/new-password", "--json",
                "--config", lab.inventory,
            ])
        #expect(r.status == 0, "\(r.stderr)")
        struct Outcome: Decodable { var storage: String; var environments: [String] }
        try JSONSchema.validate(r.stdout, schema: "storage-passwd")
        let o = try JSONDecoder().decode(Outcome.self, from: Data(r.stdout.utf8))
        #expect(o.storage == "fleet-storage" && o.environments == ["fleet"])
        #expect(!r.stdout.contains("another storage password"))
    }
}
