// Counting what a dump holds while it streams through the agent, so a manifest records the
// rows per database of exactly the data it stores, and a restore can be checked against
// them (the same count taken on the restored server must match). No second pass over the
// database, no snapshot skew between the count and the dump.

#if canImport(Glibc)
import Glibc
#endif

/// Rows per database in a plain `pg_dumpall` script: the lines between `COPY ... FROM stdin;`
/// and `\.`, attributed to the database of the last `\connect`. A COPY header or a
/// `\connect` counts only at a statement boundary (the lexer the parallel restore's router
/// uses): a function body or a string holding such a line is not table data.
package struct PostgresDumpCounter: Sendable {
    /// Statement lines up to this long are lexed whole; past the first longer one the
    /// counter, like the router, stops telling statements apart and takes any line starting
    /// with COPY for a table's data (the router sends the rest of the script to one psql).
    package static let maxStatementLine = 1 << 20
    private var lines = LineSplitter(keep: PostgresDumpCounter.maxStatementLine)
    private var lex = SQLLexState()
    private var lexing = true
    private var database = "postgres"
    private var inCopy = false
    /// Rows of the COPY section underway: added to `counts` when it ends (a dictionary
    /// update per row cost more than the scan itself).
    private var copyRows: Int64 = 0
    package private(set) var counts: [String: Int64] = [:]

    package init() {}

    package mutating func feed(_ buf: UnsafeRawBufferPointer) {
        var l = lines
        l.feed(buf) { head, cut in self.line(head, cut) }
        lines = l
    }

    package mutating func finish() -> [String: Int64] {
        var l = lines
        l.finish { head, cut in self.line(head, cut) }
        lines = l
        if inCopy { counts[database, default: 0] += copyRows }
        copyRows = 0
        return counts
    }

    private mutating func line(_ head: UnsafeRawBufferPointer, _ cut: Bool) {
        if inCopy {
            // Text-format COPY escapes newlines in values: one row per line, until `\.`.
            if !cut && head.count == 2 && head[0] == 0x5C && head[1] == 0x2E {
                inCopy = false
                counts[database, default: 0] += copyRows
                copyRows = 0
            } else {
                copyRows += 1
            }
            return
        }
        let boundary = !lexing || lex.atBoundary
        if boundary && head.hasPrefix("\\connect ") {
            if let db = Self.connectTarget(String(decoding: head, as: UTF8.self)) {
                database = db
                counts[db, default: 0] += 0
            }
        } else if boundary && !cut && head.hasPrefix("COPY ") && head.hasSuffix(" FROM stdin;") {
            inCopy = true
        } else if boundary && head.first == 0x5C {
            // Another meta-command (\restrict): not SQL.
        } else if cut {
            lexing = false
        } else if lexing {
            lex.feed(head)
        }
    }

    /// The database a `\connect` line names: `\connect shop`, `\connect "Shop"`, or
    /// `\connect -reuse-previous=on "dbname='it''s'"`.
    package static func connectTarget(_ line: String) -> String? {
        var rest = Substring(line.dropFirst("\\connect ".count))
        if rest.hasPrefix("-reuse-previous=on ") { rest = rest.dropFirst("-reuse-previous=on ".count) }
        if let r = rest.firstRange(of: "dbname='") {
            var out = ""
            var s = rest[r.upperBound...]
            while let c = s.first {
                s = s.dropFirst()
                if c == "'" {
                    if s.first == "'" { out.append("'"); s = s.dropFirst(); continue }
                    return out
                }
                if c == "\\", let n = s.first { out.append(n); s = s.dropFirst(); continue }
                out.append(c)
            }
            return nil
        }
        let t = rest.trimmingCharacters(in: " ")
        if t.hasPrefix("\"") && t.hasSuffix("\"") && t.count >= 2 {
            return String(t.dropFirst().dropLast()).replacing("\"\"", with: "\"")
        }
        return t.isEmpty ? nil : String(t)
    }
}

/// Rows per database in a `mariadb-dump --all-databases` script: the tuples of every
/// `INSERT INTO ... VALUES (...),(...);` statement (on one line, or one tuple per line as
/// MariaDB 10.11 writes them), attributed to the database of the last `USE`. The `mysql`
/// system schema is left out: its statistics tables change on their own.
package struct MySQLDumpCounter: Sendable {
    private var lines = LineSplitter(keep: 4096)
    private var database: String?
    // Scanner state: whether the current line may start an INSERT (its first bytes), and
    // inside an INSERT statement, quoting and parenthesis depth.
    private var detecting = false
    private var prefix: [UInt8] = []
    private var inInsert = false
    private var quote: UInt8 = 0
    private var escaped = false
    private var depth = 0
    private var rows: Int64 = 0
    private static let insertPrefix = Array("INSERT INTO ".utf8)
    package private(set) var counts: [String: Int64] = [:]
    package static let excludedSchemas: Set<String> = ["mysql", "information_schema", "performance_schema", "sys"]

    package init() {}

    package mutating func feed(_ buf: UnsafeRawBufferPointer) {
        var l = lines
        l.feed(buf, bytes: { seg, atStart in self.scan(seg, atStart) }, line: { head, _ in self.line(head) })
        lines = l
    }

    package mutating func finish() -> [String: Int64] {
        var l = lines
        l.finish { head, _ in self.line(head) }
        lines = l
        return counts
    }

    private mutating func scan(_ seg: UnsafeRawBufferPointer, _ atStart: Bool) {
        var seg = seg[...]
        if atStart && !inInsert {
            detecting = true
            prefix.removeAll(keepingCapacity: true)
        }
        // Whether the line is an INSERT is known after its first 12 bytes, which a buffer
        // boundary may split.
        if detecting {
            let take = min(Self.insertPrefix.count - prefix.count, seg.count)
            prefix += seg.prefix(take)
            seg = seg.dropFirst(take)
            guard prefix.count == Self.insertPrefix.count else { return }
            detecting = false
            if prefix == Self.insertPrefix {
                inInsert = true
                quote = 0; escaped = false; depth = 0; rows = 0
            }
        }
        guard inInsert, !seg.isEmpty else { return }
        if scanInsert(UnsafeRawBufferPointer(rebasing: seg)) {
            if let db = database, !Self.excludedSchemas.contains(db) { counts[db, default: 0] += rows }
            inInsert = false
        }
    }

    /// Scans part of an INSERT statement; true at its `;`. Most of a dump's bytes are inside
    /// quoted values, which are crossed with memchr (to the closing quote, and to the first
    /// backslash before it) rather than byte by byte: this runs on the agent's read loop,
    /// which the dump tool waits for.
    private mutating func scanInsert(_ seg: UnsafeRawBufferPointer) -> Bool {
        let p = seg.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let n = seg.count
        // The scanner's state in locals for the loop (registers, not stores through self).
        var quote = self.quote, escaped = self.escaped, depth = self.depth, rows = self.rows
        defer { (self.quote, self.escaped, self.depth, self.rows) = (quote, escaped, depth, rows) }
        var i = 0
        // The next closing quote at or after `i` in this buffer (n: none), while it is valid:
        // a value with many escapes is not searched again for it after each one.
        var close = -1
        while i < n {
            if quote != 0 {
                if escaped {
                    escaped = false
                    i += 1
                    continue
                }
                if close < i {
                    // Short values (most of them) end within a few bytes: looked at in place
                    // before a call.
                    var j = i
                    let near = min(n, i + 16)
                    while j < near && p[j] != quote { j += 1 }
                    close = j < near ? j : (memchr(p + j, Int32(quote), n - j).map { UnsafeRawPointer(p).distance(to: $0) } ?? n)
                }
                // Backticks have no backslash escapes (a backtick is doubled).
                if quote != 0x60, close > i, let b = memchr(p + i, 0x5C, close - i) {
                    escaped = true
                    i = UnsafeRawPointer(p).distance(to: b) + 1
                    continue
                }
                guard close < n else { return false }
                quote = 0
                i = close + 1
                continue
            }
            let b = p[i]
            i += 1
            // Digits, commas and the like: nothing to do.
            guard b < 0x30 || b == 0x3B || b == 0x60 else { continue }
            switch b {
            case 0x27, 0x60, 0x22: quote = b  // ' ` "
            case 0x28:  // (
                if depth == 0 { rows += 1 }
                depth += 1
            case 0x29: depth -= 1  // )
            case 0x3B where depth == 0: return true  // ; ends the statement
            default: break
            }
        }
        return false
    }

    private mutating func line(_ head: UnsafeRawBufferPointer) {
        detecting = false
        if inInsert { return }
        if head.hasPrefix("USE `") && head.hasSuffix("`;") {
            let name = String(decoding: head[5..<(head.count - 2)], as: UTF8.self).replacing("``", with: "`")
            database = name
            if !Self.excludedSchemas.contains(name) { counts[name, default: 0] += 0 }
        }
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> Substring {
        var s = self
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return s
    }
}
