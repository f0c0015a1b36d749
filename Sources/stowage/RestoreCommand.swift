import ArgumentParser
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a layer from a backup (the add-on's Restore): topology check, confirmation, restore on the primary, then a count check.",
        discussion: "A restore replaces all the layer's data. It asks on a terminal and needs --yes otherwise; --dry-run prints the plan and changes nothing.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The layer to restore, as ENV/LAYER.", valueName: "env/layer"))
    var layer: String

    @Option(name: .customLong("from"), help: ArgumentHelp("Whose backups: ENV or ENV/LAYER (default: the layer's own).", valueName: "env[/layer]"))
    var source: String?

    @Option(help: ArgumentHelp("The backup's name, as `stowage backups` lists it, or latest.", valueName: "name"))
    var backup: String

    @Option(help: "Restore this node (it must not be a replica); default: the layer's primary.")
    var node: String?

    @Flag(help: "Non-clustered layer: restore every node, not only the master node.")
    var allNodes = false

    @Option(
        help: ArgumentHelp(
            "PostgreSQL: sessions loading tables at once, each table whole (default: one per two of the target node's cores, at most 4; 1: one psql applies the dump in order).",
            valueName: "n"))
    var jobs: Int?

    @Flag(help: "Print the plan and change nothing.")
    var dryRun = false

    @Flag(help: "Do not ask for confirmation.")
    var yes = false

    @OptionGroup var storageOption: StorageOption

    @Flag(help: Docs.jsonHelp("restore", "Print the result as JSON (with --dry-run the plan: json/restore-plan.schema.json)"))
    var json = false

    @OptionGroup var agentOption: AgentBinaryOption

    func validate() throws {
        if let jobs, !(1...64).contains(jobs) { throw ValidationError("--jobs \(jobs): expected 1 to 64") }
    }

    func run() async throws {
        try await reportingErrors {
            let inv = try global.loadInventory()
            let target = try requireLayer(layer, in: inv)
            var fromEnv = target.environment, fromLayer = target.name
            if let source {
                let sel = try LayerSelection(parsing: source)
                fromEnv = sel.environment ?? fromEnv
                fromLayer = sel.layer ?? fromLayer
            }
            let storageSpec = try storageOption.spec(in: inv)
            let agent = try await agentOption.locate(inv)
            let preview = try await RestoreRun.prepare(
                inventory: inv, layer: target, storage: storageSpec, agent: agent,
                fromEnvironment: fromEnv, fromLayer: fromLayer, backup: backup,
                node: node, allNodes: allNodes)
            let plan = planText(preview)
            if dryRun {
                if json { printJSON(PlanJSON(preview)) } else { print(plan) }
                return preview.plan.warnings.isEmpty && preview.manifestBadCopies.isEmpty ? .ok : .warnings
            }
            if !yes {
                guard isatty(0) == 1 else {
                    throw StowageError(
                        .usage, "restoring \(target.id) replaces all its data; confirmation needed",
                        hint: "review it with --dry-run, then pass --yes")
                }
                FileHandle.standardError.write(Data("\(plan)\nType \(target.id) to replace its data: ".utf8))
                guard readLine()?.trimmingCharacters(in: .whitespaces) == target.id else {
                    throw StowageError(.cancelled, "restore of \(target.id) not confirmed; nothing was changed")
                }
            } else if !json {
                print(plan)
            }
            let progress = ProgressLine(stage: "restore \(target.id)", total: preview.manifest.rawBytes)
            let started = Date()
            let out: RestoreOutcome
            do throws(StowageError) {
                out = try await RestoreRun.execute(preview, inventory: inv, storage: storageSpec, agent: agent, jobs: jobs, progress: { progress.update($0) })
            } catch {
                progress.end()
                await reportManual(inv, target.id, storageSpec.name, started, .failure(error), kind: .restore)
                throw error
            }
            progress.end(completed: true)
            await reportManual(
                inv, target.id, storageSpec.name, started,
                out.checkPassed
                    ? .success(.init(backup: preview.manifest.name, warnings: !out.badCopies.isEmpty))
                    : .failure(StowageError(.restoreCheckFailed, "the restored data does not match backup \(preview.manifest.name)")),
                kind: .restore)
            if json { printJSON(ResultJSON(out)) } else { print(resultText(out)) }
            if !out.checkPassed {
                let bad = out.checks.filter { !$0.ok }.map { "\($0.database) expected \($0.expected), found \($0.found.map(String.init) ?? "none")" }
                throw StowageError(
                    .restoreCheckFailed, "restore of \(target.id) finished but the data does not match the backup: \(bad.joined(separator: "; "))",
                    hint: "the target holds what was applied; check it, or restore again")
            }
            return out.badCopies.isEmpty && preview.plan.warnings.isEmpty ? .ok : .warnings
        }
    }

    func planText(_ p: RestorePreview) -> String {
        let m = p.manifest
        var t = "restore \(p.layer.id) from \(m.environment)/\(m.layer) backup \(m.name)\n"
        t +=
            "  backup     \(m.engine) \(m.engineVersion ?? ""), \(formatBytes(m.rawBytes)) raw, taken on \(m.sourceNode) (\(m.sourceRole ?? "?")) at \(m.started)\n"
        t += "  manifest   read from \(p.manifestSource)\n"
        t += "  targets    " + p.plan.targets.map { "\($0.node) (\($0.role.rawValue))" }.joined(separator: ", ") + "\n"
        t +=
            "  replaces   "
            + (p.layer.engine == .redis
                ? "every key of the target (FLUSHALL, then the backup's keys)"
                : "every database and role the backup contains (dropped and recreated)") + "\n"
        for n in p.plan.notes { t += "note: \(n)\n" }
        for w in p.plan.warnings { t += "warning: \(w)\n" }
        for b in p.manifestBadCopies { t += "warning: bad copy \(b.description) (the manifest was read from \(p.manifestSource); stowage storage repair)\n" }
        return t.trimmingCharacters(in: .newlines)
    }

    func resultText(_ o: RestoreOutcome) -> String {
        let unit = o.preview.layer.engine == .redis ? "keys" : "rows"
        var t = "restored \(o.preview.layer.id) from \(o.preview.manifest.name) in \(String(format: "%.1f", o.seconds)) s\n"
        for c in o.checks {
            t += "  \(c.ok ? "ok      " : "MISMATCH") \(c.database): \(c.found.map(String.init) ?? "none") \(unit) (backup: \(c.expected))\n"
        }
        if !o.untouched.isEmpty { t += "note: not in the backup, left as they were: \(o.untouched.joined(separator: ", "))\n" }
        for n in o.notes { t += "note: \(n)\n" }
        for b in o.badCopies { t += "warning: bad copy \(b.description) (read from another node; stowage storage repair)\n" }
        return t.trimmingCharacters(in: .newlines)
    }
}

struct PlanJSON: Encodable {
    var layer: String
    var backup: String
    var source: String
    var targets: [[String: String]]
    var warnings: [String]
    var rawBytes: Int64
    /// The storage node whose manifest copy is used, and the bad copies found.
    var manifestSource: String
    var manifestBadCopies: [String]
    init(_ p: RestorePreview) {
        layer = p.layer.id
        backup = p.manifest.name
        source = "\(p.manifest.environment)/\(p.manifest.layer)"
        targets = p.plan.targets.map { ["node": $0.node, "role": $0.role.rawValue] }
        warnings = p.plan.warnings
        rawBytes = p.manifest.rawBytes
        manifestSource = p.manifestSource
        manifestBadCopies = p.manifestBadCopies.map(\.description)
    }
}

struct ResultJSON: Encodable {
    var plan: PlanJSON
    var checks: [CountCheck]
    var checkPassed: Bool
    var untouched: [String]
    var badCopies: [String]
    var notes: [String]
    var seconds: Double
    init(_ o: RestoreOutcome) {
        plan = PlanJSON(o.preview)
        checks = o.checks
        checkPassed = o.checkPassed
        untouched = o.untouched
        badCopies = o.badCopies.map(\.description)
        notes = o.notes
        seconds = o.seconds
    }
}
