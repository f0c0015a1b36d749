// Transport probe for bench/transport-nio.sh: one SSH session channel over swift-nio-ssh
// (whose ciphers are AES-GCM from swift-crypto, a whole packet per call), MIB mebibytes
// sent to `cat > /dev/null` on the node ("in") or read from `head -c N /dev/zero` ("out").
// Prints the rate and this process's CPU seconds: what the coordinator's transport would
// cost per GiB if it were built on swift-nio-ssh instead of libssh2 1.10, which encrypts
// one 16-byte block per OpenSSL call (bench/results/transport-profile.md). A measurement
// only: Stowage does not use it.
//
//   nio-ssh-probe HOST PORT KEY KNOWN_HOST_KEY MIB in|out
//
// KEY: an unencrypted OpenSSH ed25519 private key file; KNOWN_HOST_KEY: the node's host
// key as "ssh-ed25519 AAAA..." (any other key is refused).
import Crypto
import Foundation
import NIOCore
import NIOPosix
import NIOSSH

func ed25519Seed(_ path: String) throws -> Data {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
    var d = [UInt8](Data(base64Encoded: body)!)
    let magic = Array("openssh-key-v1\0".utf8)
    d.removeFirst(magic.count)
    var i = 0
    func u32() -> Int { defer { i += 4 }; return Int(d[i]) << 24 | Int(d[i + 1]) << 16 | Int(d[i + 2]) << 8 | Int(d[i + 3]) }
    func str() -> [UInt8] { let n = u32(); defer { i += n }; return Array(d[i..<i + n]) }
    _ = str(); _ = str(); _ = str()  // cipher, kdf, kdf options (none)
    _ = u32(); _ = str()  // nkeys, public key
    let priv = str()
    var j = 8  // check ints
    func pstr() -> [UInt8] {
        let n = Int(priv[j]) << 24 | Int(priv[j + 1]) << 16 | Int(priv[j + 2]) << 8 | Int(priv[j + 3]); j += 4; defer { j += n }; return Array(priv[j..<j + n])
    }
    _ = pstr(); _ = pstr()  // type, public
    return Data(pstr().prefix(32))
}

final class Auth: NIOSSHClientUserAuthenticationDelegate {
    let key: NIOSSHPrivateKey
    var offered = false
    init(key: NIOSSHPrivateKey) { self.key = key }
    func nextAuthenticationType(
        availableMethods: NIOSSHAvailableUserAuthenticationMethods, nextChallengePromise: EventLoopPromise<NIOSSHUserAuthenticationOffer?>
    ) {
        if offered { nextChallengePromise.succeed(nil); return }
        offered = true
        nextChallengePromise.succeed(.init(username: "root", serviceName: "", offer: .privateKey(.init(privateKey: key))))
    }
}
struct HostKeyRefused: Error {}
final class KnownHostKey: NIOSSHClientServerAuthenticationDelegate {
    let expected: NIOSSHPublicKey
    init(_ expected: NIOSSHPublicKey) { self.expected = expected }
    func validateHostKey(hostKey: NIOSSHPublicKey, validationCompletePromise: EventLoopPromise<Void>) {
        if hostKey == expected { validationCompletePromise.succeed(()) } else { validationCompletePromise.fail(HostKeyRefused()) }
    }
}

final class Sender: ChannelDuplexHandler {
    typealias InboundIn = SSHChannelData
    typealias OutboundIn = SSHChannelData
    typealias OutboundOut = SSHChannelData
    let total: Int
    let receive: Bool
    var received = 0
    var sent = 0
    let chunk: ByteBuffer
    let done: EventLoopPromise<Void>
    var started = false
    init(total: Int, receive: Bool, done: EventLoopPromise<Void>) {
        self.total = total; self.receive = receive; self.done = done
        var b = ByteBufferAllocator().buffer(capacity: 256 << 10)
        var g = SystemRandomNumberGenerator()
        for _ in 0..<(256 << 10) / 8 { b.writeInteger(g.next() as UInt64) }
        chunk = b
    }
    func handlerAdded(context: ChannelHandlerContext) {
        context.channel.setOption(ChannelOptions.allowRemoteHalfClosure, value: true).whenFailure { _ in }
    }
    func channelActive(context: ChannelHandlerContext) {
        let exec = SSHChannelRequestEvent.ExecRequest(command: receive ? "head -c \(total) /dev/zero" : "cat > /dev/null", wantReply: true)
        context.triggerUserOutboundEvent(exec).whenSuccess { if !self.receive { self.started = true; self.pump(context) } }
    }
    func channelWritabilityChanged(context: ChannelHandlerContext) { pump(context) }
    func pump(_ context: ChannelHandlerContext) {
        guard started else { return }
        while context.channel.isWritable && sent < total {
            sent += chunk.readableBytes
            context.write(wrapOutboundOut(SSHChannelData(type: .channel, data: .byteBuffer(chunk))), promise: nil)
        }
        context.flush()
        if sent >= total {
            started = false
            context.close(mode: .output).whenComplete { _ in }
        }
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let d = unwrapInboundIn(data)
        if case .byteBuffer(let b) = d.data, d.type == .channel { received += b.readableBytes }
    }
    func channelInactive(context: ChannelHandlerContext) { if receive { print("received \(received) bytes") }; done.succeed(()) }
}

let args = CommandLine.arguments
let host = args[1], port = Int(args[2])!, keyPath = args[3], bytes = Int(args[5])! << 20
let hostKey = try NIOSSHPublicKey(openSSHPublicKey: args[4])
let receive = args[6] == "out"
let key = NIOSSHPrivateKey(ed25519Key: try Curve25519.Signing.PrivateKey(rawRepresentation: ed25519Seed(keyPath)))
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let t0 = Date()
let channel = try ClientBootstrap(group: group).channelInitializer { ch in
    ch.eventLoop.makeCompletedFuture {
        try ch.pipeline.syncOperations.addHandler(
            NIOSSHHandler(
                role: .client(.init(userAuthDelegate: Auth(key: key), serverAuthDelegate: KnownHostKey(hostKey))),
                allocator: ch.allocator, inboundChildChannelInitializer: nil))
    }
}.connect(host: host, port: port).wait()
let done = channel.eventLoop.makePromise(of: Void.self)
let childPromise = channel.eventLoop.makePromise(of: Channel.self)
channel.pipeline.handler(type: NIOSSHHandler.self).whenSuccess { ssh in
    ssh.createChannel(childPromise, channelType: .session) { child, _ in
        child.eventLoop.makeCompletedFuture { try child.pipeline.syncOperations.addHandler(Sender(total: bytes, receive: receive, done: done)) }
    }
}
let t1 = Date()
try done.futureResult.wait()
let t2 = Date()
var ru = rusage(); getrusage(RUSAGE_SELF.rawValue, &ru)
let cpu = Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6 + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
print(
    String(
        format: "%d MiB in %.2f s (%.0f MB/s), connect %.2f s, process CPU %.2f s (%.2f CPU-s per GiB)", bytes >> 20, t2.timeIntervalSince(t0),
        Double(bytes) / 1e6 / t2.timeIntervalSince(t1), t1.timeIntervalSince(t0), cpu, cpu / (Double(bytes) / Double(1 << 30))))
try? channel.close().wait()
