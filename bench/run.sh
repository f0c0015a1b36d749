#!/usr/bin/env bash
# Stowage against the add-on's own pipeline and against the physical limit (issue 7).
#
#   bash bench/run.sh [--scale N] [--rounds R] [--engines postgresql,mysql]
#
# Builds in release mode, starts the lab, loads the data sets, runs the variants alternately
# (A B C, A B C, ...), reports median and spread, saves Markdown and JSON under
# bench/results/, and stops the lab. Engines so far: PostgreSQL (pgbench tables at --scale
# plus a text table of mixed random and repetitive values, on pg1) and MariaDB (the same
# shapes generated with the sequence engine, on my1). Redis: not yet.
#
# Variants, each on the same data:
#   limit    backup: the dump tool to /dev/null; restore: the plain dump applied from local disk
#   addon    the add-on's script: dump | gzip > file, restic check --read-data-subset=5%,
#            restic backup (compression off) over SFTP to storage node st1, restic forget
#            --keep-last 7 --prune, restic check again; restore: restic restore, gunzip, apply
#   stowage  stowage backup / stowage restore (2-node replicated storage)
# Per variant: wall time, CPU time and peak RSS per process role (sampled from /proc:
# coordinator, db agent, storage agents, dump tool, gzip, restic, psql), bytes stored.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=20
ROUNDS=3
ENGINES=postgresql,mysql
while [ $# -gt 0 ]; do
    case $1 in
        --scale) SCALE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --engines) ENGINES=$2; shift 2 ;;
        *) echo "usage: bench/run.sh [--scale N] [--rounds R] [--engines postgresql,mysql]" >&2; exit 64 ;;
    esac
done

bash scripts/setup.sh release >/dev/null
command -v restic >/dev/null || apt-get install -y -qq restic >/dev/null
export STOWAGE_AGENT_BINARY=$PWD/.build-agent/release/stowage-agent
stowage=$PWD/.build/release/stowage
bash fixtures/lab/lab.sh up >/dev/null
trap 'bash fixtures/lab/lab.sh down >/dev/null 2>&1 || true' EXIT
lab=$(bash fixtures/lab/lab.sh dir)
export STOWAGE_CONFIG=$lab/stowage.yaml
"$stowage" agent install >/dev/null
work=$(mktemp -d "$lab/work/bench.XXXXXX")
PSQL_ADMIN=(runuser -u postgres -- psql -X -q -h "$lab/run/pg1" -U postgres)
MY_ADMIN=(mariadb --no-defaults -S "$lab/run/my1.sock" -u root)

# Credentials for the tools run by hand (the add-on's script and the limit), mode 600.
printf '*:*:*:webadmin:%s\n' "$(cat "$lab/secrets/db-password")" >"$work/pgpass"
printf '[client]\nuser=webadmin\npassword=%s\n' "$(cat "$lab/secrets/db-password")" >"$work/my.cnf"
chmod 600 "$work/pgpass" "$work/my.cnf"
export PGPASSFILE=$work/pgpass
cp "$lab/secrets/storage-password" "$work/restic-password"
export RESTIC_PASSWORD_FILE=$work/restic-password
restic_ssh="ssh -i $lab/ssh/id_ed25519 -o UserKnownHostsFile=$lab/ssh/known_hosts -o BatchMode=yes root@127.0.9.1 -s sftp"

# Per engine: load, dump (the add-on's dump command), apply (a plain dump on stdin), layer.
load_postgresql() {
    "${PSQL_ADMIN[@]}" -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench OWNER webadmin"
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -q -i -s "$SCALE" -h "$lab/run/pg1" -U postgres bench >/dev/null 2>&1
    "${PSQL_ADMIN[@]}" -d bench -c "CREATE TABLE notes AS SELECT g AS id,
        CASE WHEN g % 3 = 0 THEN md5(random()::text) || md5(random()::text)
             ELSE repeat('order shipped to customer ', 3) || (g % 977) END AS note
        FROM generate_series(1, $((SCALE * 50000))) g"
}
dump_postgresql() { pg_dumpall -h 127.0.1.10 -U webadmin --clean --if-exists; }
apply_postgresql() { "${PSQL_ADMIN[@]}" -d postgres >/dev/null 2>&1; }
layer_postgresql=shop/sqldb

load_mysql() {
    "${MY_ADMIN[@]}" -e "DROP DATABASE IF EXISTS bench; CREATE DATABASE bench; USE bench;
        CREATE TABLE bench.accounts (aid INT PRIMARY KEY, bid INT, abalance INT, filler CHAR(84)) ENGINE=InnoDB;
        INSERT INTO bench.accounts SELECT seq, seq DIV 100000 + 1, 0, '' FROM seq_1_to_$((SCALE * 100000));
        CREATE TABLE bench.notes (id INT PRIMARY KEY, note VARCHAR(200)) ENGINE=InnoDB;
        INSERT INTO bench.notes SELECT seq, IF(seq % 3 = 0, CONCAT(MD5(RAND()), MD5(RAND())),
            CONCAT(REPEAT('order shipped to customer ', 3), seq % 977)) FROM seq_1_to_$((SCALE * 50000));"
}
dump_mysql() {
    mariadb-dump --defaults-extra-file="$work/my.cnf" -h 127.0.2.10 --single-transaction --all-databases \
        --routines --events --triggers --hex-blob
}
apply_mysql() { "${MY_ADMIN[@]}" --binary-mode >/dev/null 2>&1; }
layer_mysql=shop/mariadb

# Runs one variant under the sampler# Runs one variant under the sampler; writes "wall_s json_of_roles" to $work/measured.
measure() {
    local stop="$work/stop.$$" out="$work/sample.json" t0 t1
    rm -f "$stop"
    python3 bench/sample.py "$stop" 127.0.9.1,127.0.9.2 >"$out" &
    local sampler=$!
    sleep 0.2
    t0=$(date +%s.%N)
    "$@" >"$work/variant.log" 2>&1 || { echo "bench: $* failed:" >&2; tail -5 "$work/variant.log" >&2; touch "$stop"; wait $sampler; exit 1; }
    t1=$(date +%s.%N)
    touch "$stop"
    wait $sampler
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $(cat "$out")" >"$work/measured"
}

backup_limit() { "dump_$engine" >/dev/null; }
backup_addon() {
    "dump_$engine" | gzip >"$work/db_backup.sql.gz"
    R check --read-data-subset=5% >/dev/null
    R backup --compression off "$work/db_backup.sql.gz" >/dev/null
    R forget --keep-last 7 --prune >/dev/null
    R check --read-data-subset=5% >/dev/null
}
backup_stowage() { "$stowage" backup "$layer" --keep 7 --json >"$work/stowage-backup.json"; }
restore_limit() { "apply_$engine" <"$work/plain.sql"; }
restore_addon() {
    rm -rf "$work/restored"
    R restore latest --target "$work/restored" >/dev/null
    gunzip -c "$work/restored$work/db_backup.sql.gz" | "apply_$engine"
}
restore_stowage() { "$stowage" restore "$layer" --backup latest --yes >/dev/null; }

results="$work/results.jsonl"
: >"$results"
for engine in ${ENGINES//,/ }; do
    layer_var="layer_$engine"
    layer=${!layer_var}
    echo "bench: loading the $engine data set (scale $SCALE)" >&2
    "load_$engine"
    sleep 2  # replicas catch up before anything is measured
    restic_repo="sftp:root@127.0.9.1:$work/restic-$engine"
    R() { restic -q -o sftp.command="$restic_ssh" -r "$restic_repo" "$@"; }
    R init --repository-version 2 >/dev/null
    # The plain dump applied by the restore limit, made once.
    "dump_$engine" >"$work/plain.sql"
    dump_bytes=$(stat -c %s "$work/plain.sql")
    echo "bench: $engine dump is $((dump_bytes / 1048576)) MiB" >&2
    for round in $(seq 1 "$ROUNDS"); do
        for op in backup restore; do
            for v in limit addon stowage; do
                measure "${op}_$v"
                read -r wall roles <"$work/measured"
                stored=0
                case "$op/$v" in
                    backup/limit) stored=$dump_bytes ;;
                    backup/addon) stored=$(du -sb "$work/restic-$engine" | cut -f1) ;;
                    backup/stowage) stored=$(du -sb "$lab/storage/st1/${layer%%/*}" | cut -f1) ;;
                esac
                echo "{\"engine\": \"$engine\", \"dump_bytes\": $dump_bytes, \"round\": $round, \"op\": \"$op\", \"variant\": \"$v\", \"wall_s\": $wall, \"stored_bytes\": $stored, \"roles\": $roles}" >>"$results"
                echo "bench: $engine round $round $op $v: $(printf '%.1f' "$wall") s" >&2
            done
        done
    done
done

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p bench/results
python3 - "$results" "bench/results/run-$stamp" "$SCALE" "$ROUNDS" <<'PY'
import json, statistics, subprocess, sys, os
rows = [json.loads(l) for l in open(sys.argv[1])]
base, scale, rounds = sys.argv[2], sys.argv[3], sys.argv[4]
def ver(cmd):
    try: return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception: return "?"
machine = {"cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
           "postgresql": ver(["pg_dumpall", "--version"]), "mariadb": ver(["mariadb-dump", "--version"]),
           "restic": ver(["restic", "version"]), "gzip": ver(["gzip", "--version"])}
engines = {}
md = ["# Stowage vs the add-on's pipeline vs the limit", "",
      f"Machine: {machine['cores']} cores, {machine['memory_gib']} GiB; {machine['postgresql']}; {machine['mariadb']}; {machine['restic']}; {machine['gzip']}.",
      f"Data: scale {scale} (pgbench-shaped accounts plus a notes table of mixed random and repetitive text). {rounds} rounds, variants alternating; median (min-max)."]
for engine in dict.fromkeys(r["engine"] for r in rows):
    summary = {}
    for op in ("backup", "restore"):
        for v in ("limit", "addon", "stowage"):
            rs = [r for r in rows if r["engine"] == engine and r["op"] == op and r["variant"] == v]
            walls = [r["wall_s"] for r in rs]
            roles = {}
            for r in rs:
                for name, x in r["roles"].items():
                    o = roles.setdefault(name, {"peak_rss_mib": 0, "cpu_s": []})
                    o["peak_rss_mib"] = max(o["peak_rss_mib"], x["peak_rss_mib"])
                    o["cpu_s"].append(x["cpu_s"])
            summary[f"{op}/{v}"] = {"wall_median_s": round(statistics.median(walls), 2), "wall_min_s": round(min(walls), 2),
                                    "wall_max_s": round(max(walls), 2), "stored_bytes": rs[-1]["stored_bytes"],
                                    "roles": {k: {"peak_rss_mib": o["peak_rss_mib"], "cpu_median_s": round(statistics.median(o["cpu_s"]), 2)}
                                              for k, o in sorted(roles.items())}}
    def ratio(a, b): return round(summary[a]["wall_median_s"] / summary[b]["wall_median_s"], 2)
    ratios = {"backup stowage/limit": ratio("backup/stowage", "backup/limit"), "backup stowage/addon": ratio("backup/stowage", "backup/addon"),
              "restore stowage/limit": ratio("restore/stowage", "restore/limit"), "restore stowage/addon": ratio("restore/stowage", "restore/addon")}
    dump_bytes = next(r["dump_bytes"] for r in rows if r["engine"] == engine)
    engines[engine] = {"dump_bytes": dump_bytes, "variants": summary, "ratios": ratios}
    md += ["", f"## {engine}: dump {dump_bytes / 2**20:.0f} MiB", "",
           "| variant | wall s | stored | CPU s by process (median) | peak RSS MiB by process |", "|---|---|---|---|---|"]
    for k, s in summary.items():
        cpu = ", ".join(f"{n} {o['cpu_median_s']}" for n, o in s["roles"].items())
        rss = ", ".join(f"{n} {o['peak_rss_mib']}" for n, o in s["roles"].items())
        stored = f"{s['stored_bytes'] / 2**20:.1f} MiB" if k.startswith("backup") else ""
        md.append(f"| {k} | {s['wall_median_s']} ({s['wall_min_s']}-{s['wall_max_s']}) | {stored} | {cpu} | {rss} |")
    md += ["", "Ratios of medians: " + ", ".join(f"{k} {v}" for k, v in ratios.items()) + "."]
md += ["", "Targets: backup stowage/limit at most 1.3 and stowage/addon at most 0.25; restore stowage/limit at most 1.15; agent and coordinator under 256 MiB.",
       "Stored: limit = the plain dump; addon = restic's repository on st1 after the rounds; stowage = the environment's repository on st1 (one copy of two) after the rounds (all engines of the environment so far)."]
json.dump({"machine": machine, "scale": int(scale), "rounds": int(rounds), "engines": engines, "runs": rows},
          open(base + ".json", "w"), indent=1, sort_keys=True)
open(base + ".md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
