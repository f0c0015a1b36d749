#!/usr/bin/env bash
# The stub a scheduler starts instead of `stowage backup` in bench/coordination.sh: no dump,
# no storage; it answers like a committed backup, so that only the scheduling, the slot
# claims and the lease work are measured.
# Called as: stub-runner.sh backup ENV/LAYER --policy --json [--slot STAMP] --config PATH
printf '{"backup":"%s-auto","sourceNodes":["stub"],"rawBytes":0,"storedBytes":0,"missingReplicas":{}}\n' "$(date -u +%Y-%m-%dT%H%M%SZ)"
