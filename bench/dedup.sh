#!/usr/bin/env bash
# Ten daily backups (issue: backup storage, "ten consecutive daily backups of a database with
# about 2% of rows changed per day occupy no more than restic's repository").
#
# The same ten pgbench-like dumps (day N = day N-1 with ~2% of rows updated and a few
# appended) are stored three ways, and the bytes on disk are reported after each day:
#   stowage   the agent's chunk job (FastCDC, zstd, AES-256-GCM) with one repository's
#             keys; a chunk counts once however many days reference it; plus each day's
#             manifest (its JSON, zstd-compressed and sealed: measured, not guessed)
#   restic    restic 0.14 (Debian), repository v2 with its default compression, dump on stdin
#   add-on    the add-on's pipeline: gzip, then restic with compression off
# Needs `scripts/setup.sh` (the release agent) and restic (`apt-get install restic`).
set -euo pipefail
cd "$(dirname "$0")/.."
AGENT=.build-agent/release/stowage-agent
[ -x "$AGENT" ] || { echo "bench: build first: bash scripts/setup.sh" >&2; exit 1; }
command -v restic >/dev/null || { echo "bench: needs restic: apt-get install restic" >&2; exit 1; }
SIZE_MB=${SIZE_MB:-100}
DAYS=${DAYS:-10}
CHANGE=${CHANGE:-0.02}
LEVEL=${LEVEL:-3}
# random: the changed rows anywhere in the table (every MiB-sized chunk then holds one, so no
# chunking dedups them); recent: among the newest tenth of the rows (hot data), the rest
# of the table unchanged.
PATTERN=${PATTERN:-random}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
key() { head -c "$1" /dev/urandom | base64 -w0; }
DK=$(key 32); IK=$(key 32); SEED=$(key 8)
echo "bench-password" > "$work/pw"
export RESTIC_PASSWORD_FILE=$work/pw
restic init --repo "$work/restic" -q >/dev/null
restic init --repo "$work/addon" -q >/dev/null

python3 - "$work" "$SIZE_MB" "$DAYS" "$CHANGE" "$PATTERN" <<'PY'
# Day 0: accounts rows as pg_dump writes them; each next day updates CHANGE of the rows
# (balance and note) and appends CHANGE/10 new ones.
import random, sys
work, mb, days, change, pattern = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
random.seed(11)
words = ["lorem", "ipsum", "dolor", "sit", "amet", "order", "shipped", "pending", "refund", "customer"]
rows = []
size = 0
while size < mb * 1_000_000:
    r = [len(rows), len(rows) // 100000 + 1, random.randint(-5000, 5000), " ".join(random.choice(words) for _ in range(6))]
    rows.append(r)
    size += 40 + len(r[3])
for d in range(days):
    if d > 0:
        first = 0 if pattern == "random" else len(rows) - len(rows) // 10
        for i in random.sample(range(first, len(rows)), int(len(rows) * change)):
            rows[i][2] = random.randint(-5000, 5000)
            rows[i][3] = " ".join(random.choice(words) for _ in range(6))
        for _ in range(int(len(rows) * change / 10)):
            rows.append([len(rows), len(rows) // 100000 + 1, 0, "new account"])
    with open(f"{work}/day{d}.sql", "w") as f:
        f.write("--\n-- PostgreSQL database dump\n--\n\nCOPY public.pgbench_accounts (aid, bid, abalance, filler) FROM stdin;\n")
        f.write("".join(f"{a}\t{b}\t{c}\t{n}\n" for a, b, c, n in rows))
        f.write("\\.\n")
PY

declare -A seen
stowage_chunks=0
rows_md=""
json_days=""
for ((d = 0; d < DAYS; d++)); do
    dump=$work/day$d.sql
    raw=$(stat -c %s "$dump")
    job=$(printf '{"type":"chunk","command":["cat","%s"],"zstdLevel":%d,"secrets":{"dataKey":"%s","idKey":"%s","chunkerSeed":"%s"}}' \
        "$dump" "$LEVEL" "$DK" "$IK" "$SEED")
    # Python keeps the agent's stdin open (closing it cancels the job).
    python3 - "$AGENT" "$job" "$work/events" <<'PY'
import subprocess, sys
agent, job, events = sys.argv[1], sys.argv[2], sys.argv[3]
with open(events, "wb") as ev:
    p = subprocess.Popen([agent, "serve"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=ev)
    p.stdin.write(job.encode() + b"\n"); p.stdin.flush()
    sys.exit(p.wait())
PY
    # New chunks only: the agent reports stored > 0 the first time it sees an ID in a run;
    # across days the repository already holds the others.
    while read -r id stored; do
        if [ -z "${seen[$id]:-}" ] && [ "$stored" -gt 0 ]; then seen[$id]=1; stowage_chunks=$((stowage_chunks + stored)); fi
    done < <(grep '"event":"chunk"' "$work/events" | sed 's/.*"id":"\([0-9a-f]*\)".*"stored":\([0-9]*\).*/\1 \2/')
    # The manifest: the chunk list as JSON, compressed like the format does (zstd) plus
    # the envelope's 29 bytes.
    manifest=$(grep '"event":"chunk"' "$work/events" | zstd -3 -q -c | wc -c)
    stowage_manifests=$(( ${stowage_manifests:-0} + manifest + 29 ))
    stowage_total=$((stowage_chunks + stowage_manifests))

    restic backup --repo "$work/restic" -q --stdin --stdin-filename dump.sql < "$dump" >/dev/null
    gzip -c "$dump" | restic backup --repo "$work/addon" -q --compression off --stdin --stdin-filename db_backup.sql.gz >/dev/null
    r=$(du -sb "$work/restic" | cut -f1)
    a=$(du -sb "$work/addon" | cut -f1)
    rows_md+="| $((d + 1)) | $((raw / 1000000)) MB | $(echo "$stowage_total / 1000000" | bc -l | xargs printf '%.1f') MB | $(echo "$r / 1000000" | bc -l | xargs printf '%.1f') MB | $(echo "$a / 1000000" | bc -l | xargs printf '%.1f') MB |
"
    json_days+="${json_days:+,}{\"day\":$((d + 1)),\"rawBytes\":$raw,\"stowageBytes\":$stowage_total,\"resticBytes\":$r,\"addonBytes\":$a}"
done
verdict=$([ "$stowage_total" -le "$r" ] && echo "met" || echo "missed")
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p bench/results
report="# Ten daily backups: Stowage vs restic, $stamp

Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; restic $(restic version | cut -d' ' -f2); zstd level $LEVEL.
Data: a pgbench-like COPY dump of ${SIZE_MB} MB; each day ${CHANGE} of the rows updated (pattern: ${PATTERN}) and a tenth of that appended.

| day | dump | Stowage repository | restic (v2, compression auto) | add-on (gzip, restic without compression) |
|---|---|---|---|---|
${rows_md}
Target (ten dailies in no more bytes than restic): **${verdict}** ($stowage_total vs $r bytes).
Stowage counts chunk envelopes once and each day's manifest; restic and the add-on are \`du -sb\` of the repository (data, index, snapshots, keys)."
echo "$report"
echo "$report" > "bench/results/dedup-$stamp.md"
printf '{"stamp":"%s","sizeMB":%d,"change":%s,"pattern":"%s","zstdLevel":%d,"days":[%s],"target":"%s"}\n' \
    "$stamp" "$SIZE_MB" "$CHANGE" "$PATTERN" "$LEVEL" "$json_days" "$verdict" > "bench/results/dedup-$stamp.json"
