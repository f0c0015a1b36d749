// The scheduler as monitoring sees it: its listener answers /healthz and /readyz, /metrics
// passes promtool (the topology of scheduled layers included), a real Prometheus scrapes it with the example rules (contrib/prometheus),
// and those rules fire on the lab when a layer's backups have stopped and when a storage
// node stops answering.
import Foundation
import TestSupport
import Testing

@testable import Fleet

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

private func get(_ url: String) async throws -> (status: Int, body: String) {
    let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

private func freePort() -> Int {
    for _ in 0..<50 {
        let p = Int.random(in: 10000...19999)
        if !WebhookReceiver.listening(p) { return p }
    }
    return 19999
}

extension LabSuites.SchedulerDaemon {
    @Test func prometheusScrapesTheSchedulerAndTheExampleRulesFire() async throws {
        let port = freePort()
        let lab = try FleetLab(
            fleet: ["fl07"], shop: false,
            scheduler: "start_delay: 0s, grace: 5s, listen: 127.0.0.1:\(port), node_check: 2s")
        defer { lab.cleanup() }
        let agents = try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory])
        #expect(agents.status == 0, "\(agents.stderr)")
        // Nothing due this year; installed a day ago and allowed an hour: stale from the start.
        var p = Policy(
            layer: "fleet/r07", schedule: .expression("0 0 1 1 *"), storage: "fleet-storage", keep: 2, credentials: nil,
            installed: Date().addingTimeInterval(-86400))
        p.maxAge = 3600
        try lab.writePolicies([p])
        // Started as systemd's Type=notify starts it: READY=1 comes once it is listening.
        let systemd = try NotifyReceiver(timeout: 60)
        let daemon = try BackgroundProcess(
            Repo.stowage, ["scheduler", "--config", lab.inventory, "--log-format", "json"], env: ["NOTIFY_SOCKET": systemd.name],
            output: "\(lab.dir)/scheduler.log")
        defer { daemon.signal(SIGKILL) }
        let ready = systemd.receive()
        #expect(ready?.hasPrefix("READY=1\nSTATUS=") == true, "\(ready ?? "nothing")")
        #expect(daemon.output.contains(#""event":"listening""#), "\(daemon.output)")
        #expect(WebhookReceiver.listening(port))
        #expect(try await get("http://127.0.0.1:\(port)/healthz") == (200, "ok\n"))
        #expect(try await get("http://127.0.0.1:\(port)/readyz").status == 200)
        #expect(try await get("http://127.0.0.1:\(port)/nothing-here").status == 404)

        // /metrics: the layer is stale, the storage nodes answer (after the first check).
        var metrics = ""
        for _ in 0..<100 {
            metrics = try await get("http://127.0.0.1:\(port)/metrics").body
            if metrics.contains("stowage_storage_node_up{") && metrics.contains("stowage_topology_findings{") { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(metrics.contains(#"stowage_backup_stale{layer="fleet/r07",storage="fleet-storage"} 1.0"#), "\(metrics)")
        #expect(metrics.contains(#"stowage_storage_node_up{storage="fleet-storage",node="st1"} 1.0"#), "\(metrics)")
        // The scheduled layer's topology was probed: a healthy one has no errors.
        #expect(metrics.contains(#"stowage_topology_findings{layer="fleet/r07",severity="error"} 0.0"#), "\(metrics)")
        let file = "\(lab.dir)/metrics.txt"
        try metrics.write(toFile: file, atomically: true, encoding: .utf8)
        let lint = try runCommand("/bin/sh", ["-c", "promtool check metrics < \(file)"])
        #expect(lint.status == 0 && lint.stdout.isEmpty && lint.stderr.isEmpty, "promtool: \(lint.stdout)\(lint.stderr)")
        let rules = try runCommand("/usr/bin/promtool", ["check", "rules", Repo.path("contrib/prometheus/stowage.rules.yml")])
        #expect(rules.status == 0, "\(rules.stdout)\(rules.stderr)")

        // A real Prometheus with the example rules (their `for:` set to 0s, so they fire at
        // the first evaluation instead of minutes later).
        let rulesText = try String(contentsOfFile: Repo.path("contrib/prometheus/stowage.rules.yml"), encoding: .utf8)
        let fast = rulesText.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces).hasPrefix("for:") ? "        for: 0s" : String($0) }.joined(separator: "\n")
        try fast.write(toFile: "\(lab.dir)/rules.yml", atomically: true, encoding: .utf8)
        let promPort = freePort()
        try """
        global: { scrape_interval: 1s, evaluation_interval: 1s }
        rule_files: [ \(lab.dir)/rules.yml ]
        scrape_configs:
          - job_name: stowage
            static_configs: [ { targets: ["127.0.0.1:\(port)"] } ]
        """.write(toFile: "\(lab.dir)/prometheus.yml", atomically: true, encoding: .utf8)
        let prometheus = try BackgroundProcess(
            "/usr/bin/prometheus",
            [
                "--config.file=\(lab.dir)/prometheus.yml", "--storage.tsdb.path=\(lab.dir)/tsdb",
                "--web.listen-address=127.0.0.1:\(promPort)",
            ], output: "\(lab.dir)/prometheus.log")
        defer { prometheus.signal(SIGKILL) }

        struct Alerts: Decodable {
            struct Data: Decodable { var alerts: [Alert] }
            struct Alert: Decodable { var labels: [String: String]; var state: String }
            var data: Data
        }
        func firing(_ name: String, within seconds: Double = 60) async throws -> [String: String]? {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if let r = try? await get("http://127.0.0.1:\(promPort)/api/v1/alerts"),
                    let a = try? JSONDecoder().decode(Alerts.self, from: Data(r.body.utf8)),
                    let hit = a.data.alerts.first(where: { $0.labels["alertname"] == name && $0.state == "firing" })
                {
                    return hit.labels
                }
                try await Task.sleep(for: .milliseconds(500))
            }
            return nil
        }
        let stale = try await firing("StowageBackupStale")
        let promLog = (try? String(contentsOfFile: "\(lab.dir)/prometheus.log", encoding: .utf8)) ?? ""
        #expect(stale?["layer"] == "fleet/r07", "\(promLog.suffix(2000))")

        // A storage node stops answering: the next check says so, and the rule fires.
        let blocked = try runCommand("/bin/bash", [Repo.path("fixtures/lab/lab.sh"), "fault", "block", "st2"])
        #expect(blocked.status == 0, "\(blocked.stderr)")
        defer { _ = try? runCommand("/bin/bash", [Repo.path("fixtures/lab/lab.sh"), "heal", "block", "st2"]) }
        let down = try await firing("StowageStorageNodeDown")
        #expect(down?["node"] == "st2" && down?["storage"] == "fleet-storage", "\(String(describing: down))")
        #expect(daemon.output.contains(#""event":"storage-node-down""#))
        _ = try runCommand("/bin/bash", [Repo.path("fixtures/lab/lab.sh"), "heal", "block", "st2"])

        // Every log line is one JSON object.
        daemon.signal(SIGTERM)
        #expect(systemd.receive()?.hasPrefix("STOPPING=1") == true)
        #expect(daemon.wait(timeout: 30) == 0)
        for line in daemon.output.split(separator: "\n") {
            let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(obj?["message"] != nil && obj?["level"] != nil && obj?["event"] != nil, "not one JSON event: \(line)")
        }
    }
}
