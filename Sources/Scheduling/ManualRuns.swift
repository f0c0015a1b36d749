// Backups and restores started by hand (`stowage backup`, `stowage restore`): recorded in
// the run catalog beside the scheduler's runs (trigger `manual` or `restore`) and told to
// the notification targets that want them, like the scheduler's. A catalog that cannot be
// written costs the history line, never the backup or the restore.
import Fleet
import Foundation
import Logging
import Support

package enum ManualRuns {
    package enum Kind: String, Sendable { case backup, restore }

    package struct Ended: Sendable {
        package var backup: String?
        package var sourceNode: String?
        package var rawBytes: Int64?
        package var storedBytes: Int64?
        package var newBytes: Int64?
        /// A replica missed the backup (storage-degraded) or something else needs a look.
        package var degraded = false
        package var warnings = false

        package init(
            backup: String?, sourceNode: String? = nil, rawBytes: Int64? = nil, storedBytes: Int64? = nil,
            newBytes: Int64? = nil, degraded: Bool = false, warnings: Bool = false
        ) {
            self.backup = backup
            self.sourceNode = sourceNode
            self.rawBytes = rawBytes
            self.storedBytes = storedBytes
            self.newBytes = newBytes
            self.degraded = degraded
            self.warnings = warnings
        }
    }

    /// Records the run and notifies; waits for delivery at most `notifyWithin` seconds, and
    /// returns warnings for the operator (nothing here fails the command).
    package static func finish(
        _ kind: Kind, inventory: Inventory, layer: String, storage: String, started: Date,
        result: Result<Ended, StowageError>, notifyWithin: Double = 30
    ) async -> [String] {
        var warnings: [String] = []
        let now = Date()
        var record = RunRecord(
            layer: layer, storage: storage, trigger: kind == .backup ? "manual" : "restore", scheduledFor: nil,
            started: started, attempt: 1, schedulerPid: nil)
        record.ended = now
        let event: NotificationEvent
        switch result {
        case .success(let e):
            record.outcome = e.warnings || e.degraded ? .warnings : .ok
            record.backup = e.backup
            record.sourceNode = e.sourceNode
            record.rawBytes = e.rawBytes
            record.storedBytes = e.storedBytes
            record.newBytes = e.newBytes
            let what: NotificationEvent.Kind = kind == .restore ? .restoreCompleted : (e.degraded ? .storageDegraded : .backupSucceeded)
            let message =
                kind == .restore
                ? "restored \(layer) from \(e.backup ?? "?")"
                : e.degraded
                    ? "backup \(e.backup ?? "?") committed without every storage node (stowage storage repair \(storage))"
                    : "backup \(e.backup ?? "?") committed"
            event = NotificationEvent(
                event: what, layer: layer, storage: storage, time: UTCStamp.format(now), message: message,
                hint: nil, exitCode: nil, attempt: 1, backup: e.backup, coordinator: ProcessInfo.processInfo.hostName)
        case .failure(let error):
            record.outcome = error.status == .cancelled ? .cancelled : .failed
            record.exitCode = Int(error.status.rawValue)
            record.error = error.message
            guard
                let e = NotificationEvent.of(
                    judgement: error.status == .cancelled ? .cancelled : .permanent, exitCode: error.status.rawValue,
                    message: kind == .restore ? "restore failed: \(error.message)" : error.message, hint: error.hint,
                    layer: layer, storage: storage, attempt: 1, backup: nil, degraded: false, time: now)
            else {
                return await write(record, inventory).map { [$0] } ?? []
            }
            event = e
        }
        if let w = await write(record, inventory) { warnings.append(w) }
        let notifier = Notifier(
            settings: inventory.notifications, workDir: FileManager.default.temporaryDirectory.path,
            log: { line in FileHandle.standardError.write(Data("warning: \(line)\n".utf8)) })
        notifier.post(event)
        await notifier.drain(within: notifyWithin)
        return warnings
    }

    /// The run's row in the catalog (GRDB works on its own queue, not the cooperative pool).
    private static func write(_ r: RunRecord, _ inventory: Inventory) async -> String? {
        do throws(StowageError) {
            _ = try await RunCatalog.open(path: inventory.catalogPath).start(r)
            return nil
        } catch {
            return "run catalog: \(error.message)"
        }
    }
}
