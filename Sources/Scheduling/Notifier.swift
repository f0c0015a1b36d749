// Notifications (docs/scheduler.md, "Notifications"): on a failed run, rejected credentials,
// an unsafe topology or a storage running degraded, a JSON document is POSTed to the
// webhook and/or given on stdin to the command. Both are optional; a notification that
// cannot be delivered is logged, and never stops the scheduler.
import Fleet
import Foundation
import Operations
import Remote
import Storage
import Support
import Topology
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

package struct NotificationEvent: Codable, Sendable, Equatable {
    package enum Kind: String, Codable, Sendable {
        case runFailed = "run-failed"
        case credentialsRejected = "credentials-rejected"
        case unsafeTopology = "unsafe-topology"
        case storageDegraded = "storage-degraded"
    }

    /// Bumped when a field changes meaning or goes away.
    package var version = 1
    package var event: Kind
    package var layer: String
    package var storage: String
    /// ISO 8601, UTC.
    package var time: String
    package var message: String
    package var hint: String?
    package var exitCode: Int?
    package var attempt: Int
    /// The backup, when one was committed (storage-degraded).
    package var backup: String?
    package var coordinator: String

    enum CodingKeys: String, CodingKey {
        case version, event, layer, storage, time, message, hint, attempt, backup, coordinator
        case exitCode = "exit_code"
    }

    /// The event for a judged run, if it is one to report.
    package static func of(judgement: RunJudgement, exitCode: Int32?, message: String, hint: String?, layer: String, storage: String,
                          attempt: Int, backup: String?, degraded: Bool, time: Date) -> NotificationEvent? {
        let kind: Kind
        switch judgement {
        case .ok, .warnings:
            guard degraded else { return nil }
            kind = .storageDegraded
        case .cancelled:
            return nil
        case .transient, .permanent:
            switch exitCode.flatMap(ExitStatus.init(rawValue:)) {
            case .credentialsRejected?: kind = .credentialsRejected
            case .unsafeTopology?: kind = .unsafeTopology
            default: kind = .runFailed
            }
        }
        return NotificationEvent(event: kind, layer: layer, storage: storage, time: ISO8601DateFormatter().string(from: time),
                                 message: message, hint: hint, exitCode: exitCode.map(Int.init), attempt: attempt, backup: backup,
                                 coordinator: ProcessInfo.processInfo.hostName)
    }

    package var json: Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? enc.encode(self)) ?? Data()
    }
}

package struct Notifier: Sendable {
    package var settings: NotificationSettings
    package var workDir: String
    package var log: @Sendable (String) -> Void

    package init(settings: NotificationSettings, workDir: String, log: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.workDir = workDir
        self.log = log
    }

    package func send(_ e: NotificationEvent) async {
        if let hook = settings.webhook, let url = URL(string: hook) {
            var req = URLRequest(url: url, timeoutInterval: settings.timeout)
            req.httpMethod = "POST"
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
            req.setValue("stowage/\(e.version)", forHTTPHeaderField: "User-Agent")
            req.httpBody = e.json
            do {
                let (_, resp) = try await URLSession.shared.data(for: req)
                let code = (resp as? HTTPURLResponse)?.statusCode ?? 0
                if !(200..<300).contains(code) { log("notification \(e.event.rawValue) for \(e.layer): webhook answered HTTP \(code)") }
            } catch {
                log("notification \(e.event.rawValue) for \(e.layer): webhook \(url.host ?? hook) failed: \(error.localizedDescription)")
            }
        }
        if let command = settings.command {
            let input = "\(workDir)/notify-\(UUID().uuidString.prefix(8)).json"
            guard FileManager.default.createFile(atPath: input, contents: e.json, attributes: [.posixPermissions: 0o600]) else {
                log("notification \(e.event.rawValue) for \(e.layer): cannot write \(input)")
                return
            }
            defer { unlink(input) }
            do {
                let p = try RunProcess.start(["/bin/sh", "-c", command], workDir: workDir, stdin: input,
                                             environment: ["STOWAGE_EVENT": e.event.rawValue, "STOWAGE_LAYER": e.layer])
                let timeout = Task {
                    try await Task.sleep(for: .seconds(settings.timeout))
                    p.signal(SIGKILL)
                }
                let r = await p.wait()
                timeout.cancel()
                if r.exitStatus != 0 {
                    let why = r.signal.map { "was killed by signal \($0) (timeout \(Int(settings.timeout)) s?)" } ?? "exited \(r.exitStatus ?? -1)"
                    log("notification \(e.event.rawValue) for \(e.layer): the command \(why): \(r.stderr.split(whereSeparator: \.isNewline).last ?? "")")
                }
            } catch {
                log("notification \(e.event.rawValue) for \(e.layer): \(error.message)")
            }
        }
    }
}
