#!/usr/bin/env bash
# Several coordinators at scale (issue 17): LAYERS layers (default 10,000) scheduled every
# minute, shared by three `stowage scheduler` processes through the lab's catalog server
# (cat1; a database of the bench's own), each starting bench/stub-runner.sh instead of a
# backup, so that only scheduling, slot claims and lease work are measured. Reports: the
# time until every layer is held after a cold start, the runs of one slot and how long the
# slot took fleet-wide, the catalog's transactions per second (pg_stat_database) at rest and
# during the slot, the time until the two survivors hold every layer after one coordinator
# is SIGKILLed, and each coordinator's peak RSS. Needs the lab (fixtures/lab/lab.sh up).
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=${LAYERS:-10000}
LEASE=${LEASE:-10}
CONCURRENCY=${CONCURRENCY:-64}
swift build -c release --product stowage >/dev/null
stowage=$PWD/.build/release/stowage
lab=$(bash fixtures/lab/lab.sh dir)
[ -f "$lab/stowage.yaml" ] || { echo "coordination: start the lab first: bash fixtures/lab/lab.sh up" >&2; exit 1; }
db=bench_$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')
psql_su() { runuser -u postgres -- psql -X -q -tA -v ON_ERROR_STOP=1 -h "$lab/run/cat1" -U postgres -d "${2:-postgres}" -c "$1"; }
psql_su "CREATE DATABASE $db OWNER stowage"
dir=$(mktemp -d "$lab/work/coordination-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    psql_su "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    mkdir -p /tmp/coordination-bench-logs && cp "$dir"/*.log /tmp/coordination-bench-logs/ 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# The inventory: LAYERS Redis layers in environments of 100, on nodes that are never
# contacted (the stub runs instead of backups); a storage node nobody listens on.
installed=$(date -u +%Y-%m-%dT%H:%M:%SZ)
python3 - "$dir" "$LAYERS" "$lab" "$db" "$LEASE" "$CONCURRENCY" "$installed" <<'PY'
import sys
d, n, lab, db, lease, conc, installed = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
inv = [f"ssh: {{ identity: {lab}/ssh/id_ed25519, known_hosts: {lab}/ssh/known_hosts }}",
       "storages:", "  bench-storage:", f"    password_file: {lab}/secrets/storage-password",
       "    nodes: [ { name: st0, ssh: root@127.0.0.1:9, root: /nonexistent } ]",
       f"scheduler: {{ concurrency: {conc}, per_storage: {conc}, start_delay: 0s, retries: 0, node_check: 3600s,",
       f"  shared_catalog: {{ postgresql: \"host=127.0.9.30 port=5432 dbname={db} user=stowage\", password_file: {lab}/secrets/catalog-password, lease: {lease}s }} }}",
       "environments:"]
pol = ["policies:"]
for e in range((n + 99) // 100):
    inv.append(f"  e{e:03d}:")
    inv.append("    layers:")
    for i in range(min(100, n - e * 100)):
        k = e * 100 + i
        inv.append(f"      l{i:02d}: {{ engine: redis, nodes: [ {{ name: n{k:05d}, ssh: root@127.0.0.1:9, db: 127.0.0.1:9 }} ] }}")
        pol.append(f"  e{e:03d}/l{i:02d}: {{ schedule: \"* * * * *\", storage: bench-storage, keep: 2, installed: {installed} }}")
for c in "abc":
    import os
    os.makedirs(f"{d}/{c}", exist_ok=True)
    open(f"{d}/{c}/stowage.yaml", "w").write("\n".join(inv) + "\n")
    open(f"{d}/{c}/stowage.policies.yaml", "w").write("\n".join(pol) + "\n")
PY

commits() { psql_su "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'"; }
held() { psql_su "SELECT count(*) || ' ' || count(DISTINCT owner) FROM leases WHERE expires > now()" "$db" 2>/dev/null || echo "0 0"; }
now() { date +%s.%N; }
hwm_mb() { awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

t0=$(now)
for c in a b c; do
    "$stowage" scheduler --config "$dir/$c/stowage.yaml" --runner "$PWD/bench/stub-runner.sh" --work-dir "$dir/$c" >"$dir/$c.log" 2>&1 &
    pids+=($!)
done
# Cold start: every layer held, by three owners.
until [ "$(held)" = "$LAYERS 3" ]; do sleep 0.2; done
t_cold=$(echo "$(now) - $t0" | bc)

# At rest: transactions per second over 10 s (rounds only).
c1=$(commits); sleep 10; c2=$(commits)
rest_tps=$(( (c2 - c1) / 10 ))

# One slot: from the next minute until every layer has an ended run of it.
next=$(( ( $(date +%s) / 60 + 1 ) * 60 ))
while [ "$(date +%s)" -lt "$next" ]; do sleep 0.2; done
c1=$(commits); ts=$(now)
slot_sql="to_timestamp($next)"
until [ "$(psql_su "SELECT count(DISTINCT layer) FROM runs WHERE slot = $slot_sql AND outcome <> 'running'" "$db")" -ge "$LAYERS" ] \
    || [ "$(echo "$(now) - $ts > 55" | bc)" = 1 ]; do sleep 0.5; done
t_slot=$(echo "$(now) - $ts" | bc)
c2=$(commits)
slot_tps=$(echo "($c2 - $c1) / $t_slot" | bc)
slot_runs=$(psql_su "SELECT count(*) FILTER (WHERE outcome = 'ok') || ' ok, ' || count(*) FILTER (WHERE outcome = 'skipped') || ' skipped, ' || count(DISTINCT layer) || ' layers' FROM runs WHERE slot = $slot_sql" "$db")
claims=$(psql_su "SELECT count(*) || ' claims, ' || count(DISTINCT layer) || ' layers' FROM slots WHERE slot = $slot_sql" "$db")
rss="a $(hwm_mb "${pids[0]}") MiB, b $(hwm_mb "${pids[1]}") MiB, c $(hwm_mb "${pids[2]}") MiB"

# One coordinator killed: until the two others hold every layer.
kill -9 "${pids[2]}"
tk=$(now)
until [ "$(held)" = "$LAYERS 2" ]; do sleep 0.2; done
t_take=$(echo "$(now) - $tk" | bc)

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p bench/results
report="bench/results/coordination-$stamp.md"
{
    echo "# Coordinators at scale $stamp"
    echo
    echo "Machine: $(nproc) cores. $LAYERS layers every minute, three coordinators (release build, concurrency $CONCURRENCY each, stub runner), lease ${LEASE}s, the lab's catalog server (PostgreSQL 15 on loopback)."
    echo
    echo "| measure | value |"
    echo "|---|---|"
    echo "| cold start until every layer is held (3 owners) | ${t_cold} s |"
    echo "| catalog transactions/s at rest (rounds every $(echo "$LEASE / 5" | bc -l | sed 's/0*$//;s/\.$//') s) | $rest_tps |"
    echo "| one slot, fleet-wide: until every layer's run ended | ${t_slot} s |"
    echo "| that slot's runs | $slot_runs |"
    echo "| that slot's claims | $claims |"
    echo "| catalog transactions/s during the slot | $slot_tps |"
    echo "| one coordinator SIGKILLed: until the two others hold every layer | ${t_take} s |"
    echo "| peak RSS (VmHWM) through the slot | $rss |"
} >"$report"
cat "$report"
