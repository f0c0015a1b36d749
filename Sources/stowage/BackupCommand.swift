import ArgumentParser
import CAgentSys
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up one layer now (the add-on's Backup Now): topology check, dump on the real primary, replicated storage, retention.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The layer, as ENV/LAYER.", valueName: "env/layer"))
    var layer: String

    @Option(help: "Dump on the primary (default) or on a healthy replica within the lag limit.")
    var from: String = "primary"

    // `.unconditional`: "--keep -1" is a value to refuse, not a missing one.
    @Option(
        parsing: .unconditional, help: "After a successful backup, keep the newest N backups of the layer.",
        transform: { try wholeNumber($0) })
    var keep: Int?

    @OptionGroup var storageOption: StorageOption

    @Option(
        parsing: .unconditional, help: "zstd level of the chunks (1-19; default: the storage's zstd_level, else 1 for PostgreSQL and MySQL, 3 for Redis).",
        transform: { try wholeNumber($0) })
    var zstdLevel: Int?

    @Flag(help: Docs.jsonHelp("backup", "Print the result as JSON"))
    var json = false

    /// Set by the scheduler: the layer's policy gives storage, keep and source; the backup is
    /// named `auto`; the run dies with the scheduler that started it.
    @Flag(help: .hidden)
    var policy = false

    /// Set by the scheduler for a scheduled slot (UTC, as in backup names: 2026-12-07T030000Z):
    /// a backup of the layer since then, found under the layer's lock, ends the run (exit 16).
    @Option(
        help: .hidden,
        transform: { s in
            guard let n = BackupName("\(s)-auto") else { throw ValidationError("--slot '\(s)': expected YYYY-MM-DDTHHMMSSZ") }
            return n.date
        })
    var slot: Date?

    @OptionGroup var agentOption: AgentBinaryOption

    func validate() throws {
        if let keep, keep < 1 { throw ValidationError("--keep \(keep): keep at least 1 backup") }
        if let zstdLevel, !(1...19).contains(zstdLevel) { throw ValidationError("--zstd-level \(zstdLevel): expected 1 to 19") }
        guard DumpPreference(rawValue: from) != nil else { throw ValidationError("--from '\(from)': expected primary or replica") }
    }

    func run() async throws {
        try await reportingErrors {
            if policy {
                // A scheduler killed outright (SIGKILL) takes its runs with it: an interrupted
                // backup commits nothing, and the restarted scheduler makes the slot up.
                _ = stowage_set_parent_death_signal(SIGTERM)
                if getppid() == 1 { throw StowageError(.cancelled, "the scheduler that started this run is gone") }
            }
            let inv = try global.loadInventory()
            let spec = try requireLayer(layer, in: inv)
            var pref = DumpPreference(rawValue: from)
            var keep = self.keep
            var storageSpec: StorageSpec
            if policy {
                guard let p = inv.policy(for: spec.id) else {
                    throw StowageError(.usage, "\(spec.id) has no policy", hint: "stowage addon install \(spec.id)")
                }
                pref = p.source
                keep = p.keep
                storageSpec = try inv.requireStorage(p.storage)
            } else {
                storageSpec = try storageOption.spec(in: inv)
            }
            // (--from, --zstd-level and --keep were checked by validate(); a policy's by its file's parser.)
            guard let pref else { throw StowageError(.internalError, "no dump preference") }
            let progress = ProgressLine(stage: "backup \(spec.id)")
            let started = Date()
            let out: BackupOutcome
            do throws(StowageError) {
                out = try await BackupRun.run(
                    inventory: inv, layer: spec, storage: storageSpec, agent: try await agentOption.locate(inv),
                    from: pref, keep: keep, kind: policy ? .auto : .manual, zstdLevel: zstdLevel,
                    progress: { progress.update($0) }, slot: slot)
            } catch {
                progress.end()
                // The scheduler records and reports its own runs; a manual one is recorded here.
                if !policy { await reportManual(inv, spec.id, storageSpec.name, started, .failure(error)) }
                throw error
            }
            // The last word of the progress: every byte of the dump (a small one ends before a
            // first report).
            progress.update(out.manifest.rawBytes)
            progress.end(completed: true)
            if !policy {
                await reportManual(
                    inv, spec.id, storageSpec.name, started,
                    .success(
                        .init(
                            backup: out.manifest.name, sourceNode: out.manifest.sourceNode, rawBytes: out.manifest.rawBytes,
                            storedBytes: out.manifest.storedBytes, newBytes: out.manifest.newBytes,
                            degraded: !out.replicas.missing.isEmpty,
                            warnings: !out.notes.isEmpty || out.pruneError != nil)))
            }
            if json {
                printJSON(BackupSummary(out))
            } else {
                print(BackupSummary(out).text)
            }
            if let e = out.pruneError { printError(e) }
            return out.replicas.missing.isEmpty && out.notes.isEmpty && out.pruneError == nil ? .ok : .warnings
        }
    }
}

/// What a backup reports when it ends.
struct BackupSummary: Encodable {
    var environment: String
    var layer: String
    var backup: String
    var engine: String
    var sourceNodes: [String]
    var sourceRole: String?
    var rawBytes: Int64
    var storedBytes: Int64
    var newBytes: Int64
    var seconds: Double
    var replicas: [String]
    var missingReplicas: [String: String]
    var counts: [String: Int64]
    var notes: [String]
    var pruned: [String]?
    var reclaimDeferred: String?

    init(_ o: BackupOutcome) {
        let m = o.manifest
        environment = m.environment
        layer = m.layer
        backup = m.name
        engine = m.engine
        sourceNodes = m.streams.compactMap(\.node)
        sourceRole = m.sourceRole
        rawBytes = m.rawBytes
        storedBytes = m.storedBytes
        newBytes = m.newBytes
        seconds = o.seconds
        replicas = o.replicas.complete
        missingReplicas = o.replicas.missing
        counts = m.streams.reduce(into: [:]) { acc, s in for (k, v) in s.counts ?? [:] { acc[k, default: 0] += v } }
        notes = o.notes
        pruned = o.pruned?.removedBackups
        reclaimDeferred = o.pruned?.reclaimDeferred
    }

    var text: String {
        var t = "backup \(environment)/\(layer) \(backup): committed\n"
        t += "  source     \(sourceNodes.joined(separator: ", ")) (\(sourceRole ?? "?"))\n"
        t += "  size       \(formatBytes(rawBytes)) raw, \(formatBytes(storedBytes)) stored, \(formatBytes(newBytes)) new\n"
        t += "  duration   \(String(format: "%.1f", seconds)) s\n"
        t +=
            "  replicas   \(replicas.joined(separator: ", "))\(missingReplicas.isEmpty ? "" : "; missing on " + missingReplicas.keys.sorted().map { "\($0) (\(missingReplicas[$0]!))" }.joined(separator: ", ") + ": run stowage storage repair")\n"
        if !counts.isEmpty {
            let unit = engine == "redis" ? "keys" : "rows"
            t += "  contents   " + counts.keys.sorted().map { "\($0) \(counts[$0]!) \(unit)" }.joined(separator: ", ") + "\n"
        }
        if let pruned {
            t +=
                "  retention  \(pruned.isEmpty ? "nothing to remove" : "removed " + pruned.joined(separator: ", "))\(reclaimDeferred.map { " (\($0))" } ?? "")\n"
        }
        for n in notes { t += "note: \(n)\n" }
        return t.trimmingCharacters(in: .newlines)
    }
}

/// A manual backup or restore in the run catalog and to the notification targets; what
/// goes wrong there is a warning on stderr, never the command's failure.
func reportManual(
    _ inv: Inventory, _ layer: String, _ storage: String, _ started: Date, _ result: Result<ManualRuns.Ended, StowageError>,
    kind: ManualRuns.Kind = .backup
) async {
    for w in await ManualRuns.finish(kind, inventory: inv, layer: layer, storage: storage, started: started, result: result) {
        FileHandle.standardError.write(Data("warning: \(w)\n".utf8))
    }
}
