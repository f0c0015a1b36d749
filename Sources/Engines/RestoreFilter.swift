/// What a `pg_dumpall --clean --if-exists` script must lose before it is applied: the roles
/// that cannot be dropped while it runs (the role that connects, and the bootstrap
/// superuser, which can never be dropped) make `DROP ROLE IF EXISTS x;` fail, and then
/// `CREATE ROLE x;` too. Exactly those two lines per role go; their `ALTER ROLE`
/// (attributes, password) still applies.
public struct PostgresRestoreFilter: Sendable {
    private let drop: Set<[UInt8]>
    private var pending: [UInt8] = []
    private var passing = false
    private let maxLen: Int

    public init(keepRoles roles: [String]) {
        var d = Set<[UInt8]>()
        for role in roles {
            let q = Self.quoteIdent(role)
            d.insert(Array("DROP ROLE IF EXISTS \(q);".utf8))
            d.insert(Array("CREATE ROLE \(q);".utf8))
        }
        drop = d
        maxLen = drop.map(\.count).max() ?? 0
    }

    /// Identifiers the way pg_dump writes them: bare when lowercase-simple, quoted otherwise.
    public static func quoteIdent(_ s: String) -> String {
        let simple = !s.isEmpty && s.unicodeScalars.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_" }
            && !(s.unicodeScalars.first! >= "0" && s.unicodeScalars.first! <= "9")
        return simple ? s : "\"" + s.replacing("\"", with: "\"\"") + "\""
    }

    /// Passes `buf` on to `out`, minus the connecting role's two lines. Only the head of a
    /// line that could still be one of them is held back; everything else goes out in runs
    /// as long as the buffer allows.
    public mutating func feed(_ buf: UnsafeRawBufferPointer, _ out: (UnsafeRawBufferPointer) -> Void) {
        let n = buf.count
        var runStart = 0, i = 0
        // Where the current line starts in this buffer; nil when it began in an earlier one.
        var lineStart: Int? = pending.isEmpty ? 0 : nil
        while i < n {
            if passing {
                while i < n && buf[i] != 0x0A { i += 1 }
                if i < n { i += 1; passing = false; lineStart = i }
                continue
            }
            let b = buf[i]
            if b == 0x0A {
                if drop.contains(pending) {
                    if let ls = lineStart, ls > runStart { out(UnsafeRawBufferPointer(rebasing: buf[runStart..<ls])) }
                    runStart = i + 1
                } else if lineStart == nil {
                    (pending + [0x0A]).withUnsafeBytes { out($0) }
                    runStart = i + 1
                }
                pending.removeAll(keepingCapacity: true)
                i += 1
                lineStart = i
                continue
            }
            pending.append(b)
            i += 1
            if pending.count > maxLen || !drop.contains(where: { $0.starts(with: pending) }) {
                if lineStart == nil { pending.withUnsafeBytes { out($0) }; runStart = i }
                pending.removeAll(keepingCapacity: true)
                passing = true
            }
        }
        let end = passing ? n : (lineStart ?? 0)
        if end > runStart { out(UnsafeRawBufferPointer(rebasing: buf[runStart..<end])) }
    }

    /// The end of the script: a held head that never got its newline.
    public mutating func finish(_ out: (UnsafeRawBufferPointer) -> Void) {
        if !passing && !pending.isEmpty && !drop.contains(pending) { pending.withUnsafeBytes { out($0) } }
        pending.removeAll()
    }
}
