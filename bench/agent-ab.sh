#!/usr/bin/env bash
# A/B of agent builds on one layer's backup, on the lab with its data loaded (bench/run.sh's
# data sets, say): rounds alternating between the builds, each installed before its run;
# wall time, then CPU seconds and peak RSS MiB per process role (bench/sample.py).
# usage: bench/agent-ab.sh LAYER ROUNDS NAME=AGENT_BINARY...   (release build of stowage)
# Used for issue 15's sealing thread and malloc settings: bench/results/agent-ab-2026-12-07.md.
set -euo pipefail
cd "$(dirname "$0")/.."
layer=$1 rounds=$2; shift 2
lab=/var/lib/stowage-lab
export STOWAGE_CONFIG=$lab/stowage.yaml
st=$PWD/.build/release/stowage
for r in $(seq "$rounds"); do
  for v in "$@"; do
    name=${v%%=*} bin=${v#*=}
    STOWAGE_AGENT_BINARY=$bin $st agent install >/dev/null
    rm -f /tmp/ab.stop
    python3 bench/sample.py /tmp/ab.stop 127.0.9.1,127.0.9.2 > /tmp/ab.sample &
    sp=$!
    sleep 0.2
    t0=$(date +%s.%N)
    STOWAGE_AGENT_BINARY=$bin $st backup "$layer" --keep 3 --json > /dev/null
    t1=$(date +%s.%N)
    touch /tmp/ab.stop; wait $sp
    python3 -c "
import json,sys
d=json.load(open('/tmp/ab.sample'))
m=d.pop('machine', {})
print('$name', round($t1-$t0,2), 'machine busy CPU-s', m.get('busy_cpu_s'), {k:(v['cpu_s'], v.get('peak_rss_mib')) for k,v in d.items()})" 2>/dev/null || { echo "$name $(echo "$t1 - $t0" | bc)"; cat /tmp/ab.sample | head -c 600; echo; }
  done
done
