// Restore through the API, in the add-on's two steps: the plan (changing nothing), then the
// restore confirmed by the layer's name, run as a job that is polled to its end; bad bodies
// and unconfirmed or out-of-scope requests change nothing, and every attempt is audited.
import Foundation
import TestSupport
import Testing

@testable import Fleet

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

private func send(_ method: String, _ url: String, token: String?, body: Data? = nil) async throws -> APIAnswer {
    try await API.call(method, url, token: token, body: body)
}

/// The fleet node's Redis (not in the shared lab inventory's layers).
private func fl09(_ args: [String]) throws -> String {
    try runCommand("/usr/bin/redis-cli", ["-h", "127.0.5.9", "-p", "6379"] + args, env: ["REDISCLI_AUTH": try Lab.secret("redis-password")]).stdout
        .trimmingCharacters(in: .whitespacesAndNewlines)
}

private func json(_ o: [String: Any]) -> Data { API.json(o) }

extension LabSuites.SchedulerDaemon {
    @Test func restoreThroughTheAPIIsPlannedThenConfirmedAndRunAsAJob() async throws {
        let port = API.freePort(25000...29999)
        let lab = try FleetLab(fleet: ["fl09"], shop: false, scheduler: "start_delay: 0s, grace: 5s, listen: 127.0.0.1:\(port)")
        defer { lab.cleanup() }
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory]).status == 0)
        // The data, backed up, then damaged.
        _ = try fl09(["FLUSHALL"])
        _ = try fl09(["SET", "order:1", "shipped"])
        let backup = try runCommand(Repo.stowage, ["backup", "fleet/r09", "--config", lab.inventory, "--json"])
        #expect(backup.status == 0, "\(backup.stderr)")
        let name = (try JSONSerialization.jsonObject(with: Data(backup.stdout.utf8)) as? [String: Any])?["backup"] as? String ?? ""
        _ = try fl09(["SET", "order:1", "lost"])

        func token(_ args: [String]) throws -> String { try API.token(lab, args).secret }
        let viewer = try token(["--name", "panel", "--role", "viewer"])
        let ops = try token(["--name", "ops", "--role", "operator", "--environment", "fleet"])

        let daemon = try await API.scheduler(lab)
        defer { daemon.signal(SIGKILL) }
        let base = "http://127.0.0.1:\(port)/api/v1/layers/fleet/r09"

        // Step one: the plan, for an operator of the environment; a viewer may not restore.
        #expect(try await send("POST", "\(base)/restore/plan", token: viewer, body: json(["backup": name])).status == 403)
        let plan = try await send("POST", "\(base)/restore/plan", token: ops, body: json(["backup": name]))
        #expect(plan.status == 200, "\(plan.body)")
        try JSONSchema.validate(plan.body, schema: "restore-plan")
        #expect(plan.body.contains(name) && plan.body.contains("fl09"), "\(plan.body)")
        let unknown = try await send("POST", "\(base)/restore/plan", token: ops, body: json(["backup": "2001-01-01T000000Z-none"]))
        #expect(unknown.status == 400 && unknown.body.contains("2001-01-01T000000Z-none"), "\(unknown.body)")

        // Bad bodies and an unconfirmed restore change nothing.
        #expect(try await send("POST", "\(base)/restore", token: ops, body: Data("{not json".utf8)).status == 400)
        let missing = try await send("POST", "\(base)/restore", token: ops, body: json(["from": "fleet"]))
        #expect(missing.status == 400 && missing.body.contains("backup"), "\(missing.body)")
        let optionLike = try await send("POST", "\(base)/restore", token: ops, body: json(["backup": "--all-nodes", "confirm": "fleet/r09"]))
        #expect(optionLike.status == 400 && optionLike.body.contains("not a valid value"), "\(optionLike.body)")
        let big = try await send("POST", "\(base)/restore", token: ops, body: Data(repeating: 0x20, count: 200_000))
        #expect(big.status == 413, "\(big.body)")
        let unconfirmed = try await send("POST", "\(base)/restore", token: ops, body: json(["backup": name, "confirm": "fleet/other"]))
        #expect(unconfirmed.status == 400 && unconfirmed.body.contains("confirm it by naming the layer"), "\(unconfirmed.body)")
        #expect(try fl09(["GET", "order:1"]) == "lost")

        // Step two: confirmed, it runs as a job, polled to its end; the data is back.
        let started = try await send("POST", "\(base)/restore", token: ops, body: json(["backup": name, "confirm": "fleet/r09"]))
        #expect(started.status == 202, "\(started.body)")
        let id = (try JSONSerialization.jsonObject(with: Data(started.body.utf8)) as? [String: Any])?["id"] as? String ?? ""
        // Its events, streamed until it ends: the last one says how it ended and how far it got.
        let stream = try await send("GET", "http://127.0.0.1:\(port)/api/v1/jobs/\(id)/events", token: viewer)
        #expect(stream.status == 200)
        let events = stream.body.components(separatedBy: "\n\n").filter { $0.hasPrefix("event: job\ndata: ") }
        let lastEvent = events.last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.dropFirst("event: job\ndata: ".count).utf8)) as? [String: Any] }
        #expect(!events.isEmpty && lastEvent?["state"] as? String == "ok", "\(stream.body)")
        let progress = lastEvent?["progress"] as? [String: Any]
        #expect(progress?["percent"] as? Double == 100 && (progress?["total"] as? Int ?? 0) > 0, "\(String(describing: progress))")
        var job: [String: Any] = [:]
        for _ in 0..<600 {
            let j = try await send("GET", "http://127.0.0.1:\(port)/api/v1/jobs/\(id)", token: viewer)
            job = (try? JSONSerialization.jsonObject(with: Data(j.body.utf8)) as? [String: Any]) ?? [:]
            if let s = job["state"] as? String, s != "running" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(job["state"] as? String == "ok", "\(job)")
        #expect((job["startedBy"] as? String)?.contains("ops") == true)
        if let result = job["result"] as? String { try JSONSchema.validate(result, schema: "restore") } else { Issue.record("no result: \(job)") }
        #expect(try fl09(["GET", "order:1"]) == "shipped")
        #expect(try await send("GET", "http://127.0.0.1:\(port)/api/v1/jobs/nope", token: viewer).status == 404)
        #expect(try await send("POST", "http://127.0.0.1:\(port)/api/v1/jobs/\(id)/cancel", token: ops).status == 409)

        // Audited: every restore attempt, refused ones too (the plan changes nothing: not audited).
        let trail = try await send("GET", "http://127.0.0.1:\(port)/api/v1/audit", token: ops)
        let records = (try JSONSerialization.jsonObject(with: Data(trail.body.utf8)) as? [[String: Any]]) ?? []
        let seen = records.map { "\($0["action"] as? String ?? "?") \($0["status"] as? Int ?? 0)" }
        #expect(seen == ["restore 409", "restore 202", "restore 400", "restore 413", "restore 400", "restore 400", "restore 400"], "\(seen)")
    }
}
