#!/usr/bin/env bash
# The main job on the local lab: install, build, start the lab, then show the topology of
# every lab layer (primary, replicas, lag, and the add-on's warnings).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export STOWAGE_AGENT_BINARY=$PWD/.build-agent/release/stowage-agent
bash fixtures/lab/lab.sh up
inventory=$(bash fixtures/lab/lab.sh dir)/stowage.yaml
echo
echo "== stowage topology --config $inventory"
status=0
.build/debug/stowage topology --config "$inventory" || status=$?
echo
case $status in
    0) echo "demo: every layer is healthy (exit 0)" ;;
    2) echo "demo: exit 2 = warnings; expected here: staging/sqldb is two independent servers (non-clustered)" ;;
    *) echo "demo: exit $status (docs/exit-codes.md)"; exit "$status" ;;
esac
echo
echo "== stowage agent install --config $inventory   (every node, over SSH)"
.build/debug/stowage agent install --config "$inventory"
echo
echo "== stowage agent check --config $inventory"
.build/debug/stowage agent check --config "$inventory"
echo
echo "demo: the lab keeps running; stop it with: bash fixtures/lab/lab.sh down"
