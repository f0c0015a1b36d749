// The inventory: environments, layers, nodes and storages, read from one YAML file
// (docs/inventory.md). Parsing validates everything that can be checked without a network,
// and every error names file, line and column.
import Foundation
import Support
import Topology
import Yams

package struct SSHAddress: Sendable, Equatable, CustomStringConvertible {
    package var user: String
    package var host: String
    package var port: Int
    package var description: String { "\(user)@\(host.contains(":") ? "[\(host)]" : host)\(port == 22 ? "" : ":\(port)")" }
}

package struct NodeSpec: Sendable, Equatable {
    package var name: String
    package var ssh: SSHAddress?
    /// The database endpoint (for a storage node: nil).
    package var db: Endpoint?
    /// Storage nodes: the folder that holds the repositories on this node.
    package var root: String?
    /// Where the node is defined, for messages.
    package var location: String
    /// A storage replica that is a bucket of an S3-compatible store instead of an SSH node.
    package var bucket: BucketSpec? = nil
}

/// A bucket as a storage node (docs/inventory.md): where it is, and the file its access key
/// pair is read from (never the inventory itself).
package struct BucketSpec: Sendable, Equatable {
    package var endpoint: String
    package var bucket: String
    package var region: String
    package var prefix: String
    package var pathStyle: Bool
    /// Two lines: the access key id, then the secret access key. Nil: the environment's
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    package var accessKeyFile: String?
    /// How long a lock's lease lasts unrenewed: how soon another run may take over the lock
    /// of a holder that died, or that ended while the bucket could not be reached.
    package var leaseSeconds: Int = 60

    /// The key pair, or an error naming the file or the variables.
    package func keys(node: String) throws(StowageError) -> (access: String, secret: String) {
        if let file = accessKeyFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw StowageError(
                    .invalidInventory, "node \(node): cannot read access_key_file \(file)", hint: "it holds two lines: the access key id, then the secret")
            }
            let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard lines.count == 2 else {
                throw StowageError(
                    .invalidInventory, "node \(node): access_key_file \(file) has \(lines.count) lines, not 2",
                    hint: "the access key id, then the secret access key")
            }
            return (lines[0], lines[1])
        }
        let env = ProcessInfo.processInfo.environment
        guard let a = env["AWS_ACCESS_KEY_ID"], let s = env["AWS_SECRET_ACCESS_KEY"], !a.isEmpty, !s.isEmpty else {
            throw StowageError(
                .invalidInventory, "node \(node): no access_key_file and no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", hint: "set s3.access_key_file on the node"
            )
        }
        return (a, s)
    }
}

package struct CredentialsSpec: Sendable, Equatable {
    package enum PasswordSource: Sendable, Equatable {
        case none
        case environment(String)
        case file(String)
        /// A systemd credential: the file NAME in $CREDENTIALS_DIRECTORY (LoadCredential=),
        /// which only the service can read and which never touches the disk's own folders.
        case credential(String)
    }

    package var user: String?
    package var password: PasswordSource
    package var location: String
    /// The YAML mapping the password keys are in, as errors name it ("credentials",
    /// "storages.lab-storage").
    package var field: String

    package init(user: String?, password: PasswordSource, location: String, field: String = "credentials") {
        self.user = user
        self.password = password
        self.location = location
        self.field = field
    }
}

package struct LayerSpec: Sendable, Equatable {
    package var environment: String
    package var name: String
    package var engine: Engine
    package var nodes: [NodeSpec]
    /// The node the add-on would use: the one marked `master: true`, else the first.
    package var masterNode: String
    package var credentials: CredentialsSpec?
    package var maxLagSeconds: Double
    package var location: String
    /// Warnings the operator has accepted for this layer (`acknowledge: [non-clustered]`):
    /// shown, but no longer a warning, so exit codes mean something in automation. An error
    /// (split brain, no primary...) is never silenced by it.
    package var acknowledged: [Finding.Code] = []

    package var id: String { "\(environment)/\(name)" }
}

package struct EnvironmentSpec: Sendable, Equatable {
    package var name: String
    package var layers: [LayerSpec]
}

package struct StorageSpec: Sendable, Equatable {
    package var name: String
    package var root: String?
    package var nodes: [NodeSpec]
    /// How many nodes must hold a file before a write commits; nil means all of them.
    package var quorum: Int?
    /// The storage password (wraps every repository's keys): from a variable or a file.
    package var password: CredentialsSpec?
    /// The zstd level backups to this storage are written with (1-19); nil: each engine's
    /// own (`Engine.defaultZstdLevel`: 1 for SQL dumps, 3 for Redis).
    package var zstdLevel: Int?
}

package struct SSHSettings: Sendable, Equatable {
    package var identity: String?
    package var knownHosts: String?
}

package struct ProbeSettings: Sendable, Equatable {
    package var connectTimeout: Double = 5
    package var queryTimeout: Double = 10
    package var maxLagSeconds: Double = 60
}

package struct Inventory: Sendable, Equatable {
    package var path: String
    package var ssh: SSHSettings
    package var probe: ProbeSettings
    package var storages: [StorageSpec]
    package var environments: [EnvironmentSpec]
    /// Where the policies file and the run catalog live unless the inventory names them
    /// (`state_dir:`; else systemd's $STATE_DIRECTORY; else /var/lib/stowage for an
    /// inventory installed under /etc/stowage; else the inventory's own folder).
    package var stateDirectory: String = ""
    /// The policies file (`policies:` in the inventory, else in the state folder:
    /// stowage.yaml → stowage.policies.yaml) and the policies read from it.
    package var policiesPath: String = ""
    package var policies: [Policy] = [] {
        didSet { policyIndex = Dictionary(policies.enumerated().map { ($1.layer, $0) }, uniquingKeysWith: { first, _ in first }) }
    }
    /// Each policy's place in `policies` by layer (the first one, as a search would find).
    var policyIndex: [String: Int] = [:]
    package var scheduler = SchedulerSettings()
    package var notifications = NotificationSettings()

    package var layers: [LayerSpec] { environments.flatMap(\.layers) }
}

// MARK: - Loading

extension Inventory {
    /// The installed inventory (scripts/install.sh).
    package static let installedPath = "/etc/stowage/stowage.yaml"
    /// The state folder of an installed coordinator (systemd's StateDirectory=stowage).
    package static let installedStateDirectory = "/var/lib/stowage"

    /// Where the inventory is: `--config`, else `STOWAGE_CONFIG`, else /etc/stowage/stowage.yaml.
    package static func resolvePath(option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let option, !option.isEmpty { return option }
        if let env = environment["STOWAGE_CONFIG"], !env.isEmpty { return env }
        return installedPath
    }

    /// The state folder when the inventory does not name one (pure; see `stateDirectory`).
    package static func defaultStateDirectory(inventory path: String, environment: [String: String]) -> String {
        // systemd may list several folders (StateDirectory=a b): the first is ours.
        if let d = environment["STATE_DIRECTORY"]?.split(separator: ":").first, !d.isEmpty { return String(d) }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if folder == URL(fileURLWithPath: installedPath).deletingLastPathComponent().path { return installedStateDirectory }
        return folder
    }

    package static func load(path: String) throws(StowageError) -> Inventory {
        var inv = try loadWithoutPolicies(path: path)
        try inv.apply(try PolicyStore.read(inv.policiesPath))
        return inv
    }

    /// The inventory alone: what `addon install` starts from (the policies are its to write).
    static func loadWithoutPolicies(path: String) throws(StowageError) -> Inventory {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StowageError(
                .noInventory, "no inventory at \(path)",
                hint: "write one (docs/inventory.md, fixtures/inventories/example.yaml) or point --config or STOWAGE_CONFIG at it")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StowageError(.noInventory, "cannot read the inventory \(path)", hint: "check the file's permissions")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw StowageError(.invalidInventory, "\(path) is not UTF-8 text", hint: "save the inventory as UTF-8")
        }
        return try parseWithoutPolicies(text, file: path)
    }

    /// Parses an inventory and applies the given policies (the policies file's contents).
    package static func parse(_ text: String, file: String, policies: [Policy] = []) throws(StowageError) -> Inventory {
        var inv = try parseWithoutPolicies(text, file: file)
        try inv.apply(policies)
        return inv
    }

    /// Checks the policies against the inventory and lets each one's credentials stand for its
    /// layer's; then every SQL layer must have credentials from one or the other.
    package mutating func apply(_ policies: [Policy]) throws(StowageError) {
        try PolicyFile.validate(policies, against: self)
        self.policies = policies
        for e in environments.indices {
            for l in environments[e].layers.indices {
                let id = environments[e].layers[l].id
                if let c = policy(for: id)?.credentials { environments[e].layers[l].credentials = c }
                let layer = environments[e].layers[l]
                if layer.credentials == nil && layer.engine != .redis {
                    throw StowageError(
                        .invalidInventory, "\(layer.location): layer \(id) has no credentials",
                        hint: "add credentials: { user: ..., password_env: VAR } or password_file, or install a policy with --db-user")
                }
            }
        }
    }

    package func policy(for layer: String) -> Policy? { policyIndex[layer].map { policies[$0] } }

    static func parseWithoutPolicies(
        _ text: String, file: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(StowageError) -> Inventory {
        let root: Yams.Node
        do {
            guard let n = try Yams.compose(yaml: text) else {
                throw StowageError(
                    .invalidInventory, "\(file): the inventory is empty",
                    hint: "describe at least one environment (docs/inventory.md)")
            }
            root = n
        } catch let e as StowageError {
            throw e
        } catch let e as YamlError {
            throw yamlSyntaxError(e, file: file)
        } catch {
            throw StowageError(.invalidInventory, "\(file): cannot parse the inventory: \(error)")
        }
        var parser = InventoryParser(file: file, environment: environment)
        return try parser.parse(YAMLValue(node: root, path: "", file: file))
    }

    static func yamlSyntaxError(_ e: YamlError, file: String) -> StowageError {
        let hint = "check the indentation and the ':' after each key near that place"
        switch e {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return StowageError(.invalidInventory, "\(file):\(mark.line):\(mark.column): YAML syntax error: \(problem)", hint: hint)
        case .duplicatedKeysInMapping(let dups, let ctx):
            return StowageError(.invalidInventory, "\(file):\(ctx.mark.line):\(ctx.mark.column): duplicate keys \(dups.joined(separator: ", "))")
        default:
            return StowageError(.invalidInventory, "\(file): YAML error: \(e)", hint: hint)
        }
    }

    package func environment(_ name: String) -> EnvironmentSpec? { environments.first { $0.name == name } }
    package func storage(_ name: String) -> StorageSpec? { storages.first { $0.name == name } }

    /// The storage a command names, or (nil) the inventory's only one.
    package func requireStorage(_ name: String?) throws(StowageError) -> StorageSpec {
        let all = storages.map(\.name).joined(separator: ", ")
        if let name {
            guard let s = storage(name) else { throw StowageError(.usage, "unknown storage '\(name)' in \(path)", hint: "storages: \(all)") }
            return s
        }
        guard storages.count == 1 else {
            throw StowageError(.usage, "\(storages.count) storages in \(path): name one", hint: "storages: \(all)")
        }
        return storages[0]
    }
}

private struct InventoryParser {
    let file: String
    /// The process's environment (systemd's STATE_DIRECTORY), given so parsing stays pure.
    let environment: [String: String]
    /// Node names identify hosts (`stowage ssh trust NODE`), so they are unique across the file.
    var nodeNames: [String: String] = [:]
    var probe = ProbeSettings()

    init(file: String, environment: [String: String]) {
        self.file = file
        self.environment = environment
    }

    mutating func parse(_ root: YAMLValue) throws(StowageError) -> Inventory {
        let top = try YAMLFields(root, allowed: ["ssh", "probe", "storages", "environments", "policies", "scheduler", "notifications", "state_dir"])
        var ssh = SSHSettings()
        if let s = top["ssh"] {
            let f = try YAMLFields(s, allowed: ["identity", "known_hosts"])
            ssh.identity = try f["identity"]?.string()
            ssh.knownHosts = try f["known_hosts"]?.string()
        }
        if let p = top["probe"] {
            let f = try YAMLFields(p, allowed: ["connect_timeout", "query_timeout", "max_lag"])
            if let v = f["connect_timeout"] { probe.connectTimeout = try positive(v) }
            if let v = f["query_timeout"] { probe.queryTimeout = try positive(v) }
            if let v = f["max_lag"] { probe.maxLagSeconds = try v.seconds() }
        }
        var storages: [StorageSpec] = []
        if let s = top["storages"] {
            for (name, v) in try s.mapping() { storages.append(try storage(name, v)) }
        }
        let envValue = try top.required("environments", hint: "an inventory describes at least one environment; see docs/inventory.md")
        var envs: [EnvironmentSpec] = []
        for (name, v) in try envValue.mapping() {
            try checkName(name, v, what: "environment")
            let f = try YAMLFields(v, allowed: ["layers"])
            var layers: [LayerSpec] = []
            for (lname, lv) in try f.required("layers").mapping() { layers.append(try layer(env: name, name: lname, lv)) }
            envs.append(EnvironmentSpec(name: name, layers: layers))
        }
        var inv = Inventory(path: file, ssh: ssh, probe: probe, storages: storages, environments: envs)
        if let d = top["state_dir"] {
            let dir = try d.string()
            guard dir.hasPrefix("/") else { throw d.error("state_dir must be an absolute path, not '\(dir)'", hint: "e.g. state_dir: /var/lib/stowage") }
            inv.stateDirectory = dir
        } else {
            inv.stateDirectory = Inventory.defaultStateDirectory(inventory: file, environment: environment)
        }
        inv.policiesPath = try top["policies"]?.string() ?? PolicyStore.defaultPath(forInventory: file, stateDirectory: inv.stateDirectory)
        if let s = top["scheduler"] { inv.scheduler = try scheduler(s, inventory: file) }
        if let n = top["notifications"] { inv.notifications = try notifications(n) }
        return inv
    }

    func scheduler(_ v: YAMLValue, inventory: String) throws(StowageError) -> SchedulerSettings {
        let f = try YAMLFields(
            v,
            allowed: [
                "concurrency", "per_storage", "start_delay", "retries", "retry_delay", "grace", "catalog", "listen", "node_check", "api_behind_tls_proxy",
                "shared_catalog",
            ])
        var s = SchedulerSettings()
        func count(_ key: String, min: Int) throws(StowageError) -> Int? {
            guard let x = f[key] else { return nil }
            let n = try x.int()
            guard n >= min else { throw x.error("scheduler.\(key) must be at least \(min)") }
            return n
        }
        s.concurrency = try count("concurrency", min: 1) ?? s.concurrency
        s.perStorage = try count("per_storage", min: 1) ?? s.perStorage
        s.retries = try count("retries", min: 0) ?? s.retries
        if let x = f["start_delay"] { s.startDelay = try x.seconds() }
        if let x = f["retry_delay"] { s.retryDelay = try positive(x) }
        if let x = f["grace"] { s.grace = try x.seconds() }
        s.catalog = try f["catalog"]?.string()
        if let x = f["node_check"] { s.nodeCheck = try positive(x) }
        if let l = f["listen"] {
            let text = try l.string()
            guard let a = ListenAddress.parse(text) else {
                throw l.error(
                    "scheduler.listen must be HOST:PORT such as 127.0.0.1:9187, not '\(text)'", hint: "the listener serves /metrics, /healthz and /readyz")
            }
            s.listenAddress = a
        }
        if let x = f["api_behind_tls_proxy"] { s.apiBehindTLSProxy = try x.bool() }
        if let c = f["shared_catalog"] {
            let cf = try YAMLFields(c, allowed: ["postgresql", "password_env", "password_file", "password_credential", "password", "lease"])
            let conn = try cf.required("postgresql", hint: "postgresql: \"host=HOST port=5432 dbname=stowage user=stowage\"")
            var spec = SharedCatalogSpec(
                host: "", credentials: CredentialsSpec(user: nil, password: .none, location: c.location, field: "scheduler.shared_catalog"))
            if let problem = spec.read(conninfo: try conn.string()) {
                throw conn.error("scheduler.shared_catalog.postgresql: \(problem)", hint: "e.g. \"host=10.0.0.5 port=5432 dbname=stowage user=stowage\"")
            }
            spec.credentials.user = spec.user
            spec.credentials.password = try cf.passwordSource(owner: "scheduler.shared_catalog", file: "inventory")
            if case .none = spec.credentials.password {
                throw c.error("scheduler.shared_catalog has no password", hint: "add password_file: PATH (or password_env) beside postgresql:")
            }
            if let l = cf["lease"] {
                spec.lease = try l.seconds()
                guard (3...300).contains(spec.lease) else { throw l.error("scheduler.shared_catalog.lease must be 3s to 300s") }
            }
            s.sharedCatalog = spec
        }
        return s
    }

    func notifications(_ v: YAMLValue) throws(StowageError) -> NotificationSettings {
        let targetKeys = ["webhook", "command", "format", "secret_file", "events"]
        let f = try YAMLFields(v, allowed: targetKeys + ["timeout", "retries", "retry_delay", "routes"])
        var n = NotificationSettings()
        // The section's own webhook/command: a target for every layer.
        if f["webhook"] != nil || f["command"] != nil {
            n.targets.append(try notificationTarget(f, at: v, match: []))
        } else if let stray = targetKeys.dropFirst(2).compactMap({ f[$0] }).first {
            throw stray.error("\(stray.path) needs a webhook or a command beside it")
        }
        if let routes = f["routes"] {
            for r in try routes.sequence() {
                let rf = try YAMLFields(r, allowed: targetKeys + ["match"])
                var match: [String] = []
                if let m = rf["match"] {
                    match = try m.stringList()
                    for sel in match where sel.isEmpty || sel.split(separator: "/", omittingEmptySubsequences: false).count > 2 {
                        throw m.error("\(m.path): '\(sel)' is not ENV or ENV/LAYER")
                    }
                }
                guard rf["webhook"] != nil || rf["command"] != nil else { throw r.error("a notification route needs a webhook or a command") }
                n.targets.append(try notificationTarget(rf, at: r, match: match))
            }
        }
        if let t = f["timeout"] { n.timeout = try positive(t) }
        if let r = f["retries"] {
            n.retries = try r.int()
            guard (0...10).contains(n.retries) else { throw r.error("notifications.retries must be 0 to 10") }
        }
        if let d = f["retry_delay"] { n.retryDelay = try positive(d) }
        return n
    }

    func notificationTarget(_ f: YAMLFields, at v: YAMLValue, match: [String]) throws(StowageError) -> NotificationTarget {
        var t = NotificationTarget()
        t.match = match
        t.location = v.location
        if let w = f["webhook"] {
            let s = try w.string()
            guard let u = URL(string: s), ["http", "https"].contains(u.scheme ?? ""), u.host != nil else {
                throw w.error("\(w.path) must be an http:// or https:// URL, not '\(s)'")
            }
            t.webhook = s
        }
        t.command = try f["command"]?.string()
        if let x = f["format"] {
            let s = try x.string()
            guard let format = NotificationTarget.Format(rawValue: s) else { throw x.error("\(x.path) must be json or slack, not '\(s)'") }
            t.format = format
        }
        if let x = f["secret_file"] { t.secretFile = try x.string() }
        if let x = f["events"] {
            let names = try x.stringList()
            for name in names where !NotificationTarget.eventNames.contains(name) {
                throw x.error("\(x.path): unknown event '\(name)'", hint: "events: \(NotificationTarget.eventNames.joined(separator: ", "))")
            }
            t.events = names
        }
        return t
    }

    func positive(_ v: YAMLValue) throws(StowageError) -> Double {
        let s = try v.seconds()
        guard s > 0 else { throw v.error("\(v.path) must be longer than zero") }
        return s
    }

    func checkName(_ name: String, _ v: YAMLValue, what: String) throws(StowageError) {
        let ok = !name.isEmpty && name.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) } && !name.hasPrefix(".")
        guard ok else {
            throw v.error(
                "\(what) name '\(name)' may hold only letters, digits, '-', '_' and '.'",
                hint: "names become folder names on the storage")
        }
    }

    mutating func storage(_ name: String, _ v: YAMLValue) throws(StowageError) -> StorageSpec {
        try checkName(name, v, what: "storage")
        let f = try YAMLFields(v, allowed: ["root", "nodes", "quorum", "password_env", "password_file", "password_credential", "password", "zstd_level"])
        let source = try f.passwordSource(owner: "storage \(name)", file: "inventory")
        let password = source == .none ? nil : CredentialsSpec(user: nil, password: source, location: v.location, field: "storages.\(name)")
        let root = try f["root"]?.string()
        var nodes: [NodeSpec] = []
        for n in try f.required("nodes").sequence() {
            let node = try self.node(n, engine: nil)
            if node.bucket == nil && node.ssh == nil {
                throw n.error(
                    "storage node '\(node.name)' has neither ssh: nor s3:", hint: "an SSH host (ssh: root@HOST) or a bucket (s3: { endpoint, bucket })")
            }
            if node.root == nil && root == nil && node.bucket == nil {
                throw n.error("storage node '\(node.name)' has no root folder", hint: "set root: on the storage or on the node")
            }
            nodes.append(node)
        }
        if nodes.isEmpty { throw v.error("storage '\(name)' has no nodes") }
        var quorum: Int?
        if let q = f["quorum"] {
            if (try? q.string()) == "all" {
                quorum = nil
            } else {
                let n = try q.int()
                guard n >= 1 && n <= nodes.count else { throw q.error("quorum must be between 1 and \(nodes.count) (the storage's nodes), or all") }
                quorum = n
            }
        }
        var level: Int?
        if let z = f["zstd_level"] {
            let l = try z.int()
            guard (1...19).contains(l) else { throw z.error("zstd_level must be between 1 and 19") }
            level = l
        }
        return StorageSpec(name: name, root: root, nodes: nodes, quorum: quorum, password: password, zstdLevel: level)
    }

    mutating func layer(env: String, name: String, _ v: YAMLValue) throws(StowageError) -> LayerSpec {
        try checkName(name, v, what: "layer")
        let f = try YAMLFields(v, allowed: ["engine", "nodes", "credentials", "max_lag", "acknowledge"])
        let ev = try f.required("engine", hint: "engine: postgresql, mysql or redis")
        let engineName = try ev.string()
        guard let engine = Engine(rawValue: engineName.lowercased()) ?? Self.engineAliases[engineName.lowercased()] else {
            throw ev.error(
                "unknown engine '\(engineName)' for layer \(env)/\(name)",
                hint: "use postgresql, mysql (also for MariaDB and Percona) or redis")
        }
        let nv = try f.required("nodes")
        var nodes: [NodeSpec] = []
        var masters: [String] = []
        for n in try nv.sequence() {
            let fields = try YAMLFields(n, allowed: ["name", "ssh", "db", "master"])
            let node = try self.node(n, engine: engine)
            if try fields["master"]?.bool() == true { masters.append(node.name) }
            nodes.append(node)
        }
        if nodes.isEmpty { throw nv.error("layer \(env)/\(name) has no nodes") }
        if masters.count > 1 {
            throw nv.error(
                "layer \(env)/\(name) has \(masters.count) nodes marked master: true (\(masters.joined(separator: ", ")))",
                hint: "a layer has one master node")
        }
        var creds: CredentialsSpec?
        if let cv = f["credentials"] { creds = try credentials(cv, engine: engine, layer: "\(env)/\(name)") }
        let maxLag = try f["max_lag"]?.seconds() ?? probe.maxLagSeconds
        var acknowledged: [Finding.Code] = []
        if let a = f["acknowledge"] {
            for text in try a.stringList() {
                guard let code = Finding.Code(rawValue: text) else {
                    throw a.error(
                        "layer \(env)/\(name): unknown finding '\(text)' to acknowledge",
                        hint:
                            "finding codes: \(Finding.Code.allCases.map(\.rawValue).joined(separator: ", ")) (stowage topology --json shows each finding's code)"
                    )
                }
                acknowledged.append(code)
            }
        }
        var spec = LayerSpec(
            environment: env, name: name, engine: engine, nodes: nodes,
            masterNode: masters.first ?? nodes[0].name, credentials: creds,
            maxLagSeconds: maxLag, location: v.location)
        spec.acknowledged = acknowledged
        return spec
    }

    static let engineAliases: [String: Engine] = [
        "postgres": .postgresql, "pgsql": .postgresql, "mariadb": .mysql, "percona": .mysql,
    ]

    func credentials(_ v: YAMLValue, engine: Engine, layer: String) throws(StowageError) -> CredentialsSpec {
        // `password` is listed so that its use gets a clear refusal instead of "unknown key".
        let f = try YAMLFields(v, allowed: ["user", "password_env", "password_file", "password_credential", "password"])
        let source = try f.passwordSource(owner: "credentials of \(layer)", file: "inventory")
        let user = try f["user"]?.string()
        if user == nil && engine != .redis {
            throw v.error("credentials of \(layer) have no user", hint: "add user: the database user the add-on would use")
        }
        return CredentialsSpec(user: user, password: source, location: v.location)
    }

    mutating func node(_ v: YAMLValue, engine: Engine?) throws(StowageError) -> NodeSpec {
        let f = try YAMLFields(v, allowed: engine == nil ? ["name", "ssh", "root", "s3"] : ["name", "ssh", "db", "master"])
        let nameValue = try f.required("name")
        let name = try nameValue.string()
        try checkName(name, nameValue, what: "node")
        if let first = nodeNames[name] {
            throw nameValue.error(
                "duplicate node name '\(name)' (first defined at \(first))",
                hint: "node names identify hosts and must be unique across the inventory")
        }
        nodeNames[name] = nameValue.location
        var ssh: SSHAddress?
        if let s = f["ssh"] { ssh = try sshAddress(s) }
        var db: Endpoint?
        if let engine {
            let dv = try f.required("db", hint: "db: host:port of the database server")
            db = try endpoint(dv, defaultPort: engine.defaultPort)
        }
        var spec = NodeSpec(name: name, ssh: ssh, db: db, root: try f["root"]?.string(), location: v.location)
        if let b = f["s3"] {
            guard ssh == nil else { throw b.error("storage node '\(name)' has both ssh: and s3:", hint: "a node is an SSH host or a bucket") }
            let g = try YAMLFields(b, allowed: ["endpoint", "bucket", "region", "prefix", "path_style", "access_key_file", "lease_seconds"])
            let endpoint = try g.required("endpoint", hint: "endpoint: http(s)://HOST:PORT of the store").string()
            guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
                throw b.error("s3.endpoint '\(endpoint)' is not an http:// or https:// address")
            }
            let bucket = try g.required("bucket").string()
            guard bucket.count >= 3, bucket.count <= 63, bucket.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "." }) else {
                throw b.error("s3.bucket '\(bucket)' is not a bucket name", hint: "3 to 63 lowercase letters, digits, '-' and '.'")
            }
            var pathStyle = true
            if let p = g["path_style"] {
                guard let v = try? p.bool() else { throw p.error("s3.path_style must be true or false") }
                pathStyle = v
            }
            spec.bucket = BucketSpec(
                endpoint: endpoint, bucket: bucket, region: try g["region"]?.string() ?? "us-east-1", prefix: try g["prefix"]?.string() ?? "",
                pathStyle: pathStyle, accessKeyFile: try g["access_key_file"]?.string())
            if let l = g["lease_seconds"] {
                let n = try l.int()
                guard (6...3600).contains(n) else { throw l.error("s3.lease_seconds must be between 6 and 3600") }
                spec.bucket?.leaseSeconds = n
            }
        }
        return spec
    }

    func sshAddress(_ v: YAMLValue) throws(StowageError) -> SSHAddress {
        var s = try v.string()
        var user = "root"
        if let at = s.lastIndex(of: "@") {
            user = String(s[..<at])
            s = String(s[s.index(after: at)...])
        }
        let ep = try parseEndpoint(s, defaultPort: 22, v)
        if user.isEmpty { throw v.error("\(v.path): empty user before '@'") }
        return SSHAddress(user: user, host: ep.host, port: ep.port)
    }

    func endpoint(_ v: YAMLValue, defaultPort: Int) throws(StowageError) -> Endpoint {
        try parseEndpoint(try v.string(), defaultPort: defaultPort, v)
    }

    func parseEndpoint(_ s: String, defaultPort: Int, _ v: YAMLValue) throws(StowageError) -> Endpoint {
        var host = s, port = defaultPort
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { throw v.error("\(v.path): unclosed '[' in '\(s)'") }
            host = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            if rest.hasPrefix(":") {
                guard let p = Int(rest.dropFirst()) else { throw v.error("\(v.path): bad port in '\(s)'") }
                port = p
            }
        } else if let colon = s.lastIndex(of: ":"), s.firstIndex(of: ":") == colon {
            host = String(s[..<colon])
            guard let p = Int(s[s.index(after: colon)...]) else { throw v.error("\(v.path): bad port in '\(s)'", hint: "write host:port, e.g. 10.0.1.10:5432") }
            port = p
        }
        guard !host.isEmpty else { throw v.error("\(v.path): no host in '\(s)'") }
        guard (1...65535).contains(port) else { throw v.error("\(v.path): port \(port) is out of range") }
        return Endpoint(host: host, port: port)
    }
}

extension Engine {
    package var defaultPort: Int {
        switch self {
        case .postgresql: 5432
        case .mysql: 3306
        case .redis: 6379
        }
    }
}
