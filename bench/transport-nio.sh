#!/usr/bin/env bash
# What the coordinator's SSH transport costs per GiB with libssh2 1.10 (Stowage today) and
# with swift-nio-ssh (bench/nio-ssh-probe, a measurement only): one session channel moving
# 1 GiB coordinator → node ("in": to `cat > /dev/null`) and node → coordinator ("out": from
# `head -c 1G /dev/zero`), alternating, ROUNDS rounds; the median rate and the median CPU
# seconds (user + system) of the coordinator-side process for each.
#
# Issue 15 asks for the coordinator's CPU per GiB backed up halved; its profile
# (bench/results/coordinator-profile-2026-12-07.md) is libssh2 and libcrypto moving each new
# sealed byte three times, one 16-byte cipher block per OpenSSL call. This says what another
# SSH implementation on the same machine would leave of that.
# Needs the lab up (fixtures/lab/lab.sh up) and a release build (scripts/setup.sh release);
# builds the probe (a package of its own: Stowage does not depend on swift-nio-ssh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
NODE=${NODE:-st1}
ADDR=${ADDR:-127.0.9.1}
PORT=${STOWAGE_LAB_SSH_PORT:-4022}
LAB=$(bash fixtures/lab/lab.sh dir)
INV=$LAB/stowage.yaml
STOWAGE=.build/release/stowage
AGENT=.build-agent/release/stowage-agent
[ -x "$STOWAGE" ] && [ -x "$AGENT" ] || { echo "bench: build first: bash scripts/setup.sh release" >&2; exit 1; }
swift build -c release --package-path bench/nio-ssh-probe --scratch-path .build-nio-ssh-probe >/dev/null
PROBE=.build-nio-ssh-probe/release/nio-ssh-probe
HOSTKEY=$(awk -v h="[$ADDR]:$PORT" '$1 == h { print $2, $3 }' "$LAB/ssh/known_hosts")
[ -n "$HOSTKEY" ] || { echo "bench: no host key for [$ADDR]:$PORT in $LAB/ssh/known_hosts (is the lab up?)" >&2; exit 1; }
$STOWAGE agent install lab-storage --config "$INV" --agent-binary "$AGENT" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A rate cpu
# Runs one transfer under /usr/bin/time; appends its MB/s and CPU-s to rate[KEY], cpu[KEY].
run() {
    local key=$1 out t0 t1 secs
    shift
    t0=$(date +%s.%N)
    out=$(/usr/bin/time -f "CPU %U %S" "$@" 2>&1)
    t1=$(date +%s.%N)
    secs=$(echo "$t1 - $t0" | bc -l)
    rate[$key]+="$(echo "1073.741824 / $secs" | bc -l | xargs printf '%.1f') "
    cpu[$key]+="$(echo "$out" | awk '/^CPU / { printf "%.2f", $2 + $3 }') "
}
for ((r = 1; r <= ROUNDS; r++)); do
    for dir in in out; do
        run "libssh2 $dir" $STOWAGE agent bench "$NODE" --bytes 1G --direction "$dir" --config "$INV" --agent-binary "$AGENT"
        run "nio-ssh $dir" $PROBE "$ADDR" "$PORT" "$LAB/ssh/id_ed25519" "$HOSTKEY" 1024 "$dir"
    done
    echo "bench: round $r done" >&2
done
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
{
    echo "# Coordinator-side SSH cost per GiB: libssh2 1.10 against swift-nio-ssh ($stamp)"
    echo
    echo "bench/transport-nio.sh, $ROUNDS rounds alternating, 1 GiB per transfer over one session channel to $NODE (lab, loopback); medians. \"in\": coordinator → node; \"out\": node → coordinator. libssh2: \`stowage agent bench\` (the process also starts, reads the inventory and checks the agent: about 0.1 CPU-s). swift-nio-ssh: bench/nio-ssh-probe (connects, authenticates with the lab's ed25519 key, checks the host key, execs cat or head)."
    echo
    echo "| transport | direction | MB/s | CPU-s per GiB (user + system) | rounds (MB/s; CPU-s) |"
    echo "|---|---|---|---|---|"
    for t in libssh2 nio-ssh; do
        for dir in in out; do
            k="$t $dir"
            echo "| $t | $dir | $(tr ' ' '\n' <<<"${rate[$k]}" | grep . | median) | $(tr ' ' '\n' <<<"${cpu[$k]}" | grep . | median) | ${rate[$k]% }; ${cpu[$k]% } |"
        done
    done
    echo
    echo "Machine: $(nproc) cores; $(dpkg-query -W -f '${Package} ${Version}' libssh2-1 2>/dev/null); OpenSSL $(openssl version | awk '{print $2}'); swift-nio-ssh $(python3 -c 'import json, sys; print(next(p["state"]["version"] for p in json.load(open(sys.argv[1]))["pins"] if p["identity"] == "swift-nio-ssh"))' bench/nio-ssh-probe/Package.resolved)."
} | tee "bench/results/transport-nio-$stamp.md"
