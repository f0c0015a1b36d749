// A one-time outcome that tasks await: a lock session's "held" (or why not), a cluster
// restore's "the masters are flushed" (the other streams' inputs end only after it).
import Synchronization

/// Finished once, with nil (it happened) or the failure that stopped it; every waiter, before
/// or after, gets that outcome. Later `finish` calls change nothing.
package final class OnceSignal: Sendable {
    private struct State {
        var outcome: StowageError??
        var waiters: [CheckedContinuation<StowageError?, Never>] = []
    }
    private let state = Mutex(State())

    package init() {}

    package func finish(_ failure: StowageError?) {
        let waiters = state.withLock { s -> [CheckedContinuation<StowageError?, Never>] in
            guard s.outcome == nil else { return [] }
            s.outcome = .some(failure)
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: failure) }
    }

    package var isFinished: Bool { state.withLock { $0.outcome != nil } }

    package func wait() async -> StowageError? {
        await withCheckedContinuation { (c: CheckedContinuation<StowageError?, Never>) in
            let ready = state.withLock { s -> StowageError?? in
                if let o = s.outcome { return o }
                s.waiters.append(c)
                return nil
            }
            if let r = ready { c.resume(returning: r) }
        }
    }
}
