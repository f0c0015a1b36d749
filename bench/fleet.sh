#!/usr/bin/env bash
# Fleet memory (issue: scheduled runs): the coordinator's memory during one scheduled wave
# must be bounded by the concurrency limit, not by the fleet size. The scheduler runs the
# lab's fleet Redis layers (fl01-fl20, each with about 20 MB of data) every minute, once
# with FLEET_SMALL layers and once with FLEET_LARGE, at the same concurrency; /proc is
# sampled every 0.2 s for the scheduler's RSS, the summed RSS of its running backup children
# and their number. Needs the lab (fixtures/lab/lab.sh up) and the agent build.
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL=${FLEET_SMALL:-5}
LARGE=${FLEET_LARGE:-20}
CONCURRENCY=${CONCURRENCY:-3}
swift build -c release --product stowage >/dev/null
stowage=$PWD/.build/release/stowage
export STOWAGE_AGENT_BINARY=${STOWAGE_AGENT_BINARY:-$PWD/.build-agent/release/stowage-agent}
lab=$(bash fixtures/lab/lab.sh dir)
[ -f "$lab/stowage.yaml" ] || { echo "fleet: start the lab first: bash fixtures/lab/lab.sh up" >&2; exit 1; }
export REDISCLI_AUTH; REDISCLI_AUTH=$(cat "$lab/secrets/redis-password")
for i in $(seq 1 "$LARGE"); do
    redis-cli -h "127.0.5.$i" DEBUG POPULATE 100000 "bench" 200 >/dev/null
done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

run_fleet() { # layers
    local n=$1 dir
    dir=$(mktemp -d "$lab/work/fleet-bench.XXXXXX")
    {
        echo "ssh: { identity: $lab/ssh/id_ed25519, known_hosts: $lab/ssh/known_hosts }"
        echo "storages:"
        echo "  fleet-storage:"
        echo "    password_file: $lab/secrets/storage-password"
        echo "    nodes: [ { name: st1, ssh: root@127.0.9.1:4022, root: $dir/st1 }, { name: st2, ssh: root@127.0.9.2:4022, root: $dir/st2 } ]"
        echo "scheduler: { concurrency: $CONCURRENCY, per_storage: $CONCURRENCY, start_delay: 5s, grace: 60s }"
        echo "environments:"
        echo "  fleet:"
        echo "    layers:"
        for i in $(seq 1 "$n"); do
            printf '      r%02d: { engine: redis, nodes: [ { name: fl%02d, ssh: root@127.0.5.%d:4022, db: 127.0.5.%d:6379 } ], credentials: { password_file: %s/secrets/redis-password } }\n' \
                "$i" "$i" "$i" "$i" "$lab"
        done
    } >"$dir/stowage.yaml"
    {
        echo "policies:"
        for i in $(seq 1 "$n"); do
            printf '  fleet/r%02d: { schedule: "* * * * *", storage: fleet-storage, keep: 2, installed: %s }\n' "$i" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        done
    } >"$dir/stowage.policies.yaml"
    "$stowage" scheduler --config "$dir/stowage.yaml" >"$dir/scheduler.log" 2>&1 &
    local pid=$! peak_sched=0 peak_total=0 peak_children=0 done_runs=0 t0=$SECONDS
    while [ $((SECONDS - t0)) -lt 180 ]; do
        local s total children=0 c
        s=$(rss_kb "$pid")
        total=$s
        for c in $(pgrep -P "$pid" -f "backup fleet/" || true); do
            total=$((total + $(rss_kb "$c")))
            children=$((children + 1))
        done
        [ "$s" -gt "$peak_sched" ] && peak_sched=$s
        [ "$total" -gt "$peak_total" ] && peak_total=$total
        [ "$children" -gt "$peak_children" ] && peak_children=$children
        done_runs=$(grep -c " ok in " "$dir/scheduler.log" || true)
        [ "$done_runs" -ge "$n" ] && break
        sleep 0.2
    done
    kill -TERM "$pid"; wait "$pid" || true
    echo "$n $done_runs $peak_children $((peak_sched / 1024)) $((peak_total / 1024))"
    rm -rf "$dir"
}

small=$(run_fleet "$SMALL")
large=$(run_fleet "$LARGE")
for i in $(seq 1 "$LARGE"); do redis-cli -h "127.0.5.$i" FLUSHALL >/dev/null; done
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p bench/results
{
    echo "# Fleet memory benchmark $stamp"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo). Release build. Concurrency $CONCURRENCY; every layer a Redis node with 100,000 keys (about 25 MB)."
    echo
    echo "| layers | runs ok | peak runs at once | scheduler peak RSS (MiB) | scheduler + running backups peak RSS (MiB) |"
    echo "|---|---|---|---|---|"
    for row in "$small" "$large"; do
        set -- $row
        echo "| $1 | $2 | $3 | $4 | $5 |"
    done
    echo
    echo "Target: the peak does not grow with the fleet: it is the scheduler plus at most 'concurrency' backup processes."
} | tee "bench/results/fleet-$stamp.md"
