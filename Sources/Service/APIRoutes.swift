// The REST API (docs/api.md), mounted on the scheduler's listener under /api/v1. Every request
// authenticates with a bearer token (APIAccess: role and scope); every mutating call, allowed
// or not, lands in the audit trail before it is answered. Mutating calls are refused on a
// plain-HTTP listener that is not on a loopback address (tokens would cross the network in
// clear), unless the inventory says a TLS-terminating proxy is in front.
import Fleet
import Foundation
import Hummingbird
import Scheduling
import Support

/// An API error as a JSON body: `{"error": ..., "hint": ...}` with its status.
struct APIFailure: HTTPResponseError {
    var status: HTTPResponse.Status
    var message: String
    var hint: String?
    /// Who was refused, when known (a session whose request lacked its CSRF token): the
    /// audit trail names them.
    var principal: APIPrincipal? = nil

    init(_ status: HTTPResponse.Status, _ message: String, hint: String? = nil) {
        self.status = status
        self.message = message
        self.hint = hint
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer realm=\"stowage\"" }
        let body = (try? APIJSON.encoder.encode(["error": message, "hint": hint].compactMapValues { $0 })) ?? Data()
        return Response(status: status, headers: headers, body: .init(byteBuffer: .init(bytes: body)))
    }
}

/// A request's JSON body: at most 64 KiB, decoded strictly enough to name what is wrong.
enum APIBody {
    static let limit = 64 << 10

    /// `value` when it matches `pattern` whole (nil stays nil); else a 400 naming the field.
    static func checked(_ field: String, _ value: String?, _ pattern: Regex<Substring>, request: String) throws -> String? {
        guard let value else { return nil }
        guard value.wholeMatch(of: pattern) != nil else {
            throw APIFailure(.badRequest, "\(field) '\(value.prefix(80))' is not a valid value", hint: "docs/api.md lists the fields of \(request) request")
        }
        return value
    }

    static func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch {
            throw APIFailure(.contentTooLarge, "the request body is larger than \(limit / 1024) KiB", hint: "a request here is a small JSON object")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch DecodingError.keyNotFound(let key, _) {
            throw APIFailure(.badRequest, "the JSON body has no \"\(key.stringValue)\"", hint: "docs/api.md lists the fields")
        } catch DecodingError.typeMismatch(_, let c) {
            throw APIFailure(
                .badRequest, "the JSON body's \"\(c.codingPath.map(\.stringValue).joined(separator: "."))\" has the wrong type",
                hint: "docs/api.md lists the fields")
        } catch {
            throw APIFailure(.badRequest, "the request body is not a JSON object", hint: "send Content-Type: application/json and a JSON object")
        }
    }
}

enum APIJSON {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }()

    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok, dates: JSONEncoder.DateEncodingStrategy = .iso8601) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = dates
        return Response(status: status, headers: headers, body: .init(byteBuffer: .init(bytes: try e.encode(value))))
    }
}

package enum APIRoutes {
    /// The HTTP status of an operation's refusal.
    package static func status(for e: StowageError) -> HTTPResponse.Status { status(for: e.status) }

    /// The HTTP status of a command's exit status (a job or a plan run as the CLI).
    package static func status(for exit: ExitStatus) -> HTTPResponse.Status {
        switch exit {
        case .usage: .badRequest
        case .locked, .unsafeTopology, .incompatibleBackup: .conflict
        case .credentialsRejected, .nodeUnreachable, .hostKeyRefused, .sshAuthFailed, .agentMismatch, .remoteFailed, .toolsMissing, .quorumNotReached:
            .badGateway
        default: .internalServerError
        }
    }

    /// An operation's refusal as the API's error (status by kind, message and hint kept).
    static func operation<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as StowageError { throw APIFailure(status(for: e), e.message, hint: e.hint) }
    }

    /// A query parameter's value.
    static func query(_ request: Request, _ name: String) -> String? { request.uri.queryParameters.get(name).map { String($0) } }

    /// `limit=N`, between 1 and 1000 (default 100); anything else is a 400.
    static func limit(_ request: Request) throws -> Int {
        guard let text = query(request, "limit") else { return 100 }
        guard let n = Int(text), (1...1000).contains(n) else {
            throw APIFailure(.badRequest, "limit '\(text.prefix(20))' is not a whole number from 1 to 1000")
        }
        return n
    }

    /// A boolean query parameter: true or false (1 or 0); absent: `default`.
    static func flag(_ request: Request, _ name: String, default value: Bool) throws -> Bool {
        switch query(request, name) {
        case nil: return value
        case "true", "1": return true
        case "false", "0": return false
        case let other?: throw APIFailure(.badRequest, "\(name) '\(other.prefix(20))' is neither true nor false")
        }
    }

    /// `layers=ENV` or `ENV/LAYER` and `storage=NAME` as given: malformed is a 400, naming
    /// what the inventory does not have a 404 (the CLI's refusal, as HTTP sees it).
    static func selection(_ request: Request, scheduler: Scheduler) async throws -> (layers: String?, storage: String?) {
        let names = await scheduler.names()
        let layers = query(request, "layers"), storage = query(request, "storage")
        if let layers {
            guard !layers.isEmpty else { throw APIFailure(.badRequest, "layers is empty", hint: "give ENV or ENV/LAYER, or leave it out for every layer") }
            let sel: LayerSelection
            do throws(StowageError) { sel = try LayerSelection(parsing: layers) } catch { throw APIFailure(.badRequest, error.message, hint: error.hint) }
            if let env = sel.environment, !names.environments.contains(env) {
                throw APIFailure(.notFound, "no environment '\(env.prefix(64))' in the inventory", hint: "GET /api/v1/status lists the layers")
            }
            if let env = sel.environment, let layer = sel.layer, !names.layers.contains("\(env)/\(layer)") {
                throw APIFailure(.notFound, "no layer '\(layer.prefix(64))' in environment \(env)", hint: "GET /api/v1/status lists the layers")
            }
        }
        if let storage, !names.storages.contains(storage) {
            throw APIFailure(
                .notFound, "no storage '\(storage.prefix(64))' in the inventory", hint: "the inventory has \(names.storages.joined(separator: ", "))")
        }
        return (layers, storage)
    }

    /// Every other method on an API path is a 405 naming the ones it has (not a 404: the
    /// path exists).
    struct MethodCheck: RouterMiddleware {
        typealias Context = BasicRequestContext
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            let path = request.uri.path
            guard path.hasPrefix("/api/v1/") else { return try await next(request, context) }
            let segments = path.split(separator: "/", omittingEmptySubsequences: false)
            let allowed = APIRoutes.endpoints.filter { e in
                let t = e.path.split(separator: "/", omittingEmptySubsequences: false)
                return t.count == segments.count && zip(t, segments).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
            }.map(\.method)
            let method = request.method.rawValue
            guard !allowed.isEmpty, !allowed.contains(method), !(method == "HEAD" && allowed.contains("GET")) else {
                return try await next(request, context)
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            headers[.allow] = Set(allowed).sorted().joined(separator: ", ")
            let body =
                (try? APIJSON.encoder.encode([
                    "error": "\(method) is not a method of \(path)", "hint": "it takes \(Set(allowed).sorted().joined(separator: " or "))",
                ])) ?? Data()
            return Response(status: .methodNotAllowed, headers: headers, body: .init(byteBuffer: .init(bytes: body)))
        }
    }

    /// Whether a listener on `host` may serve mutating calls without TLS.
    package static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// Every endpoint, as docs/openapi.json describes it (a unit test holds the two together).
    package static let endpoints: [(method: String, path: String)] = [
        ("GET", "/api/v1/whoami"), ("GET", "/api/v1/status"), ("GET", "/api/v1/storages"), ("GET", "/api/v1/backups"), ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/audit"),
        ("POST", "/api/v1/layers/{environment}/{layer}/backup"), ("POST", "/api/v1/layers/{environment}/{layer}/restore/plan"),
        ("POST", "/api/v1/layers/{environment}/{layer}/restore"), ("GET", "/api/v1/jobs"), ("GET", "/api/v1/jobs/{id}"),
        ("POST", "/api/v1/jobs/{id}/cancel"), ("GET", "/api/v1/jobs/{id}/events"), ("POST", "/api/v1/layers/{environment}/{layer}/addon/install"),
        ("POST", "/api/v1/layers/{environment}/{layer}/addon/configure"), ("POST", "/api/v1/layers/{environment}/{layer}/addon/uninstall"),
        ("POST", "/api/v1/storages/{storage}/verify"), ("POST", "/api/v1/storages/{storage}/repair"),
    ]

    static func mount(on router: Router<BasicRequestContext>, scheduler: Scheduler, listenHost: String, behindTLSProxy: Bool, openAPI: String?) {
        let catalog = scheduler.runCatalog
        router.add(middleware: MethodCheck())
        // The API's description, for clients and checkers; it holds no secret, so no token.
        if let openAPI {
            router.get("api/openapi.json") { _, _ -> Response in
                var headers = HTTPFields()
                headers[.contentType] = "application/json"
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: .init(string: openAPI)))
            }
        }
        let api = Access(catalog: catalog, mutatingServed: isLoopback(listenHost) || behindTLSProxy, sessions: scheduler.sessions)
        Dashboard.mount(on: router, scheduler: scheduler, api: api, secureCookies: behindTLSProxy)

        router.get("api/v1/whoami") { request, _ -> Response in
            let p = try await api.authenticate(request)
            return try APIJSON.response(WhoAmI(tokenID: p.tokenID, name: p.name, role: p.role.rawValue, environments: p.environments))
        }
        // The fleet at a glance: `stowage status --json`'s document (docs/json/status.schema.json).
        router.get("api/v1/status") { request, _ -> Response in
            _ = try await api.authorize(request, .read, environment: nil)
            let probe = try flag(request, "probe", default: true)
            let sel = try await selection(request, scheduler: scheduler)
            let report = try await operation { try await scheduler.fleetStatus(selection: sel.layers, probe: probe) }
            return try APIJSON.response(report, dates: .deferredToDate)
        }
        // Each storage: its write quorum, its nodes' health and free space as last checked
        // (the scheduler asks them in the background, as for /metrics).
        router.get("api/v1/storages") { request, _ -> Response in
            _ = try await api.authorize(request, .read, environment: nil)
            return try APIJSON.response(await scheduler.storages())
        }
        // The backups on a storage (`stowage backups --json`): any environment's, for Restore from.
        router.get("api/v1/backups") { request, _ -> Response in
            _ = try await api.authorize(request, .read, environment: nil)
            let sel = try await selection(request, scheduler: scheduler)
            let entries = try await operation { try await scheduler.backups(selection: sel.layers, storage: sel.storage) }
            return try APIJSON.response(entries, dates: .deferredToDate)
        }
        router.get("api/v1/runs") { request, _ -> Response in
            _ = try await api.authorize(request, .read, environment: nil)
            let n = try limit(request)
            let runs = try await operation { try await catalog.runs(layer: query(request, "layer"), limit: n) }.map(RunView.init)
            return try APIJSON.response(runs)
        }
        router.get("api/v1/audit") { request, _ -> Response in
            _ = try await api.authorize(request, .readAudit, environment: nil)
            let n = try limit(request)
            return try APIJSON.response(try await operation { try await catalog.auditTrail(limit: n) })
        }
        mountRestore(on: router, scheduler: scheduler, api: api)
        mountAddon(on: router, scheduler: scheduler, api: api)
        // Backup Now: the run is queued; its row appears in /api/v1/runs?layer= once started.
        router.post("api/v1/layers/:environment/:layer/backup") { request, context -> Response in
            let env = try context.parameters.require("environment"), name = try context.parameters.require("layer")
            let layer = "\(env)/\(name)"
            return try await api.mutate(request, .backup, environment: env, target: layer) { who in
                guard await scheduler.scheduling else {
                    throw APIFailure(.serviceUnavailable, "the scheduler is still starting (loading its policies)", hint: "try again in a few seconds")
                }
                let (q, job) = try await scheduler.backupNow(layer: layer, startedBy: "\(who.tokenID) (\(who.name))")
                let queued = Queued(layer: q.layer, storage: q.storage, trigger: q.trigger, runs: "/api/v1/runs?layer=\(q.layer)", job: job)
                return (try APIJSON.response(queued, status: .accepted), job.map { "job \($0.id): backup \(layer)" })
            }
        }
    }

    /// Restore, step one: the plan (`stowage restore --dry-run --json`), changing nothing.
    /// Step two: the same request with `confirm` naming the layer starts the restore as a job.
    static func mountRestore(on router: Router<BasicRequestContext>, scheduler: Scheduler, api: Access) {
        router.post("api/v1/layers/:environment/:layer/restore/plan") { request, context -> Response in
            let env = try context.parameters.require("environment"), name = try context.parameters.require("layer")
            _ = try await api.authorize(request, .restore, environment: env)
            let body = try await APIBody.decode(RestoreRequest.self, request)
            let args = try body.arguments(layer: "\(env)/\(name)") + ["--dry-run"]
            let r = try await operation { try await scheduler.jobs.runNow(args) }
            guard r.exitStatus == 0 else { throw commandFailure(r) }
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: .init(string: r.stdout)))
        }
        router.post("api/v1/layers/:environment/:layer/restore") { request, context -> Response in
            let env = try context.parameters.require("environment"), name = try context.parameters.require("layer")
            let layer = "\(env)/\(name)"
            return try await api.mutate(request, .restore, environment: env, target: layer) { who in
                let body = try await APIBody.decode(RestoreRequest.self, request)
                let args = try body.arguments(layer: layer)
                guard body.confirm == layer else {
                    throw APIFailure(
                        .badRequest, "a restore replaces the data of \(layer): confirm it by naming the layer",
                        hint: "POST .../restore/plan shows what it does; then send \"confirm\": \"\(layer)\"")
                }
                let job = try await scheduler.jobs.start(kind: "restore", layer: layer, startedBy: "\(who.tokenID) (\(who.name))", args + ["--yes"])
                return (try APIJSON.response(job, status: .accepted), "job \(job.id): restore \(layer) from \(body.from ?? layer) backup \(body.backup)")
            }
        }
        router.get("api/v1/jobs") { request, _ -> Response in
            _ = try await api.authorize(request, .read, environment: nil)
            return try APIJSON.response(await scheduler.jobs.all())
        }
        router.get("api/v1/jobs/:id") { request, context -> Response in
            _ = try await api.authorize(request, .read, environment: nil)
            let id = try context.parameters.require("id")
            guard let job = await scheduler.jobs.job(id) else { throw APIFailure(.notFound, "no job \(id)", hint: "GET /api/v1/jobs lists them") }
            return try APIJSON.response(job)
        }
        // The job as Server-Sent Events: one `job` event whenever it changes (progress,
        // state), the last once it has ended; then the stream closes.
        router.get("api/v1/jobs/:id/events") { request, context -> Response in
            _ = try await api.authorize(request, .read, environment: nil)
            let id = try context.parameters.require("id")
            guard await scheduler.jobs.job(id) != nil else { throw APIFailure(.notFound, "no job \(id)", hint: "GET /api/v1/jobs lists them") }
            var headers = HTTPFields()
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-store"
            let jobs = scheduler.jobs
            return Response(
                status: .ok, headers: headers,
                body: ResponseBody { writer in
                    var last: APIJob?
                    while let job = await jobs.job(id) {
                        if job != last {
                            let data = try APIJSON.encoder.encode(job)
                            try await writer.write(ByteBuffer(string: "event: job\ndata: \(String(decoding: data, as: UTF8.self))\n\n"))
                            last = job
                        }
                        if job.state != .running && job.ended != nil { break }
                        try await Task.sleep(for: .milliseconds(250))
                    }
                    try await writer.finish(nil)
                })
        }
        router.post("api/v1/jobs/:id/cancel") { request, context -> Response in
            let id = try context.parameters.require("id")
            let job = await scheduler.jobs.job(id)
            let env = job.map { String($0.layer.split(separator: "/").first ?? "") }
            // A backup job's run belongs to the scheduler (it must not retry it); the rest are
            // the jobs' own processes.
            let action: APIAction = job?.kind == "backup" ? .backup : job?.kind.hasPrefix("storage-") == true ? .maintainStorage : .restore
            return try await api.mutate(request, action, environment: env, target: job?.layer ?? id) { _ in
                guard let job else { throw APIFailure(.notFound, "no job \(id)", hint: "GET /api/v1/jobs lists them") }
                let cancelled = job.kind == "backup" ? await scheduler.cancelJob(id) : await scheduler.jobs.cancel(id)
                guard cancelled else { throw APIFailure(.conflict, "job \(id) has ended") }
                return (try APIJSON.response(await scheduler.jobs.job(id)), "job \(id) cancelled")
            }
        }
    }

    /// Install, Configure and Uninstall of the add-on (admins): the CLI's `addon` commands,
    /// run to their end; the scheduler then reloads its policies. Storage verify and repair
    /// (admins) run as jobs.
    static func mountAddon(on router: Router<BasicRequestContext>, scheduler: Scheduler, api: Access) {
        for verb in ["install", "configure", "uninstall"] {
            let action: APIAction = verb == "install" ? .install : verb == "uninstall" ? .uninstall : .configure
            router.post("api/v1/layers/:environment/:layer/addon/\(verb)") { request, context -> Response in
                let env = try context.parameters.require("environment"), name = try context.parameters.require("layer")
                let layer = "\(env)/\(name)"
                return try await api.mutate(request, action, environment: env, target: layer) { _ in
                    let body = try await APIBody.decode(PolicyRequest.self, request)
                    if verb == "uninstall" && body.confirm != layer {
                        throw APIFailure(
                            .badRequest, "uninstalling removes the backup policy of \(layer): confirm it by naming the layer",
                            hint: "send \"confirm\": \"\(layer)\" (its backups stay on the storage)")
                    }
                    let r = try await operation { try await scheduler.jobs.runNow(["addon", verb, layer] + (try body.arguments(for: verb))) }
                    guard r.exitStatus == 0 || r.exitStatus == 2 else { throw commandFailure(r) }
                    // The scheduler takes the changed policy at once (as SIGHUP would).
                    await scheduler.reload()
                    var headers = HTTPFields()
                    headers[.contentType] = "application/json"
                    return (Response(status: .ok, headers: headers, body: .init(byteBuffer: .init(string: r.stdout))), "addon \(verb) \(layer)")
                }
            }
        }
        for verb in ["verify", "repair"] {
            router.post("api/v1/storages/:storage/\(verb)") { request, context -> Response in
                let storage = try context.parameters.require("storage")
                return try await api.mutate(request, .maintainStorage, environment: nil, target: storage) { who in
                    guard storage.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._-]{0,63}/) != nil else {
                        throw APIFailure(.badRequest, "'\(storage.prefix(80))' is not a storage name")
                    }
                    let job = try await operation {
                        try await scheduler.jobs.start(
                            kind: "storage-\(verb)", layer: "storage:\(storage)", startedBy: "\(who.tokenID) (\(who.name))", ["storage", verb, storage])
                    }
                    return (try APIJSON.response(job, status: .accepted), "job \(job.id): storage \(verb) \(storage)")
                }
            }
        }
    }

    /// What an add-on request says (docs/api.md): the CLI's policy options, each value checked
    /// before it becomes an argument (`--name=value`). The database password stays in the
    /// inventory: the API takes none.
    struct PolicyRequest: Decodable {
        var schedule: String?
        var time: String?
        var days: String?
        var tz: String?
        var storage: String?
        var keep: Int?
        var dbUser: String?
        var source: String?
        var maxAge: String?
        var enabled: Bool?
        var confirm: String?

        func arguments(for verb: String) throws -> [String] {
            guard verb != "uninstall" else { return [] }
            var args: [String] = []
            func add(_ field: String, _ option: String, _ value: String?, _ pattern: Regex<Substring>) throws {
                if let value = try APIBody.checked(field, value, pattern, request: "an add-on") { args.append("--\(option)=\(value)") }
            }
            try add("schedule", "schedule", schedule, /[A-Za-z0-9*,\/ -]{1,100}/)
            try add("time", "time", time, /[0-9]{1,2}:[0-9]{2}/)
            try add("days", "days", days, /[a-z,-]{1,40}/)
            try add("tz", "tz", tz, /[A-Za-z0-9_+\/-]{1,64}/)
            try add("storage", "storage", storage, /[A-Za-z0-9][A-Za-z0-9._-]{0,63}/)
            try add("dbUser", "db-user", dbUser, /[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}/)
            try add("source", "source", source, /primary|replica/)
            try add("maxAge", "max-age", maxAge, /default|[0-9]+(?:\.[0-9]+)?[smhd]/)
            if let keep {
                guard (1...10000).contains(keep) else { throw APIFailure(.badRequest, "keep must be between 1 and 10000, not \(keep)") }
                args.append("--keep=\(keep)")
            }
            if let enabled {
                guard verb == "configure" else { throw APIFailure(.badRequest, "enabled is a field of configure only") }
                args.append(enabled ? "--enable" : "--disable")
            }
            return args
        }
    }

    /// A command that failed, as the API's error: its status by exit code, its error line and hint.
    static func commandFailure(_ r: RunProcessResult) -> APIFailure {
        let lines = r.stderr.split(separator: "\n").map(String.init)
        // The CLI's lines: "stowage: error: MESSAGE", then "hint: HINT".
        func after(_ marker: String) -> String? {
            lines.lazy.compactMap { l in l.range(of: marker).map { String(l[$0.upperBound...]) } }.first
        }
        let message = after("error: ") ?? "the command failed (exit \(r.exitStatus ?? -1))"
        let hint = after("hint: ")
        let exit = r.exitStatus.flatMap { ExitStatus(rawValue: $0) } ?? .internalError
        return APIFailure(status(for: exit), message, hint: hint)
    }

    /// What a restore request says (docs/api.md); every field checked before it becomes an
    /// argument of the command (values are passed as `--name=value`, never as options).
    struct RestoreRequest: Decodable {
        var backup: String
        var from: String?
        var node: String?
        var allNodes: Bool?
        var storage: String?
        var confirm: String?

        func arguments(layer: String) throws -> [String] {
            func check(_ field: String, _ value: String?, _ pattern: Regex<Substring>) throws {
                _ = try APIBody.checked(field, value, pattern, request: "a restore")
            }
            try check("backup", backup, /[A-Za-z0-9][A-Za-z0-9._:-]{0,127}/)
            try check("from", from, /[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?:\/[A-Za-z0-9][A-Za-z0-9._-]{0,63})?/)
            try check("node", node, /[A-Za-z0-9][A-Za-z0-9._-]{0,63}/)
            try check("storage", storage, /[A-Za-z0-9][A-Za-z0-9._-]{0,63}/)
            var args = ["restore", layer, "--backup=\(backup)"]
            if let from { args.append("--from=\(from)") }
            if let node { args.append("--node=\(node)") }
            if let storage { args.append("--storage=\(storage)") }
            if allNodes == true { args.append("--all-nodes") }
            return args
        }
    }

    struct WhoAmI: Encodable {
        var tokenID: String
        var name: String
        var role: String
        var environments: [String]
    }

    struct Queued: Encodable {
        var layer: String
        var storage: String
        var trigger: String
        var runs: String
        /// The job that follows the run (GET /api/v1/jobs/{id}, its events, cancel).
        var job: APIJob?
    }

    /// A run as the API shows it (the catalog's row, camelCase, dates in ISO 8601).
    struct RunView: Encodable {
        var id: Int64?
        var layer: String
        var storage: String
        var trigger: String
        var scheduledFor: Date?
        var started: Date
        var ended: Date?
        var seconds: Double?
        var outcome: String
        var attempt: Int
        var backup: String?
        var sourceNode: String?
        var rawBytes: Int64?
        var storedBytes: Int64?
        var newBytes: Int64?
        var exitCode: Int?
        var error: String?

        init(_ r: RunRecord) {
            id = r.id
            layer = r.layer
            storage = r.storage
            trigger = r.trigger
            scheduledFor = r.scheduledFor
            started = r.started
            ended = r.ended
            seconds = r.seconds
            outcome = r.outcome.rawValue
            attempt = r.attempt
            backup = r.backup
            sourceNode = r.sourceNode
            rawBytes = r.rawBytes
            storedBytes = r.storedBytes
            newBytes = r.newBytes
            exitCode = r.exitCode
            error = r.error
        }
    }

    /// Authentication, authorization and the audit trail, for every route.
    struct Access: Sendable {
        let catalog: RunCatalog
        let mutatingServed: Bool
        let sessions: DashboardSessions

        /// The cookie that carries a dashboard session.
        static let cookie = "stowage_session"
        /// The header a session's mutating request carries its CSRF token in.
        static let csrfHeader = HTTPFields.Element.Name("X-CSRF-Token")!

        /// The token a request presents (a bearer token), or the dashboard session it belongs
        /// to: a session's token must still be active, and a session's request that changes
        /// anything must carry the session's CSRF token (a cookie alone is sent by any page the
        /// browser shows; SameSite=Strict is the first fence, this the second).
        func authenticate(_ request: Request) async throws -> APIPrincipal {
            if request.headers[.authorization] == nil, let value = request.cookies[Self.cookie]?.value {
                return try await session(request, value).principal
            }
            guard let header = request.headers[.authorization] else {
                throw APIFailure(.unauthorized, "no API token in the request", hint: "send Authorization: Bearer <token> (stowage token create makes one)")
            }
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw APIFailure(.unauthorized, "the Authorization header is not a bearer token", hint: "send Authorization: Bearer <token>")
            }
            let secret = parts[1].trimmingCharacters(in: .whitespaces)
            guard let token = try await catalog.activeToken(hash: APIToken.hash(secret)) else {
                throw APIFailure(
                    .unauthorized, "the API token is unknown or revoked", hint: "stowage token list shows the tokens; stowage token create makes one")
            }
            return token.principal
        }

        /// The session of a cookie, with its principal (checked as above).
        func session(_ request: Request, _ cookie: String) async throws -> (principal: APIPrincipal, session: DashboardSession) {
            guard let s = await sessions.session(cookie) else {
                throw APIFailure(.unauthorized, "the dashboard session has ended", hint: "sign in again at /ui/login")
            }
            guard let token = try await catalog.activeToken(id: s.tokenID) else {
                await sessions.close(cookie)
                throw APIFailure(.unauthorized, "the session's token has been revoked", hint: "sign in again with an active token")
            }
            if request.method != .get && request.method != .head && request.headers[Self.csrfHeader] != s.csrf {
                var f = APIFailure(
                    .forbidden, "the request has no valid CSRF token for its session",
                    hint: "the dashboard's pages send it in X-CSRF-Token; a page from elsewhere cannot")
                f.principal = token.principal
                throw f
            }
            return (token.principal, s)
        }

        func authorize(_ request: Request, _ action: APIAction, environment: String?) async throws -> APIPrincipal {
            let p = try await authenticate(request)
            if case .denied(let why) = APIAccess.decide(p, action, environment: environment) { throw APIFailure(.forbidden, why) }
            return p
        }

        /// A mutating call: refused on an unsafe listener, authenticated, authorized, done,
        /// and recorded in the audit trail whatever its outcome (a trail that cannot be
        /// written refuses the call: nothing changes unrecorded).
        func mutate(
            _ request: Request, _ action: APIAction, environment: String?, target: String,
            _ body: (APIPrincipal) async throws -> (Response, String?)
        ) async throws -> Response {
            var principal: APIPrincipal?
            func record(_ status: HTTPResponse.Status, _ outcome: String, _ detail: String?) async throws {
                try await catalog.audit(
                    AuditRecord(
                        at: Date(), tokenID: principal?.tokenID ?? "-", tokenName: principal?.name ?? "-", method: request.method.rawValue,
                        path: request.uri.path, action: action.rawValue, target: target, status: Int(status.code), outcome: outcome, detail: detail))
            }
            do {
                guard mutatingServed else {
                    throw APIFailure(
                        .forbidden, "this listener serves plain HTTP on a non-loopback address: calls that change anything are refused",
                        hint: "listen on 127.0.0.1 behind a TLS-terminating proxy and set scheduler.api_behind_tls_proxy: true")
                }
                principal = try await authenticate(request)
                if case .denied(let why) = APIAccess.decide(principal!, action, environment: environment) { throw APIFailure(.forbidden, why) }
                let (response, detail) = try await body(principal!)
                try await record(response.status, "ok", detail)
                return response
            } catch {
                // An operation's refusal becomes the API's error here, so it is audited too.
                let f =
                    (error as? APIFailure) ?? (error as? StowageError).map { APIFailure(status(for: $0), $0.message, hint: $0.hint) }
                    ?? APIFailure(.internalServerError, "\(error)")
                if principal == nil { principal = f.principal }
                try await record(f.status, f.status == .unauthorized || f.status == .forbidden ? "denied" : "failed", f.message)
                throw f
            }
        }
    }
}
