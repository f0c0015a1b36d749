// Long work started through the API (a restore, for now) runs as a job: a child process of
// the scheduler running the same CLI command an operator would (`stowage restore ... --yes
// --json`), with an id the API answers at once, polled until it ends, cancellable. Jobs live
// in the scheduler's memory; what a restore did is also in the run catalog (the command
// records it, trigger `restore`), which survives a restart.
import Foundation
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
        var g = SystemRandomNumberGenerator()
        let id = String(format: "%016llx", g.next() as UInt64)
        let p = try RunProcess.start([executable] + args + ["--json"] + common, workDir: workDir)
        let job = APIJob(id: id, kind: kind, layer: layer, startedBy: startedBy, started: Date(), state: .running)
        jobs[id] = job
        processes[id] = p
        Task { [p] in
            let r = await p.wait()
            await self.ended(id, r)
        }
        return job
    }

    private func ended(_ id: String, _ r: RunProcessResult) {
        guard var j = jobs[id] else { return }
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
        j.result = out.hasPrefix("{") ? out : nil
        let err = r.stderr.split(separator: "\n").filter { $0.contains("error: ") || $0.hasPrefix("hint: ") || $0.contains("warning: ") }
        j.error = j.state == .ok ? nil : (err.isEmpty ? r.signal.map { "ended by signal \($0)" } : err.joined(separator: "\n"))
        jobs[id] = j
        processes[id] = nil
    }

    package func job(_ id: String) -> APIJob? { jobs[id] }

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
