// The dump and restore tools each engine's agent runs, and the credential files that carry
// the password to them. A password reaches a tool only through a file (mode 0600, in a
// folder of mode 0700 that the agent removes afterwards): never argv, which every user can
// read in /proc/*/cmdline, and never the environment (/proc/*/environ, inherited by
// everything the tool starts).

package enum CredentialFiles {
    package enum Problem: Error, Equatable { case newline }

    /// A libpq password file (`passfile=`) matching any host, port, database and user.
    package static func pgpass(password: String) throws(Problem) -> String {
        guard !password.contains("\n"), !password.contains("\r") else { throw .newline }
        let escaped = password.replacing("\\", with: "\\\\").replacing(":", with: "\\:")
        return "*:*:*:*:\(escaped)\n"
    }

    /// A MariaDB/MySQL option file (`--defaults-extra-file=`) with the client's user and
    /// password. Values are quoted; a backslash is written doubled (the option-file escape).
    package static func mysqlOptions(user: String?, password: String) throws(Problem) -> String {
        guard !password.contains("\n"), !password.contains("\r"), !(user ?? "").contains("\n") else { throw .newline }
        func quoted(_ v: String) -> String {
            let e = v.replacing("\\", with: "\\\\")
            return e.contains("\"") ? "'\(e)'" : "\"\(e)\""
        }
        var text = "[client]\n"
        if let user { text += "user=\(quoted(user))\n" }
        text += "password=\(quoted(password))\n"
        return text
    }
}

/// Argument lists of the tools (the program first, looked up in PATH by the agent).
package enum ToolCommands {
    /// A libpq connection string; values quoted the libpq way.
    package static func conninfo(_ pairs: [(String, String)]) -> String {
        pairs.map { k, v in "\(k)='\(v.replacing("\\", with: "\\\\").replacing("'", with: "\\'"))'" }.joined(separator: " ")
    }

    static func pgConninfo(host: String, port: Int, user: String?, passfile: String?, application: String, extra: [(String, String)] = []) -> String {
        var p: [(String, String)] = [("host", host), ("port", String(port)), ("dbname", "postgres"), ("application_name", application)]
        if let user { p.append(("user", user)) }
        if let passfile { p.append(("passfile", passfile)) }
        return conninfo(p + extra)
    }

    /// The whole cluster, roles and all databases, as one script that drops what it
    /// recreates.
    package static func pgDumpall(host: String, port: Int, user: String?, passfile: String?) -> [String] {
        [
            "pg_dumpall", "--dbname=" + pgConninfo(host: host, port: port, user: user, passfile: passfile, application: "stowage-dump"),
            "--clean", "--if-exists", "--no-password",
        ]
    }

    /// Applies a script on stdin, stopping at the first error; notices (every DROP ... IF
    /// EXISTS of something absent) stay quiet.
    package static func psqlApply(host: String, port: Int, user: String?, passfile: String?) -> [String] {
        [
            "psql",
            "--dbname="
                + pgConninfo(
                    host: host, port: port, user: user, passfile: passfile, application: "stowage-restore",
                    extra: [("options", "-c client_min_messages=warning")]),
            "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1", "--file=-",
        ]
    }

    /// Every database, consistent (one transaction), with routines, events, triggers, users
    /// and grants (reloaded by FLUSH PRIVILEGES at the end). `gtid_slave_pos` is replication
    /// state of the node dumped, not data: restoring it would rewind the target's. On a
    /// replica the primary's binlog position and GTID are recorded (commented out, so a
    /// restore never repoints replication).
    package static func mysqlDump(program: String, optionsFile: String, host: String, port: Int, fromReplica: Bool) -> [String] {
        var a = [
            program, "--defaults-extra-file=\(optionsFile)", "--host=\(host)", "--port=\(port)", "--protocol=TCP",
            "--all-databases", "--single-transaction", "--routines", "--events", "--triggers",
            "--flush-privileges", "--hex-blob", "--skip-comments", "--ignore-table=mysql.gtid_slave_pos",
        ]
        if fromReplica { a += ["--dump-slave=2", "--gtid"] }
        return a
    }

    package static func mysqlApply(program: String, optionsFile: String, host: String, port: Int) -> [String] {
        [
            program, "--defaults-extra-file=\(optionsFile)", "--host=\(host)", "--port=\(port)", "--protocol=TCP",
            "--batch", "--binary-mode",
        ]
    }

    /// A private Redis server that loads an RDB and listens only on a socket in `dir`.
    package static func redisScratchServer(dir: String) -> [String] {
        [
            "redis-server", "--port", "0", "--unixsocket", "\(dir)/redis.sock", "--unixsocketperm", "700",
            "--dir", dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
            "--logfile", "\(dir)/redis.log", "--daemonize", "no", "--databases", "256",
        ]
    }
}
