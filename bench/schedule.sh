#!/usr/bin/env bash
# Scheduler scale (issue: scheduled runs): the next run of 10,000 policies of mixed kinds
# (pre-defined, cron with steps and the day OR rule, a leap-day cron, custom times in five
# time zones). Target: under one second. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product stowage >/dev/null
N=${POLICIES:-10000}
out=$(.build/release/stowage schedule bench --policies "$N")
echo "$out"
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p bench/results
printf '# Scheduler next-run benchmark %s\n\nMachine: %s cores.\n\n%s\n\nTarget: the next runs of 10,000 policies in under one second.\n' \
    "$stamp" "$(nproc)" "$out" > "bench/results/schedule-$stamp.md"
