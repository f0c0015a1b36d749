// Gives each SSH job a thread of its own: libssh2 blocks, and Swift's cooperative pool
// (two threads here) must never wait on a socket. Task cancellation sets a flag the
// channel loop checks between reads and writes; the channel is then closed at once,
// which ends the remote process (docs/agent-protocol.md, "Cancellation").
import Foundation
import Synchronization

final class CancelFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}

/// Carries a non-Sendable value to the one thread that uses it while the caller awaits.
struct Handoff<T>: @unchecked Sendable {
    let value: T
}

enum SSHWorker {
    /// Runs `body` on a new thread with a cancellation flag; resumes the caller when it ends.
    static func run<T: Sendable>(_ name: String, _ body: @escaping @Sendable (CancelFlag) throws -> T) async throws -> T {
        let flag = CancelFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
                let t = Thread { cont.resume(with: Result { try body(flag) }) }
                t.name = name
                t.stackSize = 1 << 20
                t.start()
            }
        } onCancel: {
            flag.set()
        }
    }
}
