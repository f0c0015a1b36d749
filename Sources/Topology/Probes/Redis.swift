// The only file that talks to hiredis. redisCommand is variadic and cannot be called from
// Swift: every command goes through redisCommandArgv.
import CHiredis
import Engines
import Foundation
import Support

final class RedisConnection {
    private let ctx: UnsafeMutablePointer<redisContext>

    init(_ t: ProbeTarget) throws(ProbeFailure) {
        guard let c = redisConnectWithTimeout(t.endpoint.host, Int32(t.endpoint.port), Self.timeval(t.connectTimeout)) else {
            throw ProbeFailure(.unreachable, "hiredis could not allocate a context")
        }
        if c.pointee.err != 0 {
            let failure = Self.ioFailure(c)
            redisFree(c)
            throw failure
        }
        ctx = c
        _ = redisSetTimeout(ctx, Self.timeval(t.queryTimeout))
        if let password = t.password {
            let args = (t.user.map { ["AUTH", $0] } ?? ["AUTH"]) + [password.value]
            do {
                _ = try command(args)
            } catch {
                throw error.kind == .queryFailed ? ProbeFailure(.authenticationFailed, error.message) : error
            }
        }
    }

    deinit { redisFree(ctx) }

    /// Runs one command; returns a bulk/status string, or an array's elements joined by newlines.
    @discardableResult
    func command(_ args: [String]) throws(ProbeFailure) -> String {
        let cargs = args.map { strdup($0) }
        defer { cargs.forEach { free($0) } }
        let lens = args.map { $0.utf8.count }
        var argv = cargs.map { UnsafePointer<CChar>($0) }
        let raw = argv.withUnsafeMutableBufferPointer { av in
            lens.withUnsafeBufferPointer { lv in redisCommandArgv(ctx, Int32(args.count), av.baseAddress, lv.baseAddress) }
        }
        guard let raw else { throw Self.ioFailure(ctx) }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        switch reply.pointee.type {
        case REDIS_REPLY_ERROR:
            let msg = Self.string(reply)
            if msg.hasPrefix("NOAUTH") || msg.hasPrefix("WRONGPASS") {
                throw ProbeFailure(
                    .authenticationFailed, msg.hasPrefix("NOAUTH") ? "the server requires a password and the layer's credentials give none" : msg)
            }
            throw ProbeFailure(.queryFailed, "\(args.first ?? ""): \(msg)")
        case REDIS_REPLY_ARRAY:
            return (0..<Int(reply.pointee.elements)).compactMap { i in
                reply.pointee.element[i].map { e in
                    e.pointee.type == REDIS_REPLY_INTEGER ? String(e.pointee.integer) : Self.string(e)
                }
            }.joined(separator: "\n")
        case REDIS_REPLY_INTEGER:
            return String(reply.pointee.integer)
        default:
            return Self.string(reply)
        }
    }

    private static func string(_ r: UnsafeMutablePointer<redisReply>) -> String {
        guard let s = r.pointee.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: s, count: Int(r.pointee.len)), as: UTF8.self)
    }

    private static func ioFailure(_ c: UnsafeMutablePointer<redisContext>) -> ProbeFailure {
        let msg = withUnsafeBytes(of: c.pointee.errstr) { buf in
            String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
        }
        let l = msg.lowercased()
        if l.contains("timed out") || l.contains("temporarily unavailable") {
            return ProbeFailure(.timeout, "no answer within the timeout (\(msg))")
        }
        return ProbeFailure(.unreachable, msg.isEmpty ? "connection failed" : msg)
    }

    private static func timeval(_ seconds: Double) -> Glibc.timeval {
        Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
    }
}

enum RedisProbe {
    static func probe(_ t: ProbeTarget) throws(ProbeFailure) -> RawProbe {
        let c = try RedisConnection(t)
        var raw = RawProbe()
        // ROLE's first element; INFO replication carries the rest of what ROLE says.
        raw.replies["role"] = try c.command(RedisCommands.role).split(whereSeparator: \.isNewline).first.map(String.init)
        raw.replies["info server"] = try c.command(RedisCommands.infoServer)
        raw.replies["info replication"] = try c.command(RedisCommands.infoReplication)
        let cluster = try c.command(RedisCommands.infoCluster)
        raw.replies["info cluster"] = cluster
        if RESP.infoFields(cluster)["cluster_enabled"] == "1" {
            raw.replies["cluster info"] = try c.command(RedisCommands.clusterInfo)
            raw.replies["cluster nodes"] = try c.command(RedisCommands.clusterNodes)
        }
        return raw
    }
}
