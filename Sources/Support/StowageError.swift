/// Exit codes of the `stowage` command. Documented in docs/exit-codes.md; a change there is
/// a change here and the other way round.
package enum ExitStatus: Int32, Sendable, CaseIterable {
    case ok = 0
    /// A bug: an error Stowage did not expect.
    case internalError = 1
    /// The command ran; the topology has warnings (non-clustered layer, replica lagging...).
    case warnings = 2
    /// The topology is unsafe (split brain, no primary, mixed clusters...).
    case unsafeTopology = 3
    /// A database rejected the layer's credentials.
    case credentialsRejected = 4
    /// A node cannot be reached over SSH (refused, no route, timed out). Retryable.
    case nodeUnreachable = 5
    /// A node's SSH host key is unknown or changed: refused until `stowage ssh trust`.
    case hostKeyRefused = 6
    /// The node refused the coordinator's SSH key, or the key is unusable (RSA).
    case sshAuthFailed = 7
    /// No agent of this build on the node, or one speaking another protocol version.
    case agentMismatch = 8
    /// The remote job failed: the agent reported an error, was killed, or its stream was cut.
    case remoteFailed = 9
    /// `agent check`: a node lacks a tool its engine needs.
    case toolsMissing = 10
    /// Another backup, restore or prune of the layer holds its lock. Retryable.
    case locked = 11
    /// Fewer storage nodes than the write quorum hold a write: nothing was committed.
    case quorumNotReached = 12
    /// A repository's config or keys are unreadable, or of a newer format.
    case repositoryDamaged = 13
    /// A restore ran, but the restored data does not match the counts the backup recorded.
    case restoreCheckFailed = 14
    /// The backup cannot go into this target: another engine, or a newer major version.
    case incompatibleBackup = 15
    /// `backup --slot` (the scheduler's run of a slot): a backup of the layer at or after the
    /// slot is already committed (another coordinator ran it); nothing was written.
    case alreadyDone = 16
    /// Interrupted by the operator (SIGINT) or cancelled.
    case cancelled = 130
    /// Bad command line: unknown option, unknown environment or layer.
    case usage = 64
    /// The inventory file does not exist or cannot be read.
    case noInventory = 66
    /// The inventory is malformed, or a secret it references cannot be read.
    case invalidInventory = 78
}

/// An error meant for an operator: one line naming what and where, a hint, an exit code.
/// Messages never contain a password or key: secrets are `Secret` values that print as
/// "<redacted>", and no error is built from one.
package struct StowageError: Error, Sendable, Equatable, CustomStringConvertible {
    package var status: ExitStatus
    package var message: String
    package var hint: String?
    /// Whether trying again later may succeed (an unreachable node) or not (a typo).
    package var retryable: Bool

    package init(_ status: ExitStatus, _ message: String, hint: String? = nil, retryable: Bool = false) {
        self.status = status
        self.message = message
        self.hint = hint
        self.retryable = retryable
    }

    package var description: String { message + (hint.map { " (hint: \($0))" } ?? "") }

    /// A fault of this coordinator's own setup for a node: its host key refused, the SSH
    /// key rejected or unusable, no agent of this build, an unreadable known_hosts or
    /// identity. Unlike a node that is down, waiting or a lower quorum does not help, and
    /// writing to the other nodes only hides it: the operation fails at once with it.
    package var isSetupFault: Bool {
        [.hostKeyRefused, .sshAuthFailed, .agentMismatch, .invalidInventory].contains(status)
    }
}

/// The outcome of `body` as a value, for task-group children that report failures per node.
/// (A `do throws(StowageError)` block inside a task-group child closure was miscompiled in
/// release builds by Swift 6.3.1: the group read a garbage result and crashed. Untyped
/// throws in a plain function avoid the pattern.)
package func captured<T>(_ body: () async throws -> T) async -> Result<T, StowageError> {
    do {
        return .success(try await body())
    } catch let e as StowageError {
        return .failure(e)
    } catch {
        return .failure(StowageError(.internalError, "\(error)"))
    }
}
