import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support
import Synchronization

/// A progress line on a terminal (stderr): bytes, rate, elapsed, stage; and, for a command
/// the API started, the same as JSON in the file `STOWAGE_PROGRESS_FILE` names (the job's
/// progress). Silent otherwise.
final class ProgressLine: Sendable {
    private let enabled = isatty(2) == 1
    private let file = ProcessInfo.processInfo.environment[APIJob.Progress.fileVariable]
    private let started = Date()
    private let stage: Mutex<String>
    private let last = Mutex<Double>(0)
    private let bytes = Mutex<Int64>(0)
    private let total: Int64?

    init(stage: String, total: Int64? = nil) {
        self.stage = Mutex(stage)
        self.total = total
        if let file { APIJob.Progress(stage: stage, bytes: 0, total: total, seconds: 0).write(to: file) }
    }

    func set(stage s: String) { stage.withLock { $0 = s } }

    func update(_ bytes: Int64) {
        guard enabled || file != nil else { return }
        self.bytes.withLock { $0 = bytes }
        let now = Date().timeIntervalSince(started)
        let due = last.withLock { l -> Bool in
            if now - l < 0.5 { return false }
            l = now
            return true
        }
        guard due else { return }
        if let file { APIJob.Progress(stage: stage.withLock { $0 }, bytes: bytes, total: total, seconds: now).write(to: file) }
        guard enabled else { return }
        let rate = now > 0 ? Int64(Double(bytes) / now) : 0
        let text = "\r\u{1B}[K\(stage.withLock { $0 }): \(formatBytes(bytes)) at \(formatBytes(rate))/s, \(Int(now)) s"
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// The line cleared; the progress file's last word: all of `total` when `completed` (the
    /// run checked every byte), else as far as it got.
    func end(completed: Bool = false) {
        if let file {
            let done = completed ? (total ?? bytes.withLock { $0 }) : bytes.withLock { $0 }
            APIJob.Progress(stage: stage.withLock { $0 }, bytes: done, total: total, seconds: Date().timeIntervalSince(started)).write(to: file)
        }
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// One layer named ENV/LAYER, exactly.
func requireLayer(_ s: String, in inv: Inventory) throws(StowageError) -> LayerSpec {
    let sel = try LayerSelection(parsing: s)
    guard sel.layer != nil else {
        throw StowageError(.usage, "'\(s)' names an environment; name one layer as ENV/LAYER", hint: "e.g. shop/sqldb")
    }
    return try sel.layers(in: inv)[0]
}

func printJSON<T: Encodable>(_ v: T) {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: (try? enc.encode(v)) ?? Data(), as: UTF8.self))
}
