// stowage-agent: the program the coordinator runs on every node over SSH.
//
// This first version only answers the handshake, so that the coordinator and the lab can
// already check that a node runs a compatible agent. Jobs (dump, restore, storage
// operations) arrive with the agent issue; until then any job is refused with exit 3.
import CZstd

#if canImport(Glibc)
import Glibc
#endif

enum AgentExit: Int32 {
    case ok = 0
    case usage = 2
    case unknownJob = 3
}

let protocolVersion = 1
let agentVersion = "0.1.0"

func handshake() -> String {
    let zstd = String(cString: ZSTD_versionString())
    return #"{"agent":"stowage-agent","protocol":\#(protocolVersion),"version":"\#(agentVersion)","zstd":"\#(zstd)"}"#
}

let args = CommandLine.arguments.dropFirst()
switch args.first {
case "hello", "--version":
    print(handshake())
    exit(AgentExit.ok.rawValue)
case nil:
    FileHandle_stderr("stowage-agent: no command; usage: stowage-agent hello\n")
    exit(AgentExit.usage.rawValue)
default:
    FileHandle_stderr("stowage-agent: unknown command '\(args.first!)'; this agent only answers 'hello'\n")
    exit(AgentExit.unknownJob.rawValue)
}

func FileHandle_stderr(_ s: String) {
    var bytes = Array(s.utf8)
    _ = write(2, &bytes, bytes.count)
}
