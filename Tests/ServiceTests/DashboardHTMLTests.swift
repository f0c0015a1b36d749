// The dashboard's pages as pure functions: what comes from the fleet, the catalog or a request
// is escaped; the primary is marked; the buttons a role may not press are disabled; the charts
// scale their points into the box.
import Foundation
import Scheduling
import Testing

@testable import Service

@Suite struct DashboardHTMLTests {
    /// A layer's status as `stowage status --json` has it (the type's initializer is the module's own).
    static func layer(_ name: String = "shop/sqldb", policy: Bool = true) -> LayerStatus {
        let policyJSON = policy ? #","policy":{"schedule":"daily","storage":"st","keep":7,"source":"primary","enabled":true}"# : ""
        let json = """
            {"layer":"\(name)","engine":"postgresql","health":"warning","problems":[{"severity":"warning","message":"topology: lag <b>high</b>"}]\(policyJSON),
             "nextRun":"2026-12-08T00:00:00Z","backups":[],"topology":"replicated, primary pg1","findings":["lag <b>high</b>","a second <i>one</i>"],
             "nodes":[{"name":"pg1","role":"primary","primary":true,"state":"2 replicas"},{"name":"pg2<script>","role":"replica","primary":false,"state":"streaming","lagSeconds":3}]}
            """
        return try! JSONDecoder().decode(LayerStatus.self, from: Data(json.utf8))
    }

    @Test func everythingShownIsEscaped() {
        #expect(DashboardHTML.esc(#"<a href="x" onclick='y'>&"#) == "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;")
        let html = DashboardHTML.fleet(
            try! JSONDecoder().decode(FleetReport.self, from: Data(#"{"layers":[],"problems":[]}"#.utf8)).with([Self.layer()]), now: Date())
        #expect(!html.contains("<script>") && html.contains("pg2&lt;script&gt;"))
        #expect(!html.contains("<b>high</b>") && html.contains("lag &lt;b&gt;high&lt;/b&gt;"))
        // A finding already among the problems is shown once.
        #expect(html.components(separatedBy: "lag &lt;b&gt;high").count == 2, "\(html)")
        #expect(html.contains("a second &lt;i&gt;one&lt;/i&gt;"))
    }

    @Test func thePrimaryIsMarked() {
        let html = DashboardHTML.topology(Self.layer())
        #expect(html.contains(#"<li class="primary" title="backups and restores use this node">★ <b>pg1</b>"#), "\(html)")
        #expect(html.contains(#"<li class="node"><b>pg2&lt;script&gt;</b> replica"#) && html.contains("lag 3 s"), "\(html)")
    }

    @Test func buttonsFollowTheRoleAndTheAddOn() {
        func page(_ installed: Bool, backup: Bool, admin: Bool) -> String {
            DashboardHTML.layer(
                .init(
                    status: Self.layer(policy: installed), environments: ["shop", "staging"], storages: ["st"], from: "staging", backups: [],
                    backupsError: nil, runs: [], jobs: [], canBackup: backup, canAdmin: admin), now: Date())
        }
        let viewer = page(true, backup: false, admin: false)
        #expect(viewer.contains(#"<button id="backup-now" data-backup-now disabled title="your role cannot do this">"#))
        #expect(viewer.contains(#"<button id="configure" data-open="policy-dialog" disabled"#))
        let ops = page(true, backup: true, admin: false)
        #expect(ops.contains(#"<button id="backup-now" data-backup-now>"#) && ops.contains(#"<button id="uninstall" data-uninstall disabled"#))
        let fresh = page(false, backup: true, admin: true)
        #expect(fresh.contains(#"data-backup-now disabled title="install the add-on first""#) && fresh.contains(">Install</button>"))
        #expect(fresh.contains(#"form data-addon="install""#))
        // "Restore from" offers every environment, the chosen one selected.
        #expect(ops.contains("<option selected>staging</option>") && ops.contains("<option>shop</option>"))
    }

    @Test func chartsScaleTheirPointsIntoTheBox() {
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        let svg = DashboardHTML.chart(
            "Duration (s)", [(t0, 0), (t0.addingTimeInterval(50), 5), (t0.addingTimeInterval(100), 10)], format: { "\($0)" }, id: "c")
        #expect(svg.contains(#"points="10.0,90.0 150.0,50.0 290.0,10.0""#), "\(svg)")
        #expect(DashboardHTML.charts([]).contains("after two runs"))
    }

    @Test func sizesReadAsAPersonWould() {
        #expect(DashboardHTML.formatSize(512) == "512 B")
        #expect(DashboardHTML.formatSize(3 << 20) == "3.0 MiB")
    }
}

extension FleetReport {
    func with(_ layers: [LayerStatus]) -> FleetReport {
        var r = self
        r.layers = layers
        return r
    }
}
