#!/usr/bin/env bash
# Records the commit being built in Sources/CAgentSys/build_commit.h (untracked), rewritten
# only when it changes, so an unchanged tree rebuilds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=unknown
if git rev-parse --git-dir >/dev/null 2>&1; then
    commit=$(git rev-parse --short=12 HEAD)
    git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || commit="$commit-dirty"
fi
header=Sources/CAgentSys/build_commit.h
line="#define STOWAGE_COMMIT \"$commit\""
if [ "$(cat "$header" 2>/dev/null)" != "$line" ]; then
    printf '%s\n' "$line" >"$header"
fi
