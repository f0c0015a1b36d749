// The dashboard's stylesheet and script, compiled in: no build step, nothing fetched from
// the network, one binary to install. The script only calls the REST API (/api/v1) with
// the session's cookie and the page's CSRF token, and follows jobs by Server-Sent Events.
enum DashboardAssets {
    static let icon = """
        <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect x="1" y="3" width="14" height="4" rx="1" fill="#2457c5"/><rect x="1" y="9" width="14" height="4" rx="1" fill="#2457c5"/></svg>
        """

    static let css = """
        :root { --fg: #1d2330; --muted: #667085; --line: #d9dee7; --ok: #137333; --warn: #9a6700; --err: #b3261e; --accent: #2457c5; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: #f6f7f9; }
        header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; padding: .6rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
        header nav { display: flex; gap: .8rem; flex: 1; }
        header nav a[aria-current] { font-weight: 600; text-decoration: underline; }
        .brand { font-weight: 700; color: var(--fg); text-decoration: none; }
        a { color: var(--accent); }
        main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
        h1 { font-size: 1.4rem; margin: .2rem 0 1rem; word-break: break-all; }
        h2 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; }
        section { margin-bottom: 1rem; }
        .scroll { overflow-x: auto; }
        table { border-collapse: collapse; width: 100%; background: #fff; }
        th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { font-size: .85rem; color: var(--muted); font-weight: 600; }
        .muted { color: var(--muted); }
        .badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .8rem; background: #e8eaef; }
        .badge.ok, .badge.running { background: #e6f4ea; color: var(--ok); }
        .badge.warning, .badge.warnings, .badge.degraded, .badge.cancelled { background: #fef7e0; color: var(--warn); }
        .badge.error, .badge.failed, .badge.denied, .badge.down { background: #fce8e6; color: var(--err); }
        ul.nodes, ul.problems { margin: 0; padding-left: 1rem; }
        li.primary { font-weight: 600; }
        .error { color: var(--err); white-space: pre-wrap; }
        .buttons { display: flex; flex-wrap: wrap; gap: .5rem; margin: .8rem 0; }
        button, .button { font: inherit; padding: .45rem .9rem; border: 1px solid var(--accent); border-radius: .4rem; background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; }
        button[type=button], header button { background: #fff; color: var(--accent); }
        button:disabled { opacity: .45; cursor: not-allowed; }
        dialog { max-width: 38rem; width: calc(100% - 2rem); border: 1px solid var(--line); border-radius: .6rem; }
        dialog label, .card label { display: block; margin: .5rem 0; }
        input, select { font: inherit; padding: .3rem .4rem; max-width: 100%; }
        dl.policy { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
        dl.policy dd { margin: 0; }
        .job { background: #fff; border: 1px solid var(--line); padding: .6rem; border-radius: .4rem; margin: .5rem 0; }
        .job progress { width: 12rem; max-width: 100%; vertical-align: middle; }
        .charts { display: flex; flex-wrap: wrap; gap: 1rem; }
        figure { margin: 0; background: #fff; border: 1px solid var(--line); padding: .5rem; flex: 1 1 18rem; color: var(--accent); }
        figcaption { color: var(--fg); font-size: .85rem; }
        svg { width: 100%; height: auto; }
        svg text { fill: var(--muted); }
        form.inline { margin: .5rem 0; }
        .plan pre { white-space: pre-wrap; }
        body.signin main { max-width: 26rem; }
        .card { background: #fff; border: 1px solid var(--line); border-radius: .6rem; padding: .8rem 1rem; margin: 1rem 0; }
        .card input { width: 100%; }
        @media (max-width: 640px) {
          main { padding: .6rem; }
          th, td { padding: .3rem; font-size: .9rem; }
          header nav { order: 3; flex-basis: 100%; }
        }
        """

    static let script = """
        "use strict";
        const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
        const enc = (layer) => layer.split("/").map(encodeURIComponent).join("/");

        async function api(method, path, body) {
          const r = await fetch(path, {
            method, credentials: "same-origin",
            headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          const text = await r.text();
          let data = null;
          try { data = JSON.parse(text); } catch (e) { data = text; }
          if (!r.ok) {
            const msg = data && data.error ? data.error + (data.hint ? " (" + data.hint + ")" : "") : "HTTP " + r.status;
            throw new Error(msg);
          }
          return data;
        }

        function size(b) {
          const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
          while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
          return i ? b.toFixed(1) + " " + u[i] : b + " B";
        }

        // A job's progress, live: one `job` event per change until it ends.
        function follow(id, box) {
          box.hidden = false;
          box.dataset.job = id;
          const stage = box.querySelector(".stage"), bar = box.querySelector("progress");
          const bytes = box.querySelector(".bytes"), state = box.querySelector(".state");
          const es = new EventSource("/api/v1/jobs/" + encodeURIComponent(id) + "/events");
          es.addEventListener("job", (ev) => {
            const j = JSON.parse(ev.data);
            const p = j.progress;
            stage.textContent = p ? p.stage : j.kind + " waiting to start";
            if (p && p.percent != null) bar.value = p.percent; else bar.removeAttribute("value");
            bytes.textContent = p ? size(p.bytes) + (p.total ? " of " + size(p.total) : "") : "";
            state.textContent = j.state;
            state.className = "state badge " + j.state;
            box.dataset.state = j.state;
            if (j.state !== "running") {
              if (j.state === "ok" || j.state === "warnings") bar.value = 100;
              es.close();
              const err = document.getElementById("job-error");
              if (j.error && err) { err.textContent = j.error; err.hidden = false; }
              else if (j.error) { state.title = j.error; bytes.textContent += " " + j.error; }
            }
          });
          es.onerror = () => { if (box.dataset.state !== "running") es.close(); };
        }

        function show(el, text, isError) {
          el.textContent = text;
          el.className = isError ? "result error" : "result";
        }

        document.addEventListener("DOMContentLoaded", () => {
          const jobBox = document.getElementById("job");
          const buttons = document.querySelector(".buttons[data-layer]");
          const layer = buttons ? buttons.dataset.layer : null;

          document.querySelectorAll("[data-follow]").forEach((box) => follow(box.dataset.follow, box));
          document.querySelectorAll("[data-close]").forEach((b) => b.addEventListener("click", () => b.closest("dialog").close()));
          document.querySelectorAll("[data-open]").forEach((b) => b.addEventListener("click", () => document.getElementById(b.dataset.open).showModal()));

          document.querySelectorAll("[data-cancel]").forEach((b) => b.addEventListener("click", async () => {
            try { await api("POST", "/api/v1/jobs/" + encodeURIComponent(b.dataset.cancel) + "/cancel"); b.disabled = true; }
            catch (e) { alert(e.message); }
          }));

          // Backup Now: the run is queued; its job shows the progress.
          document.querySelector("[data-backup-now]")?.addEventListener("click", async (ev) => {
            ev.target.disabled = true;
            try {
              const q = await api("POST", "/api/v1/layers/" + enc(layer) + "/backup");
              if (q.job) follow(q.job.id, jobBox);
            } catch (e) { jobBox.hidden = false; jobBox.querySelector(".state").textContent = e.message; }
            finally { ev.target.disabled = false; }
          });

          // Install or Configure: the form's filled fields, as the CLI's options.
          document.querySelector("form[data-addon]")?.addEventListener("submit", async (ev) => {
            ev.preventDefault();
            const f = ev.target, out = f.querySelector(".result"), body = {};
            for (const el of f.elements) {
              if (!el.name) continue;
              if (el.type === "checkbox") { body[el.name] = el.checked; continue; }
              if (el.value === "") continue;
              body[el.name] = el.name === "keep" ? Number(el.value) : el.value;
            }
            if (body.time) delete body.schedule;
            try {
              await api("POST", "/api/v1/layers/" + enc(f.dataset.layer) + "/addon/" + f.dataset.addon, body);
              show(out, "Saved.", false);
              location.reload();
            } catch (e) { show(out, e.message, true); }
          });

          document.querySelector("[data-uninstall]")?.addEventListener("click", async () => {
            const typed = prompt("Uninstalling removes the backup policy of " + layer + " (its backups stay on the storage). Type the layer's name to confirm:");
            if (typed === null) return;
            try { await api("POST", "/api/v1/layers/" + enc(layer) + "/addon/uninstall", { confirm: typed }); location.reload(); }
            catch (e) { alert(e.message); }
          });

          // Restore: the plan first (what is restored where, the warnings), then the layer's
          // name typed to confirm, then the job's progress.
          const dialog = document.getElementById("restore-dialog");
          let chosen = null;
          document.querySelectorAll("[data-restore]").forEach((b) => b.addEventListener("click", async () => {
            chosen = { backup: b.dataset.backup, from: b.dataset.from, storage: b.dataset.storage || undefined };
            const plan = dialog.querySelector(".plan"), input = document.getElementById("restore-confirm"), go = document.getElementById("restore-go");
            plan.textContent = "Reading the plan…"; plan.className = "plan"; delete plan.dataset.ready; input.value = ""; go.disabled = true;
            dialog.showModal();
            try {
              const p = await api("POST", "/api/v1/layers/" + enc(dialog.dataset.layer) + "/restore/plan", chosen);
              const targets = (p.targets || []).map((t) => t.node + " (" + t.role + ")").join(", ");
              plan.innerHTML = "";
              const d = document.createElement("dl"); d.className = "policy";
              for (const [k, v] of [["Backup", p.backup], ["Taken from", p.source], ["Restored onto", targets], ["Data", size(p.rawBytes || 0)], ["Manifest read from", p.manifestSource || ""]]) {
                const dt = document.createElement("dt"); dt.textContent = k; const dd = document.createElement("dd"); dd.textContent = v; d.append(dt, dd);
              }
              plan.append(d);
              if ((p.warnings || []).length) {
                const u = document.createElement("ul"); u.className = "problems";
                for (const w of p.warnings) { const li = document.createElement("li"); li.textContent = w; u.append(li); }
                plan.append(u);
              }
              plan.dataset.ready = "1";
            } catch (e) { plan.textContent = e.message; plan.className = "plan error"; }
          }));
          document.getElementById("restore-confirm")?.addEventListener("input", (ev) => {
            document.getElementById("restore-go").disabled = ev.target.value !== dialog.dataset.layer || !dialog.querySelector(".plan").dataset.ready;
          });
          document.getElementById("restore-go")?.addEventListener("click", async () => {
            try {
              const job = await api("POST", "/api/v1/layers/" + enc(dialog.dataset.layer) + "/restore", { ...chosen, confirm: document.getElementById("restore-confirm").value });
              dialog.close();
              follow(job.id, jobBox);
            } catch (e) { const plan = dialog.querySelector(".plan"); plan.textContent = e.message; plan.className = "plan error"; }
          });
        });
        """
}
