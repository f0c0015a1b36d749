// Notifications (docs/scheduler.md, "Notifications"): on a failed run, rejected credentials,
// an unsafe topology or a storage running degraded, a JSON document is POSTed to the
// webhook and/or given on stdin to the command. Both are optional; a notification that
// cannot be delivered is logged, and never stops the scheduler.
@preconcurrency import Crypto
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Storage
import Support
import Synchronization
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
        /// The newest backup is older than the policy's max_age (Staleness).
        case backupStale = "backup-stale"
        case restoreCompleted = "restore-completed"
        /// Opt-in: a target lists it in `events`.
        case backupSucceeded = "backup-succeeded"
    }

    /// Bumped when a field changes meaning or goes away (2: `exit_code` became `exitCode`,
    /// one key style across every JSON document Stowage writes).
    package var version = 2
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

    package init(
        event: Kind, layer: String, storage: String, time: String, message: String, hint: String?, exitCode: Int?,
        attempt: Int, backup: String?, coordinator: String
    ) {
        self.event = event
        self.layer = layer
        self.storage = storage
        self.time = time
        self.message = message
        self.hint = hint
        self.exitCode = exitCode
        self.attempt = attempt
        self.backup = backup
        self.coordinator = coordinator
    }

    /// The event for a judged run, if it is one to report.
    package static func of(
        judgement: RunJudgement, exitCode: Int32?, message: String, hint: String?, layer: String, storage: String,
        attempt: Int, backup: String?, degraded: Bool, time: Date
    ) -> NotificationEvent? {
        let kind: Kind
        switch judgement {
        case .ok, .warnings:
            kind = degraded ? .storageDegraded : .backupSucceeded
        case .cancelled, .alreadyDone:
            return nil
        case .transient, .permanent:
            switch exitCode.flatMap(ExitStatus.init(rawValue:)) {
            case .credentialsRejected?: kind = .credentialsRejected
            case .unsafeTopology?: kind = .unsafeTopology
            default: kind = .runFailed
            }
        }
        return NotificationEvent(
            event: kind, layer: layer, storage: storage, time: UTCStamp.format(time),
            message: message, hint: hint, exitCode: exitCode.map(Int.init), attempt: attempt, backup: backup,
            coordinator: ProcessInfo.processInfo.hostName)
    }

    package var json: Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? enc.encode(self)) ?? Data()
    }
}

extension NotificationEvent {
    /// The body a target gets: the event document, or Slack's `{"text": ...}` (pure).
    package func body(_ format: NotificationTarget.Format) -> Data {
        switch format {
        case .json: return json
        case .slack:
            var text = "stowage \(event.rawValue): \(layer) (storage \(storage)): \(message)"
            if let hint { text += "\nhint: \(hint)" }
            if let backup { text += "\nbackup: \(backup)" }
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return (try? enc.encode(["text": text])) ?? Data()
        }
    }

    /// `X-Stowage-Signature`: "sha256=" and the hex HMAC-SHA256 of the body under the
    /// target's secret, so a receiver can tell the coordinator's posts from anyone's (pure).
    package static func signature(body: Data, key: [UInt8]) -> String {
        "sha256=" + hexString(HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: key)))
    }
}

/// Sends events to the targets that want them. Delivery never holds up a run: `post` returns
/// at once and the attempts (with retries, the delay doubling) go on in the background; a
/// delivery that fails for good is logged. `drain` waits for what is still underway (at the
/// end of a command, or when the scheduler stops).
package final class Notifier: Sendable {
    package let settings: NotificationSettings
    package let workDir: String
    package let log: @Sendable (String) -> Void
    private let pending = Deliveries()

    package init(settings: NotificationSettings, workDir: String, log: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.workDir = workDir
        self.log = log
    }

    /// Starts delivering `e` to every target that wants it and returns.
    package func post(_ e: NotificationEvent) {
        for target in settings.targets(for: e.event.rawValue, layer: e.layer) {
            // Tracked before post returns, so a drain right after it waits for this one too.
            pending.start { await self.deliver(e, to: target) }
        }
    }

    /// Waits (at most `seconds`) for the deliveries underway.
    package func drain(within seconds: Double) async {
        await withTaskGroup(of: Void.self) { g in
            g.addTask { await self.pending.waitAll() }
            g.addTask { try? await Task.sleep(for: .seconds(seconds)) }
            await g.next()
            g.cancelAll()
        }
    }

    /// One target, with retries; true when it was delivered.
    @discardableResult
    package func deliver(_ e: NotificationEvent, to target: NotificationTarget) async -> Bool {
        let body = e.body(target.format)
        var why = ""
        for attempt in 0...settings.retries {
            if attempt > 0 {
                try? await Task.sleep(for: .seconds(settings.retryDelay * Double(1 << (attempt - 1))))
            }
            if let failure = await attemptOnce(e, body: body, target: target) {
                why = failure
                continue
            }
            return true
        }
        log("notification \(e.event.rawValue) for \(e.layer) not delivered after \(settings.retries + 1) attempts: \(why)")
        return false
    }

    /// nil when delivered, else why not.
    func attemptOnce(_ e: NotificationEvent, body: Data, target: NotificationTarget) async -> String? {
        var failures: [String] = []
        if let hook = target.webhook, let url = URL(string: hook) {
            var req = URLRequest(url: url, timeoutInterval: settings.timeout)
            req.httpMethod = "POST"
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
            req.setValue("stowage/\(e.version)", forHTTPHeaderField: "User-Agent")
            req.setValue(e.event.rawValue, forHTTPHeaderField: "X-Stowage-Event")
            if let file = target.secretFile {
                guard let key = FileManager.default.contents(atPath: file), !key.isEmpty else {
                    return "cannot read the signing secret \(file) (\(target.location))"
                }
                var k = Array(key)
                if k.last == 0x0A { k.removeLast() }
                req.setValue(NotificationEvent.signature(body: body, key: k), forHTTPHeaderField: "X-Stowage-Signature")
            }
            req.httpBody = body
            // The request's own timeout is an idle timeout in libcurl's URLSession: a receiver
            // that accepts and never answers would hold the delivery for good. So the whole
            // exchange has a deadline of its own, and the request is cancelled at it.
            switch await Self.post(req, within: settings.timeout) {
            case .answered(let code):
                if !(200..<300).contains(code) { failures.append("webhook \(url.host ?? hook) answered HTTP \(code)") }
            case .failed(let why):
                failures.append("webhook \(url.host ?? hook): \(why)")
            case .timedOut:
                failures.append("webhook \(url.host ?? hook): no answer within \(formatDuration(settings.timeout))")
            }
        }
        if let command = target.command {
            let input = "\(workDir)/notify-\(UUID().uuidString.prefix(8)).json"
            guard FileManager.default.createFile(atPath: input, contents: body, attributes: [.posixPermissions: 0o600]) else {
                return "cannot write \(input)"
            }
            defer { unlink(input) }
            do {
                let p = try RunProcess.start(
                    ["/bin/sh", "-c", command], workDir: workDir, stdin: input,
                    environment: ["STOWAGE_EVENT": e.event.rawValue, "STOWAGE_LAYER": e.layer])
                let timeout = Task {
                    try await Task.sleep(for: .seconds(settings.timeout))
                    p.signal(SIGKILL)
                }
                let r = await p.wait()
                timeout.cancel()
                if r.exitStatus != 0 {
                    let why = r.signal.map { "was killed by signal \($0) (timeout \(Int(settings.timeout)) s?)" } ?? "exited \(r.exitStatus ?? -1)"
                    failures.append("the command \(why): \(r.stderr.split(whereSeparator: \.isNewline).last ?? "")")
                }
            } catch {
                failures.append(error.message)
            }
        }
        return failures.isEmpty ? nil : failures.joined(separator: "; ")
    }
}

extension Notifier {
    enum PostOutcome: Sendable { case answered(Int), failed(String), timedOut }

    /// One POST with a deadline on the whole exchange.
    static func post(_ req: URLRequest, within seconds: Double) async -> PostOutcome {
        let request = Task { () -> PostOutcome in
            do {
                let (_, resp) = try await URLSession.shared.data(for: req)
                return .answered((resp as? HTTPURLResponse)?.statusCode ?? 0)
            } catch {
                return .failed(error.localizedDescription)
            }
        }
        let first = FirstOutcome()
        return await withCheckedContinuation { (c: CheckedContinuation<PostOutcome, Never>) in
            first.set(c)
            Task { first.resume(await request.value) }
            Task {
                try? await Task.sleep(for: .seconds(seconds))
                if first.resume(.timedOut) { request.cancel() }
            }
        }
    }
}

/// Resumes a continuation with whichever outcome comes first.
final class FirstOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Notifier.PostOutcome, Never>?
    func set(_ c: CheckedContinuation<Notifier.PostOutcome, Never>) { lock.lock(); continuation = c; lock.unlock() }
    @discardableResult
    func resume(_ o: Notifier.PostOutcome) -> Bool {
        lock.lock()
        let c = continuation
        continuation = nil
        lock.unlock()
        c?.resume(returning: o)
        return c != nil
    }
}

/// The deliveries underway; each leaves the list when it has ended, so a scheduler that
/// runs for months does not keep them all.
final class Deliveries: Sendable {
    private let tasks = Mutex<[UUID: Task<Void, Never>]>([:])

    func start(_ work: @escaping @Sendable () async -> Void) {
        let id = UUID()
        // Inserted under the lock the task's own removal takes: it cannot leave first.
        tasks.withLock { all in
            all[id] = Task {
                await work()
                self.tasks.withLock { _ = $0.removeValue(forKey: id) }
            }
        }
    }

    func waitAll() async {
        while let t = tasks.withLock({ $0.values.first }) {
            await t.value
        }
    }
}
