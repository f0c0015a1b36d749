#!/usr/bin/env bash
# Stowage against the add-on's own pipeline and against the physical limit (issue 7).
#
#   bash bench/run.sh [--scale N] [--rounds R] [--redis-keys K] [--days D]
#                     [--engines postgresql,mysql,redis,rediscluster]
#
# Builds in release mode, starts the lab, loads the data sets, runs the variants alternately
# (A B C, A B C, ...), reports median and spread, saves Markdown and JSON under
# bench/results/, and stops the lab. Data sets: PostgreSQL (pgbench tables at --scale plus
# a text table of mixed random and repetitive values, on pg1; scale 30 is about 400 MB of
# dump); MariaDB (the same shapes generated with the sequence engine, on my1); Redis
# (--redis-keys keys of mixed types and sizes, bench/redis_data.py, on rd1) and the same
# keys spread over the 3-master cluster rc1-rc3 by slot.
#
# Variants, each on the same data:
#   limit    backup: the dump tool to /dev/null (Redis: redis-cli --rdb, each master at once);
#            restore: the plain dump applied from local disk (Redis: a redis-server loading
#            the RDB from local disk, until it answers)
#   addon    the add-on's scripts: dump | gzip > file (Redis: redis-cli --rdb of each master
#            in turn, no gzip), restic check --read-data-subset=5%, restic backup
#            (compression off) over SFTP to storage node st1, restic forget --keep-last 7
#            --prune, restic check again; restore: restic restore, gunzip, apply (Redis:
#            every key sent to the live server as a RESTORE, one RDB after the other, as
#            RedisShake does for the add-on; a lower bound, see restores_redis below)
#   stowage  stowage backup / stowage restore (2-node replicated storage)
# Then --days daily backups of PostgreSQL with 2% of the accounts changed between them,
# into a fresh Stowage repository and fresh restic repositories (restic's own compression on
# the plain dump, and the add-on's gzip + restic): bytes stored after each day.
# Per variant: wall time and the machine's busy share over the timed rounds (/proc/stat: the
# floor that much CPU allows on these cores, and how much of it was the kernel's), bytes
# stored, and from one more round under
# bench/sample.py CPU time and peak RSS per process role (coordinator, db agent, storage
# agents, dump tool, gzip, restic, psql, sshd, and the lab's servers' CPU while it ran).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=30
ROUNDS=3
REDIS_KEYS=1000000
DAYS=10
ENGINES=postgresql,mysql,redis,rediscluster
while [ $# -gt 0 ]; do
    case $1 in
        --scale) SCALE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --redis-keys) REDIS_KEYS=$2; shift 2 ;;
        --days) DAYS=$2; shift 2 ;;
        --engines) ENGINES=$2; shift 2 ;;
        *) echo "usage: bench/run.sh [--scale N] [--rounds R] [--redis-keys K] [--days D] [--engines postgresql,mysql,redis,rediscluster]" >&2; exit 64 ;;
    esac
done

command -v restic >/dev/null || apt-get install -y -qq restic >/dev/null
. bench/lab-prelude.sh
export STOWAGE_CONFIG=$lab/stowage.yaml
"$stowage" agent install >/dev/null
work=$(mktemp -d "$lab/work/bench.XXXXXX")

# Credentials for the tools run by hand (the add-on's script and the limit), mode 600.
printf '*:*:*:webadmin:%s\n' "$(cat "$lab/secrets/db-password")" >"$work/pgpass"
printf '[client]\nuser=webadmin\npassword=%s\n' "$(cat "$lab/secrets/db-password")" >"$work/my.cnf"
chmod 600 "$work/pgpass" "$work/my.cnf"
export PGPASSFILE=$work/pgpass
cp "$lab/secrets/storage-password" "$work/restic-password"
export RESTIC_PASSWORD_FILE=$work/restic-password
restic_ssh="ssh -i $lab/ssh/id_ed25519 -o UserKnownHostsFile=$lab/ssh/known_hosts -o BatchMode=yes -p 4022 root@127.0.9.1 -s sftp"

# Per engine: load_E (the data set), plain_E (the plain dump into $work/plain, its bytes on
# stdout), limit_backup_E, addon_dump_E DIR (the add-on's dump files into DIR),
# limit_restore_E (from $work/plain), addon_restore_E DIR (from the files restic restored),
# and the layer.
sql_apply_postgresql() { "${PSQL_ADMIN[@]}" -d postgres >/dev/null 2>&1; }
sql_apply_mysql() { "${MY_ADMIN[@]}" --binary-mode >/dev/null 2>&1; }
sql_dump_postgresql() { pg_dumpall -h 127.0.1.10 -U webadmin --clean --if-exists; }
sql_dump_mysql() {
    mariadb-dump --defaults-extra-file="$work/my.cnf" -h 127.0.2.10 --single-transaction --all-databases \
        --routines --events --triggers --hex-blob
}
for e in postgresql mysql; do
    eval "plain_$e() { mkdir -p \"\$work/plain\"; sql_dump_$e >\"\$work/plain/dump.sql\"; stat -c %s \"\$work/plain/dump.sql\"; }"
    eval "limit_backup_$e() { sql_dump_$e >/dev/null; }"
    eval "addon_dump_$e() { sql_dump_$e | gzip >\"\$1/db_backup.sql.gz\"; }"
    eval "limit_restore_$e() { sql_apply_$e <\"\$work/plain/dump.sql\"; }"
    eval "addon_restore_$e() { gunzip -c \"\$1/db_backup.sql.gz\" | sql_apply_$e; }"
done

load_postgresql() {
    "${PSQL_ADMIN[@]}" -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench OWNER webadmin"
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -q -i -s "$SCALE" -h "$lab/run/pg1" -U postgres bench >/dev/null 2>&1
    "${PSQL_ADMIN[@]}" -d bench -c "CREATE TABLE notes AS SELECT g AS id,
        CASE WHEN g % 3 = 0 THEN md5(random()::text) || md5(random()::text)
             ELSE repeat('order shipped to customer ', 3) || (g % 977) END AS note
        FROM generate_series(1, $((SCALE * 50000))) g"
}
layer_postgresql=shop/sqldb

load_mysql() {
    "${MY_ADMIN[@]}" -e "DROP DATABASE IF EXISTS bench; CREATE DATABASE bench; USE bench;
        CREATE TABLE bench.accounts (aid INT PRIMARY KEY, bid INT, abalance INT, filler CHAR(84)) ENGINE=InnoDB;
        INSERT INTO bench.accounts SELECT seq, seq DIV 100000 + 1, 0, '' FROM seq_1_to_$((SCALE * 100000));
        CREATE TABLE bench.notes (id INT PRIMARY KEY, note VARCHAR(200)) ENGINE=InnoDB;
        INSERT INTO bench.notes SELECT seq, IF(seq % 3 = 0, CONCAT(MD5(RAND()), MD5(RAND())),
            CONCAT(REPEAT('order shipped to customer ', 3), seq % 977)) FROM seq_1_to_$((SCALE * 50000));"
}
layer_mysql=shop/mariadb

# Redis: the password through REDISCLI_AUTH (never argv); the RDB from the replication
# handshake, as the add-on's `redis-cli --rdb` gets it.
export REDISCLI_AUTH
REDISCLI_AUTH=$(cat "$lab/secrets/redis-password")
rdb() { redis-cli -h "$1" -p 6379 --rdb "$2" >/dev/null 2>&1; }
# To /dev/null through stdout (redis-cli fsyncs a named target, which /dev/null refuses).
rdb_null() { redis-cli -h "$1" -p 6379 --rdb - 2>/dev/null >/dev/null; }
# A redis-server loading DIR/dump.rdb from local disk, on a unix socket of its own: returns
# once it answers PING (in scratch_pid and scratch_sock), and scratch_down stops it unsaved.
scratch_up() {
    local dir=$1 i
    # A short path: a unix socket's name is limited to 107 bytes.
    scratch_sock=$(mktemp -u /tmp/bench-rdb.XXXXXX.sock)
    redis-server --port 0 --unixsocket "$scratch_sock" --unixsocketperm 700 --dir "$dir" --dbfilename dump.rdb \
        --save '' --appendonly no --daemonize no --logfile "$dir/scratch.log" &
    scratch_pid=$!
    for ((i = 0; i < 6000; i++)); do
        [ "$(redis-cli -s "$scratch_sock" PING 2>/dev/null)" = PONG ] && return 0
        kill -0 "$scratch_pid" 2>/dev/null || { echo "bench: redis-server could not load $dir/dump.rdb: $(tail -2 "$dir/scratch.log")" >&2; return 1; }
        sleep 0.05
    done
    echo "bench: redis-server did not load $dir/dump.rdb in 300 s" >&2
    return 1
}
scratch_down() { redis-cli -s "$scratch_sock" SHUTDOWN NOSAVE >/dev/null 2>&1 || true; wait "$scratch_pid" || true; }
# The restore limit: a server loading the RDB, timed until it answers.
rdb_load() { scratch_up "$1" && scratch_down; }
masters_rediscluster() { redis-cli -h 127.0.4.1 CLUSTER NODES | awk '$3 ~ /master/ { split($2, a, ":"); print a[1] }' | sort; }

load_redis() {
    redis-cli -h 127.0.3.10 FLUSHALL >/dev/null
    mkdir -p "$work/gen"
    python3 bench/redis_data.py "$REDIS_KEYS" "$work/gen"
    redis-cli -h 127.0.3.10 --pipe <"$work/gen/all.resp" >/dev/null
    rm -f "$work/gen/all.resp"
}
plain_redis() { mkdir -p "$work/plain"; rdb 127.0.3.10 "$work/plain/dump.rdb"; stat -c %s "$work/plain/dump.rdb"; }
limit_backup_redis() { rdb_null 127.0.3.10; }
limit_restore_redis() { rdb_load "$work/plain"; }
# The add-on's Redis pipeline (scripts/backup-logic.sh and redis-restore.sh of
# jelastic-jps/database-backup-addon): the RDB as `redis-cli --rdb` writes it, stored by
# restic without compression (no gzip); restored by RedisShake into the live server, every
# key as a RESTORE, one RDB file after the other. The RESTOREs are made from the plain dump
# before the rounds (bench/redis_restores.py) and the target flushed before the timed run:
# RedisShake's own reading of the file is left out, so this is a lower bound of its time.
addon_dump_redis() { rdb 127.0.3.10 "$1/dump.rdb"; }
# DIR/dump.rdb's keys as RESTOREs into the file OUT, through a scratch server; fails if they could not be made.
make_restores() {
    local rc=0
    mkdir -p "$(dirname "$2")"
    scratch_up "$1" || return 1
    python3 bench/redis_restores.py "$scratch_sock" "$2" >/dev/null || rc=$?
    scratch_down
    return "$rc"
}
restores_redis() { make_restores "$work/plain" "$work/restores/all.resp"; }
addon_restore_prepare_redis() { redis-cli -h 127.0.3.10 FLUSHALL >/dev/null; }
# redis-cli --pipe exits 0 whatever the server answered: its last line counts the errors.
pipe_restores() {
    local last
    last=$(redis-cli -h "$1" --pipe <"$2" 2>&1 | tail -1)
    [[ $last == "errors: 0,"* ]] || { echo "bench: $1 refused RESTOREs of $2: $last" >&2; return 1; }
}
addon_restore_redis() { [ -s "$1/dump.rdb" ] && pipe_restores 127.0.3.10 "$work/restores/all.resp"; }
layer_redis=shop/cache

load_rediscluster() {
    local m slots=()
    for m in $(masters_rediscluster); do
        redis-cli -h "$m" FLUSHALL >/dev/null
        slots+=("$(redis-cli -h 127.0.4.1 CLUSTER NODES | awk -v m="$m" '$3 ~ /master/ && index($2, m ":") == 1 { s = ""; for (i = 9; i <= NF; i++) s = s (s ? "," : "") $i; print s }')")
    done
    mkdir -p "$work/gen"
    python3 bench/redis_data.py "$REDIS_KEYS" "$work/gen" "${slots[@]}"
    local i=0 pids=()
    for m in $(masters_rediscluster); do redis-cli -h "$m" --pipe <"$work/gen/$i.resp" >/dev/null & pids+=($!); i=$((i + 1)); done
    wait "${pids[@]}"
    rm -f "$work"/gen/*.resp
}
plain_rediscluster() {
    local m total=0 pids=()
    for m in $(masters_rediscluster); do mkdir -p "$work/plain/$m"; rdb "$m" "$work/plain/$m/dump.rdb" & pids+=($!); done
    wait "${pids[@]}"
    for m in $(masters_rediscluster); do total=$((total + $(stat -c %s "$work/plain/$m/dump.rdb"))); done
    echo "$total"
}
# Background jobs are waited for by PID: a bare `wait` would also wait for the sampler.
limit_backup_rediscluster() { local m pids=(); for m in $(masters_rediscluster); do rdb_null "$m" & pids+=($!); done; wait "${pids[@]}"; }
limit_restore_rediscluster() { local m pids=(); for m in $(masters_rediscluster); do rdb_load "$work/plain/$m" & pids+=($!); done; wait "${pids[@]}"; }
# The add-on (as for one server): each master's RDB in turn, as its script loops over them.
addon_dump_rediscluster() { local m; for m in $(masters_rediscluster); do mkdir -p "$1/$m" && rdb "$m" "$1/$m/dump.rdb" || return 1; done; }
restores_rediscluster() { local m; for m in $(masters_rediscluster); do make_restores "$work/plain/$m" "$work/restores/$m.resp" || return 1; done; }
addon_restore_prepare_rediscluster() { local m; for m in $(masters_rediscluster); do redis-cli -h "$m" FLUSHALL >/dev/null; done; }
addon_restore_rediscluster() {
    local m
    for m in $(masters_rediscluster); do
        [ -s "$1/$m/dump.rdb" ] && pipe_restores "$m" "$work/restores/$m.resp" || return 1
    done
}
layer_rediscluster=shop/sessions

# Runs one variant; writes "wall_s json" to $work/measured. Timed rounds run alone, with only
# the machine's busy time read from /proc/stat before and after (the sampler reads /proc
# every 50 ms, a quarter of a core with the lab's few hundred processes: it would slow the
# CPU-heavy variants most); with SAMPLED=1 the round runs under bench/sample.py for CPU and
# peak memory per process role.
machine_json() {
    awk -v a="$1" -v b="$2" -v cores="$(nproc)" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(a, x, " "); split(b, y, " "); busy = 0; total = 0
        # user nice system idle iowait irq softirq steal (guest time is inside user and nice)
        for (i = 2; i <= 9; i++) { d = y[i] - x[i]; total += d; if (i != 5 && i != 6) busy += d }
        printf "{\"machine\": {\"busy_share\": %.3f, \"busy_cpu_s\": %.2f, \"kernel_cpu_s\": %.2f, \"cores\": %d}}", busy / (total ? total : 1), busy / hz, (y[4] - x[4]) / hz, cores }'
}
measure() {
    local stop="$work/stop.$$" out="$work/sample.json" t0 t1 s0 s1 sampler=""
    rm -f "$stop"
    if [ "${SAMPLED:-0}" = 1 ]; then
        python3 bench/sample.py "$stop" 127.0.9.1,127.0.9.2 >"$out" &
        sampler=$!
        sleep 0.2
    fi
    s0=$(head -1 /proc/stat)
    t0=$(date +%s.%N)
    "$@" >"$work/variant.log" 2>&1 || {
        echo "bench: $* failed:" >&2; tail -5 "$work/variant.log" >&2
        if [ -n "$sampler" ]; then touch "$stop"; wait "$sampler"; fi
        exit 1
    }
    t1=$(date +%s.%N)
    s1=$(head -1 /proc/stat)
    if [ -n "$sampler" ]; then
        touch "$stop"
        wait "$sampler"
    else
        machine_json "$s0" "$s1" >"$out"
    fi
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $(cat "$out")" >"$work/measured"
}

# Each variant starts with the layer's replica caught up (bench/lab-prelude.sh); a Redis
# replica resyncs by itself and is not waited for.
caught_up() { replica_caught_up "$engine"; servers_quiet "$engine"; }

backup_limit() { "limit_backup_$engine"; }
backup_addon() {
    rm -rf "$work/addon" && mkdir -p "$work/addon"
    "addon_dump_$engine" "$work/addon"
    R check --read-data-subset=5% >/dev/null
    R backup --compression off "$work/addon" >/dev/null
    R forget --keep-last 7 --prune >/dev/null
    R check --read-data-subset=5% >/dev/null
}
# Trace lines (STOWAGE_TRACE) go to the variant's log: the profile of where the time went.
backup_stowage() { STOWAGE_TRACE=1 "$stowage" backup "$layer" --keep 7 --json >"$work/stowage-backup.json"; }
restore_limit() { "limit_restore_$engine"; }
restore_addon() {
    rm -rf "$work/restored"
    R restore latest --target "$work/restored" >/dev/null
    "addon_restore_$engine" "$work/restored$work/addon"
}
restore_stowage() { STOWAGE_TRACE=1 "$stowage" restore "$layer" --backup latest --yes >/dev/null; }
repo_bytes() { du -sb "$lab/storage/st1/$1" 2>/dev/null | cut -f1 || echo 0; }

results="$work/results.jsonl"
: >"$results"
: >"$work/zstd-levels.md"
for engine in ${ENGINES//,/ }; do
    layer_var="layer_$engine"
    layer=${!layer_var}
    echo "bench: loading the $engine data set" >&2
    "load_$engine"
    sleep 2  # replicas catch up before anything is measured
    restic_repo="sftp:root@127.0.9.1:$work/restic-$engine"
    R() { restic -q -o sftp.command="$restic_ssh" -r "$restic_repo" "$@"; }
    R init --repository-version 2 >/dev/null
    # The plain dump the restore limit applies, made once.
    rm -rf "$work/plain"
    dump_bytes=$("plain_$engine")
    echo "bench: $engine dump is $((dump_bytes / 1048576)) MiB" >&2
    # What each zstd level would store of this dump, and at what speed (one core, 2 MiB blocks).
    plain_file=$(find "$work/plain" -type f \( -name dump.sql -o -name dump.rdb \) | sort | head -1)
    [ "$engine" = rediscluster ] || bench/zstd-levels.sh "$plain_file" "$engine" >>"$work/zstd-levels.md"
    # What the add-on's Redis restore sends, made once from the plain dump (untimed).
    if declare -F "restores_$engine" >/dev/null; then "restores_$engine"; fi
    # Stowage's repository is the environment's, shared by its layers: this engine's share
    # is what its backups added.
    stowage_base=$(repo_bytes "${layer%%/*}")
    # The timed rounds, then one more under the sampler (its walls are not in the medians).
    for round in $(seq 1 $((ROUNDS + 1))); do
        SAMPLED=0
        [ "$round" -le "$ROUNDS" ] || SAMPLED=1
        for op in backup restore; do
            for v in limit addon stowage; do
                if [ "$op/$v" = restore/addon ] && declare -F "addon_restore_prepare_$engine" >/dev/null; then
                    "addon_restore_prepare_$engine"
                fi
                caught_up
                SAMPLED=$SAMPLED measure "${op}_$v"
                read -r wall roles <"$work/measured"
                stored=0
                case "$op/$v" in
                    backup/limit) stored=$dump_bytes ;;
                    backup/addon) stored=$(du -sb "$work/restic-$engine" | cut -f1) ;;
                    backup/stowage)
                        stored=$(($(repo_bytes "${layer%%/*}") - stowage_base))
                        grep '^trace ' "$work/variant.log" >"$work/trace-$engine-backup-$round.txt" || true ;;
                    restore/stowage) grep '^trace ' "$work/variant.log" >"$work/trace-$engine-restore-$round.txt" || true ;;
                esac
                echo "{\"engine\": \"$engine\", \"dump_bytes\": $dump_bytes, \"round\": $round, \"sampled\": $([ "$SAMPLED" = 1 ] && echo true || echo false), \"op\": \"$op\", \"variant\": \"$v\", \"wall_s\": $wall, \"stored_bytes\": $stored, \"roles\": $roles}" >>"$results"
                echo "bench: $engine round $round$([ "$SAMPLED" = 1 ] && echo " (sampled)") $op $v: $(printf '%.1f' "$wall") s" >&2
            done
        done
    done
    # Free the memory this data set holds before the next one loads.
    case $engine in
        redis) redis-cli -h 127.0.3.10 FLUSHALL >/dev/null ;;
        rediscluster) for m in $(masters_rediscluster); do redis-cli -h "$m" FLUSHALL >/dev/null; done ;;
    esac
    rm -rf "$work/plain" "$work/addon" "$work/restored" "$work/restores"
done

# Ten dailies: PostgreSQL with 2% of the accounts changed between backups, each stored by
# Stowage (a fresh environment, so nothing from the rounds above dedups it), by restic with
# its own compression on the plain dump, and by the add-on's gzip + restic.
dailies="$work/dailies.jsonl"
: >"$dailies"
if [ "$DAYS" -gt 0 ] && [[ ,$ENGINES, == *,postgresql,* ]]; then
    inv="$work/dailies.yaml"
    python3 - "$STOWAGE_CONFIG" "$inv" <<'PY'
import sys
text = open(sys.argv[1]).read()
# The shop's PostgreSQL layer again, as environment "daily" (its own repository); node
# names are unique in an inventory, so its nodes get names of their own.
start = text.index("      sqldb:\n")
end = text.index("      mariadb:\n", start)
layer = text[start:end].replace("name: pg", "name: daily-pg")
text = text.replace("environments:\n", "environments:\n  daily:\n    layers:\n" + layer, 1)
open(sys.argv[2], "w").write(text)
PY
    restic_daily="sftp:root@127.0.9.1:$work/restic-daily"
    restic_addon="sftp:root@127.0.9.1:$work/restic-daily-addon"
    RD() { restic -q -o sftp.command="$restic_ssh" -r "$1" "${@:2}"; }
    RD "$restic_daily" init --repository-version 2 >/dev/null
    RD "$restic_addon" init --repository-version 2 >/dev/null
    accounts=$("${PSQL_ADMIN[@]}" -d bench -tAc "SELECT count(*) FROM pgbench_accounts")
    for day in $(seq 1 "$DAYS"); do
        if [ "$day" -gt 1 ]; then
            # 2% of the accounts, spread over the table, get a new balance.
            "${PSQL_ADMIN[@]}" -d bench -c "UPDATE pgbench_accounts SET abalance = abalance + $day
                WHERE aid IN (SELECT (random() * $accounts)::int + 1 FROM generate_series(1, $((accounts / 50))))" >/dev/null
            sleep 1
        fi
        "$stowage" backup daily/sqldb --config "$inv" --keep 100 >/dev/null
        sql_dump_postgresql >"$work/daily.sql"
        dump=$(stat -c %s "$work/daily.sql")
        RD "$restic_daily" backup --stdin --stdin-filename db_backup.sql <"$work/daily.sql" >/dev/null
        gzip -c "$work/daily.sql" >"$work/db_backup.sql.gz"
        RD "$restic_addon" backup --compression off "$work/db_backup.sql.gz" >/dev/null
        echo "{\"day\": $day, \"dump_bytes\": $dump, \"stowage\": $(repo_bytes daily), \"restic\": $(du -sb "$work/restic-daily" | cut -f1), \"addon\": $(du -sb "$work/restic-daily-addon" | cut -f1)}" >>"$dailies"
        echo "bench: daily $day stored" >&2
    done
fi

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p bench/results
python3 - "$results" "bench/results/run-$stamp" "$SCALE" "$ROUNDS" "$REDIS_KEYS" "$dailies" "$work" <<'PY'
import json, statistics, subprocess, sys, os, re
rows = [json.loads(l) for l in open(sys.argv[1])]
base, scale, rounds, redis_keys, work = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[7]
dailies = [json.loads(l) for l in open(sys.argv[6])]
def ver(cmd):
    try: return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception: return "?"
machine = {"cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
           "postgresql": ver(["pg_dumpall", "--version"]), "mariadb": ver(["mariadb-dump", "--version"]),
           "redis": ver(["redis-server", "--version"]), "restic": ver(["restic", "version"]), "gzip": ver(["gzip", "--version"]),
           "stowage": ver([os.environ.get("STOWAGE_BIN", ".build/release/stowage"), "--version"])}
MiB = 2**20
def mib(b): return f"{b / MiB:.1f} MiB"
engines = {}
md = ["# Stowage vs the add-on's pipeline vs the limit", "",
      f"Machine: {machine['cores']} cores, {machine['memory_gib']} GiB; stowage {machine['stowage']}; {machine['postgresql']}; {machine['mariadb']}; {machine['redis']}; {machine['restic']}; {machine['gzip']}.",
      f"Data: PostgreSQL and MariaDB at scale {scale} (pgbench-shaped accounts plus a notes table of mixed random and repetitive text); "
      f"Redis {int(redis_keys):,} keys of mixed types and sizes (bench/redis_data.py), on rd1 and spread by slot over the 3-master cluster. "
      f"{rounds} timed rounds, variants alternating; median (min-max); then one round under the sampler for CPU and memory per process."]
def trace_profile(path):
    """Trace lines of Stowage's last run: the steps that took longest, and the agent calls."""
    if not os.path.exists(path): return None
    lines = [l.rstrip("\n") for l in open(path)]
    jobs = [l for l in lines if re.search(r"\): channel \d+ ms", l) or "channel" in l and "connection), job" in l]
    new = sum(1 for l in jobs if "(new connection)" in l)
    reused = sum(1 for l in jobs if "(reused connection)" in l)
    spans = [l.split(" ", 2)[2] for l in lines if re.search(r": \d+ ms$", l)]
    return {"agent_calls": len(jobs), "new_connections": new, "reused_connections": reused, "steps": spans, "lines": lines}
for engine in dict.fromkeys(r["engine"] for r in rows):
    summary = {}
    for op in ("backup", "restore"):
        for v in ("limit", "addon", "stowage"):
            rs = [r for r in rows if r["engine"] == engine and r["op"] == op and r["variant"] == v]
            # Walls and the machine's busy time from the timed rounds; processes from the sampled one.
            timed = [r for r in rs if not r.get("sampled")] or rs
            walls = [r["wall_s"] for r in timed]
            busy = [r["roles"]["machine"] for r in timed if "machine" in r["roles"]]
            roles = {}
            for r in rs:
                if timed is not rs and not r.get("sampled"):
                    continue
                for name, x in r["roles"].items():
                    if name == "machine":
                        continue
                    o = roles.setdefault(name, {"peak_rss_mib": 0, "cpu_s": []})
                    o["peak_rss_mib"] = max(o["peak_rss_mib"], x.get("peak_rss_mib", 0))
                    o["cpu_s"].append(x["cpu_s"])
            summary[f"{op}/{v}"] = {"wall_median_s": round(statistics.median(walls), 2), "wall_min_s": round(min(walls), 2),
                                    "wall_max_s": round(max(walls), 2), "stored_bytes": rs[-1]["stored_bytes"],
                                    "roles": {k: {"peak_rss_mib": o["peak_rss_mib"], "cpu_median_s": round(statistics.median(o["cpu_s"]), 2)}
                                              for k, o in sorted(roles.items())}}
            # The machine's busy share and CPU seconds over the variant, and the wall time the
            # cores allow at best for that much work (all of it spread over every core).
            if busy:
                m = summary[f"{op}/{v}"]
                m["machine_busy_share"] = round(statistics.median(b["busy_share"] for b in busy), 3)
                m["machine_cpu_s"] = round(statistics.median(b["busy_cpu_s"] for b in busy), 2)
                m["cpu_floor_s"] = round(m["machine_cpu_s"] / busy[0]["cores"], 2)
                kernel = [b["kernel_cpu_s"] for b in busy if "kernel_cpu_s" in b]
                if kernel:
                    m["machine_kernel_cpu_s"] = {"median": round(statistics.median(kernel), 2), "min": min(kernel), "max": max(kernel)}
    def ratio(a, b): return round(summary[a]["wall_median_s"] / summary[b]["wall_median_s"], 2)
    def paired(a, b):
        # Each timed round's own ratio (the variants ran minutes apart at most), then their
        # median: this machine's speed drifts between rounds (the same restore's kernel time
        # doubled from one quarter of an hour to the next), which moves both walls of a round
        # together and the ratio of the two medians apart.
        walls = {}
        for r in rows:
            if r["engine"] == engine and not r.get("sampled") and f"{r['op']}/{r['variant']}" in (a, b):
                walls.setdefault(r["round"], {})[f"{r['op']}/{r['variant']}"] = r["wall_s"]
        each = [w[a] / w[b] for w in walls.values() if a in w and b in w]
        return round(statistics.median(each), 2) if each else None
    pairs = {"backup stowage/limit": ("backup/stowage", "backup/limit"), "backup stowage/addon": ("backup/stowage", "backup/addon"),
             "restore stowage/limit": ("restore/stowage", "restore/limit"), "restore stowage/addon": ("restore/stowage", "restore/addon")}
    ratios = {k: ratio(a, b) for k, (a, b) in pairs.items()}
    paired_ratios = {k: paired(a, b) for k, (a, b) in pairs.items()}
    dump_bytes = next(r["dump_bytes"] for r in rows if r["engine"] == engine)
    last = max(r["round"] for r in rows if r["engine"] == engine)
    profile = {op: trace_profile(f"{work}/trace-{engine}-{op}-{last}.txt") for op in ("backup", "restore")}
    engines[engine] = {"dump_bytes": dump_bytes, "variants": summary, "ratios": ratios, "paired_ratios": paired_ratios, "stowage_trace": profile}
    md += ["", f"## {engine}: dump {dump_bytes / MiB:.0f} MiB", "",
           "| variant | wall s | stored | machine busy, CPU s, floor s | CPU s by process (sampled round) | peak RSS MiB by process |", "|---|---|---|---|---|---|"]
    for k, s in summary.items():
        cpu = ", ".join(f"{n} {o['cpu_median_s']}" for n, o in s["roles"].items())
        rss = ", ".join(f"{n} {o['peak_rss_mib']}" for n, o in s["roles"].items() if o["peak_rss_mib"])
        stored = mib(s["stored_bytes"]) if k.startswith("backup") else ""
        busy = f"{s['machine_busy_share']:.0%}, {s['machine_cpu_s']}, {s['cpu_floor_s']}" if "machine_cpu_s" in s else ""
        if "machine_kernel_cpu_s" in s:
            kc = s["machine_kernel_cpu_s"]
            busy += f"; kernel {kc['median']} ({kc['min']}-{kc['max']})"
        md.append(f"| {k} | {s['wall_median_s']} ({s['wall_min_s']}-{s['wall_max_s']}) | {stored} | {busy} | {cpu} | {rss} |")
    md += ["", "Ratios of medians: " + ", ".join(f"{k} {v}" for k, v in ratios.items()) + ".",
           "Medians of each round's ratios: " + ", ".join(f"{k} {v}" for k, v in paired_ratios.items()) + "."]
    for op, p in profile.items():
        if p:
            md += [f"Stowage {op} profile (STOWAGE_TRACE, last round): {p['agent_calls']} agent calls "
                   f"({p['new_connections']} on new SSH connections, {p['reused_connections']} reused); "
                   + "; ".join(p["steps"]) + "."]
if dailies:
    md += ["", f"## Ten daily backups: PostgreSQL, 2% of the accounts changed between them", "",
           "| day | dump | Stowage repository | restic (v2, compression auto) | add-on (gzip, restic without compression) |", "|---|---|---|---|---|"]
    for d in dailies:
        md.append(f"| {d['day']} | {mib(d['dump_bytes'])} | {mib(d['stowage'])} | {mib(d['restic'])} | {mib(d['addon'])} |")
    last = dailies[-1]
    md += ["", f"After {last['day']} days: Stowage {last['stowage']} bytes (one copy of two), restic {last['restic']}, the add-on {last['addon']}."]
levels = open(os.path.join(work, "zstd-levels.md")).read().strip()
if levels:
    md += ["", "## zstd levels on the plain dumps (bench/zstd-levels.sh: one core, 2 MiB blocks, zstd's benchmark)", "",
           "| dump | level | stored | ratio | compression | decompression |", "|---|---|---|---|---|---|", levels]
md += ["", "Machine busy (timed rounds, median): the share of all cores' time not idle while the variant ran (/proc/stat); "
       "CPU s: those busy seconds; floor s: the same over the cores, the shortest wall time that much work allows on this machine; "
       "kernel: the kernel's share of the CPU s (median, min-max over the rounds). "
       "Processes marked (running) are the lab's servers that run all along: the CPU they used while the variant ran.",
       "", "Targets: backup stowage/limit at most 1.3 and stowage/addon at most 0.25; restore stowage/limit at most 1.15; agent and coordinator under 256 MiB; ten dailies in no more than restic's bytes.",
       "Stored: limit = the plain dump; addon = restic's repository on st1 after the rounds; stowage = what this engine's backups added to the environment's repository on st1 (one copy of two) over the rounds.",
       "Redis limit: backup = redis-cli --rdb to /dev/null (each master at once); restore = a redis-server loading the RDB from local disk until it answers. Stowage's Redis restore replicates into the live server (a cluster: every key sent as RESTORE), which the limit does not.",
       "Redis add-on (its scripts: backup-logic.sh, redis-restore.sh): backup = redis-cli --rdb of each master in turn, stored by restic uncompressed; restore = restic restore, then every key sent to the live server as a RESTORE, one RDB after the other, as its RedisShake does: the commands made from the plain dump before the rounds and the target flushed before each timed run, so RedisShake's own reading of the file is not counted (a lower bound). "
       "Results before 2026-12-08T03 modelled it as gzip of the RDB, and a scratch server loading it."]
json.dump({"machine": machine, "scale": int(scale), "rounds": int(rounds), "redis_keys": int(redis_keys), "engines": engines,
           "dailies": dailies, "runs": rows}, open(base + ".json", "w"), indent=1, sort_keys=True)
open(base + ".md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
