// The add-on's Install, Configure and Uninstall, and storage verify, through the API: admins
// only, each value checked, the command's own JSON answered (valid against its schema), the
// scheduler taking the changed policy at once, and every call in the audit trail.
import Foundation
import TestSupport
import Testing

@testable import Fleet

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

private func post(_ url: String, token: String, _ body: [String: Any]) async throws -> APIAnswer {
    try await API.call("POST", url, token: token, body: API.json(body))
}

private func get(_ url: String, token: String) async throws -> APIAnswer { try await API.call("GET", url, token: token) }

extension LabSuites.SchedulerDaemon {
    @Test func theAddOnsButtonsThroughTheAPIAreAdminsOnlyAndTheSchedulerFollows() async throws {
        let port = API.freePort(30000...32767)
        let lab = try FleetLab(fleet: ["fl10"], shop: false, scheduler: "start_delay: 0s, grace: 5s, listen: 127.0.0.1:\(port)")
        defer { lab.cleanup() }
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory]).status == 0)
        func token(_ args: [String]) throws -> String { try API.token(lab, args).secret }
        let admin = try token(["--name", "admin-panel", "--role", "admin"])
        let ops = try token(["--name", "ops", "--role", "operator"])
        let daemon = try await API.scheduler(lab)
        defer { daemon.signal(SIGKILL) }
        let base = "http://127.0.0.1:\(port)/api/v1"
        let addon = "\(base)/layers/fleet/r10/addon"

        // Install: an operator may not; a bad value changes nothing; an admin installs.
        #expect(try await post("\(addon)/install", token: ops, ["schedule": "daily", "keep": 3]).status == 403)
        let bad = try await post("\(addon)/install", token: admin, ["schedule": "daily; rm -rf /", "keep": 3])
        #expect(bad.status == 400 && bad.body.contains("schedule"), "\(bad.body)")
        #expect(try await post("\(addon)/install", token: admin, ["schedule": "daily", "keep": 0]).status == 400)
        let installed = try await post("\(addon)/install", token: admin, ["schedule": "daily", "keep": 3])
        #expect(installed.status == 200, "\(installed.body)")
        try JSONSchema.validate(installed.body, schema: "addon")
        // The scheduler took it: Backup Now works on the layer at once.
        let queued = try await post("\(base)/layers/fleet/r10/backup", token: ops, [:])
        #expect(queued.status == 202, "\(queued.body)")

        // Configure: keep 5, paused; the status shows it.
        let configured = try await post("\(addon)/configure", token: admin, ["keep": 5, "enabled": false])
        #expect(configured.status == 200, "\(configured.body)")
        try JSONSchema.validate(configured.body, schema: "addon")
        let status = try await get("\(base)/status?probe=false&layers=fleet/r10", token: ops)
        #expect(status.body.contains(#""keep":5"#) && status.body.contains(#""enabled":false"#), "\(status.body)")

        // Uninstall: confirmed by the layer's name.
        let unconfirmed = try await post("\(addon)/uninstall", token: admin, [:])
        #expect(unconfirmed.status == 400 && unconfirmed.body.contains("confirm"), "\(unconfirmed.body)")
        let removed = try await post("\(addon)/uninstall", token: admin, ["confirm": "fleet/r10"])
        #expect(removed.status == 200, "\(removed.body)")
        try JSONSchema.validate(removed.body, schema: "addon-uninstall")
        let again = try await post("\(addon)/uninstall", token: admin, ["confirm": "fleet/r10"])
        #expect(again.status == 400 && again.body.contains("not installed"), "\(again.body)")

        // Storage verify: admins only, as a job that ends ok.
        #expect(try await post("\(base)/storages/fleet-storage/verify", token: ops, [:]).status == 403)
        let verify = try await post("\(base)/storages/fleet-storage/verify", token: admin, [:])
        #expect(verify.status == 202, "\(verify.body)")
        let id = (try JSONSerialization.jsonObject(with: Data(verify.body.utf8)) as? [String: Any])?["id"] as? String ?? ""
        var job: [String: Any] = [:]
        for _ in 0..<600 {
            job = (try JSONSerialization.jsonObject(with: Data(try await get("\(base)/jobs/\(id)", token: ops).body.utf8)) as? [String: Any]) ?? [:]
            if let s = job["state"] as? String, s != "running" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(job["state"] as? String == "ok", "\(job)")
        if let result = job["result"] as? String { try JSONSchema.validate(result, schema: "storage-verify") } else { Issue.record("no result: \(job)") }
        // Storage repair the same way, streamed to its end; both jobs are listed, newest first.
        let repair = try await post("\(base)/storages/fleet-storage/repair", token: admin, [:])
        #expect(repair.status == 202, "\(repair.body)")
        let repairID = (try JSONSerialization.jsonObject(with: Data(repair.body.utf8)) as? [String: Any])?["id"] as? String ?? ""
        let events = try await get("\(base)/jobs/\(repairID)/events", token: ops)
        let last = events.body.components(separatedBy: "\n\n").last { $0.hasPrefix("event: job") } ?? ""
        #expect(last.contains(#""state":"ok""#) && last.contains(#""kind":"storage-repair""#), "\(events.body)")
        let jobs = (try JSONSerialization.jsonObject(with: Data(try await get("\(base)/jobs", token: ops).body.utf8)) as? [[String: Any]]) ?? []
        // (The third is the Backup Now of the start, a job too.)
        #expect(jobs.compactMap { $0["id"] as? String }.prefix(2) == [repairID, id] && jobs.last?["kind"] as? String == "backup", "\(jobs)")

        let trail = try await get("\(base)/audit", token: admin)
        let records = (try JSONSerialization.jsonObject(with: Data(trail.body.utf8)) as? [[String: Any]]) ?? []
        let seen = records.map { "\($0["action"] as? String ?? "?") \($0["status"] as? Int ?? 0)" }
        #expect(
            seen == [
                "maintainStorage 202", "maintainStorage 202", "maintainStorage 403", "uninstall 400", "uninstall 200", "uninstall 400", "configure 200",
                "backup 202",
                "install 200", "install 400", "install 400", "install 403",
            ], "\(seen)")
    }
}
