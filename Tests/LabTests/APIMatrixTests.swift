// The authorization matrix: every endpoint × every role (viewer, operator of the layer's
// environment, operator of another, admin), and no, a wrong and a revoked token. Each call
// is one that changes nothing even when allowed (a layer without a policy, a body that fails
// its check, a job or storage that is not there), so the answer tells authorization alone:
// 401 without a valid token, 403 when the role or scope forbids, anything else once allowed.
import Foundation
import TestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension LabSuites.SchedulerDaemon {
    @Test func everyRoleOnEveryEndpointGetsWhatItsRoleAllows() async throws {
        let port = API.freePort(25000...29999)
        let lab = try FleetLab(fleet: ["fl16"], shop: true, scheduler: "start_delay: 0s, grace: 5s, listen: 127.0.0.1:\(port)")
        defer { lab.cleanup() }
        let viewer = try API.token(lab, ["--name", "v", "--role", "viewer"]).secret
        let ops = try API.token(lab, ["--name", "o", "--role", "operator", "--environment", "fleet"]).secret
        let other = try API.token(lab, ["--name", "x", "--role", "operator", "--environment", "shop"]).secret
        let admin = try API.token(lab, ["--name", "a", "--role", "admin"]).secret
        let revoked = try API.token(lab, ["--name", "r", "--role", "admin"])
        #expect(try runCommand(Repo.stowage, ["token", "revoke", revoked.id, "--config", lab.inventory]).status == 0)
        let daemon = try await API.scheduler(lab)
        defer { daemon.signal(SIGKILL) }
        let base = "http://127.0.0.1:\(port)/api/v1"
        let layer = "\(base)/layers/fleet/r16"

        enum Need { case read, audit, act, admin }
        // (method, path, body, who may)
        let endpoints: [(String, String, [String: Any]?, Need)] = [
            ("GET", "\(base)/whoami", nil, .read), ("GET", "\(base)/status?probe=false", nil, .read), ("GET", "\(base)/storages", nil, .read),
            ("GET", "\(base)/backups?layers=fleet/r16", nil, .read), ("GET", "\(base)/runs", nil, .read), ("GET", "\(base)/jobs", nil, .read),
            ("GET", "\(base)/jobs/nope", nil, .read), ("GET", "\(base)/jobs/nope/events", nil, .read), ("GET", "\(base)/audit", nil, .audit),
            ("POST", "\(layer)/backup", [:], .act), ("POST", "\(layer)/restore/plan", [:], .act), ("POST", "\(layer)/restore", [:], .act),
            ("POST", "\(layer)/addon/install", ["keep": 0], .admin), ("POST", "\(layer)/addon/configure", ["keep": 0], .admin),
            ("POST", "\(layer)/addon/uninstall", [:], .admin), ("POST", "\(base)/storages/-bad/verify", [:], .admin),
            ("POST", "\(base)/storages/-bad/repair", [:], .admin), ("POST", "\(base)/jobs/nope/cancel", [:], .admin),
        ]
        let roles: [(String, String?, (Need) -> Bool)] = [
            ("viewer", viewer, { $0 == .read }), ("operator of fleet", ops, { $0 != .admin }),
            ("operator of shop", other, { $0 == .read || $0 == .audit }), ("admin", admin, { _ in true }),
        ]
        var table: [String] = []
        for (method, url, body, need) in endpoints {
            for (role, token, may) in roles {
                let a = try await API.call(method, url, token: token, body: body.map { API.json($0) })
                let allowed = a.status != 401 && a.status != 403
                if allowed != may(need) { table.append("\(role) \(method) \(url): \(a.status) \(a.body.prefix(120))") }
                #expect(a.status < 500, "\(role) \(method) \(url): \(a.status) \(a.body)")
            }
            for (what, auth) in [("no token", nil as String?), ("a wrong token", "Bearer stowage_wrong"), ("a revoked token", "Bearer \(revoked.secret)")] {
                let a = try await API.call(method, url, rawAuthorization: auth, body: body.map { API.json($0) })
                if a.status != 401 { table.append("\(what) \(method) \(url): \(a.status)") }
            }
        }
        #expect(table.isEmpty, "\(table.joined(separator: "\n"))")
        // Nothing changed: no run, no policy, no job.
        #expect(try await API.call("GET", "\(base)/runs", token: viewer).body == "[]")
        #expect(try await API.call("GET", "\(base)/jobs", token: viewer).body == "[]")
        let status = try await API.call("GET", "\(base)/status?probe=false&layers=fleet/r16", token: viewer)
        #expect(status.status == 200 && !status.body.contains("\"policy\""), "\(status.body)")
    }
}
