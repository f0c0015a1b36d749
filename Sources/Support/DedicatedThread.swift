// Helpers shared by every module that calls blocking C libraries (libpq, libmariadb,
// hiredis, libssh2): a thread of their own per call, and a monotonic deadline.
import Foundation
import Synchronization

/// Set by task cancellation; read by the blocking loop between its calls.
package final class CancelFlag: Sendable {
    private let value = Atomic<Bool>(false)
    package init() {}
    package func set() { value.store(true, ordering: .relaxed) }
    package var isSet: Bool { value.load(ordering: .relaxed) }
}

package enum DedicatedThread {
    /// Runs `body` on a new thread and resumes the caller when it returns.
    ///
    /// Swift's cooperative pool has as many threads as cores (two here); one call stuck in a
    /// connect to a frozen server would stall every task in the process. A fresh thread per
    /// call is cheap next to a network round trip, and the calls are few (one per node).
    /// Cancelling the calling task sets the flag `body` receives.
    package static func run<T: Sendable>(_ name: String, _ body: @escaping @Sendable (CancelFlag) throws -> T) async throws -> T {
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

    /// The same for work that cannot fail and ignores cancellation.
    package static func run<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async -> T {
        // `body` does not throw, so neither does this.
        try! await run(name) { (_: CancelFlag) in body() }
    }
}

/// A point in time after which an operation gives up (monotonic clock).
package struct Deadline: Sendable {
    package let at: Double

    package init(seconds: Double) { at = Deadline.now() + seconds }

    package static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    package var remainingMilliseconds: Int32 { Int32(max(0, min(Double(Int32.max), (at - Deadline.now()) * 1000))) }
    package var expired: Bool { Deadline.now() >= at }
}

/// Carries a non-Sendable value to the one thread that uses it while the caller awaits.
package struct Handoff<T>: @unchecked Sendable {
    package let value: T
    package init(value: T) { self.value = value }
}

/// A flag that another thread waits on with poll: set once, and `fd` (a pipe's reading end)
/// turns readable, so a loop sleeping in poll (an SSH channel waiting for data) wakes at
/// once instead of at its next timeout.
package final class Wakeup: @unchecked Sendable {
    private let flag = Atomic<Bool>(false)
    /// Readable once `set` was called; -1 if the system gave no pipe (then waiters notice
    /// at their next timeout).
    package let fd: Int32
    private let writeEnd: Int32

    package init() {
        var p: [Int32] = [-1, -1]
        if pipe(&p) == 0 {
            for d in p {
                _ = fcntl(d, F_SETFL, fcntl(d, F_GETFL) | O_NONBLOCK)
                _ = fcntl(d, F_SETFD, FD_CLOEXEC)
            }
        }
        fd = p[0]
        writeEnd = p[1]
    }

    deinit {
        if fd >= 0 { close(fd) }
        if writeEnd >= 0 { close(writeEnd) }
    }

    package func set() {
        flag.store(true, ordering: .sequentiallyConsistent)
        var one: UInt8 = 1
        if writeEnd >= 0 { _ = write(writeEnd, &one, 1) }
    }

    package var isSet: Bool { flag.load(ordering: .sequentiallyConsistent) }
}
