// One driver per engine: how this node dumps a database into a stream and applies a
// stream back. Adding an engine means one driver here (with its tool arguments, credential
// files and filters as pure values in `Engines`) plus its probe and analysis in Topology.
import AgentProtocol

protocol EngineDriver {
    /// The dump of `db` as a stream; the password goes into a private file or the
    /// connection, never argv or the environment.
    func dumpSource(_ db: DatabaseAccess, password: String?) throws -> StreamSource
    /// Where a restore's plaintext goes; `dir` is the job's private folder.
    func restoreSink(_ db: DatabaseAccess, password: String?, dir: PrivateDir) throws -> RestoreSink
}

/// The driver of an engine.
func engineDriver(_ engine: DatabaseEngine) -> any EngineDriver {
    switch engine {
    case .postgresql: PostgreSQLDriver()
    case .mysql: MySQLDriver()
    case .redis: RedisDriver()
    }
}
