// The REST API on the real scheduler (docs/api.md): tokens made with the CLI, every request
// authenticated, each role allowed what it may and refused the rest, Backup Now queued and
// run by the scheduler, every mutating call (refused ones too) in the audit trail, and no
// secret in the catalog or the log.
import Foundation
import TestSupport
import Testing

@testable import Fleet

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

private func call(_ method: String, _ url: String, token: String? = nil, rawAuthorization: String? = nil) async throws -> APIAnswer {
    try await API.call(method, url, token: token, rawAuthorization: rawAuthorization)
}

extension LabSuites.SchedulerDaemon {
    @Test func theAPIAuthenticatesAuthorizesQueuesBackupNowAndAuditsEveryChange() async throws {
        let port = API.freePort(20000...24999)
        let lab = try FleetLab(fleet: ["fl08"], shop: true, scheduler: "start_delay: 0s, grace: 5s, listen: 127.0.0.1:\(port)")
        defer { lab.cleanup() }
        let agents = try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory])
        #expect(agents.status == 0, "\(agents.stderr)")
        try lab.writePolicies([
            Policy(layer: "fleet/r08", schedule: .expression("0 0 1 1 *"), storage: "fleet-storage", keep: 2, credentials: nil, installed: Date())
        ])

        // Tokens through the CLI: the secret printed once, the id to revoke by.
        func token(_ args: [String]) throws -> (id: String, secret: String) { try API.token(lab, args) }
        let viewer = try token(["--name", "panel", "--role", "viewer"])
        let shopOperator = try token(["--name", "shop-ops", "--role", "operator", "--environment", "shop"])
        let fleetOperator = try token(["--name", "fleet-ops", "--role", "operator", "--environment", "fleet"])
        let admin = try token(["--name", "root-panel", "--role", "admin"])
        let gone = try token(["--name", "old", "--role", "admin"])
        #expect(try runCommand(Repo.stowage, ["token", "revoke", gone.id, "--config", lab.inventory]).status == 0)
        let again = try runCommand(Repo.stowage, ["token", "revoke", gone.id, "--config", lab.inventory])
        #expect(again.status == 64 && again.stderr.contains("no active token \(gone.id)"), "\(again.stderr)")
        let badRole = try runCommand(Repo.stowage, ["token", "create", "--config", lab.inventory, "--name", "x", "--role", "root"])
        #expect(badRole.status == 64 && badRole.stderr.contains("unknown role 'root'"), "\(badRole.stderr)")
        let list = try runCommand(Repo.stowage, ["token", "list", "--config", lab.inventory])
        #expect(list.status == 0 && list.stdout.contains("shop-ops") && list.stdout.contains("revoked"), "\(list.stdout)")

        let daemon = try await API.scheduler(lab)
        defer { daemon.signal(SIGKILL) }
        let base = "http://127.0.0.1:\(port)/api/v1"

        // The API's description needs no token, and is the document in docs/.
        let openAPI = try await call("GET", "http://127.0.0.1:\(port)/api/openapi.json")
        let described = try String(contentsOfFile: Repo.path("docs/openapi.json"), encoding: .utf8)
        #expect(openAPI.status == 200 && openAPI.body == described)

        // Authentication: none, malformed, unknown and revoked tokens get 401 with a hint.
        let none = try await call("GET", "\(base)/whoami")
        #expect(none.status == 401 && none.headers["www-authenticate"]?.hasPrefix("Bearer") == true, "\(none)")
        #expect((none.object["hint"] as? String)?.contains("stowage token create") == true, "\(none.body)")
        #expect(try await call("GET", "\(base)/whoami", rawAuthorization: "Basic dXNlcjpwdw==").status == 401)
        #expect(try await call("GET", "\(base)/whoami", token: "stowage_not-a-token").status == 401)
        let revoked = try await call("GET", "\(base)/whoami", token: gone.secret)
        #expect(revoked.status == 401 && revoked.body.contains("unknown or revoked"), "\(revoked.body)")
        let me = try await call("GET", "\(base)/whoami", token: shopOperator.secret)
        #expect(me.status == 200 && me.object["role"] as? String == "operator", "\(me.body)")
        #expect(me.object["environments"] as? [String] == ["shop"], "\(me.body)")

        // Reading: every role; the audit trail: not a viewer.
        #expect(try await call("GET", "\(base)/runs", token: viewer.secret).status == 200)
        #expect(try await call("GET", "\(base)/audit", token: viewer.secret).status == 403)

        // Backup Now: refused without a token, to a viewer, to an operator of another
        // environment; queued for the operator of this one.
        let backup = "\(base)/layers/fleet/r08/backup"
        #expect(try await call("POST", backup).status == 401)
        let asViewer = try await call("POST", backup, token: viewer.secret)
        #expect(asViewer.status == 403 && asViewer.body.contains("viewer"), "\(asViewer.body)")
        let outOfScope = try await call("POST", backup, token: shopOperator.secret)
        #expect(outOfScope.status == 403 && outOfScope.body.contains("not of fleet"), "\(outOfScope.body)")
        let noPolicy = try await call("POST", "\(base)/layers/shop/cache/backup", token: admin.secret)
        #expect(noPolicy.status == 400 && noPolicy.body.contains("no enabled backup policy"), "\(noPolicy.body)")
        let queued = try await call("POST", backup, token: fleetOperator.secret)
        #expect(queued.status == 202, "\(queued.status) \(queued.body)")
        #expect(queued.object["runs"] as? String == "/api/v1/runs?layer=fleet/r08", "\(queued.body)")

        // The scheduler runs it; the run shows in the API with its trigger and outcome.
        var run: [String: Any]?
        for _ in 0..<600 {
            let runs = try await call("GET", "\(base)/runs?layer=fleet/r08", token: viewer.secret)
            run = (runs.json as? [[String: Any]])?.first { $0["trigger"] as? String == "api" }
            if let o = run?["outcome"] as? String, o != "running" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(run?["outcome"] as? String == "ok", "\(String(describing: run)) \(daemon.output.suffix(2000))")
        #expect((run?["backup"] as? String)?.isEmpty == false)

        // The fleet's status: `stowage status --json`'s document, valid against its schema.
        let status = try await call("GET", "\(base)/status?probe=false&layers=fleet", token: viewer.secret)
        #expect(status.status == 200, "\(status.body)")
        try JSONSchema.validate(status.body, schema: "status")
        #expect(status.body.contains("\"fleet/r08\""), "\(status.body)")
        let badSelection = try await call("GET", "\(base)/status?layers=nowhere/none", token: viewer.secret)
        #expect(badSelection.status == 404 && badSelection.body.contains("nowhere"), "\(badSelection.body)")
        #expect(try await call("GET", "\(base)/status?layers=a/b/c", token: viewer.secret).status == 400)
        #expect(try await call("GET", "\(base)/status?probe=maybe", token: viewer.secret).status == 400)
        #expect(try await call("GET", "\(base)/runs?limit=1001", token: viewer.secret).status == 400)
        // Another method on an API path: 405, naming the ones it has.
        let put = try await call("PUT", "\(base)/layers/fleet/r08/backup", token: viewer.secret)
        #expect(put.status == 405 && put.headers["allow"] == "POST", "\(put.status) \(put.headers)")

        // The storages: quorum and nodes (their health once the scheduler has checked them).
        var storages: [[String: Any]] = []
        for _ in 0..<300 {
            storages = (try await call("GET", "\(base)/storages", token: viewer.secret).json as? [[String: Any]]) ?? []
            if ((storages.first?["nodes"] as? [[String: Any]])?.first?["up"] as? Bool) != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let nodes = (storages.first?["nodes"] as? [[String: Any]]) ?? []
        #expect(nodes.count == 2 && nodes.allSatisfy { $0["up"] as? Bool == true && ($0["freeBytes"] as? Int ?? 0) > 0 }, "\(storages)")

        // The backups on the storage (`stowage backups --json`): the one just made is listed.
        let backups = try await call("GET", "\(base)/backups?layers=fleet/r08", token: viewer.secret)
        #expect(backups.status == 200, "\(backups.body)")
        try JSONSchema.validate(backups.body, schema: "backups")
        if let made = run?["backup"] as? String { #expect(backups.body.contains(made), "\(backups.body)") }
        #expect(try await call("GET", "\(base)/backups?storage=nowhere", token: viewer.secret).status == 404)

        // The audit trail: every mutating call, refused ones too, newest first.
        let trail = try await call("GET", "\(base)/audit", token: fleetOperator.secret)
        #expect(trail.status == 200)
        let records = (trail.json as? [[String: Any]]) ?? []
        let seen = records.map { "\($0["tokenName"] as? String ?? "?") \($0["status"] as? Int ?? 0) \($0["outcome"] as? String ?? "?")" }
        #expect(seen == ["fleet-ops 202 ok", "root-panel 400 failed", "shop-ops 403 denied", "panel 403 denied", "- 401 denied"], "\(seen)")
        #expect(records.allSatisfy { $0["target"] as? String != nil && $0["action"] as? String == "backup" })

        // No secret in the catalog's file or the scheduler's log.
        let catalogBytes = try Data(contentsOf: URL(fileURLWithPath: lab.catalog))
        for t in [viewer, shopOperator, fleetOperator, admin, gone] {
            #expect(catalogBytes.range(of: Data(t.secret.utf8)) == nil, "a token's secret is in the catalog")
            #expect(!daemon.output.contains(t.secret), "a token's secret is in the scheduler's log")
        }
    }
}
