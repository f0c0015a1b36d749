#!/usr/bin/env bash
# Agent pipeline benchmark (issue: backup storage): chunking + keyed hashing + zstd +
# AES-256-GCM in `stowage-agent` on SQL-dump-like text, one core (taskset), output
# discarded. Target: >= 300 MB/s. Needs `scripts/setup.sh` (the release static agent).
set -euo pipefail
cd "$(dirname "$0")/.."
AGENT=.build-agent/release/stowage-agent
[ -x "$AGENT" ] || { echo "bench: build first: bash scripts/setup.sh" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
SIZE_MB=${SIZE_MB:-400}
LEVEL=${LEVEL:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A pgbench-like COPY section: numbers, tabs and repeated filler, as pg_dump writes it.
python3 - "$work/dump.sql" "$SIZE_MB" <<'PY'
import random, sys
random.seed(7)
path, mb = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("COPY public.pgbench_accounts (aid, bid, abalance, filler) FROM stdin;\n")
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "order", "shipped", "pending", "refund", "customer"]
    notes = [" ".join(random.choice(words) for _ in range(6)) for _ in range(5000)]
    i, size, out = 0, 0, []
    while size < mb * 1_000_000:
        line = f"{i}\t{i // 100000 + 1}\t{random.randint(-5000, 5000)}\t{notes[i % 4999]}\t{random.random():.6f}\n"
        out.append(line); size += len(line); i += 1
        if len(out) == 100000: f.write("".join(out)); out = []
    f.write("".join(out))
PY
bytes=$(stat -c %s "$work/dump.sql")
key() { head -c "$1" /dev/urandom | base64 -w0; }
job=$(printf '{"type":"chunk","command":["cat","%s"],"zstdLevel":%d,"secrets":{"dataKey":"%s","idKey":"%s","chunkerSeed":"%s"}}' \
    "$work/dump.sql" "$LEVEL" "$(key 32)" "$(key 32)" "$(key 8)")
cat "$work/dump.sql" >/dev/null # warm the page cache
rates=()
for ((r = 1; r <= ROUNDS; r++)); do
    # Python holds the agent's stdin open, as the coordinator does (closing it would
    # cancel the job), and times from start to exit.
    line=$(python3 - "$AGENT" "$job" "$work/events" <<'PY'
import subprocess, sys, time
agent, job, events = sys.argv[1], sys.argv[2], sys.argv[3]
with open(events, "wb") as ev:
    t0 = time.monotonic()
    p = subprocess.Popen(["taskset", "-c", "0", agent, "serve"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=ev)
    p.stdin.write(job.encode() + b"\n"); p.stdin.flush()
    rc = p.wait()
    print(rc, time.monotonic() - t0)
PY
)
    rc=${line%% *}; secs=${line#* }
    [ "$rc" = 0 ] || { cat "$work/events" >&2; exit 1; }
    rates+=("$(echo "$bytes / 1000000 / $secs" | bc -l | xargs printf '%.0f')")
    stored=$(grep '"event":"chunk"' "$work/events" | sed 's/.*"stored":\([0-9]*\).*/\1/' | paste -sd+ | bc)
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
gz=$(gzip -c "$work/dump.sql" | wc -c)
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p bench/results
report="# Agent pipeline benchmark $stamp

One core (taskset -c 0) of $(nproc), $((bytes / 1000000)) MB of pgbench-like COPY text, zstd level $LEVEL, $ROUNDS rounds.

| figure | value |
|---|---|
| chunk + HMAC + zstd + AES-GCM, median | **$median MB/s** (rounds: ${rates[*]}; target ≥ 300) |
| stored bytes | $stored ($(echo "$stored * 100 / $bytes" | bc -l | xargs printf '%.1f')% of raw) |
| gzip -6 of the same dump | $gz ($(echo "$gz * 100 / $bytes" | bc -l | xargs printf '%.1f')% of raw) |"
echo "$report"
echo "$report" > "bench/results/pipeline-$stamp.md"
printf '{"timestamp":"%s","mb":%d,"median_mbps":%s,"stored":%s,"gzip":%s,"zstd_level":%d}\n' "$stamp" "$((bytes / 1000000))" "$median" "$stored" "$gz" "$LEVEL" > "bench/results/pipeline-$stamp.json"
