#if canImport(Glibc)
import Glibc
#endif

/// What a `pg_dumpall --clean --if-exists` script must lose before it is applied: the roles
/// that cannot be dropped while it runs (the role that connects, and the bootstrap
/// superuser, which can never be dropped) make `DROP ROLE IF EXISTS x;` fail, and then
/// `CREATE ROLE x;` too. Exactly those two lines per role go; their `ALTER ROLE`
/// (attributes, password) still applies.
package struct PostgresRestoreFilter: Sendable {
    private let drop: Set<[UInt8]>
    private var pending: [UInt8] = []
    private var passing = false
    private let maxLen: Int
    /// Which bytes start a dropped line: any other first byte passes the line at once.
    private let starts: [Bool]

    package init(keepRoles roles: [String]) {
        var d = Set<[UInt8]>()
        for role in roles {
            let q = Self.quoteIdent(role)
            d.insert(Array("DROP ROLE IF EXISTS \(q);".utf8))
            d.insert(Array("CREATE ROLE \(q);".utf8))
        }
        drop = d
        maxLen = drop.map(\.count).max() ?? 0
        var st = [Bool](repeating: false, count: 256)
        for l in d { if let f = l.first { st[Int(f)] = true } }
        starts = st
    }

    /// Identifiers the way pg_dump writes them: bare when lowercase-simple, quoted otherwise.
    package static func quoteIdent(_ s: String) -> String {
        let simple =
            !s.isEmpty && s.unicodeScalars.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_" }
            && !(s.unicodeScalars.first! >= "0" && s.unicodeScalars.first! <= "9")
        return simple ? s : "\"" + s.replacing("\"", with: "\"\"") + "\""
    }

    /// Passes `buf` on to `out`, minus the connecting role's two lines. Only the head of a
    /// line that could still be one of them is held back; everything else goes out in runs
    /// as long as the buffer allows.
    package mutating func feed(_ buf: UnsafeRawBufferPointer, _ out: (UnsafeRawBufferPointer) -> Void) {
        let n = buf.count
        var runStart = 0, i = 0
        // Where the current line starts in this buffer; nil when it began in an earlier one.
        var lineStart: Int? = pending.isEmpty ? 0 : nil
        while i < n {
            if passing {
                // The rest of a line that is not one of the dropped ones: found with memchr
                // (a per-byte loop here was a tenth of a restoring agent's time).
                guard let nl = memchr(buf.baseAddress! + i, 0x0A, n - i) else {
                    i = n
                    continue
                }
                i = buf.baseAddress!.distance(to: UnsafeRawPointer(nl)) + 1
                passing = false
                lineStart = i
                continue
            }
            let b = buf[i]
            if pending.isEmpty && !starts[Int(b)] {
                passing = true
                continue
            }
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
    package mutating func finish(_ out: (UnsafeRawBufferPointer) -> Void) {
        if !passing && !pending.isEmpty && !drop.contains(pending) { pending.withUnsafeBytes { out($0) } }
        pending.removeAll()
    }
}

/// A filter between a restored script and the tool applying it.
package protocol ScriptFilter: Sendable {
    mutating func feed(_ buf: UnsafeRawBufferPointer, _ out: (UnsafeRawBufferPointer) -> Void)
    mutating func finish(_ out: (UnsafeRawBufferPointer) -> Void)
}

extension PostgresRestoreFilter: ScriptFilter {}

/// What a `mariadb-dump --all-databases --routines` script needs to keep its routine-level
/// grants. The dump goes database by database in name order: `mysql` (with its
/// `procs_priv` rows) comes before, say, `shop`, whose `DROP PROCEDURE IF EXISTS` then
/// revokes every grant on that procedure again (automatic_sp_privileges, on by default; it
/// cannot be set per session). So the `procs_priv` rows are held back and applied at the
/// end, after every routine exists again, as `REPLACE` (the server may have re-created
/// some rows itself for the routines' creator), followed by `FLUSH PRIVILEGES`. Restoring
/// an old backup gets its grants back the same way. Every other byte passes unchanged.
package struct MySQLRestoreFilter: ScriptFilter {
    private enum LineState { case undecided, passing, holding }
    private var state = LineState.undecided
    /// The current line's first bytes while undecided (not yet sent anywhere).
    private var head: [UInt8] = []
    private var inMySQLSchema = false
    /// Inside a held `INSERT INTO procs_priv` statement (it ends with the line ending in ';').
    private var inHeldStatement = false
    private var lastByte: UInt8 = 0
    private var held: [UInt8] = []

    static let insert = Array("INSERT INTO `procs_priv` VALUES".utf8)
    static let replace = Array("REPLACE INTO `mysql`.`procs_priv` VALUES".utf8)
    static let useMySQL = Array("USE `mysql`;".utf8)
    static let use = Array("USE ".utf8)
    /// Enough of a line to tell every case apart.
    static let decideAt = 40

    package init() {}

    package mutating func feed(_ buf: UnsafeRawBufferPointer, _ out: (UnsafeRawBufferPointer) -> Void) {
        guard let base = buf.baseAddress else { return }
        let n = buf.count
        var i = 0
        // Passing bytes of this buffer not yet handed on, [runStart, i): they go out in one
        // piece (a dump of one row per line made one call per line before).
        var runStart = 0
        while i < n {
            switch state {
            case .undecided:
                // Only a line starting with USE, or with INSERT inside `mysql`, needs a look
                // at its head; any other passes at its first byte.
                if head.isEmpty && !inHeldStatement && buf[i] != UInt8(ascii: "U") && !(inMySQLSchema && buf[i] == UInt8(ascii: "I")) {
                    state = .passing
                    continue
                }
                // A line's first bytes wait (a few dozen at most) until they tell its fate.
                if runStart < i { out(UnsafeRawBufferPointer(rebasing: buf[runStart..<i])) }
                let b = buf[i]
                i += 1
                runStart = i
                if b == 0x0A {
                    decide(complete: true)
                    let last = head.last ?? 0
                    head.append(0x0A)
                    emitHead(out)
                    lineEnded(lastNonNewline: last)
                } else {
                    head.append(b)
                    if head.count >= Self.decideAt {
                        decide(complete: false)
                        lastByte = b
                        emitHead(out)
                    }
                }
            case .passing, .holding:
                // The rest of a decided line, found with memchr.
                let nl = memchr(base + i, 0x0A, n - i).map { base.distance(to: UnsafeRawPointer($0)) }
                let j = nl ?? n
                let end = nl.map { $0 + 1 } ?? n
                if state == .holding {
                    if runStart < i { out(UnsafeRawBufferPointer(rebasing: buf[runStart..<i])) }
                    held.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[i..<end]))
                    runStart = end
                }
                if j > i { lastByte = buf[j - 1] }
                if nl != nil { lineEnded(lastNonNewline: lastByte) }
                i = end
            }
        }
        if runStart < n { out(UnsafeRawBufferPointer(rebasing: buf[runStart..<n])) }
    }

    /// Chooses what happens to the current line from its head.
    private mutating func decide(complete: Bool) {
        if inHeldStatement {
            state = .holding
            return
        }
        if head.starts(with: Self.use) {
            inMySQLSchema = complete && head == Self.useMySQL
            state = .passing
        } else if inMySQLSchema && head.starts(with: Self.insert) {
            head.replaceSubrange(0..<Self.insert.count, with: Self.replace)
            inHeldStatement = true
            state = .holding
        } else {
            state = .passing
        }
    }

    private mutating func emitHead(_ out: (UnsafeRawBufferPointer) -> Void) {
        if !head.isEmpty {
            if state == .holding { held.append(contentsOf: head) } else { head.withUnsafeBytes { out($0) } }
        }
        head.removeAll(keepingCapacity: true)
    }

    /// A line ended (its newline consumed); `last` is its final byte before the newline.
    private mutating func lineEnded(lastNonNewline last: UInt8) {
        if state == .holding && last == UInt8(ascii: ";") { inHeldStatement = false }
        state = .undecided
    }

    package mutating func finish(_ out: (UnsafeRawBufferPointer) -> Void) {
        if state == .undecided && !head.isEmpty {
            decide(complete: true)
            emitHead(out)
        }
        guard !held.isEmpty else { return }
        // On a line of its own, whatever the script's last line was.
        if held.last != 0x0A { held.append(0x0A) }
        ([0x0A] + held + Array("FLUSH PRIVILEGES;\n".utf8)).withUnsafeBytes { out($0) }
    }
}
