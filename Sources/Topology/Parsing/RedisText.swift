// Parsers for Redis' text replies beyond INFO's fields (Engines' `RESP.infoFields`, shared
// with the agent): replica lines and CLUSTER NODES.
//
// Redis ends lines with "\r\n", which Swift's Character treats as ONE grapheme, so splitting a
// String on "\n" finds nothing. Everything here splits on `isNewline` instead.
import Engines

/// A `slaveN:ip=...,port=...,state=online,offset=...,lag=...` value as a dictionary.
func parseRedisKeyValueList(_ value: String) -> [String: String] {
    var out: [String: String] = [:]
    for part in value.split(separator: ",") {
        guard let eq = part.firstIndex(of: "=") else { continue }
        out[String(part[..<eq])] = String(part[part.index(after: eq)...])
    }
    return out
}

/// One line of `CLUSTER NODES`.
struct RedisClusterNode: Equatable, Sendable {
    var id: String
    var endpoint: Endpoint
    var flags: Set<String>
    /// The master's id for a replica, nil for a master.
    var masterID: String?
    var linkState: String
    /// Slot ranges as written ("0-5460", "5461"); importing/migrating markers dropped.
    var slotRanges: [String]

    var isMaster: Bool { flags.contains("master") }
    var isMyself: Bool { flags.contains("myself") }
    var failing: Bool { flags.contains("fail") || flags.contains("fail?") }

    var slotCount: Int {
        slotRanges.reduce(0) { total, r in
            let bounds = r.split(separator: "-").compactMap { Int($0) }
            if bounds.count == 2 { return total + bounds[1] - bounds[0] + 1 }
            return total + (bounds.count == 1 ? 1 : 0)
        }
    }
}

enum RedisParseError: Error, Equatable {
    case malformedClusterNodesLine(String)
}

/// Parses `CLUSTER NODES`:
/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> ...`
func parseClusterNodes(_ text: String) throws -> [RedisClusterNode] {
    var nodes: [RedisClusterNode] = []
    for line in text.split(whereSeparator: \.isNewline) {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        if fields.isEmpty { continue }
        guard fields.count >= 8 else { throw RedisParseError.malformedClusterNodesLine(String(line)) }
        // "127.0.0.1:6379@16379,hostname": the address is before "@".
        let addr = fields[1].split(separator: ",").first.map { $0.split(separator: "@").first.map(String.init) ?? "" } ?? ""
        guard let colon = addr.lastIndex(of: ":"), let port = Int(addr[addr.index(after: colon)...]) else {
            throw RedisParseError.malformedClusterNodesLine(String(line))
        }
        var host = String(addr[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let slots = fields.dropFirst(8).filter { !$0.hasPrefix("[") }
        nodes.append(
            RedisClusterNode(
                id: fields[0],
                endpoint: Endpoint(host: host, port: port),
                flags: Set(fields[2].split(separator: ",").map(String.init)),
                masterID: fields[3] == "-" ? nil : fields[3],
                linkState: fields[7],
                slotRanges: Array(slots)))
    }
    return nodes
}
