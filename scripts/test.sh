#!/usr/bin/env bash
# The whole test suite: install, build, start the lab, run every test (unit, recorded
# fixtures, integration on the lab), stop the lab. Integration tests never skip: a lab that
# does not come up fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The code follows .swift-format (docs/architecture.md); drift fails here, in seconds.
swift format lint --strict -r Sources Tests Package.swift
export STOWAGE_AGENT_BINARY=$PWD/.build-agent/release/stowage-agent
trap 'bash fixtures/lab/lab.sh down' EXIT
bash fixtures/lab/lab.sh up
swift test --skip-build
