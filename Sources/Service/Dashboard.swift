// The web dashboard (docs/api.md, "The dashboard"), served under /ui by the scheduler's
// listener: server-rendered pages of what the REST API returns, and a small script whose
// buttons call that API with the session's cookie and CSRF token. It adds no operation of
// its own: every change goes through APIRoutes, so roles, refusals and the audit trail are
// the API's.
import Foundation
import Hummingbird
import Scheduling
import Support

enum Dashboard {
    /// Headers of every page: no caching, no framing, nothing loaded from elsewhere, no
    /// inline script (the CSRF token is in the page; a script injected there must not run).
    static func headers(_ contentType: String) -> HTTPFields {
        var h = HTTPFields()
        h[.contentType] = contentType
        h[.cacheControl] = "no-store"
        h[HTTPFields.Element.Name("Content-Security-Policy")!] =
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        h[HTTPFields.Element.Name("X-Frame-Options")!] = "DENY"
        h[HTTPFields.Element.Name("X-Content-Type-Options")!] = "nosniff"
        h[HTTPFields.Element.Name("Referrer-Policy")!] = "no-referrer"
        return h
    }

    static func describe(_ error: Error) -> String {
        (error as? StowageError).map { e in e.message + (e.hint.map { " (\($0))" } ?? "") } ?? "\(error)"
    }

    static func html(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: headers("text/html; charset=utf-8"), body: .init(byteBuffer: .init(string: body)))
    }

    static func redirect(_ location: String, cookie: String? = nil) -> Response {
        var h = headers("text/plain; charset=utf-8")
        h[.location] = location
        if let cookie { h[.setCookie] = cookie }
        return Response(status: .seeOther, headers: h)
    }

    /// A form body (application/x-www-form-urlencoded), at most 4 KiB.
    static func form(_ request: Request) async throws -> [String: String] {
        var request = request
        guard let buffer = try? await request.collectBody(upTo: 4096) else {
            throw APIFailure(.contentTooLarge, "the form is larger than 4 KiB")
        }
        var fields: [String: String] = [:]
        for pair in String(buffer: buffer).split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).replacing("+", with: " ").removingPercentEncoding ?? "" }
            if let k = kv.first, !k.isEmpty { fields[k] = kv.count > 1 ? kv[1] : "" }
        }
        return fields
    }

    static func mount(on router: Router<BasicRequestContext>, scheduler: Scheduler, api: APIRoutes.Access, secureCookies: Bool) {
        let catalog = scheduler.runCatalog
        let sessions = scheduler.sessions

        /// The signed-in viewer of a page, or the sign-in page's address.
        @Sendable func viewer(_ request: Request) async throws -> (APIPrincipal, DashboardHTML.Viewer)? {
            guard let cookie = request.cookies[APIRoutes.Access.cookie]?.value,
                let (p, s) = try? await api.session(request, cookie)
            else { return nil }
            return (p, DashboardHTML.Viewer(name: p.name, role: p.role.rawValue, csrf: s.csrf))
        }
        @Sendable func cookie(_ value: String, maxAge: Int? = nil) -> String {
            var c = "\(APIRoutes.Access.cookie)=\(value); Path=/; HttpOnly; SameSite=Strict"
            if let maxAge { c += "; Max-Age=\(maxAge)" }
            if secureCookies { c += "; Secure" }
            return c
        }
        /// A page for a signed-in viewer; the sign-in page for anyone else.
        func page(
            _ path: RouterPath, _ body: @escaping @Sendable (Request, BasicRequestContext, APIPrincipal, DashboardHTML.Viewer) async throws -> Response
        ) {
            router.get(path) { request, context -> Response in
                guard let (p, v) = try await viewer(request) else { return redirect("/ui/login") }
                return try await body(request, context, p, v)
            }
        }

        router.get("/") { _, _ in redirect("/ui/") }
        router.get("favicon.ico") { _, _ in
            Response(status: .ok, headers: headers("image/svg+xml"), body: .init(byteBuffer: .init(string: DashboardAssets.icon)))
        }
        router.get("ui/static/app.css") { _, _ in
            Response(status: .ok, headers: headers("text/css; charset=utf-8"), body: .init(byteBuffer: .init(string: DashboardAssets.css)))
        }
        router.get("ui/static/app.js") { _, _ in
            Response(status: .ok, headers: headers("text/javascript; charset=utf-8"), body: .init(byteBuffer: .init(string: DashboardAssets.script)))
        }
        router.get("ui/login") { request, _ in
            if try await viewer(request) != nil { return redirect("/ui/") }
            return html(DashboardHTML.signIn(message: nil))
        }
        // Sign-in: a token, or a name and password; failures are limited (SignInLimiter) and,
        // like sign-ins, in the audit trail. A password travels in the form: refused where the
        // API refuses changes (plain HTTP off loopback).
        router.post("ui/login") { request, _ -> Response in
            guard api.mutatingServed else {
                return html(
                    DashboardHTML.signIn(message: "this listener serves plain HTTP on a non-loopback address: sign-ins are refused"), status: .forbidden)
            }
            let f = try await form(request)
            let token = f["token"].flatMap { $0.isEmpty ? nil : $0 }
            let name = f["name"] ?? ""
            let key = token != nil ? "token" : "name:\(name)"
            func audit(_ status: HTTPResponse.Status, _ outcome: String, _ who: APIPrincipal?, _ detail: String) async throws {
                try await catalog.audit(
                    AuditRecord(
                        at: Date(), tokenID: who?.tokenID ?? "-", tokenName: who?.name ?? (token == nil ? name : "-"), method: "POST", path: "/ui/login",
                        action: "signIn", target: "dashboard", status: Int(status.code), outcome: outcome, detail: detail))
            }
            if let wait = await sessions.wait(key) {
                try await audit(.tooManyRequests, "denied", nil, "too many failed sign-ins")
                var r = html(
                    DashboardHTML.signIn(message: "too many failed sign-ins: try again in \(Int(wait)) s"), status: .tooManyRequests)
                r.headers[.retryAfter] = "\(Int(wait))"
                return r
            }
            var principal: APIPrincipal?
            if let token {
                principal = try await catalog.activeToken(hash: APIToken.hash(token))?.principal
            } else if !name.isEmpty, let password = f["password"], !password.isEmpty {
                let logins = try await catalog.passwordLogins(name: name)
                // An unknown name costs the same scrypt as a wrong password.
                let stored = logins.first?.1 ?? "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
                let ok = await DedicatedThread.run("scrypt") { PasswordHash.verify(password, stored) }
                if ok { principal = logins.first?.0.principal }
            }
            guard let principal else {
                await sessions.failed(key)
                try await audit(.unauthorized, "denied", nil, token != nil ? "unknown or revoked token" : "wrong name or password")
                return html(
                    DashboardHTML.signIn(message: token != nil ? "the token is unknown or revoked" : "wrong name or password"), status: .unauthorized)
            }
            await sessions.succeeded(key)
            let (value, _) = await sessions.open(tokenID: principal.tokenID)
            try await audit(.seeOther, "ok", principal, token != nil ? "with a token" : "with a password")
            return redirect("/ui/", cookie: cookie(value))
        }
        router.post("ui/logout") { request, _ -> Response in
            let f = try await form(request)
            if let value = request.cookies[APIRoutes.Access.cookie]?.value, let s = await sessions.session(value) {
                // Signing out is a change too: a page elsewhere must not sign one out.
                guard f["csrf"] == s.csrf else { throw APIFailure(.forbidden, "the sign-out has no valid CSRF token") }
                await sessions.close(value)
            }
            return redirect("/ui/login", cookie: cookie("", maxAge: 0))
        }

        page("ui") { _, _, _, v in
            let body: String
            do {
                body = DashboardHTML.fleet(try await scheduler.fleetStatus(selection: nil, probe: true), now: Date())
            } catch { body = DashboardHTML.message(describe(error)) }
            let storages = DashboardHTML.storages(await scheduler.storages())
            return html(DashboardHTML.page("Fleet", viewer: v, active: "Fleet", body + storages))
        }
        page("ui/layers/:environment/:layer") { request, context, p, v in
            let env = try context.parameters.require("environment"), name = try context.parameters.require("layer")
            let id = "\(env)/\(name)"
            let status: LayerStatus
            do {
                guard let s = try await scheduler.fleetStatus(selection: id, probe: true).layers.first else { throw StowageError(.usage, "no layer \(id)") }
                status = s
            } catch {
                return html(DashboardHTML.page(id, viewer: v, active: "Fleet", DashboardHTML.message(describe(error))), status: .notFound)
            }
            let names = await scheduler.names()
            let from = APIRoutes.query(request, "from").flatMap { names.environments.contains($0) ? $0 : nil } ?? env
            var rows: [DashboardHTML.BackupRow] = []
            var backupsError: String?
            let storage = status.policy?.storage ?? (names.storages.count == 1 ? names.storages[0] : nil)
            do {
                rows = try await scheduler.backups(selection: from, storage: storage).filter { $0.engine == status.engine }.map {
                    DashboardHTML.BackupRow(
                        layer: "\($0.environment)/\($0.layer)", name: $0.name, started: $0.started, sourceNode: $0.sourceNode, rawBytes: $0.rawBytes,
                        storedBytes: $0.storedBytes, replicas: $0.replicas, health: $0.health, storage: storage ?? "")
                }
            } catch { backupsError = describe(error) }
            let page = DashboardHTML.LayerPage(
                status: status, environments: names.environments, storages: names.storages, from: from, backups: rows, backupsError: backupsError,
                runs: (try? await catalog.runs(layer: id, limit: 100)) ?? [], jobs: await scheduler.jobs.all().filter { $0.layer == id },
                canBackup: APIAccess.decide(p, .backup, environment: env) == .allowed, canAdmin: APIAccess.decide(p, .install, environment: env) == .allowed)
            return html(DashboardHTML.page(id, viewer: v, active: "Fleet", DashboardHTML.layer(page, now: Date())))
        }
        page("ui/runs") { request, _, _, v in
            let layer = APIRoutes.query(request, "layer")
            let runs = (try? await catalog.runs(layer: layer, limit: (try? APIRoutes.limit(request)) ?? 100)) ?? []
            let body = DashboardHTML.charts(runs) + DashboardHTML.runTable(runs, now: Date())
            return html(DashboardHTML.page(layer.map { "Runs of \($0)" } ?? "Runs", viewer: v, active: "Runs", body))
        }
        page("ui/jobs") { _, _, _, v in
            let jobs = await scheduler.jobs.all()
            return html(
                DashboardHTML.page(
                    "Jobs", viewer: v, active: "Jobs", jobs.isEmpty ? "<p class=\"muted\">No job since the scheduler started.</p>" : DashboardHTML.jobList(jobs)
                ))
        }
        page("ui/jobs/:id") { _, context, _, v in
            let id = try context.parameters.require("id")
            guard let job = await scheduler.jobs.job(id) else {
                return html(DashboardHTML.page("Job", viewer: v, active: "Jobs", DashboardHTML.message("no job \(id)")), status: .notFound)
            }
            return html(DashboardHTML.page("Job \(id)", viewer: v, active: "Jobs", DashboardHTML.job(job)))
        }
        page("ui/audit") { _, _, p, v in
            guard APIAccess.decide(p, .readAudit, environment: nil) == .allowed else {
                return html(
                    DashboardHTML.page("Audit", viewer: v, active: "Audit", DashboardHTML.message("a viewer does not read the audit trail")), status: .forbidden
                )
            }
            let records = (try? await catalog.auditTrail(limit: 500)) ?? []
            return html(DashboardHTML.page("Audit trail", viewer: v, active: "Audit", DashboardHTML.audit(records)))
        }
    }
}
