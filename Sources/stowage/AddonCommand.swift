import ArgumentParser
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

/// `stowage addon install|configure|uninstall ENV/LAYER`: the add-on's lifecycle, as a
/// policy per layer in the policies file beside the inventory (docs/policies.md).
struct AddonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "addon",
        abstract: "Install, configure or uninstall the backup add-on of a layer (its schedule policy).",
        subcommands: [Install.self, Configure.self, Uninstall.self])

    /// The add-on form's fields; each is optional for configure.
    struct PolicyOptions: ParsableArguments {
        @Option(help: ArgumentHelp("hourly, daily, weekly, monthly, or five-field cron in UTC ('30 2 * * mon-fri').", valueName: "schedule"))
        var schedule: String?
        @Option(help: ArgumentHelp("Custom schedule: a local time of day, with --days and --tz.", valueName: "HH:MM"))
        var time: String?
        @Option(help: ArgumentHelp("Custom schedule: days of the week (mon,wed,fri or mon-fri; default every day).", valueName: "days"))
        var days: String?
        @Option(help: ArgumentHelp("Custom schedule: an IANA time zone (Europe/Berlin).", valueName: "zone"))
        var tz: String?
        @Option(help: "The storage backups go to (default: the inventory's only storage).")
        var storage: String?
        @Option(
            parsing: .unconditional, help: "How many backups of the layer to keep.",
            transform: { try wholeNumber($0) })
        var keep: Int?
        @Option(help: "The database user the backups connect as.")
        var dbUser: String?
        @Option(help: ArgumentHelp("An environment variable holding the database password (set it for the scheduler too).", valueName: "VAR"))
        var dbPasswordEnv: String?
        @Option(help: ArgumentHelp("A file holding the database password (mode 600).", valueName: "path"))
        var dbPasswordFile: String?
        @Option(help: "Dump on the primary or on a healthy replica.")
        var source: String?
        @Flag(help: Docs.jsonHelp("addon", "Print the outcome as JSON"))
        var json = false
        @Option(
            help: ArgumentHelp(
                "Alert when the newest backup is older than this (26h, 90m, 2d; 'default': twice the schedule's longest interval, at least 1h).",
                valueName: "duration"))
        var maxAge: String?

        func validate() throws {
            if let keep, keep < 1 { throw ValidationError("--keep \(keep): keep at least 1 backup") }
        }

        func scheduleValue() throws(StowageError) -> PolicySchedule? {
            if time != nil || tz != nil || days != nil {
                guard schedule == nil else {
                    throw StowageError(
                        .usage, "give --schedule or --time/--days/--tz, not both",
                        hint: "--schedule takes hourly, daily, weekly, monthly or cron in UTC; --time/--days/--tz a local time")
                }
                guard let time, let tz else {
                    throw StowageError(
                        .usage, "a custom schedule needs --time and --tz (and --days, default every day)",
                        hint: "e.g. --time 03:30 --days mon-fri --tz Europe/Berlin")
                }
                return .custom(time: time, days: days ?? "*", timeZone: tz)
            }
            return schedule.map { .expression($0) }
        }

        /// Applies the options given to `p`.
        func apply(to p: inout Policy, layer: LayerSpec, inventory inv: Inventory) throws(StowageError) {
            if let s = try scheduleValue() { p.schedule = s; _ = try s.schedule() }
            if let storage { p.storage = try inv.requireStorage(storage).name }
            if let keep {
                guard keep >= 1 else { throw StowageError(.usage, "--keep \(keep): keep at least 1 backup", hint: "e.g. --keep 7 keeps a week of dailies") }
                p.keep = keep
            }
            if let maxAge {
                if maxAge == "default" {
                    p.maxAge = nil
                } else {
                    guard let m = Durations.parse(maxAge), m >= 60 else {
                        throw StowageError(
                            .usage, "--max-age \(maxAge): expected a duration of at least 1m such as 26h, 90m or 2d",
                            hint: "or --max-age default: twice the schedule's longest interval")
                    }
                    p.maxAge = m
                }
            }
            if let source {
                guard let s = DumpPreference(rawValue: source) else {
                    throw StowageError(
                        .usage, "--source \(source): expected primary or replica", hint: "replica dumps on a healthy replica within the lag limit")
                }
                p.source = s
            }
            if dbPasswordEnv != nil && dbPasswordFile != nil {
                throw StowageError(.usage, "give --db-password-env or --db-password-file, not both", hint: "the password itself never goes on the command line")
            }
            if dbUser != nil || dbPasswordEnv != nil || dbPasswordFile != nil {
                var c = p.credentials ?? layer.credentials ?? CredentialsSpec(user: nil, password: .none, location: "")
                if let dbUser { c.user = dbUser }
                if let v = dbPasswordEnv { c.password = .environment(v) }
                if let f = dbPasswordFile { c.password = .file(f) }
                c.location = "--db-user/--db-password-*"
                p.credentials = c
            }
        }
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install the add-on on a layer: check the storage and the credentials, then record the policy.")

        @OptionGroup var global: GlobalOptions
        @Argument(help: ArgumentHelp("The layer, as ENV/LAYER.", valueName: "env/layer")) var layer: String
        @OptionGroup var options: PolicyOptions
        @OptionGroup var agentOption: AgentBinaryOption

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let spec = try requireLayer(layer, in: inv)
                if inv.policy(for: spec.id) != nil {
                    throw StowageError(
                        .usage, "the add-on is already installed on \(spec.id)",
                        hint: "change it with stowage addon configure \(spec.id), or uninstall it first")
                }
                guard let schedule = try options.scheduleValue() else {
                    throw StowageError(
                        .usage, "no schedule", hint: "--schedule daily (or hourly, weekly, monthly, cron), or --time 09:00 --days mon-fri --tz Europe/Berlin")
                }
                guard options.keep != nil else { throw StowageError(.usage, "no --keep", hint: "how many backups to keep, e.g. --keep 7") }
                var p = Policy(
                    layer: spec.id, schedule: schedule, storage: try inv.requireStorage(options.storage).name, keep: 1,
                    credentials: nil, installed: Date())
                try options.apply(to: &p, layer: spec, inventory: inv)
                return try await record(p, inv: inv, verb: "installed")
            }
        }

        func record(_ p: Policy, inv: Inventory, verb: String) async throws(StowageError) -> ExitStatus {
            try await AddonCommand.record(p, inv: inv, verb: verb, agent: try await agentOption.locate(inv), replacing: false, json: options.json)
        }
    }

    struct Configure: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a layer's add-on settings (checked again before they are recorded).")

        @OptionGroup var global: GlobalOptions
        @Argument(help: ArgumentHelp("The layer, as ENV/LAYER.", valueName: "env/layer")) var layer: String
        @OptionGroup var options: PolicyOptions
        enum State: String, EnumerableFlag {
            case enable, disable
            static func help(for value: State) -> ArgumentHelp? {
                value == .enable ? "Run scheduled backups again." : "Pause scheduled backups (the policy stays)."
            }
        }
        @Flag var state: State?
        @OptionGroup var agentOption: AgentBinaryOption

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let spec = try requireLayer(layer, in: inv)
                guard var p = inv.policy(for: spec.id) else {
                    throw StowageError(.usage, "the add-on is not installed on \(spec.id)", hint: "stowage addon install \(spec.id) --schedule ... --keep N")
                }
                try options.apply(to: &p, layer: spec, inventory: inv)
                if let state { p.enabled = state == .enable }
                return try await AddonCommand.record(
                    p, inv: inv, verb: "configured", agent: try await agentOption.locate(inv), replacing: true, json: options.json)
            }
        }
    }

    struct Uninstall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a layer's policy. Its backups stay on the storage.")

        @OptionGroup var global: GlobalOptions
        @Argument(help: ArgumentHelp("The layer, as ENV/LAYER.", valueName: "env/layer")) var layer: String
        @Flag(help: Docs.jsonHelp("addon-uninstall", "Print the outcome as JSON")) var json = false

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let spec = try requireLayer(layer, in: inv)
                let removed = try PolicyStore.update(inv.policiesPath) { (all: inout [Policy]) throws(StowageError) -> Policy? in
                    guard let i = all.firstIndex(where: { $0.layer == spec.id }) else { return nil }
                    return all.remove(at: i)
                }
                guard let removed else {
                    throw StowageError(.usage, "the add-on is not installed on \(spec.id)", hint: "stowage status lists the layers with a policy")
                }
                if json {
                    printJSON(["layer": spec.id, "action": "uninstalled", "storage": removed.storage])
                    return .ok
                }
                print(
                    "add-on uninstalled from \(spec.id): no more scheduled backups; its backups stay on storage \(removed.storage) (stowage backups \(spec.id) --storage \(removed.storage))"
                )
                return .ok
            }
        }
    }

    /// Checks a policy and writes it; the check runs before the file is locked (it takes
    /// seconds), and the write refuses if another command changed this layer meanwhile.
    /// What install and configure report with --json.
    struct Recorded: Encodable {
        struct PolicyJSON: Encodable {
            var schedule: String
            var storage: String
            var keep: Int
            var source: String
            var enabled: Bool
            var maxAgeSeconds: Double?
        }
        var layer: String
        var action: String
        var policy: PolicyJSON
        var nextRun: String?
        var policiesFile: String
        var repositoryExists: Bool
        var warnings: [String]
    }

    static func record(
        _ p: Policy, inv: Inventory, verb: String, agent: AgentBinary, replacing: Bool, json: Bool = false
    ) async throws(StowageError) -> ExitStatus {
        let checked = try await Addon.check(p, inventory: inv, agent: agent)
        let before = inv.policy(for: p.layer)
        try PolicyStore.update(inv.policiesPath) { (all: inout [Policy]) throws(StowageError) in
            let current = all.first { $0.layer == p.layer }
            guard current?.withoutLocation == before?.withoutLocation else {
                throw StowageError(.locked, "the policy of \(p.layer) changed while it was being checked", hint: "run the command again")
            }
            all.removeAll { $0.layer == p.layer }
            all.append(p)
        }
        let nextRun = (try? p.schedule.schedule())?.next(after: Date()).map { ISO8601DateFormatter().string(from: $0) }
        if json {
            printJSON(
                Recorded(
                    layer: p.layer, action: verb,
                    policy: .init(
                        schedule: p.schedule.description, storage: p.storage, keep: p.keep, source: p.source.rawValue, enabled: p.enabled,
                        maxAgeSeconds: p.maxAge),
                    nextRun: p.enabled ? nextRun : nil, policiesFile: inv.policiesPath, repositoryExists: checked.repositoryExists, warnings: checked.warnings))
            return checked.warnings.isEmpty ? .ok : .warnings
        }
        let next = nextRun ?? "never"
        print(
            "add-on \(verb) on \(p.layer): \(p.schedule), keep \(p.keep), storage \(p.storage), from the \(p.source.rawValue)\(p.enabled ? "" : ", paused"); next run \(next)"
        )
        print("  recorded in \(inv.policiesPath)\(checked.repositoryExists ? "" : "; the first backup creates the repository on \(p.storage)")")
        for w in checked.warnings { print("warning: \(w)") }
        return checked.warnings.isEmpty ? .ok : .warnings
    }
}
