import ArgumentParser
import Dispatch
import Fleet
import Foundation
import Logging
import Operations
import Remote
import Repository
import Scheduling
import Service
import Storage
import Support

/// `stowage scheduler`: the daemon that runs every enabled policy when due (docs/scheduler.md).
struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Run every layer's backup policy on schedule (a long-running daemon).",
        discussion:
            "SIGHUP reloads the inventory and policies; SIGTERM or SIGINT starts no more runs, lets running ones finish within scheduler.grace, then cancels them."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var agentOption: AgentBinaryOption

    @Option(help: ArgumentHelp("Where runs keep their output while they go on (default: a private folder under $TMPDIR).", valueName: "dir"))
    var workDir: String?

    @Option(
        help: ArgumentHelp("The least severe events written: trace, debug, info, notice, warning, error, critical.", valueName: "level"),
        transform: { v throws -> Logger.Level in
            guard let l = Logger.Level(rawValue: v.lowercased()) else {
                throw ValidationError("--log-level \(v): expected trace, debug, info, notice, warning, error or critical")
            }
            return l
        })
    var logLevel: Logger.Level = .info

    @Option(
        help: ArgumentHelp(
            "One line per event as text (for people) or json (for machines); without a time stamp under systemd, whose journal adds one.", valueName: "format"),
        transform: { v throws -> LogFormat in
            guard let f = LogFormat(rawValue: v.lowercased()) else { throw ValidationError("--log-format \(v): expected text or json") }
            return f
        })
    var logFormat: LogFormat = .text

    /// The program runs are started with instead of this stowage (bench/coordination.sh's
    /// stub, which measures scheduling and lease work alone). Not for production.
    @Option(help: .hidden)
    var runner: String?

    func run() async throws {
        try await reportingErrors {
            let path = Inventory.resolvePath(option: global.config)
            let work = try workDir ?? makePrivateDir()
            let (level, format) = (logLevel, logFormat)
            let logger = Logger(label: "stowage.scheduler") { label in StowageLogHandler.standard(label: label, level: level, format: format) }
            let scheduler = try await Scheduler(
                options: SchedulerOptions(
                    inventoryPath: absolute(path), executable: try runner.map(absolute) ?? selfExecutable(),
                    agentBinary: agentOption.agentBinary.map(absolute), workDir: work),
                logger: logger)
            // Signals arrive on a dispatch source (not a C handler), so the actor is told on
            // an ordinary queue.
            var sources: [DispatchSourceSignal] = []
            for (sig, action) in [(SIGTERM, "stop"), (SIGINT, "stop"), (SIGHUP, "reload")] {
                signal(sig, SIG_IGN)
                let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                s.setEventHandler {
                    Task { if action == "stop" { await scheduler.stop() } else { await scheduler.reload() } }
                }
                s.resume()
                sources.append(s)
            }
            signal(SIGPIPE, SIG_IGN)
            let settings = try Inventory.load(path: absolute(path)).scheduler
            if let listen = settings.listenAddress {
                // Scheduling starts once the listener is bound (or has failed): under
                // Type=notify, READY=1 then means the metrics answer too.
                let (bound, boundSignal) = AsyncStream<Bool>.makeStream()
                let server = StatusServer(
                    host: listen.host, port: listen.port, scheduler: scheduler, logger: logger, behindTLSProxy: settings.apiBehindTLSProxy,
                    openAPI: try? String(contentsOfFile: Docs.path("openapi.json"), encoding: .utf8)
                ) {
                    logger.info("listening on \(listen.host):\(listen.port) (/metrics, /healthz, /readyz, /api/v1)", metadata: ["event": "listening"])
                    boundSignal.yield(true)
                }
                let serving = Task {
                    do {
                        try await server.run()
                    } catch {
                        // Scheduling goes on without it; the missing metrics page the operator.
                        logger.error("the HTTP listener on \(listen.host):\(listen.port) failed: \(error)", metadata: ["event": "listener-failed"])
                    }
                    boundSignal.yield(false)
                }
                for await _ in bound { break }
                do throws(StowageError) { try await scheduler.run() } catch {
                    await server.shutdown()
                    throw error
                }
                // The listener lives as long as the scheduler: it stops when the runs have ended.
                await server.shutdown()
                await serving.value
            } else {
                try await scheduler.run()
            }
            sources.forEach { $0.cancel() }
            if workDir == nil { try? FileManager.default.removeItem(atPath: work) }
            // Every run has ended and the catalog is written. Exit here, without the C
            // libraries' exit-time cleanup: a storage node check may still be in its SSH
            // session on a thread of its own, and a library torn down under it crashed the
            // process once at this point (SIGSEGV in a lock, CI 2026-12-07).
            fflush(nil)
            _exit(0)
        }
    }

    func makePrivateDir() throws(StowageError) -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/stowage-scheduler.XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else {
            throw StowageError(.internalError, "cannot create a work folder under \(base): \(String(cString: strerror(errno)))", hint: "set --work-dir")
        }
        return String(cString: p)
    }

    func selfExecutable() throws(StowageError) -> String {
        guard let p = currentExecutablePath() else {
            throw StowageError(.internalError, "cannot find this stowage executable (/proc/self/exe)")
        }
        return p
    }

    func absolute(_ p: String) -> String {
        p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
    }
}
