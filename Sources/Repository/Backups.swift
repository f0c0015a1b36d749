// Backup names, manifests and the pure decisions about them: which backups retention keeps,
// which chunks prune may delete, whether a replicated write reached its quorum.
// (docs/storage-format.md, "Manifests", "Writes"; no I/O here.)

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `YYYY-MM-DDTHHMMSSZ-auto|manual`: the UTC start time and how the backup was started.
package struct BackupName: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    package enum Kind: String, Sendable, Codable { case auto, manual }

    package var stamp: String
    package var kind: Kind

    package init?(_ s: String) {
        let parts = s.split(separator: "-")
        guard parts.count == 4, let kind = Kind(rawValue: String(parts[3])) else { return nil }
        let stamp = parts[0...2].joined(separator: "-")
        // 2026-11-21T030000Z
        let chars = Array(stamp)
        guard chars.count == 18, chars[4] == "-", chars[7] == "-", chars[10] == "T", chars[17] == "Z",
            chars.enumerated().allSatisfy({ [4, 7, 10, 17].contains($0.offset) || $0.element.isNumber })
        else { return nil }
        self.stamp = stamp
        self.kind = kind
    }

    /// The name of a backup started at `date` (UTC).
    package init(date: Date, kind: Kind) {
        let t = Int(date.timeIntervalSince1970)
        let days = t / 86400, secs = t % 86400
        let (y, m, d) = CivilDate.fromDays(days)
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        stamp = "\(y)-\(two(m))-\(two(d))T\(two(secs / 3600))\(two(secs % 3600 / 60))\(two(secs % 60))Z"
        self.kind = kind
    }

    package var description: String { "\(stamp)-\(kind.rawValue)" }

    /// The start time the name records (to the second).
    package var date: Date {
        let c = Array(stamp.utf8).map { Int($0) - 48 }
        func n(_ r: Range<Int>) -> Int { r.reduce(0) { $0 * 10 + c[$1] } }
        let days = CivilDate.toDays(n(0..<4), n(5..<7), n(8..<10))
        return Date(timeIntervalSince1970: Double(days * 86400 + n(11..<13) * 3600 + n(13..<15) * 60 + n(15..<17)))
    }

    /// Time order; at the same second, auto before manual (arbitrary but fixed).
    package static func < (a: BackupName, b: BackupName) -> Bool {
        a.stamp != b.stamp ? a.stamp < b.stamp : a.kind.rawValue < b.kind.rawValue
    }
}

/// One stream of a backup (a dump; one per Redis Cluster master): its chunks in order.
package struct ManifestStream: Codable, Sendable, Equatable {
    package struct Chunk: Codable, Sendable, Equatable {
        package var id: String
        package var size: Int
        package var stored: Int
        package init(id: String, size: Int, stored: Int) {
            self.id = id
            self.size = size
            self.stored = stored
        }
    }

    package var name: String
    package var rawBytes: Int64
    package var storedBytes: Int64
    /// SHA-256 of the stream's plaintext: recorded by backups made before 2026-12-08, not by
    /// later ones, and no longer checked by anything. A restore checks the chunk IDs in
    /// order instead (`ChunkSequence`), which pin the same bytes.
    package var sha256: String?
    package var chunks: [Chunk]
    /// The node the stream was dumped on.
    package var node: String?
    /// Redis Cluster: the slots its master served at backup time.
    package var slots: String?
    /// What the dump held, counted as it streamed: rows per database (SQL engines, the
    /// `mysql` schema left out) or keys per database (Redis); a restore is checked against it.
    package var counts: [String: Int64]?

    package init(
        name: String, rawBytes: Int64, storedBytes: Int64, sha256: String? = nil, chunks: [Chunk],
        node: String? = nil, slots: String? = nil, counts: [String: Int64]? = nil
    ) {
        self.name = name
        self.rawBytes = rawBytes
        self.storedBytes = storedBytes
        self.sha256 = sha256
        self.chunks = chunks
        self.node = node
        self.slots = slots
        self.counts = counts
    }
}

/// A reference to a committed backup with the chunks it needs: what retention and prune see.
package struct BackupRef: Sendable, Hashable {
    package var layer: String
    package var name: BackupName
    package var chunks: Set<String>

    package init(layer: String, name: BackupName, chunks: Set<String>) {
        self.layer = layer
        self.name = name
        self.chunks = chunks
    }
}

package enum Retention {
    /// The backups of `layer` beyond the newest `keep`, oldest first. `keep` < 1 keeps one:
    /// retention never deletes a layer's last backup.
    package static func expired(_ backups: [BackupRef], layer: String, keep: Int) -> [BackupRef] {
        let mine = backups.filter { $0.layer == layer }.sorted { $0.name > $1.name }
        return Array(mine.dropFirst(max(1, keep))).sorted { $0.name < $1.name }
    }

    /// Chunks no remaining backup references. Prune runs only while it holds every layer's
    /// lock of the repository, so no backup is about to reference one of them.
    package static func unreferenced(allChunks: Set<String>, remaining: [BackupRef]) -> Set<String> {
        allChunks.subtracting(remaining.reduce(into: Set<String>()) { $0.formUnion($1.chunks) })
    }
}

/// Whether a write to a replicated storage committed.
package struct QuorumOutcome: Sendable, Equatable {
    package var committed: Bool
    /// Nodes that hold every file of the write.
    package var complete: [String]
    /// Nodes that do not, with why: recorded and reported, fixed by `storage repair`.
    package var missing: [String: String]

    /// `quorum` nil means every node.
    package static func decide(nodes: [String], failures: [String: String], quorum: Int?) -> QuorumOutcome {
        let complete = nodes.filter { failures[$0] == nil }
        let needed = quorum ?? nodes.count
        return QuorumOutcome(committed: complete.count >= needed && !complete.isEmpty, complete: complete, missing: failures)
    }
}

/// Days since 1970-01-01 → civil date (proleptic Gregorian; Howard Hinnant's algorithm): backup
/// names and schedules.
package enum CivilDate {
    package static func fromDays(_ days: Int) -> (Int, Int, Int) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// Civil date → days since 1970-01-01 (the inverse of `fromDays`).
    package static func toDays(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
}
