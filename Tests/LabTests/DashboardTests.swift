// The dashboard on the lab: sessions and their fences over plain HTTP (the cookie's
// attributes, CSRF, limited sign-ins, a revoked token, signing out), the whole add-on cycle
// in a real browser (Tests/browser/dashboard_test.py: headless Chromium driven by selenium),
// and the live API checked against docs/openapi.json by schemathesis.
import Foundation
import TestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where the browser test leaves its screenshots (kept after the run, for a person to look at).
private let artifacts = Repo.path(".build/test-artifacts/dashboard")

/// A token with a dashboard password (read by the CLI from standard input, never argv).
private func passwordToken(_ lab: FleetLab, name: String, role: String, password: String) throws -> String {
    let file = "\(lab.dir)/\(name).password"
    FileManager.default.createFile(atPath: file, contents: Data((password + "\n").utf8), attributes: [.posixPermissions: 0o600])
    let r = try runCommand(
        "/bin/sh",
        ["-c", "exec \"$0\" token create --config \"$1\" --name \"$2\" --role \"$3\" --password-stdin < \"$4\"", Repo.stowage, lab.inventory, name, role, file])
    #expect(r.status == 0, "\(r.stderr)")
    return file
}

/// The session cookie's value from a sign-in's answer.
private func sessionCookie(_ a: APIAnswer) -> String? {
    guard let header = a.headers["set-cookie"], let r = header.range(of: "stowage_session=") else { return nil }
    return String(header[r.upperBound...].prefix { $0 != ";" })
}

/// The CSRF token a page carries.
private func csrf(_ page: String) -> String? {
    guard let r = page.range(of: #"<meta name="csrf-token" content=""#) else { return nil }
    return String(page[r.upperBound...].prefix { $0 != "\"" })
}

extension LabSuites.SchedulerDaemon {
    @Test func dashboardSessionsAreFencedByCookieAttributesCSRFAndLimitedSignIns() async throws {
        let port = API.freePort(25000...29999)
        let lab = try FleetLab(fleet: ["fl13"], shop: false, scheduler: "start_delay: 0s, grace: 5s, listen: 127.0.0.1:\(port)")
        defer { lab.cleanup() }
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory]).status == 0)
        let install = try runCommand(Repo.stowage, ["addon", "install", "fleet/r13", "--schedule", "daily", "--keep", "2", "--config", lab.inventory])
        #expect(install.status == 0, "\(install.stderr)")
        _ = try passwordToken(lab, name: "alice", role: "admin", password: "correct horse battery")
        let short = try runCommand(
            "/bin/sh", ["-c", "echo short | exec \"$0\" token create --config \"$1\" --name bob --role admin --password-stdin", Repo.stowage, lab.inventory])
        #expect(short.status == 64 && short.stderr.contains("fewer than 12"), "\(short.stderr)")
        let viewer = try API.token(lab, ["--name", "panel", "--role", "viewer"])
        let daemon = try await API.scheduler(lab)
        defer { daemon.signal(SIGKILL) }
        let base = "http://127.0.0.1:\(port)"

        // Pages need a session; the API's own answer to a missing one is a 401.
        let anonymous = try await API.call("GET", "\(base)/ui/")
        #expect(anonymous.status == 303 && anonymous.headers["location"] == "/ui/login", "\(anonymous.status) \(anonymous.headers)")

        // Five wrong passwords, then the name waits (even with the right password), and every
        // refusal is in the audit trail.
        for _ in 0..<5 {
            let wrong = try await API.call("POST", "\(base)/ui/login", form: ["name": "alice", "password": "guess"])
            #expect(wrong.status == 401 && wrong.body.contains("wrong name or password"), "\(wrong.status)")
        }
        let limited = try await API.call("POST", "\(base)/ui/login", form: ["name": "alice", "password": "correct horse battery"])
        #expect(limited.status == 429 && Int(limited.headers["retry-after"] ?? "") ?? 0 > 0, "\(limited.status) \(limited.headers)")
        #expect(sessionCookie(limited) == nil)

        // A token signs in: the cookie is HttpOnly, SameSite=Strict, for the whole site; not
        // Secure on a loopback listener without a TLS proxy in front.
        let signedIn = try await API.call("POST", "\(base)/ui/login", form: ["token": viewer.secret])
        #expect(signedIn.status == 303 && signedIn.headers["location"] == "/ui/", "\(signedIn.status) \(signedIn.body)")
        let setCookie = signedIn.headers["set-cookie"] ?? ""
        #expect(
            setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && setCookie.contains("Path=/") && !setCookie.contains("Secure"),
            "\(setCookie)")
        let viewerCookie = try #require(sessionCookie(signedIn))
        let fleet = try await API.call("GET", "\(base)/ui/", headers: ["Cookie": "stowage_session=\(viewerCookie)"])
        #expect(fleet.status == 200 && fleet.body.contains("fleet/r13"), "\(fleet.status)")
        #expect(fleet.headers["content-security-policy"]?.contains("script-src 'self'") == true, "\(fleet.headers)")
        // A viewer's page shows the buttons it may not press as disabled; the API refuses them.
        let viewerPage = try await API.call("GET", "\(base)/ui/layers/fleet/r13", headers: ["Cookie": "stowage_session=\(viewerCookie)"])
        #expect(viewerPage.body.contains(#"<button id="backup-now" data-backup-now disabled"#), "\(viewerPage.body)")
        let viewerCSRF = try #require(csrf(viewerPage.body))
        let viewerBackup = try await API.call(
            "POST", "\(base)/api/v1/layers/fleet/r13/backup", headers: ["Cookie": "stowage_session=\(viewerCookie)", "X-CSRF-Token": viewerCSRF])
        #expect(viewerBackup.status == 403 && viewerBackup.body.contains("viewer"), "\(viewerBackup.body)")

        // The admin, signed in with a token too: reads with the cookie alone; a change needs the
        // page's CSRF token (none, or another session's, is refused and changes nothing).
        let adminToken = try API.token(lab, ["--name", "root-panel", "--role", "admin"])
        let adminSignIn = try await API.call("POST", "\(base)/ui/login", form: ["token": adminToken.secret])
        let cookie = try #require(sessionCookie(adminSignIn))
        let whoami = try await API.call("GET", "\(base)/api/v1/whoami", headers: ["Cookie": "stowage_session=\(cookie)"])
        #expect(whoami.status == 200 && whoami.body.contains("root-panel"), "\(whoami.body)")
        let backupURL = "\(base)/api/v1/layers/fleet/r13/backup"
        let noCSRF = try await API.call("POST", backupURL, headers: ["Cookie": "stowage_session=\(cookie)"])
        #expect(noCSRF.status == 403 && noCSRF.body.contains("CSRF"), "\(noCSRF.body)")
        let foreign = try await API.call("POST", backupURL, headers: ["Cookie": "stowage_session=\(cookie)", "X-CSRF-Token": viewerCSRF])
        #expect(foreign.status == 403 && foreign.body.contains("CSRF"), "\(foreign.body)")
        let runs = try await API.call("GET", "\(base)/api/v1/runs?layer=fleet/r13", token: viewer.secret)
        #expect(runs.body == "[]", "\(runs.body)")
        let page = try await API.call("GET", "\(base)/ui/layers/fleet/r13", headers: ["Cookie": "stowage_session=\(cookie)"])
        let token = try #require(csrf(page.body))
        let queued = try await API.call("POST", backupURL, headers: ["Cookie": "stowage_session=\(cookie)", "X-CSRF-Token": token])
        #expect(queued.status == 202, "\(queued.body)")
        // Backup Now is a job: followed to its end, with the bytes it read.
        let job = ((queued.json as? [String: Any])?["job"] as? [String: Any])?["id"] as? String ?? ""
        let events = try await API.call("GET", "\(base)/api/v1/jobs/\(job)/events", token: viewer.secret)
        let last = events.body.components(separatedBy: "\n\n").last { $0.hasPrefix("event: job") }
        #expect(last?.contains(#""state":"ok""#) == true && last?.contains(#""kind":"backup""#) == true, "\(events.body)")
        let progress = last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.dropFirst("event: job\ndata: ".count).utf8)) as? [String: Any] }?[
            "progress"]
        #expect(((progress as? [String: Any])?["bytes"] as? Int ?? 0) > 0, "\(events.body)")

        // Signing out needs the CSRF token too; afterwards the cookie opens nothing.
        let forged = try await API.call("POST", "\(base)/ui/logout", headers: ["Cookie": "stowage_session=\(cookie)"], form: ["csrf": "nope"])
        #expect(forged.status == 403, "\(forged.status)")
        let out = try await API.call("POST", "\(base)/ui/logout", headers: ["Cookie": "stowage_session=\(cookie)"], form: ["csrf": token])
        #expect(out.status == 303 && out.headers["set-cookie"]?.contains("Max-Age=0") == true, "\(out.status) \(out.headers)")
        #expect(try await API.call("GET", "\(base)/api/v1/whoami", headers: ["Cookie": "stowage_session=\(cookie)"]).status == 401)

        // A revoked token ends its sessions at their next request.
        #expect(try runCommand(Repo.stowage, ["token", "revoke", viewer.id, "--config", lab.inventory]).status == 0)
        let revoked = try await API.call("GET", "\(base)/ui/", headers: ["Cookie": "stowage_session=\(viewerCookie)"])
        #expect(revoked.status == 303 && revoked.headers["location"] == "/ui/login", "\(revoked.status)")

        // The audit trail: the refused sign-ins, the limited one, the good ones, the refused
        // changes; no password or token secret anywhere in it or in the log.
        let trail = try await API.call("GET", "\(base)/api/v1/audit", token: adminToken.secret)
        let records = (trail.json as? [[String: Any]]) ?? []
        let signIns = records.filter { $0["action"] as? String == "signIn" }.map { "\($0["status"] as? Int ?? 0) \($0["outcome"] as? String ?? "")" }
        #expect(
            signIns.filter { $0 == "401 denied" }.count == 5 && signIns.contains("429 denied") && signIns.filter { $0 == "303 ok" }.count == 2, "\(signIns)")
        // A refused CSRF attempt names the session's owner.
        #expect(
            records.contains {
                ($0["detail"] as? String)?.contains("CSRF") == true && $0["outcome"] as? String == "denied" && $0["tokenName"] as? String == "root-panel"
            },
            "\(trail.body)")
        for secret in ["correct horse battery", viewer.secret, adminToken.secret, cookie, token] {
            #expect(!trail.body.contains(secret) && !daemon.output.contains(secret))
        }
    }

    @Test func theDashboardDoesTheAddOnsJobInARealBrowser() async throws {
        let port = API.freePort(25000...29999)
        let lab = try FleetLab(fleet: ["fl12"], shop: false, scheduler: "start_delay: 0s, grace: 5s, listen: 127.0.0.1:\(port)")
        defer { lab.cleanup() }
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory]).status == 0)
        let passwordFile = try passwordToken(lab, name: "alice", role: "admin", password: "correct horse battery")
        let daemon = try await API.scheduler(lab)
        defer { daemon.signal(SIGKILL) }
        try? FileManager.default.removeItem(atPath: artifacts)
        let r = try runCommand(
            Repo.path(".venv/bin/python"), [Repo.path("Tests/browser/dashboard_test.py")],
            env: [
                "BASE": "http://127.0.0.1:\(port)", "USER": "alice", "PASSWORD_FILE": passwordFile, "LAYER": "fleet/r12", "REDIS_HOST": "127.0.5.12",
                "REDIS_NODE": "fl12", "REDIS_PASSWORD_FILE": "\(Lab.dir)/secrets/redis-password", "SHOTS": artifacts,
            ])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)\n\(daemon.output.suffix(3000))")
        #expect(r.stdout.contains("browser: 1 passed, 0 failed"), "\(r.stdout)")
        // The screenshots are there for a person to look at.
        for shot in ["sign-in", "fleet", "restore-dialog", "restore-done", "audit", "phone-fleet", "phone-layer"] {
            #expect(FileManager.default.fileExists(atPath: "\(artifacts)/\(shot).png"), "\(shot)")
        }
    }

    @Test func theLiveAPIMatchesItsOpenAPIDocument() async throws {
        let port = API.freePort(25000...29999)
        let lab = try FleetLab(fleet: ["fl14"], shop: false, scheduler: "start_delay: 0s, grace: 5s, listen: 127.0.0.1:\(port)")
        defer { lab.cleanup() }
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory]).status == 0)
        let viewer = try API.token(lab, ["--name", "panel", "--role", "viewer"])
        let admin = try API.token(lab, ["--name", "root", "--role", "admin"])
        let daemon = try await API.scheduler(lab)
        defer { daemon.signal(SIGKILL) }
        // Every operation with a viewer's token (mutating ones answer 403 and must say so as
        // documented); the reading ones also with an admin's. Bounded: a few examples each,
        // generated from a fixed seed so a failure replays.
        for (token, methods, selected) in [(viewer.secret, [String](), "18/18"), (admin.secret, ["--include-method", "GET"], "9/18")] {
            let r = try runCommand(
                Repo.path(".venv/bin/schemathesis"),
                [
                    "run", "http://127.0.0.1:\(port)/api/openapi.json", "--header", "Authorization: Bearer \(token)", "--max-examples", "15",
                    "--seed", "20261207", "--no-color", "--suppress-health-check", "all",
                ] + methods, env: ["SCHEMATHESIS_HOOKS": nil], cwd: lab.dir)
            #expect(r.status == 0, "\(r.stdout.suffix(6000))\n\(r.stderr.suffix(2000))")
            #expect(r.stdout.contains("Selected: \(selected)"), "\(r.stdout.suffix(3000))")
        }
        #expect(!daemon.output.contains(viewer.secret) && !daemon.output.contains(admin.secret))
    }
}
