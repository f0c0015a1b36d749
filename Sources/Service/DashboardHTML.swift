// The dashboard's pages as pure functions of what they show (tested without a server): every
// value from the fleet, the catalog or a request is escaped here, in `esc`, and nowhere else.
// The pages carry no inline script or style (the Content-Security-Policy forbids both); the
// buttons' behaviour is in DashboardAssets' script, which calls the REST API.
import Foundation
import Scheduling

enum DashboardHTML {
    /// Text made safe for an element's content or a quoted attribute.
    static func esc(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A layer's page address (its two names escaped for a path).
    static func layerPath(_ id: String) -> String {
        "/ui/layers/" + id.split(separator: "/").map { $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? "" }.joined(separator: "/")
    }

    struct Viewer {
        var name: String
        var role: String
        var csrf: String
    }

    /// The frame of every signed-in page: the menu, who is signed in, and the CSRF token the
    /// script sends with each change.
    static func page(_ title: String, viewer: Viewer, active: String, _ body: String) -> String {
        let links = [("Fleet", "/ui/"), ("Runs", "/ui/runs"), ("Jobs", "/ui/jobs"), ("Audit", "/ui/audit")].map { (label, href) in
            "<a href=\"\(href)\"\(label == active ? " aria-current=\"page\"" : "")>\(label)</a>"
        }.joined()
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="csrf-token" content="\(esc(viewer.csrf))">
            <title>\(esc(title)) · Stowage</title>
            <link rel="stylesheet" href="/ui/static/app.css"><script src="/ui/static/app.js" defer></script>
            </head><body>
            <header><a class="brand" href="/ui/">Stowage</a><nav>\(links)</nav>
            <form class="signout" method="post" action="/ui/logout"><input type="hidden" name="csrf" value="\(esc(viewer.csrf))">
            <span class="who">\(esc(viewer.name)) · \(esc(viewer.role))</span> <button type="submit">Sign out</button></form></header>
            <main><h1>\(esc(title))</h1>
            \(body)
            </main></body></html>
            """
    }

    static func signIn(message: String?) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Sign in · Stowage</title><link rel="stylesheet" href="/ui/static/app.css"></head>
        <body class="signin"><main><h1>Stowage</h1>
        \(message.map { "<p class=\"error\" role=\"alert\">\(esc($0))</p>" } ?? "")
        <form method="post" action="/ui/login" class="card">
        <h2>With a password</h2>
        <label>Name <input name="name" id="name" autocomplete="username"></label>
        <label>Password <input name="password" id="password" type="password" autocomplete="current-password"></label>
        <button type="submit" id="signin-password">Sign in</button></form>
        <form method="post" action="/ui/login" class="card">
        <h2>With an API token</h2>
        <label>Token <input name="token" id="token" type="password" autocomplete="off"></label>
        <button type="submit" id="signin-token">Sign in</button></form>
        </main></body></html>
        """
    }

    static func badge(_ health: String) -> String { "<span class=\"badge \(esc(health))\">\(esc(health))</span>" }

    /// The nodes, the one backups and restores use marked as primary.
    static func topology(_ l: LayerStatus) -> String {
        guard let nodes = l.nodes, !nodes.isEmpty else { return "<span class=\"muted\">\(esc(l.topology))</span>" }
        return "<ul class=\"nodes\">"
            + nodes.map { n in
                let lag = n.lagSeconds.map { String(format: ", lag %.0f s", $0) } ?? ""
                return "<li class=\"\(n.primary ? "primary" : "node")\"\(n.primary ? " title=\"backups and restores use this node\"" : "")>"
                    + "\(n.primary ? "★ " : "")<b>\(esc(n.name))</b> \(esc(n.role))<span class=\"muted\"> \(n.state == n.role ? "" : esc(n.state))\(lag)</span></li>"
            }.joined() + "</ul>"
    }

    static func iso(_ d: Date) -> String { d.formatted(.iso8601) }

    /// "3 h ago" from an ISO 8601 instant (as the status document has it).
    static func age(_ stamp: String?, now: Date) -> String {
        age(stamp.flatMap { try? Date($0, strategy: .iso8601) }, now: now)
    }

    static func age(_ date: Date?, now: Date) -> String {
        guard let d = date else { return "never" }
        let stamp = iso(d)
        let s = max(0, now.timeIntervalSince(d))
        let text = s < 120 ? "\(Int(s)) s" : s < 7200 ? "\(Int(s / 60)) min" : s < 172800 ? "\(Int(s / 3600)) h" : "\(Int(s / 86400)) d"
        return "<time datetime=\"\(esc(stamp))\" title=\"\(esc(stamp))\">\(text) ago</time>"
    }

    static func fleet(_ report: FleetReport, now: Date) -> String {
        var rows = ""
        for l in report.layers {
            // The topology's findings are among the problems already ("topology: ...").
            let problems = l.problems.map(\.message) + l.findings.filter { f in !l.problems.contains { $0.message.hasSuffix(f) } }
            rows += """
                <tr data-layer="\(esc(l.layer))"><td><a href="\(layerPath(l.layer))">\(esc(l.layer))</a></td><td>\(esc(l.engine))</td>
                <td>\(badge(l.health))</td><td>\(topology(l))</td>
                <td>\(l.lastRun.map { "\(age($0.started, now: now)) <span class=\"muted\">\(esc($0.outcome))</span>" } ?? "never")</td>
                <td>\(l.policy == nil ? "<span class=\"muted\">add-on not installed</span>" : esc(l.nextRun ?? "paused"))</td>
                <td>\(problems.isEmpty ? "" : "<ul class=\"problems\">" + problems.map { "<li>\(esc($0))</li>" }.joined() + "</ul>")</td></tr>
                """
        }
        let scheduler = report.scheduler.map { "<p class=\"muted\">Scheduler: \(esc($0.state.rawValue))</p>" } ?? ""
        return """
            \(scheduler)\(report.problems.isEmpty ? "" : "<ul class=\"problems\">" + report.problems.map { "<li>\(esc($0.message))</li>" }.joined() + "</ul>")
            <div class="scroll"><table id="fleet"><thead><tr><th>Layer</th><th>Engine</th><th>Health</th><th>Topology</th><th>Last backup</th><th>Next run</th><th>Findings</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            """
    }

    /// The storages: each node up or down, its free space, when last checked.
    static func storages(_ list: [StorageHealth]) -> String {
        var rows = ""
        for st in list {
            for n in st.nodes {
                let state = n.up.map { $0 ? "ok" : "error" } ?? "unknown"
                let space = n.freeBytes.map { f in formatSize(f) + (n.totalBytes.map { " of " + formatSize($0) } ?? "") } ?? ""
                rows += "<tr><td>\(esc(st.name))</td><td>\(esc(n.name))</td><td>\(badge(n.up == nil ? "unknown" : state == "ok" ? "ok" : "down"))</td>"
                rows +=
                    "<td>\(space)</td><td>\(n.checked.map { esc(iso($0)) } ?? "not yet")</td><td>\(st.quorum) of \(st.nodes.count)</td></tr>"
            }
        }
        return """
            <h2>Storages</h2><div class="scroll"><table id="storages"><thead><tr><th>Storage</th><th>Node</th><th>State</th><th>Free</th><th>Checked</th><th>Write quorum</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            """
    }

    struct LayerPage {
        var status: LayerStatus
        var environments: [String]
        var storages: [String]
        var from: String
        var backups: [BackupRow]
        var backupsError: String?
        var runs: [RunRecord]
        var jobs: [APIJob]
        var canBackup: Bool
        var canAdmin: Bool
    }

    struct BackupRow {
        var layer: String
        var name: String
        var started: String
        var sourceNode: String
        var rawBytes: Int64
        var storedBytes: Int64
        var replicas: [String]
        var health: String
        var storage: String
    }

    static func layer(_ p: LayerPage, now: Date) -> String {
        let l = p.status
        let installed = l.policy != nil
        let policy =
            l.policy.map {
                "<dl class=\"policy\"><dt>Schedule</dt><dd>\(esc($0.schedule))</dd><dt>Storage</dt><dd>\(esc($0.storage))</dd><dt>Keep</dt><dd>\($0.keep)</dd>"
                    + "<dt>Source</dt><dd>\(esc($0.source))</dd><dt>Scheduled backups</dt><dd>\($0.enabled ? "on" : "paused")</dd>"
                    + "<dt>Next run</dt><dd>\(esc(l.nextRun ?? "-"))</dd></dl>"
            } ?? "<p class=\"muted\">The add-on is not installed on this layer: no scheduled backups.</p>"
        let disabled = " disabled title=\"your role cannot do this\""
        let notInstalled = " disabled title=\"install the add-on first\""
        let buttons = """
            <div class="buttons" data-layer="\(esc(l.layer))">
            <button id="backup-now" data-backup-now\(!installed ? notInstalled : p.canBackup ? "" : disabled)>Backup Now</button>
            <button id="configure" data-open="policy-dialog"\(p.canAdmin ? "" : disabled)>\(installed ? "Configure" : "Install")</button>
            <a class="button" id="restore" href="#backups">Restore</a>
            <button id="uninstall" data-uninstall\(!installed ? notInstalled : p.canAdmin ? "" : disabled)>Uninstall</button>
            </div>
            """
        let storages = p.storages.map { "<option\($0 == l.policy?.storage ? " selected" : "")>\(esc($0))</option>" }.joined()
        let form = """
            <dialog id="policy-dialog"><form data-addon="\(installed ? "configure" : "install")" data-layer="\(esc(l.layer))">
            <h2>\(installed ? "Configure" : "Install") the add-on on \(esc(l.layer))</h2>
            <label>Schedule <input name="schedule" placeholder="daily, hourly, weekly, monthly or cron (UTC)" value="\(esc(l.policy?.schedule ?? "daily"))"></label>
            <p class="muted">or a custom time: <label>Time <input name="time" placeholder="HH:MM"></label> <label>Days <input name="days" placeholder="mon-fri"></label>
            <label>Time zone <input name="tz" placeholder="Europe/Berlin"></label></p>
            <label>Storage <select name="storage">\(storages)</select></label>
            <label>Backups to keep <input name="keep" type="number" min="1" max="10000" value="\(l.policy?.keep ?? 7)"></label>
            <label>Database user <input name="dbUser" placeholder="from the inventory"></label>
            \(installed ? "<label><input type=\"checkbox\" name=\"enabled\"\(l.policy?.enabled == true ? " checked" : "")> scheduled backups on</label>" : "")
            <p class="result" role="status"></p>
            <div class="buttons"><button type="submit" id="policy-save">\(installed ? "Apply" : "Install")</button><button type="button" data-close>Cancel</button></div>
            </form></dialog>
            """
        let envOptions = p.environments.map { "<option\($0 == p.from ? " selected" : "")>\(esc($0))</option>" }.joined()
        var rows = ""
        for b in p.backups {
            rows += """
                <tr><td>\(esc(b.name))</td><td>\(esc(b.layer))</td><td>\(esc(b.sourceNode))</td><td>\(formatSize(b.rawBytes))</td><td>\(formatSize(b.storedBytes))</td>
                <td>\(badge(b.health)) <span class="muted">\(esc(b.replicas.joined(separator: ", ")))</span></td>
                <td><button data-restore data-backup="\(esc(b.name))" data-from="\(esc(b.layer))" data-storage="\(esc(b.storage))"\(p.canBackup ? "" : disabled)>Restore…</button></td></tr>
                """
        }
        let backups = """
            <section id="backups"><h2>Backups</h2>
            <form method="get" class="inline"><label>Restore from <select name="from" id="restore-from">\(envOptions)</select></label> <button type="submit">Show</button></form>
            \(p.backupsError.map { "<p class=\"error\">\(esc($0))</p>" } ?? "")
            <div class="scroll"><table id="backup-list"><thead><tr><th>Backup</th><th>From</th><th>Source node</th><th>Data</th><th>Stored</th><th>Replicas</th><th></th></tr></thead>
            <tbody>\(rows.isEmpty ? "<tr><td colspan=\"7\" class=\"muted\">no backups of \(esc(p.from)) on this storage</td></tr>" : rows)</tbody></table></div></section>
            <dialog id="restore-dialog" data-layer="\(esc(l.layer))"><h2>Restore \(esc(l.layer))</h2>
            <div class="plan" role="status">Reading the plan…</div>
            <label>To confirm, type the layer's name, <b>\(esc(l.layer))</b>: <input id="restore-confirm" autocomplete="off"></label>
            <div class="buttons"><button id="restore-go" disabled>Restore</button><button type="button" data-close>Cancel</button></div>
            </dialog>
            """
        let jobs = p.jobs.isEmpty ? "" : "<section><h2>Jobs</h2>\(jobList(p.jobs))</section>"
        return """
            <section class="summary">\(badge(l.health)) <span>\(esc(l.engine))</span>\(topology(l))
            \(l.problems.isEmpty ? "" : "<ul class=\"problems\">" + l.problems.map { "<li>\(esc($0.message))</li>" }.joined() + "</ul>")</section>
            \(buttons)
            <div id="job" class="job" hidden><span class="stage"></span> <progress max="100"></progress> <span class="bytes"></span> <span class="state"></span></div>
            <section><h2>Policy</h2>\(policy)</section>
            \(form)\(backups)\(jobs)
            <section><h2>History</h2>\(charts(p.runs))\(runTable(p.runs, now: now))</section>
            """
    }

    static func jobList(_ jobs: [APIJob]) -> String {
        "<div class=\"scroll\"><table class=\"jobs\"><thead><tr><th>Job</th><th>Kind</th><th>Layer</th><th>Started</th><th>State</th><th>Progress</th></tr></thead><tbody>"
            + jobs.map { j in
                "<tr><td><a href=\"/ui/jobs/\(esc(j.id))\">\(esc(j.id))</a></td><td>\(esc(j.kind))</td><td>\(esc(j.layer))</td>"
                    + "<td>\(esc(iso(j.started)))</td><td>\(badge(j.state.rawValue))</td>"
                    + "<td>\(j.progress.map { "\(esc($0.stage)) \(formatSize($0.bytes))\($0.percent.map { String(format: " (%.0f%%)", $0) } ?? "")" } ?? "")</td></tr>"
            }.joined() + "</tbody></table></div>"
    }

    static func job(_ j: APIJob) -> String {
        """
        <p>\(esc(j.kind)) of <a href="\(j.layer.hasPrefix("storage:") ? "/ui/" : layerPath(j.layer))">\(esc(j.layer))</a>, started by \(esc(j.startedBy))</p>
        <div id="job" class="job" data-follow="\(esc(j.id))"><span class="stage">\(esc(j.progress?.stage ?? ""))</span> <progress max="100"></progress>
        <span class="bytes"></span> <span class="state">\(badge(j.state.rawValue))</span></div>
        <pre class="error" id="job-error"\(j.error == nil ? " hidden" : "")>\(esc(j.error ?? ""))</pre>
        \(j.state == .running ? "<button data-cancel=\"\(esc(j.id))\" id=\"cancel\">Cancel</button>" : "")
        """
    }

    static func runTable(_ runs: [RunRecord], now: Date) -> String {
        "<div class=\"scroll\"><table class=\"runs\"><thead><tr><th>Started</th><th>Layer</th><th>Trigger</th><th>Outcome</th><th>Seconds</th><th>Stored</th><th>Backup</th><th>Error</th></tr></thead><tbody>"
            + runs.map { r in
                "<tr><td>\(age(r.started, now: now))</td><td>\(esc(r.layer))</td><td>\(esc(r.trigger))</td>"
                    + "<td>\(badge(r.outcome.rawValue))</td><td>\(r.seconds.map { String(format: "%.1f", $0) } ?? "")</td>"
                    + "<td>\(r.storedBytes.map(formatSize) ?? "")</td><td>\(esc(r.backup ?? ""))</td><td>\(esc(r.error ?? ""))</td></tr>"
            }.joined() + "</tbody></table></div>"
    }

    /// Duration and stored size of the backups over time, oldest left.
    static func charts(_ runs: [RunRecord]) -> String {
        let backups = runs.filter { $0.trigger != "restore" && $0.ended != nil }.sorted { $0.started < $1.started }
        guard backups.count >= 2 else { return "<p class=\"muted\">Charts appear after two runs.</p>" }
        let duration = backups.compactMap { r in r.seconds.map { (r.started, $0) } }
        let stored = backups.compactMap { r in r.storedBytes.map { (r.started, Double($0)) } }
        return "<div class=\"charts\">" + chart("Duration (s)", duration, format: { String(format: "%.1f s", $0) }, id: "chart-duration")
            + chart("Stored size", stored, format: { formatSize(Int64($0)) }, id: "chart-stored") + "</div>"
    }

    /// A line chart as inline SVG: the points scaled into a 300×100 box, min and max labelled.
    static func chart(_ title: String, _ points: [(Date, Double)], format: (Double) -> String, id: String) -> String {
        guard let first = points.first?.0, let last = points.last?.0 else { return "" }
        let lo = min(0, points.map(\.1).min() ?? 0), hi = max(points.map(\.1).max() ?? 1, lo + 1e-9)
        let span = max(last.timeIntervalSince(first), 1)
        let coords = points.map { (d, v) in
            String(format: "%.1f,%.1f", 10 + 280 * d.timeIntervalSince(first) / span, 90 - 80 * (v - lo) / (hi - lo))
        }
        return """
            <figure id="\(id)"><figcaption>\(esc(title))</figcaption>
            <svg viewBox="0 0 300 100" role="img" aria-label="\(esc(title)) over time"><title>\(esc(title))</title>
            <polyline fill="none" stroke="currentColor" stroke-width="1.5" points="\(coords.joined(separator: " "))"/>
            <text x="2" y="10" font-size="8">\(esc(format(hi)))</text><text x="2" y="98" font-size="8">\(esc(format(lo)))</text></svg></figure>
            """
    }

    static func audit(_ records: [AuditRecord]) -> String {
        "<div class=\"scroll\"><table id=\"audit\"><thead><tr><th>When</th><th>Who</th><th>Action</th><th>Request</th><th>Target</th><th>Status</th><th>Outcome</th><th>Detail</th></tr></thead><tbody>"
            + records.map { a in
                "<tr><td>\(esc(iso(a.at)))</td><td>\(esc(a.tokenName)) <span class=\"muted\">\(esc(a.tokenID))</span></td>"
                    + "<td>\(esc(a.action))</td><td>\(esc(a.method)) \(esc(a.path))</td><td>\(esc(a.target ?? ""))</td><td>\(a.status)</td><td>\(badge(a.outcome))</td><td>\(esc(a.detail ?? ""))</td></tr>"
            }.joined() + "</tbody></table></div>"
    }

    static func message(_ text: String) -> String { "<p class=\"error\" role=\"alert\">\(esc(text))</p>" }

    static func formatSize(_ b: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(b)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(b) B" : String(format: "%.1f", v) + " " + units[i]
    }
}
