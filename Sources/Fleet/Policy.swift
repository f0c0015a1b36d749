// Policies: the add-on's settings of one layer (schedule, storage, backups to keep, database
// credentials, dump source, enabled), kept in a policies file beside the inventory
// (docs/policies.md). This file is the pure part: the model, reading a policies file with
// the inventory's line-and-column errors, and writing one back. Files and locks: PolicyStore.
import Foundation
import Support
import Topology
import Yams

/// How a policy's schedule was written, kept as written so the file reads back the same.
package enum PolicySchedule: Sendable, Equatable, CustomStringConvertible {
    /// `hourly`, `daily`, `weekly`, `monthly`, or five-field cron in UTC.
    case expression(String)
    /// A time of day on some days of the week in an IANA time zone.
    case custom(time: String, days: String, timeZone: String)

    package func schedule() throws(StowageError) -> Schedule {
        switch self {
        case .expression(let e): return try Schedule.parse(e)
        case .custom(let t, let d, let z): return try Schedule.custom(time: t, days: d, timeZone: z)
        }
    }

    package var description: String {
        switch self {
        case .expression(let e): return Schedule.predefined[e.lowercased()] != nil ? e.lowercased() : "cron '\(e)' UTC"
        case .custom(let t, let d, let z): return "\(t) \(d) \(z)"
        }
    }
}

package struct Policy: Sendable, Equatable {
    /// ENV/LAYER.
    package var layer: String
    package var schedule: PolicySchedule
    package var storage: String
    package var keep: Int
    /// The database user and where its password is (never the password itself).
    package var credentials: CredentialsSpec?
    package var source: DumpPreference
    package var enabled: Bool
    /// When the policy was installed: runs due before it are not "missed".
    package var installed: Date
    /// The oldest the newest backup may be before the layer counts as stale (seconds); nil:
    /// twice the schedule's longest interval, at least an hour (`Staleness`).
    package var maxAge: Double? = nil
    /// Where the policy is written, for messages.
    package var location: String

    package init(
        layer: String, schedule: PolicySchedule, storage: String, keep: Int, credentials: CredentialsSpec?,
        source: DumpPreference = .primary, enabled: Bool = true, installed: Date, location: String = ""
    ) {
        self.layer = layer
        self.schedule = schedule
        self.storage = storage
        self.keep = keep
        self.credentials = credentials
        self.source = source
        self.enabled = enabled
        self.installed = installed
        self.location = location
    }
}

extension Policy {
    /// The policy's settings alone (for comparing a policy read back with one written).
    package var withoutLocation: Policy {
        var p = self
        p.location = ""
        p.credentials?.location = ""
        return p
    }
}

package enum PolicyFile {
    static let header = """
        # Stowage policies: the add-on's settings, one entry per layer (docs/policies.md).
        # Written by `stowage addon install|configure|uninstall`, atomically. Hand edits are
        # allowed and validated the same way; passwords never go here, only where they are.

        """

    /// Reads a policies file. Every error names file, line and column.
    package static func parse(_ text: String, file: String) throws(StowageError) -> [Policy] {
        let root: Yams.Node
        do {
            guard let n = try Yams.compose(yaml: text) else { return [] }
            root = n
        } catch let e as YamlError {
            throw Inventory.yamlSyntaxError(e, file: file)
        } catch {
            throw StowageError(.invalidInventory, "\(file): cannot parse the policies: \(error)")
        }
        let top = try YAMLFields(YAMLValue(node: root, path: "", file: file), allowed: ["policies"])
        guard let all = top["policies"] else { return [] }
        var out: [Policy] = []
        for (layer, v) in try all.mapping() { out.append(try policy(layer, v)) }
        return out
    }

    static func policy(_ layer: String, _ v: YAMLValue) throws(StowageError) -> Policy {
        let parts = layer.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw v.error("policy key '\(layer)' must be ENV/LAYER")
        }
        let f = try YAMLFields(v, allowed: ["schedule", "storage", "keep", "credentials", "source", "enabled", "installed", "max_age"])
        let sv = try f.required("schedule", hint: "hourly, daily, weekly, monthly, a cron expression, or { time: HH:MM, days: mon-fri, tz: Zone }")
        let schedule: PolicySchedule
        if case .mapping = sv.node {
            let s = try YAMLFields(sv, allowed: ["time", "days", "tz"])
            schedule = .custom(
                time: try s.required("time").string(), days: try s["days"]?.string() ?? "*",
                timeZone: try s.required("tz", hint: "an IANA zone such as Europe/Berlin").string())
        } else {
            schedule = .expression(try sv.string())
        }
        do throws(StowageError) {
            _ = try schedule.schedule()
        } catch {
            throw sv.error("policy \(layer): \(error.message)", hint: error.hint)
        }
        let kv = try f.required("keep", hint: "how many backups to keep, e.g. keep: 7")
        let keep = try kv.int()
        guard keep >= 1 else { throw kv.error("policy \(layer): keep must be at least 1") }
        let sourceValue = f["source"]
        let source =
            try sourceValue.map { (x: YAMLValue) throws(StowageError) -> DumpPreference in
                guard let p = DumpPreference(rawValue: try x.string()) else { throw x.error("policy \(layer): source must be primary or replica") }
                return p
            } ?? .primary
        var creds: CredentialsSpec?
        if let c = f["credentials"] {
            let cf = try YAMLFields(c, allowed: ["user", "password_env", "password_file", "password_credential", "password"])
            let pw = try cf.passwordSource(owner: "credentials of policy \(layer)", file: "policies")
            creds = CredentialsSpec(user: try cf["user"]?.string(), password: pw, location: c.location)
        }
        var installed = Date(timeIntervalSince1970: 0)
        if let iv = f["installed"] {
            guard let d = UTCStamp.parse(try iv.string()) else {
                throw iv.error("policy \(layer): installed must be a UTC time such as 2026-11-22T09:00:00Z")
            }
            installed = d
        }
        var maxAge: Double?
        if let mv = f["max_age"] {
            let m = try mv.seconds()
            guard m >= 60 else { throw mv.error("policy \(layer): max_age must be at least 1m", hint: "e.g. max_age: 26h for a daily schedule") }
            maxAge = m
        }
        var p = Policy(
            layer: layer, schedule: schedule, storage: try f.required("storage").string(), keep: keep, credentials: creds,
            source: source, enabled: try f["enabled"]?.bool() ?? true, installed: installed, location: v.location)
        p.maxAge = maxAge
        return p
    }

    /// The file's text for these policies, sorted by layer.
    package static func render(_ policies: [Policy]) -> String {
        func q(_ s: String) -> String {
            // Quote anything YAML could read as something else (cron's '*', times' ':').
            let plain =
                s.allSatisfy { $0.isLetter || $0.isNumber || "-_./@".contains($0) } && !s.isEmpty
                && !["true", "false", "yes", "no", "null", "on", "off", "~"].contains(s.lowercased())
            return plain ? s : "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        var t = header + "policies:\n"
        if policies.isEmpty { t = header + "policies: {}\n" }
        for p in policies.sorted(by: { $0.layer < $1.layer }) {
            t += "  \(q(p.layer)):\n"
            switch p.schedule {
            case .expression(let e): t += "    schedule: \(q(e))\n"
            case .custom(let time, let days, let zone): t += "    schedule: { time: \(q(time)), days: \(q(days)), tz: \(q(zone)) }\n"
            }
            t += "    storage: \(q(p.storage))\n"
            t += "    keep: \(p.keep)\n"
            t += "    source: \(p.source.rawValue)\n"
            t += "    enabled: \(p.enabled)\n"
            if let m = p.maxAge { t += "    max_age: \(Durations.format(m))\n" }
            if let c = p.credentials {
                var parts: [String] = []
                if let u = c.user { parts.append("user: \(q(u))") }
                switch c.password {
                case .none: break
                case .environment(let e): parts.append("password_env: \(q(e))")
                case .file(let f): parts.append("password_file: \(q(f))")
                case .credential(let c): parts.append("password_credential: \(q(c))")
                }
                t += "    credentials: { \(parts.joined(separator: ", ")) }\n"
            }
            t += "    installed: \(UTCStamp.format(p.installed))\n"
        }
        return t
    }

    /// Checks policies against the inventory: the layer and the storage exist.
    static func validate(_ policies: [Policy], against inv: Inventory) throws(StowageError) {
        // Looked up, not searched: a fleet of 10,000 layers made this quadratic (30 s a load).
        let layers = Set(inv.layers.map(\.id))
        for p in policies {
            guard layers.contains(p.layer) else {
                throw StowageError(
                    .invalidInventory, "\(p.location): policy for \(p.layer), which is not a layer of \(inv.path)",
                    hint: "remove it (stowage addon uninstall \(p.layer)) or add the layer to the inventory")
            }
            guard inv.storage(p.storage) != nil else {
                throw StowageError(
                    .invalidInventory, "\(p.location): policy \(p.layer) names storage '\(p.storage)', which is not in \(inv.path)",
                    hint: "storages: \(inv.storages.map(\.name).joined(separator: ", "))")
            }
        }
    }
}

/// Where a layer's backups are dumped: on the primary, or on a healthy replica within the lag limit.
package enum DumpPreference: String, Sendable, CaseIterable {
    case primary, replica
}
