// stowage-agent: the program the coordinator runs on every node over SSH.
//
//   stowage-agent hello         print the handshake and exit (install checks)
//   stowage-agent serve         the session: handshake on stderr, one job from stdin
//
// Protocol: docs/agent-protocol.md. When the coordinator goes away (its channel closes,
// so stdin ends or stdout breaks), the agent kills every process it started and exits:
// nothing is left running on the node.
import AgentJobs
import AgentProtocol
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

// Writes to a closed stdout must return EPIPE, not kill us before we clean up children.
signal(SIGPIPE, SIG_IGN)

let args = Array(CommandLine.arguments.dropFirst())
switch args.first {
case "hello", "--version":
    writeAll(1, AgentEvent.hello(pid: getpid()).line())
    exit(AgentExit.ok.rawValue)
case "serve":
    exit(Session().run().rawValue)
case ChildLauncher.marker:
    ChildLauncher.execChild(Array(args.dropFirst()))
default:
    writeAll(2, Array("stowage-agent: usage: stowage-agent hello | serve\n".utf8))
    exit(AgentExit.usage.rawValue)
}
