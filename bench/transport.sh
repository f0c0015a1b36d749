#!/usr/bin/env bash
# Transport benchmark (issue: node agents over SSH).
#
# One agent session streaming 1 GiB node → coordinator (and coordinator → node) against
# OpenSSH's own `ssh NODE 'head -c 1G /dev/zero' > /dev/null` on the same loopback link,
# alternating A B A B for ROUNDS rounds; reports the median rate of each, the ratio, and
# the coordinator's peak RSS. Target: agent ≥ 70% of OpenSSH; coordinator < 64 MiB.
# Needs the lab up (fixtures/lab/lab.sh up) and a release build (scripts/setup.sh release).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
NODE=${NODE:-st1}
ADDR=${ADDR:-127.0.9.1}
LAB=$(bash fixtures/lab/lab.sh dir)
INV=$LAB/stowage.yaml
STOWAGE=.build/release/stowage
AGENT=.build-agent/release/stowage-agent
[ -x "$STOWAGE" ] && [ -x "$AGENT" ] || { echo "bench: build first: bash scripts/setup.sh release" >&2; exit 1; }
mkdir -p bench/results
$STOWAGE agent install "$(grep -q "name: $NODE," "$INV" && echo lab-storage)" --config "$INV" --agent-binary "$AGENT" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
out=() in=() ssh=() rss=()
for ((r = 1; r <= ROUNDS; r++)); do
    line=$(/usr/bin/time -f "RSS %M" $STOWAGE agent bench "$NODE" --bytes 1G --config "$INV" --agent-binary "$AGENT" 2>&1)
    out+=("$(echo "$line" | sed -n 's/.*= \([0-9.]*\) MB\/s.*/\1/p')")
    rss+=("$(echo "$line" | sed -n 's/^RSS \([0-9]*\)/\1/p')")
    line=$($STOWAGE agent bench "$NODE" --bytes 1G --direction in --config "$INV" --agent-binary "$AGENT")
    in+=("$(echo "$line" | sed -n 's/.*= \([0-9.]*\) MB\/s.*/\1/p')")
    t0=$(date +%s.%N)
    ssh -q -i "$LAB/ssh/id_ed25519" -o UserKnownHostsFile="$LAB/ssh/known_hosts" -o StrictHostKeyChecking=yes \
        -p "${STOWAGE_LAB_SSH_PORT:-4022}" "root@$ADDR" 'head -c 1G /dev/zero' >/dev/null
    t1=$(date +%s.%N)
    ssh+=("$(echo "1073.741824 / ($t1 - $t0)" | bc -l | xargs printf '%.1f')")
done
mo=$(printf '%s\n' "${out[@]}" | median); mi=$(printf '%s\n' "${in[@]}" | median)
ms=$(printf '%s\n' "${ssh[@]}" | median); mr=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
ratio=$(echo "$mo / $ms * 100" | bc -l | xargs printf '%.0f')
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
report="# Transport benchmark $stamp

Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(ssh -V 2>&1); libssh2 $(dpkg-query -W -f='${Version}' libssh2-1); $ROUNDS rounds, 1 GiB each, loopback.

| variant | median MB/s | all rounds |
|---|---|---|
| OpenSSH \`ssh $NODE 'head -c 1G /dev/zero'\` | $ms | ${ssh[*]} |
| agent session, node → coordinator | $mo | ${out[*]} |
| agent session, coordinator → node | $mi | ${in[*]} |

Agent / OpenSSH (out): **${ratio}%** (target ≥ 70%). Coordinator peak RSS while streaming 1 GiB: **$((mr / 1024)) MiB** (target < 64 MiB)."
echo "$report"
echo "$report" > "bench/results/transport-$stamp.md"
printf '{"timestamp":"%s","rounds":%d,"openssh_mbps":%s,"agent_out_mbps":%s,"agent_in_mbps":%s,"ratio_percent":%s,"coordinator_peak_rss_kib":%s}\n' \
    "$stamp" "$ROUNDS" "$ms" "$mo" "$mi" "$ratio" "$mr" > "bench/results/transport-$stamp.json"
