// `stowage scheduler`: runs every enabled policy when it is due (docs/scheduler.md).
//
// One actor holds the state: per policy its next slot, a queue of at most one waiting run
// per layer, and the running ones. Every tick it queues the slots that came due (with a
// random start delay), starts what the limits allow (SchedulerLogic.admissible), and
// nothing else. Each run is a `stowage backup --policy` child process; its end is judged
// (ok, warnings, transient → retry with backoff, permanent → report) and recorded in the
// run catalog. Restarts: rows a dead scheduler left "running" become "interrupted", and
// each policy's missed slot (if any) is made up once.
import AgentProtocol
import Fleet
import Foundation
import Logging
import Operations
import Remote
import Repository
import Storage
import Support
import Topology

package struct SchedulerOptions: Sendable {
    package var inventoryPath: String
    /// The `stowage` executable runs are started with.
    package var executable: String
    package var agentBinary: String?
    /// Where run output and notification input live while a run goes on.
    package var workDir: String
    package var tick: Double = 0.5

    package init(inventoryPath: String, executable: String, agentBinary: String?, workDir: String) {
        self.inventoryPath = inventoryPath
        self.executable = executable
        self.agentBinary = agentBinary
        self.workDir = workDir
    }
}

package actor Scheduler {
    struct PolicyState {
        var policy: Policy
        var schedule: Schedule
        var nextDue: Date?
    }

    struct Running {
        var storage: String
        var process: RunProcess
        var record: RunRecord
        var queued: QueuedRun
        var cancelled = false
    }

    let options: SchedulerOptions
    /// One event per line (swift-log; the CLI chooses text or JSON, the level).
    let logger: Logger
    var inventory: Inventory
    let catalog: RunCatalog
    /// Located (and hashed: tens of MB) once, not per listing.
    let agent: AgentBinary
    var states: [String: PolicyState] = [:]
    var queue: [String: QueuedRun] = [:]
    var running: [String: Running] = [:]
    /// Set by SIGTERM: no new runs; running ones are cancelled after the deadline.
    var stopDeadline: Date?
    /// Runs started and not yet fully handled (recorded, retried or reported).
    var inFlight = 0
    /// The newest backup of each layer this scheduler knows of (the storage at start, then
    /// its own runs); a layer that looks stale is listed again before it is reported.
    var newestBackup: [String: BackupName] = [:]
    /// Layers reported stale, until a fresh backup clears them (one event per episode).
    var staleReported: Set<String> = []
    var lastStaleCheck = Date.distantPast
    /// Each storage node as last checked (up, free space), for the metrics.
    var nodeHealth: [String: MetricsSnapshot.Node] = [:]
    var nodeCheck: Task<Void, Never>?
    /// Each scheduled layer's last topology probe (findings by severity), for the metrics.
    var topologyFindings: [String: MetricsSnapshot.Topology] = [:]
    var lastNodeCheck = Date.distantPast
    var startedAt = Date()
    /// The policies are loaded and the ticks run (the listener answers before that).
    package private(set) var scheduling = false
    var lastBeatAt = Date.distantPast

    /// Async: the catalog is opened (SQLite's blocking open and migration) on a thread of
    /// its own, off the cooperative pool.
    package init(options: SchedulerOptions, logger: Logger) async throws(StowageError) {
        self.options = options
        self.logger = logger
        inventory = try Inventory.load(path: options.inventoryPath)
        catalog = try await RunCatalog.open(path: inventory.catalogPath)
        agent = try AgentBinary.locate(options.agentBinary, hashCache: inventory.stateDirectory.isEmpty ? nil : inventory.stateDirectory)
        notifier = Self.makeNotifier(inventory, options, logger)
        jobs = APIJobs(executable: options.executable, inventoryPath: options.inventoryPath, agentBinary: options.agentBinary, workDir: options.workDir)
        if let spec = inventory.scheduler.sharedCatalog {
            let logger = logger
            coordination = Coordination(
                catalog: try SharedCatalog(spec),
                log: { message, bad in logger.log(level: bad ? .warning : .info, "\(message)", metadata: ["event": "coordination"]) })
        } else {
            coordination = nil
        }
    }

    /// Set when coordinators share a catalog (scheduler.shared_catalog): which layers are
    /// this one's, and the slot claims.
    package nonisolated let coordination: Coordination?

    /// Long work the API started (restores), as child processes like the runs.
    package nonisolated let jobs: APIJobs
    /// The dashboard's sign-ins (in memory: a restart signs everyone out).
    package nonisolated let sessions = DashboardSessions()

    /// Rebuilt when the inventory is reloaded; deliveries underway go on.
    var notifier: Notifier

    static func makeNotifier(_ inv: Inventory, _ options: SchedulerOptions, _ logger: Logger) -> Notifier {
        Notifier(settings: inv.notifications, workDir: options.workDir, log: { logger.warning("\($0)", metadata: ["event": "notification-failed"]) })
    }

    /// An event of the scheduler: the message as people read it, and what a machine needs
    /// (the layer, the run) as metadata.
    func log(_ message: String, _ level: Logger.Level = .info, event: String, layer: String? = nil, _ extra: Logger.Metadata = [:]) {
        var m = extra
        m["event"] = .string(event)
        if let layer { m["layer"] = .string(layer) }
        logger.log(level: level, "\(message)", metadata: m)
    }

    // MARK: - Start, reload, stop

    /// Runs until stopped (SIGTERM through `stop()`) and every run has ended.
    package func run() async throws(StowageError) {
        let me = Int(getpid())
        for r in try await catalog.markInterrupted(exceptPid: me, at: Date()) {
            log(
                "run \(r.id ?? 0) of \(r.layer) (started \(stamp(r.started))) was interrupted: the scheduler stopped while it ran; its slot is made up",
                .warning, event: "run-interrupted", layer: r.layer, ["run": "\(r.id ?? 0)"])
        }
        rebuild(makeUpFrom: try await makeUpReferences())
        scheduling = true
        let started = Date()
        startedAt = started
        let host = ProcessInfo.processInfo.hostName
        var lastBeat = Date.distantPast
        log(
            "scheduler started: \(states.count) enabled \(states.count == 1 ? "policy" : "policies") of \(inventory.policies.count), concurrency \(inventory.scheduler.concurrency) (\(inventory.scheduler.perStorage) per storage), start delay up to \(Int(inventory.scheduler.startDelay)) s; catalog \(catalog.path)",
            event: "scheduler-started", ["version": "\(AgentWire.version)"])
        // Under systemd's Type=notify: started (inventory loaded, catalog open, listener bound).
        SystemdNotify.send("READY=1\nSTATUS=\(states.count) enabled policies")
        var rounds: Task<Void, Never>?
        if let c = coordination {
            await c.setLayers(Array(states.keys))
            await c.round()
            rounds = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(await c.every))
                    await c.round()
                }
            }
        }
        while true {
            let now = Date()
            if now.timeIntervalSince(lastBeat) >= SchedulerHealth.beatEvery {
                // A catalog that cannot be written is logged, not fatal: runs go on.
                do throws(StowageError) {
                    try await catalog.beat(SchedulerBeat(host: host, pid: me, started: started, seen: now))
                } catch {
                    log("heartbeat not recorded: \(error.message)", .warning, event: "heartbeat-failed")
                }
                lastBeat = now
                lastBeatAt = now
            }
            if now.timeIntervalSince(lastNodeCheck) >= inventory.scheduler.nodeCheck, nodeCheck == nil {
                lastNodeCheck = now
                startNodeCheck()
            }
            await tick(now)
            if now.timeIntervalSince(lastStaleCheck) >= Self.staleCheckEvery {
                lastStaleCheck = now
                await checkStaleness(now)
            }
            if stopDeadline != nil && inFlight == 0 { break }
            try? await Task.sleep(for: .seconds(options.tick))
        }
        rounds?.cancel()
        // The others take this one's layers over at once, not after the lease.
        await coordination?.retire()
        // Notifications still being delivered get a moment (they never held a run up).
        await notifier.drain(within: 15)
        let end = Date()
        try? await catalog.beat(SchedulerBeat(host: host, pid: me, started: started, seen: end, stopped: end))
        log("scheduler stopped", event: "scheduler-stopped")
    }

    /// SIGHUP: reads the inventory and policies again; a broken file keeps the old ones.
    package func reload() {
        SystemdNotify.send("RELOADING=1")
        defer { SystemdNotify.send("READY=1\nSTATUS=\(states.count) enabled policies") }
        do throws(StowageError) {
            inventory = try Inventory.load(path: options.inventoryPath)
            notifier = Self.makeNotifier(inventory, options, logger)
            rebuild(makeUpFrom: nil)
            for layer in queue.keys where states[layer] == nil { queue[layer] = nil }
            if let c = coordination {
                let layers = Array(states.keys)
                Task { await c.setLayers(layers) }
            }
            log("reloaded \(options.inventoryPath): \(states.count) enabled policies", event: "reloaded")
        } catch {
            log("reload failed, keeping the previous policies: \(error.message)\(error.hint.map { " (hint: \($0))" } ?? "")", .error, event: "reload-failed")
        }
    }

    /// SIGTERM: start nothing more; let running runs end within the grace period.
    package func stop() {
        guard stopDeadline == nil else { return }
        SystemdNotify.send("STOPPING=1\nSTATUS=stopping: \(running.count) running")
        stopDeadline = Date().addingTimeInterval(inventory.scheduler.grace)
        queue.removeAll()
        log(
            "stopping: \(running.count) running \(running.count == 1 ? "run" : "runs") may take up to \(Int(inventory.scheduler.grace)) s, then they are cancelled",
            event: "stopping")
    }

    /// The per-policy states from the inventory; `makeUpFrom` (at start) queues each policy's
    /// missed slot once.
    func rebuild(makeUpFrom refs: [String: Date]?) {
        let now = Date()
        var next: [String: PolicyState] = [:]
        for p in inventory.policies where p.enabled {
            guard let schedule = try? p.schedule.schedule() else { continue }  // validated at load
            if let old = states[p.layer], old.policy.schedule == p.schedule {
                next[p.layer] = PolicyState(policy: p, schedule: schedule, nextDue: old.nextDue)
                continue
            }
            next[p.layer] = PolicyState(policy: p, schedule: schedule, nextDue: schedule.next(after: now))
            if let refs {
                let since = max(p.installed, refs[p.layer] ?? p.installed)
                if let slot = SchedulerLogic.missedSlot(schedule, since: since, now: now) {
                    log("\(p.layer): the run due at \(stamp(slot)) was missed; making it up once", event: "make-up", layer: p.layer)
                    enqueue(
                        QueuedRun(
                            layer: p.layer, storage: p.storage, slot: slot, trigger: "make-up", attempt: 1,
                            startAt: now.addingTimeInterval(delay())))
                }
            }
        }
        states = next
    }

    /// Per layer, the latest of: the last slot a run ended for (catalog) and the newest
    /// backup on the storage (its name holds its start time). The storage is the truth; the
    /// catalog only adds failed attempts, which are not made up again.
    func makeUpReferences() async throws(StowageError) -> [String: Date] {
        var refs = try await catalog.lastAttemptedSlots()
        let policies = inventory.policies.filter(\.enabled)
        guard !policies.isEmpty else { return refs }
        var pairs: [String: Set<String>] = [:]  // storage → environments
        for p in policies { pairs[p.storage, default: []].insert(String(p.layer.split(separator: "/")[0])) }
        for (storageName, envs) in pairs {
            guard let spec = inventory.storage(storageName) else { continue }
            for env in envs.sorted() {
                do throws(StowageError) {
                    for (id, d) in try await newestBackups(spec, environment: env, agent: agent) {
                        refs[id] = max(refs[id] ?? d.0, d.0)
                        if let name = BackupName(d.1) { newestBackup[id] = max(newestBackup[id] ?? name, name) }
                    }
                } catch {
                    log(
                        "storage \(storageName): cannot list backups of \(env) (\(error.message)); make-up runs use the catalog only", .warning,
                        event: "storage-unlisted", ["storage": "\(storageName)"])
                }
            }
        }
        return refs
    }

    /// The newest backup of each layer of `env` on the storage, from the backup names (the
    /// start times they hold), as any reachable node lists them.
    func newestBackups(_ spec: StorageSpec, environment env: String, agent: AgentBinary) async throws(StowageError) -> [String: (Date, String)] {
        let storage = try ReplicatedStorage(spec, inventory: inventory, agent: agent, environment: env)
        let held = await storage.listBackups()
        var newest: [String: (Date, String)] = [:]
        for layer in held.holders.keys {
            if let b = held.newest(layer) { newest["\(env)/\(layer)"] = (b.date, b.description) }
        }
        return newest
    }

    // MARK: - The tick

    func tick(_ now: Date) async {
        if let deadline = stopDeadline {
            if now >= deadline {
                for (layer, r) in running where !r.cancelled {
                    log("\(layer): cancelling the run (grace period over)", .warning, event: "run-cancelling", layer: layer)
                    running[layer]?.cancelled = true
                    r.process.signal(SIGTERM)
                }
            }
            return
        }
        if let c = coordination {
            // A layer just taken over (from a coordinator that died, was cut off or gave it
            // up) has its latest slot made up: the claim in the catalog lets it run only if
            // no one ran it, and the storage check only if no backup since exists.
            let window = await c.makeUpWindow
            for layer in await c.takeGained().sorted() where queue[layer] == nil && running[layer] == nil {
                guard let s = states[layer],
                    let slot = SchedulerLogic.missedSlot(s.schedule, since: max(s.policy.installed, now.addingTimeInterval(-window)), now: now)
                else { continue }
                log("\(layer): taken over; its slot at \(stamp(slot)) runs here unless another coordinator ran it", event: "make-up", layer: layer)
                enqueue(QueuedRun(layer: layer, storage: s.policy.storage, slot: slot, trigger: "make-up", attempt: 1, startAt: now))
            }
        }
        for (layer, s) in states {
            guard let due = s.nextDue, due <= now else { continue }
            // Another coordinator's layer: its slots are that one's to run.
            if let c = coordination, await c.standing(layer) == .notMine {
                states[layer]?.nextDue = s.schedule.next(after: max(now, due))
                continue
            }
            let run = QueuedRun(
                layer: layer, storage: s.policy.storage, slot: due, trigger: "schedule", attempt: 1,
                startAt: due.addingTimeInterval(delay()))
            states[layer]?.nextDue = s.schedule.next(after: max(now, due))
            if let waiting = queue[layer] ?? running[layer]?.queued {
                // One run per layer at a time, and one waiting: this slot's run replaces a
                // waiting one, or follows the running one once.
                var skipped = RunRecord(
                    layer: layer, storage: s.policy.storage, trigger: "schedule", scheduledFor: waiting.slot,
                    started: now, attempt: waiting.attempt, schedulerPid: Int(getpid()))
                skipped.outcome = .skipped
                skipped.ended = now
                if queue[layer] != nil {
                    skipped.error = "replaced by the run due at \(stamp(due)) before it started (waiting for a concurrency slot or a retry)"
                    _ = try? await catalog.start(skipped)
                }
                log(
                    "\(layer): due at \(stamp(due)) while the previous run \(queue[layer] != nil ? "still waits" : "still runs"); one run follows", .notice,
                    event: "run-skipped", layer: layer)
            }
            enqueue(run)
        }
        let starting = SchedulerLogic.admissible(
            queue: Array(queue.values), running: running.map { ($0.key, $0.value.storage) }, now: now,
            concurrency: inventory.scheduler.concurrency, perStorage: inventory.scheduler.perStorage)
        for q in starting { await start(q, now: now) }
    }

    func enqueue(_ q: QueuedRun) {
        queue[q.layer] = q
    }

    /// Backup Now (the API's): a run of `layer` queued to start at the next tick, within the
    /// concurrency limits, like a scheduled one. Refused when the layer has no enabled policy
    /// (the add-on is not installed there), or a run of it runs or waits already.
    package func backupNow(layer: String, startedBy: String? = nil) async throws(StowageError) -> (run: QueuedRun, job: APIJob?) {
        guard stopDeadline == nil else { throw StowageError(.locked, "the scheduler is stopping", hint: "try again once it has restarted") }
        guard let s = states[layer] else {
            throw StowageError(.usage, "\(layer) has no enabled backup policy", hint: "install the add-on on it first (stowage addon install \(layer))")
        }
        if running[layer] != nil || queue[layer] != nil {
            throw StowageError(
                .locked, "a run of \(layer) \(running[layer] != nil ? "is running" : "is waiting to start")", hint: "GET /api/v1/runs?layer=\(layer)")
        }
        var q = QueuedRun(layer: layer, storage: s.policy.storage, slot: nil, trigger: "api", attempt: 1, startAt: Date())
        var job: APIJob?
        if let startedBy {
            job = await jobs.reserve(kind: "backup", layer: layer, startedBy: startedBy)
            q.job = job?.id
        }
        // The actor was left at the await: another request may have queued this layer.
        if running[layer] != nil || queue[layer] != nil {
            if let id = job?.id { await jobs.abandon(id, state: .failed, error: "another run of \(layer) came first") }
            throw StowageError(.locked, "a run of \(layer) is running or waiting", hint: "GET /api/v1/runs?layer=\(layer)")
        }
        enqueue(q)
        var meta: Logger.Metadata = ["trigger": "api"]
        if let id = job?.id { meta["job"] = .string(id) }
        log("\(layer): a run queued through the API", event: "run-queued", layer: layer, meta)
        return (q, job)
    }

    /// Cancels the Backup Now job `id`: a run still waiting leaves the queue; a running one
    /// gets SIGTERM (its half-written backup is never listed; no retry follows). False when
    /// no run of the scheduler's carries that job.
    package func cancelJob(_ id: String) async -> Bool {
        if let (layer, _) = queue.first(where: { $0.value.job == id }) {
            queue[layer] = nil
            await jobs.abandon(id, state: .cancelled, error: "cancelled before it started")
            log("\(layer): the queued run was cancelled through the API", event: "run-cancelled", layer: layer)
            return true
        }
        guard let (layer, r) = running.first(where: { $0.value.queued.job == id }), !r.cancelled else { return false }
        running[layer]?.cancelled = true
        await jobs.markCancelled(id)
        r.process.signal(SIGTERM)
        log("\(layer): run \(r.record.id ?? 0) cancelled through the API", .warning, event: "run-cancelled", layer: layer)
        return true
    }

    /// The fleet's status as `stowage status --json` reports it, for `selection` (ENV or
    /// ENV/LAYER; nil: every layer), from the inventory this scheduler runs.
    package func fleetStatus(selection: String?, probe: Bool) async throws(StowageError) -> FleetReport {
        let inv = inventory
        let layers = try selection.map { s throws(StowageError) in try LayerSelection(parsing: s).layers(in: inv) } ?? inv.layers
        return try await FleetStatus.gather(layers, inventory: inv, agent: agent, probe: probe)
    }

    /// The backups on a storage, as `stowage backups --json` lists them: for `selection`
    /// (ENV or ENV/LAYER; nil: every environment), any environment (Restore from).
    package func backups(selection: String?, storage: String?) async throws(StowageError) -> [BackupEntry] {
        let sel = try LayerSelection(parsing: selection)
        return try await BackupCatalog.list(
            try inventory.requireStorage(storage), inventory: inventory, agent: agent, environment: sel.environment, layer: sel.layer)
    }

    /// Each storage of the inventory with its nodes as last checked (nil: not yet checked).
    package func storages() -> [StorageHealth] {
        inventory.storages.map { spec in
            StorageHealth(
                name: spec.name, quorum: spec.quorum ?? spec.nodes.count,
                nodes: spec.nodes.map { n in
                    let h = nodeHealth["\(spec.name)/\(n.name)"]
                    return .init(name: n.name, up: h?.up, freeBytes: h?.freeBytes, totalBytes: h?.totalBytes, checked: h?.checked)
                })
        }
    }

    /// The names the inventory gives its environments and storages (the dashboard's choices).
    package func names() -> (environments: [String], storages: [String], layers: [String]) {
        (inventory.environments.map(\.name), inventory.storages.map(\.name), inventory.layers.map(\.id))
    }

    /// The catalog (the API reads runs, tokens and the audit trail from it).
    package nonisolated var runCatalog: RunCatalog { catalog }

    func delay() -> Double { SchedulerLogic.startDelay(window: inventory.scheduler.startDelay, random: Double.random(in: 0...1)) }

    func start(_ q: QueuedRun, now: Date) async {
        // The actor is re-entered at every await of the tick: a SIGTERM or another start of
        // this layer may have come in between.
        guard stopDeadline == nil, running[q.layer] == nil else { return }
        if let c = coordination, let slot = q.slot {
            switch await c.standing(q.layer) {
            case .unknown:
                // The catalog has not answered (yet): the run waits in the queue.
                return
            case .notMine:
                queue[q.layer] = nil
                log("\(q.layer): the slot at \(stamp(slot)) is another coordinator's now (its layer moved)", event: "run-not-mine", layer: q.layer)
                return
            case .mine:
                guard let claim = await c.claim(layer: q.layer, slot: slot) else { return }
                guard stopDeadline == nil, running[q.layer] == nil else { return }
                if !claim.mine {
                    queue[q.layer] = nil
                    var skipped = RunRecord(
                        layer: q.layer, storage: q.storage, trigger: q.trigger, scheduledFor: slot, started: now, attempt: q.attempt,
                        schedulerPid: Int(getpid()))
                    skipped.outcome = .skipped
                    skipped.ended = now
                    skipped.error = "the slot was claimed by coordinator \(claim.by)"
                    if let r = try? await catalog.start(skipped) { await c.record(r) }
                    log("\(q.layer): the slot at \(stamp(slot)) was claimed by coordinator \(claim.by)", event: "run-skipped", layer: q.layer)
                    return
                }
            }
        }
        queue[q.layer] = nil
        var argv = [options.executable, "backup", q.layer, "--policy", "--json", "--config", options.inventoryPath]
        // A slot's run (not Backup Now) says which slot: under the layer's lock it ends
        // without a dump when the storage already has a backup since then (exit 16).
        if let slot = q.slot { argv += ["--slot", BackupName(date: slot, kind: .auto).stamp] }
        if let a = options.agentBinary { argv += ["--agent-binary", a] }
        var record = RunRecord(
            layer: q.layer, storage: q.storage, trigger: q.trigger, scheduledFor: q.slot, started: now,
            attempt: q.attempt, schedulerPid: Int(getpid()))
        do throws(StowageError) {
            record = try await catalog.start(record)
            if let c = coordination {
                await c.setBusy(q.layer, true)
                let r = record
                Task { await c.record(r) }
            }
            var env: [String: String] = [:]
            if let id = q.job { env[APIJob.Progress.fileVariable] = await jobs.progressPath(id) }
            let process = try RunProcess.start(argv, workDir: options.workDir, environment: env)
            if let id = q.job { await jobs.attach(id, process) }
            running[q.layer] = Running(storage: q.storage, process: process, record: record, queued: q)
            log(
                "\(q.layer): run \(record.id ?? 0) started (\(q.trigger)\(q.slot.map { " for \(stamp($0))" } ?? ""), attempt \(q.attempt), pid \(process.pid))",
                event: "run-started", layer: q.layer, ["run": "\(record.id ?? 0)", "attempt": "\(q.attempt)", "trigger": "\(q.trigger)"])
            inFlight += 1
            Task { [process] in
                let result = await process.wait()
                await self.finished(q.layer, result)
            }
        } catch {
            if let id = q.job { await jobs.abandon(id, state: .failed, error: error.message) }
            log("\(q.layer): cannot start a run: \(error.message)", .error, event: "run-not-started", layer: q.layer)
            record.outcome = .failed
            record.ended = Date()
            record.error = error.message
            try? await catalog.finish(record)
        }
    }

    /// What `stowage backup --json` printed, as far as the scheduler needs it.
    struct Summary: Decodable {
        var backup: String
        var sourceNodes: [String]
        var rawBytes: Int64
        var storedBytes: Int64
        var newBytes: Int64?
        var missingReplicas: [String: String]
    }

    func finished(_ layer: String, _ result: RunProcessResult) async {
        defer { inFlight -= 1 }
        guard let r = running.removeValue(forKey: layer) else { return }
        if let id = r.queued.job { await jobs.ended(id, result) }
        let now = Date()
        var record = r.record
        record.ended = now
        record.exitCode = result.exitStatus.map(Int.init)
        var judgement = SchedulerLogic.judge(exitStatus: result.exitStatus, signal: result.signal, cancelledByScheduler: r.cancelled)
        let summary = try? JSONDecoder().decode(Summary.self, from: Data(result.stdout.utf8))
        record.backup = summary?.backup
        record.sourceNode = summary?.sourceNodes.joined(separator: ",")
        record.rawBytes = summary?.rawBytes
        record.storedBytes = summary?.storedBytes
        record.newBytes = summary?.newBytes
        let lines = result.stderr.split(whereSeparator: \.isNewline).map(String.init)
        let message =
            lines.last { $0.hasPrefix("stowage: error: ") }.map { String($0.dropFirst("stowage: error: ".count)) }
            ?? result.signal.map { sig in
                // A crash report (Swift's backtracer writes one to stderr) is worth keeping whole.
                if !lines.isEmpty {
                    log(
                        "\(layer): the run was killed by signal \(sig); its stderr follows", .error, event: "run-crashed", layer: layer,
                        ["stderr": .string(lines.prefix(50).joined(separator: "\n"))])
                }
                return "the run was killed by signal \(sig)"
            }
            ?? (judgement == .ok ? nil : lines.last)
        let hint = lines.last { $0.hasPrefix("hint: ") }.map { String($0.dropFirst(6)) }
        switch judgement {
        case .ok: record.outcome = .ok
        case .warnings: record.outcome = summary == nil ? .failed : .warnings
        case .cancelled: record.outcome = .cancelled
        case .transient, .permanent: record.outcome = .failed
        case .alreadyDone:
            // Another coordinator's backup (or one taken since the slot) covers it.
            record.outcome = .skipped
            record.backup = message?.split(separator: " ").last.map(String.init).flatMap(BackupName.init)?.description
        }
        if record.outcome != .ok { record.error = message ?? lines.last }
        if judgement == .alreadyDone { log("\(layer): \(record.error ?? "slot already done")", event: "run-skipped", layer: layer) }
        // A run stopped by a signal may have committed just before it: the storage says.
        if record.backup == nil, result.signal != nil, let spec = inventory.storage(r.storage),
            let newest = try? await newestBackups(spec, environment: String(layer.split(separator: "/")[0]), agent: agent)[layer],
            newest.0 >= record.started.addingTimeInterval(-1)
        {
            record.outcome = .warnings
            record.backup = newest.1
            record.error = "committed, then stopped by signal \(result.signal!) before it ended (retention may not have run)"
            judgement = .warnings
        }
        try? await catalog.finish(record)
        if let c = coordination {
            await c.setBusy(layer, false)
            await c.record(record)
        }
        if let b = record.backup.flatMap(BackupName.init) { newestBackup[layer] = max(newestBackup[layer] ?? b, b) }
        let took = String(format: "%.1f", now.timeIntervalSince(record.started))
        var ended: Logger.Metadata = ["run": "\(record.id ?? 0)", "outcome": "\(record.outcome.rawValue)", "seconds": "\(took)"]
        if let b = record.backup { ended["backup"] = .string(b) }
        if let c = result.exitStatus { ended["exitCode"] = "\(c)" }
        // A failed run's own words, folded into its event (never spilled over lines).
        if record.outcome == .failed, !lines.isEmpty { ended["stderr"] = .string(lines.suffix(20).joined(separator: "\n")) }
        log(
            "\(layer): run \(record.id ?? 0) \(record.outcome.rawValue) in \(took) s\(record.backup.map { ": \($0)" } ?? "")\(record.error.map { ": \($0)" } ?? "")",
            record.outcome == .ok ? .info : (record.outcome == .warnings ? .warning : .error), event: "run-ended", layer: layer, ended)

        var retrying = false
        if stopDeadline == nil, let s = states[layer] {
            let retryAt = now.addingTimeInterval(SchedulerLogic.retryDelay(attempt: r.queued.attempt + 1, base: inventory.scheduler.retryDelay))
            if SchedulerLogic.shouldRetry(
                judgement, attempt: r.queued.attempt, retries: inventory.scheduler.retries, retryAt: retryAt,
                nextSlot: s.nextDue), queue[layer] == nil
            {
                var q = r.queued
                q.job = nil
                q.attempt += 1
                q.trigger = "retry"
                q.startAt = retryAt
                enqueue(q)
                retrying = true
                log(
                    "\(layer): transient failure; attempt \(q.attempt) at \(stamp(retryAt))", .warning, event: "run-retry", layer: layer,
                    ["attempt": "\(q.attempt)"])
            }
        }
        let degraded = !(summary?.missingReplicas.isEmpty ?? true)
        if !retrying,
            let e = NotificationEvent.of(
                judgement: judgement, exitCode: result.exitStatus, message: message ?? "the run failed",
                hint: hint, layer: layer, storage: r.storage, attempt: r.queued.attempt,
                backup: record.backup, degraded: degraded, time: now)
        {
            notifier.post(e)
        }
    }

    // MARK: - Staleness

    static let staleCheckEvery: Double = 30

    /// Reports each layer whose newest backup has grown older than its policy allows, once
    /// per episode: logged, and a `backup-stale` notification. Before reporting, the layer's
    /// storage is listed again (a manual backup, or another coordinator's, counts too).
    func checkStaleness(_ now: Date) async {
        for (layer, state) in states.sorted(by: { $0.key < $1.key }) {
            // A run underway or waiting is the answer already: judge it once it has ended.
            if running[layer] != nil || queue[layer] != nil { continue }
            // In a shared fleet each layer's owner reports it, once.
            if let c = coordination, await c.standing(layer) != .mine { continue }
            guard let verdict = Staleness.judge(policy: state.policy, newest: newestBackup[layer], now: now) else { continue }
            if !verdict.stale {
                staleReported.remove(layer)
                continue
            }
            guard !staleReported.contains(layer), let spec = inventory.storage(state.policy.storage) else { continue }
            if let listed = try? await newestBackups(spec, environment: String(layer.split(separator: "/")[0]), agent: agent)[layer],
                let name = BackupName(listed.1)
            {
                newestBackup[layer] = max(newestBackup[layer] ?? name, name)
            }
            guard let again = Staleness.judge(policy: state.policy, newest: newestBackup[layer], now: now), again.stale else { continue }
            staleReported.insert(layer)
            log(
                "\(layer): backups are stale: \(again.message)", .error, event: "backup-stale", layer: layer,
                again.age.map { ["ageSeconds": "\(Int($0))", "limitSeconds": "\(Int(again.limit))"] } ?? ["limitSeconds": "\(Int(again.limit))"])
            let event = NotificationEvent(
                event: .backupStale, layer: layer, storage: state.policy.storage, time: stamp(now),
                message: again.message, hint: "stowage status \(layer) shows the last runs; stowage backup \(layer) makes one now",
                exitCode: nil, attempt: 0, backup: newestBackup[layer]?.description,
                coordinator: ProcessInfo.processInfo.hostName)
            // Delivery never holds the scheduler up.
            notifier.post(event)
        }
    }

    // MARK: - Metrics

    /// Asks every storage node for its free space, in the background (a node that does not
    /// answer takes its connect timeout; ticks do not wait for it).
    func startNodeCheck() {
        let inv = inventory, agent = agent
        nodeCheck = Task {
            var found: [String: MetricsSnapshot.Node] = [:]
            await withTaskGroup(of: MetricsSnapshot.Node?.self) { g in
                for spec in inv.storages {
                    guard let root = try? ReplicatedStorage(spec, inventory: inv, agent: agent, environment: nil) else { continue }
                    for node in root.nodes {
                        g.addTask {
                            let now = Date()
                            switch await captured({ try await node.freeSpace() }) {
                            case .success(let free):
                                return .init(
                                    storage: spec.name, node: node.name, up: true, freeBytes: free?.freeBytes, totalBytes: free?.totalBytes, checked: now)
                            case .failure:
                                return .init(storage: spec.name, node: node.name, up: false, freeBytes: nil, totalBytes: nil, checked: now)
                            }
                        }
                    }
                }
                for await n in g { if let n { found["\(n.storage)/\(n.node)"] = n } }
            }
            // The scheduled layers' topology, probed like `stowage topology` does (findings
            // a layer acknowledges count as ok). A layer whose secret cannot be read is
            // counted as one error: nothing can be judged of it.
            let scheduled = Set(inv.policies.map(\.layer))
            var probed: [LayerSpec] = []
            var topology: [String: MetricsSnapshot.Topology] = [:]
            let when = Date()
            for l in inv.layers where scheduled.contains(l.id) {
                do throws(StowageError) {
                    _ = try TopologyCheck.members(of: l, settings: inv.probe)
                    probed.append(l)
                } catch {
                    topology[l.id] = .init(layer: l.id, findings: ["error": 1], probed: when)
                }
            }
            if let found = try? await TopologyCheck.run(probed, settings: inv.probe) {
                for t in found {
                    let id = "\(t.environment)/\(t.layer)"
                    topology[id] = .init(layer: id, findings: Dictionary(grouping: t.findings, by: \.severity.rawValue).mapValues(\.count), probed: when)
                }
            }
            await self.nodeCheckEnded(found, topology: topology)
        }
    }

    func nodeCheckEnded(_ found: [String: MetricsSnapshot.Node], topology: [String: MetricsSnapshot.Topology]) {
        for (k, t) in topology where (t.findings["error"] ?? 0) > 0 && (topologyFindings[k]?.findings["error"] ?? 0) == 0 {
            log("\(k): the topology probe found errors (stowage topology \(k))", .warning, event: "topology-errors", layer: k)
        }
        topologyFindings = topology
        for (k, v) in found {
            if !v.up && nodeHealth[k]?.up != false {
                log(
                    "storage \(v.storage): node \(v.node) does not answer", .warning, event: "storage-node-down",
                    ["storage": .string(v.storage), "node": .string(v.node)])
            }
            if v.up && nodeHealth[k]?.up == false {
                log("storage \(v.storage): node \(v.node) answers again", event: "storage-node-up", ["storage": .string(v.storage), "node": .string(v.node)])
            }
        }
        nodeHealth = found
        nodeCheck = nil
    }

    /// What /metrics shows now.
    package func metrics() async -> MetricsSnapshot {
        let now = Date()
        let stats = (try? await catalog.layerStats()) ?? [:]
        var layers: [MetricsSnapshot.Layer] = []
        for p in inventory.policies.sorted(by: { $0.layer < $1.layer }) {
            let st = stats[p.layer] ?? LayerRunStats()
            let verdict = Staleness.judge(policy: p, newest: newestBackup[p.layer], now: now)
            layers.append(
                .init(
                    layer: p.layer, storage: p.storage, lastSuccess: st.lastSuccess?.ended ?? newestBackup[p.layer]?.date,
                    lastDuration: st.lastSuccess?.seconds, lastRawBytes: st.lastSuccess?.rawBytes, lastStoredBytes: st.lastSuccess?.storedBytes,
                    lastNewBytes: st.lastSuccess?.newBytes,
                    runs: st.runs, restores: st.restores, failuresSinceSuccess: st.failuresSinceSuccess,
                    stale: verdict?.stale, age: verdict?.age, maxAge: verdict?.limit))
        }
        return MetricsSnapshot(
            layers: layers, nodes: nodeHealth.values.sorted { ($0.storage, $0.node) < ($1.storage, $1.node) },
            topology: topologyFindings.values.sorted { $0.layer < $1.layer }, queued: queue.count, running: running.count, started: startedAt,
            heartbeat: lastBeatAt, coordination: await coordination?.snapshot())
    }

    /// Ready: the inventory is loaded (it is, once this actor exists) and the catalog answers.
    package func ready() async -> Bool { (try? await catalog.schedulers(limit: 1)) != nil }

    // MARK: - For tests and status

    package func snapshot() -> (queued: [QueuedRun], running: [String]) { (Array(queue.values), Array(running.keys)) }
}

func stamp(_ d: Date) -> String { UTCStamp.format(d) }

/// A storage as the API and the dashboard show it: its write quorum and its nodes' health.
package struct StorageHealth: Codable, Sendable, Equatable {
    package struct Node: Codable, Sendable, Equatable {
        package var name: String
        /// Whether the node answered at its last check (nil: not checked yet).
        package var up: Bool?
        package var freeBytes: Int64?
        package var totalBytes: Int64?
        package var checked: Date?
    }
    package var name: String
    package var quorum: Int
    package var nodes: [Node]
}
