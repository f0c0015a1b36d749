// The scheduler's and the notifications' settings (the inventory's `scheduler:` and
// `notifications:` sections, docs/inventory.md).
import Foundation
import Support
import Topology

package struct SchedulerSettings: Sendable, Equatable {
    /// Runs at once, over the whole fleet.
    package var concurrency = 4
    /// Runs at once writing to one storage.
    package var perStorage = 2
    /// Each due run starts after a random delay of up to this many seconds, so that a fleet
    /// scheduled at one minute does not start at one instant.
    package var startDelay: Double = 60
    /// Retries of a run that failed for a transient reason (node unreachable, lock held,
    /// quorum not reached), with a delay that doubles from `retryDelay`.
    package var retries = 3
    package var retryDelay: Double = 60
    /// On SIGTERM: how long running backups may go on before they are cancelled.
    package var grace: Double = 600
    /// The run catalog (SQLite); default: NAME.catalog.sqlite in the state folder.
    package var catalog: String?
    /// The HTTP listener (/metrics, /healthz, /readyz): host and port; off when nil.
    package var listen: (host: String, port: Int)? {
        get { listenAddress.map { ($0.host, $0.port) } }
        set { listenAddress = newValue.map { ListenAddress(host: $0.host, port: $0.port) } }
    }
    package var listenAddress: ListenAddress?
    /// The listener is on a loopback address behind a TLS-terminating proxy: the REST API's
    /// mutating calls are served even though the listener itself speaks plain HTTP on a
    /// non-loopback address (docs/api.md).
    package var apiBehindTLSProxy = false
    /// How often every storage node is asked whether it answers and how full it is (metrics).
    package var nodeCheck: Double = 60
    /// The PostgreSQL catalog that several coordinators share (leases, slot claims, the
    /// fleet's runs); nil: this coordinator is alone (docs/coordinators.md).
    package var sharedCatalog: SharedCatalogSpec?

    package init() {}
}

/// `scheduler.shared_catalog`: where the coordinators meet.
package struct SharedCatalogSpec: Sendable, Equatable {
    package var host: String
    package var port: Int = 5432
    package var database: String = "stowage"
    package var user: String = "stowage"
    /// The password's source (never in the inventory itself).
    package var credentials: CredentialsSpec
    /// How long a coordinator's hold on its layers lasts without renewal: the longest a dead
    /// or cut-off coordinator's layers wait for another.
    package var lease: Double = 10

    package init(host: String, credentials: CredentialsSpec) {
        self.host = host
        self.credentials = credentials
    }

    /// Reads `host=... port=... dbname=... user=...` (libpq's keywords; a password is refused:
    /// it goes in password_file/password_env). Returns the problem, if any.
    package mutating func read(conninfo: String) -> String? {
        for word in conninfo.split(whereSeparator: \.isWhitespace) {
            let kv = word.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, !kv[1].isEmpty else { return "'\(word)' is not KEY=VALUE" }
            switch kv[0] {
            case "host": host = kv[1]
            case "port":
                guard let p = Int(kv[1]), (1...65535).contains(p) else { return "port '\(kv[1])' is not a port number" }
                port = p
            case "dbname": database = kv[1]
            case "user": user = kv[1]
            case "password": return "a password does not go into the connection string"
            default: return "unknown keyword '\(kv[0])' (host, port, dbname, user)"
            }
        }
        return host.isEmpty ? "no host=" : nil
    }
}

/// Where notifications go: one target per webhook or command, each with the layers and the
/// events it wants (docs/scheduler.md, "Notifications").
package struct NotificationTarget: Sendable, Equatable {
    package enum Format: String, Sendable, CaseIterable {
        /// The event document (docs/json/notification.schema.json).
        case json
        /// `{"text": "..."}`, which Slack's and Mattermost's incoming webhooks take.
        case slack
    }

    /// ENV or ENV/LAYER selections; empty: every layer.
    package var match: [String] = []
    /// An http(s) URL that gets a POST per event...
    package var webhook: String?
    /// ...and/or a command run with the document on its stdin.
    package var command: String?
    package var format: Format = .json
    /// A file holding the key of the HMAC-SHA256 signature sent as `X-Stowage-Signature`.
    package var secretFile: String?
    /// The events wanted; nil: every event but `backup-succeeded` (which is opt-in).
    package var events: [String]?
    /// Where it was configured, for messages.
    package var location = ""

    package init() {}

    /// Every event a target can ask for, in the order the docs list them.
    package static let eventNames = [
        "run-failed", "credentials-rejected", "unsafe-topology", "storage-degraded", "backup-stale",
        "restore-completed", "backup-succeeded",
    ]

    /// Whether this target wants `event` about `layer` (ENV/LAYER) (pure).
    package func wants(_ event: String, layer: String) -> Bool {
        let env = layer.split(separator: "/").first.map(String.init) ?? layer
        guard match.isEmpty || match.contains(layer) || match.contains(env) else { return false }
        return events?.contains(event) ?? (event != "backup-succeeded")
    }
}

package struct ListenAddress: Sendable, Equatable {
    package var host: String
    package var port: Int

    /// "127.0.0.1:9187", "[::1]:9187" or "localhost:9187" (pure).
    package static func parse(_ s: String) -> ListenAddress? {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(" ") else { return nil }
        return ListenAddress(host: host, port: port)
    }
}

package struct NotificationSettings: Sendable, Equatable {
    package var targets: [NotificationTarget] = []
    /// Per delivery attempt.
    package var timeout: Double = 10
    /// Attempts after the first, with a delay doubling from `retryDelay`.
    package var retries = 3
    package var retryDelay: Double = 2

    package init() {}

    /// The targets that want `event` about `layer`.
    package func targets(for event: String, layer: String) -> [NotificationTarget] { targets.filter { $0.wants(event, layer: layer) } }
}

extension Inventory {
    /// Where the run catalog is.
    package var catalogPath: String {
        scheduler.catalog ?? PolicyStore.sibling(of: path, suffix: ".catalog.sqlite", in: stateDirectory.isEmpty ? nil : stateDirectory)
    }
}
