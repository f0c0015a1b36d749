#!/usr/bin/env bash
# zstd levels on a dump, in the agent's unit of work: 2 MiB blocks (the chunker's average),
# one thread, each level's stored size and compression speed (zstd's own benchmark mode).
# Usage: bench/zstd-levels.sh FILE [LABEL]; prints one Markdown table row per level.
# bench/run.sh runs it on each engine's plain dump (issue 15: which level for dumps).
set -euo pipefail
file=$1 label=${2:-$(basename "$1")}
for level in --fast=3 --fast=1 -b1 -b2 -b3 -b6; do
    case $level in
        --fast=*) args=(-b "$level") name="-${level#--fast=}" ;;
        *) args=("$level") name="${level#-b}" ;;
    esac
    # zstd redraws its line with \r; the last drawing holds the figures.
    zstd "${args[@]}" -B2MiB -i2 -T1 "$file" 2>&1 | tr '\r' '\n' | grep ' MB/s,' | tail -1 |
        python3 -c '
import re, sys
line = sys.stdin.read()
m = re.search(r":\s*(\d+)\s*->\s*(\d+)\s*\(x([\d.]+)\),\s*([\d.]+)\s*MB/s,\s*([\d.]+)\s*MB/s", line)
if not m: sys.exit("bench/zstd-levels: no figures in: " + line.strip())
raw, out, ratio, c, d = m.groups()
print(f"| {sys.argv[1]} | {sys.argv[2]} | {int(out) / 2**20:.1f} MiB | x{ratio} | {c} MB/s | {d} MB/s |")' "$label" "$name"
done
