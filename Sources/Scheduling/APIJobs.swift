// Long work started through the API (a restore, storage verify and repair) runs as a job: a child process of
// the scheduler running the same CLI command an operator would (`stowage restore ... --yes
// --json`), with an id the API answers at once, polled until it ends, cancellable. Jobs live
// in the scheduler's memory; what a restore did is also in the run catalog (the command
// records it, trigger `restore`), which survives a restart. Backup Now is a job too, whose
// process the scheduler starts when the run's turn comes (`reserve`, `attach`, `ended`).
import Foundation
import Repository
import Support

package struct APIJob: Codable, Sendable, Equatable {
    package enum State: String, Codable, Sendable { case running, ok, warnings, failed, cancelled }
    package var id: String
    package var kind: String
    package var layer: String
    /// Who started it (the token's id and name).
    package var startedBy: String
    package var started: Date
    package var ended: Date?
    package var state: State
    package var exitCode: Int32?
    /// The command's JSON document (docs/json/restore.schema.json for a restore), once ended.
    package var result: String?
    /// Its error line(s) when it failed.
    package var error: String?
    /// Where it is, as the command last reported it (`STOWAGE_PROGRESS_FILE`).
    package var progress: Progress?

    /// A command's progress: what it does, bytes so far, of how many when known.
    package struct Progress: Codable, Sendable, Equatable {
        package var stage: String
        package var bytes: Int64
        package var total: Int64?
        package var percent: Double?
        package var seconds: Double

        package init(stage: String, bytes: Int64, total: Int64?, seconds: Double) {
            self.stage = stage
            self.bytes = bytes
            self.total = total
            self.percent = total.flatMap { $0 > 0 ? min(100, (Double(bytes) * 1000 / Double($0)).rounded() / 10) : nil }
            self.seconds = seconds
        }

        /// The environment variable naming the file a command writes its progress to.
        package static let fileVariable = "STOWAGE_PROGRESS_FILE"

        /// Writes `self` to `path` whole (a reader never sees half of it).
        package func write(to path: String) {
            guard let data = try? JSONEncoder().encode(self) else { return }
            let tmp = path + ".tmp"
            if FileManager.default.createFile(atPath: tmp, contents: data) { _ = rename(tmp, path) }
        }

        package static func read(_ path: String) -> Progress? {
            FileManager.default.contents(atPath: path).flatMap { try? JSONDecoder().decode(Progress.self, from: $0) }
        }
    }
}

package actor APIJobs {
    private let executable: String
    private let inventoryPath: String
    private let agentBinary: String?
    private let workDir: String
    private var jobs: [String: APIJob] = [:]
    private var processes: [String: RunProcess] = [:]

    package init(executable: String, inventoryPath: String, agentBinary: String?, workDir: String) {
        self.executable = executable
        self.inventoryPath = inventoryPath
        self.agentBinary = agentBinary
        self.workDir = workDir
    }

    private var common: [String] { ["--config", inventoryPath] + (agentBinary.map { ["--agent-binary", $0] } ?? []) }

    /// Runs `stowage ARGS --json` to its end (a restore's plan, `--dry-run`): its exit status,
    /// stdout and stderr.
    package func runNow(_ args: [String]) async throws(StowageError) -> RunProcessResult {
        let p = try RunProcess.start([executable] + args + ["--json"] + common, workDir: workDir)
        return await p.wait()
    }

    /// Starts `stowage ARGS --json` as a job.
    package func start(kind: String, layer: String, startedBy: String, _ args: [String]) throws(StowageError) -> APIJob {
        if let busy = jobs.values.first(where: { $0.layer == layer && $0.state == .running }) {
            throw StowageError(.locked, "job \(busy.id) (\(busy.kind) of \(layer)) is still running", hint: "GET /api/v1/jobs/\(busy.id)")
        }
        let id = Self.newID()
        let p = try RunProcess.start(
            [executable] + args + ["--json"] + common, workDir: workDir, environment: [APIJob.Progress.fileVariable: progressPath(id)])
        let job = APIJob(id: id, kind: kind, layer: layer, startedBy: startedBy, started: Date(), state: .running)
        jobs[id] = job
        processes[id] = p
        Task { [p] in
            let r = await p.wait()
            await self.ended(id, r)
        }
        return job
    }

    /// A job whose process the scheduler starts (Backup Now: a run queued like a scheduled
    /// one, within the concurrency limits); `attach` and `ended` follow.
    package func reserve(kind: String, layer: String, startedBy: String) -> APIJob {
        let job = APIJob(id: Self.newID(), kind: kind, layer: layer, startedBy: startedBy, started: Date(), state: .running)
        jobs[job.id] = job
        return job
    }

    package func attach(_ id: String, _ process: RunProcess) { processes[id] = process }

    /// A reserved job that never got its process (the run could not start, or was cancelled
    /// while it waited).
    package func abandon(_ id: String, state: APIJob.State, error: String?) {
        guard var j = jobs[id], j.state == .running || state == .cancelled else { return }
        j.state = state
        j.error = error
        j.ended = Date()
        jobs[id] = j
    }

    /// Marks a job cancelled (its process is signalled by whoever owns it).
    package func markCancelled(_ id: String) { if jobs[id]?.state == .running { jobs[id]?.state = .cancelled } }

    static func newID() -> String {
        var g = SystemRandomNumberGenerator()
        return hexString((0..<8).map { _ in UInt8.random(in: 0...255, using: &g) })
    }

    /// The file a job's command writes its progress to.
    package func progressPath(_ id: String) -> String { "\(workDir)/job-\(id).progress" }

    package func ended(_ id: String, _ r: RunProcessResult) {
        guard var j = jobs[id] else { return }
        j.progress = APIJob.Progress.read(progressPath(id)) ?? j.progress
        unlink(progressPath(id))
        j.ended = Date()
        j.exitCode = r.exitStatus
        if j.state == .running {
            j.state =
                switch r.exitStatus {
                case 0: .ok
                case 2: .warnings
                default: .failed
                }
        }
        let out = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        j.result = out.hasPrefix("{") || out.hasPrefix("[") ? out : nil
        let err = r.stderr.split(separator: "\n").filter { $0.contains("error: ") || $0.hasPrefix("hint: ") || $0.contains("warning: ") }
        j.error = j.state == .ok ? nil : (err.isEmpty ? r.signal.map { "ended by signal \($0)" } : err.joined(separator: "\n"))
        jobs[id] = j
        processes[id] = nil
    }

    /// The job, with its progress read afresh while it runs.
    package func job(_ id: String) -> APIJob? {
        guard var j = jobs[id] else { return nil }
        if j.state == .running, let p = APIJob.Progress.read(progressPath(id)) {
            j.progress = p
            jobs[id] = j
        }
        return j
    }

    /// Newest first.
    package func all() -> [APIJob] { jobs.values.sorted { ($0.started, $0.id) > ($1.started, $1.id) } }

    /// SIGTERM to the job's process group: a restore stops its tool (what it applied stays).
    package func cancel(_ id: String) -> Bool {
        guard let p = processes[id], jobs[id]?.state == .running else { return false }
        jobs[id]?.state = .cancelled
        p.signal(SIGTERM)
        return true
    }
}
