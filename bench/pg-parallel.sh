#!/usr/bin/env bash
# The PostgreSQL restore in parallel sessions (`stowage restore --jobs N`) against psql
# applying the plain dump from local disk (the limit) and against one session.
#
#   bash bench/pg-parallel.sh [--scale N] [--tables T] [--rounds R] [--jobs "1 2 3"]
#
# Data sets on pg1: by default bench/run.sh's (pgbench tables at --scale plus a text table:
# two large tables, the largest about half the dump); with --tables T, T equal tables of
# --scale * 50,000 rows each (an id, an md5 text and a small integer; a primary key each).
# One backup, then the variants alternately, R rounds: limit (psql < dump.sql, run as the
# agent runs it: ON_ERROR_STOP, the two role lines it cannot replay left out), and
# stowage restore --jobs N for each N. Per variant: median wall time, and CPU-s per process
# role from one more round sampled by bench/sample.py (the server's backends included; the
# sampler's own CPU, about a core-second per run, would skew the timed rounds). Saves
# Markdown under bench/results/ and stops the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=30
TABLES=0
ROUNDS=3
JOBS="1 2 3"
while [ $# -gt 0 ]; do
    case $1 in
        --scale) SCALE=$2; shift 2 ;;
        --tables) TABLES=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        *) echo "usage: bench/pg-parallel.sh [--scale N] [--tables T] [--rounds R] [--jobs \"1 2 3\"]" >&2; exit 64 ;;
    esac
done

. bench/lab-prelude.sh
export STOWAGE_CONFIG=$lab/stowage.yaml
"$stowage" agent install >/dev/null
work=$(mktemp -d "$lab/work/pg-parallel.XXXXXX")

"${PSQL_ADMIN[@]}" -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench OWNER webadmin"
if [ "$TABLES" -gt 0 ]; then
    for t in $(seq 1 "$TABLES"); do
        "${PSQL_ADMIN[@]}" -d bench -c "CREATE TABLE t$t AS SELECT g AS id, md5((g * $t)::text) || ' order shipped to customer ' || (g % 977) AS note,
            g % 100 AS k FROM generate_series(1, $((SCALE * 50000))) g; ALTER TABLE t$t ADD PRIMARY KEY (id)"
    done
    dataset="$TABLES equal tables of $((SCALE * 50000)) rows"
else
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -q -i -s "$SCALE" -h "$lab/run/pg1" -U postgres bench >/dev/null 2>&1
    "${PSQL_ADMIN[@]}" -d bench -c "CREATE TABLE notes AS SELECT g AS id,
        CASE WHEN g % 3 = 0 THEN md5(random()::text) || md5(random()::text)
             ELSE repeat('order shipped to customer ', 3) || (g % 977) END AS note
        FROM generate_series(1, $((SCALE * 50000))) g"
    dataset="pgbench scale $SCALE + notes ($((SCALE * 50000)) rows)"
fi
runuser -u postgres -- pg_dumpall -h "$lab/run/pg1" -U postgres --clean --if-exists |
    grep -v -x -e 'DROP ROLE IF EXISTS postgres;' -e 'CREATE ROLE postgres;' >"$work/dump.sql"
dump_bytes=$(stat -c %s "$work/dump.sql")
"$stowage" backup shop/sqldb --keep 7 >/dev/null

# Each variant starts with the replica caught up: its replay of the previous restore would
# otherwise take the cores of the next (and a probe of it could find a database dropped).
caught_up() { replica_caught_up postgresql 60; }
timed() {  # name command...: wall seconds, appended to $work/results
    local name=$1
    shift
    caught_up
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "$name $(echo "$t1 - $t0" | bc)" >>"$work/results"
}
sampled() {  # name command...: the sampler's JSON, appended to $work/cpu
    local name=$1
    shift
    caught_up
    local stop=$work/stop
    rm -f "$stop"
    python3 bench/sample.py "$stop" 127.0.9.1,127.0.9.2 >"$work/sample.json" &
    local sampler=$!
    "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; touch "$stop"; exit 1; }
    touch "$stop"
    wait "$sampler"
    echo "$name $(cat "$work/sample.json")" >>"$work/cpu"
}
limit() { "${PSQL_ADMIN[@]}" -d postgres -v ON_ERROR_STOP=1 <"$work/dump.sql"; }
for r in $(seq 1 "$ROUNDS"); do
    timed limit limit
    for j in $JOBS; do timed "jobs-$j" "$stowage" restore shop/sqldb --backup latest --yes --jobs "$j"; done
done
sampled limit limit
for j in $JOBS; do sampled "jobs-$j" "$stowage" restore shop/sqldb --backup latest --yes --jobs "$j"; done

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
python3 - "$work/results" "$work/cpu" "$dataset" "$dump_bytes" "$ROUNDS" "$(nproc)" >"bench/results/pg-parallel-$stamp.md" <<'PY'
import json, statistics, sys
path, cpupath, dataset, size, rounds, cores = sys.argv[1:]
runs, cpu = {}, {}
for line in open(path):
    name, wall = line.split()
    runs.setdefault(name, []).append(float(wall))
for line in open(cpupath):
    name, js = line.split(" ", 1)
    cpu[name] = json.loads(js)
limit = statistics.median(runs["limit"])
# The machine's busy CPU over the sampled round is its own column: the processes' total
# leaves out the kernel's threads and anything not named as a role.
roles = sorted({r for s in cpu.values() for r in s if r != "machine"})
out = [f"# PostgreSQL restore in parallel sessions ({dataset})", "",
       f"Dump {int(size) / 1048576:.0f} MiB, {cores} cores; wall time: median of {rounds} rounds (min-max); CPU-s per process role from one more, sampled round.", "",
       "| variant | wall s | min-max | / limit | " + " | ".join(roles) + " | CPU-s total | machine busy CPU-s |", "|---|---|---|---|" + "---|" * (len(roles) + 2)]
for name, v in runs.items():
    wall = statistics.median(v)
    c = [cpu.get(name, {}).get(r, {}).get("cpu_s", 0.0) for r in roles]
    busy = cpu.get(name, {}).get("machine", {}).get("busy_cpu_s", 0.0)
    out.append(f"| {name} | {wall:.2f} | {min(v):.2f}-{max(v):.2f} | {wall / limit:.2f} | " + " | ".join(f"{x:.2f}" for x in c) + f" | {sum(c):.2f} | {busy:.2f} |")
print("\n".join(out))
PY
cat "bench/results/pg-parallel-$stamp.md"
