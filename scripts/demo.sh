#!/usr/bin/env bash
# The main job on the local lab: install, build, start the lab, then the whole story:
# topology of every layer, agents installed and checked, a backup of every lab layer, the
# list of backups, a restore of each shop layer after its data is damaged, the check that
# the data came back, the add-on installed on the shop layers and the scheduler running
# them, and the fleet's status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
export STOWAGE_AGENT_BINARY=$PWD/.build-agent/release/stowage-agent
bash fixtures/lab/lab.sh up
lab=$(bash fixtures/lab/lab.sh dir)
export STOWAGE_CONFIG=$lab/stowage.yaml
stowage=.build/debug/stowage

step() { echo; echo "== $*"; }
# Runs a stowage command; exit 2 (warnings) is expected for the lab's non-clustered layers.
run() {
    local status=0
    "$stowage" "$@" || status=$?
    case $status in
        0) ;;
        2) echo "(exit 2: warnings, see above)" ;;
        *) echo "demo: stowage $* failed with exit $status (docs/exit-codes.md)"; exit "$status" ;;
    esac
}

step "stowage topology   (config: $STOWAGE_CONFIG)"
run topology
echo "(staging/sqldb is two independent servers on purpose: the add-on's non-clustered case)"

step "stowage agent install   (every node, over SSH)"
run agent install
step "stowage agent check"
run agent check

# Some data to protect, written through each server's admin path.
step "seeding demo data"
runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -X -q -h "$lab/run/pg1" -U postgres -d postgres \
    -c "DROP DATABASE IF EXISTS demo_shop" -c "CREATE DATABASE demo_shop"
runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -X -q -h "$lab/run/pg1" -U postgres -d demo_shop \
    -c "CREATE TABLE orders AS SELECT g AS id, 'order ' || g AS note FROM generate_series(1, 50000) g"
mariadb --no-defaults -S "$lab/run/my1.sock" -u root -e "DROP DATABASE IF EXISTS demo_shop; CREATE DATABASE demo_shop;
    CREATE TABLE demo_shop.orders AS SELECT seq AS id, CONCAT('order ', seq) AS note FROM demo_shop.seq_1_to_50000"
export REDISCLI_AUTH; REDISCLI_AUTH=$(cat "$lab/secrets/redis-password")
redis-cli -h 127.0.3.10 EVAL "for i = 1, 5000 do redis.call('SET', 'cart:' .. i, i) end return 5000" 0 >/dev/null
for i in $(seq 1 30); do redis-cli -c -h 127.0.4.1 SET "session:$i" "user $i" >/dev/null; done
unset REDISCLI_AUTH
echo "demo_shop (PostgreSQL, MariaDB): 50000 orders each; shop/cache: 5000 keys; shop/sessions: 30 keys"

for layer in shop/sqldb shop/mariadb shop/cache shop/sessions staging/sqldb staging/mariadb staging/cache; do
    step "stowage backup $layer --keep 7"
    run backup "$layer" --keep 7
done

step "stowage backups"
run backups

step "damaging the shop data"
runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -X -q -h "$lab/run/pg1" -U postgres -d demo_shop -c "DELETE FROM orders WHERE id % 2 = 0"
mariadb --no-defaults -S "$lab/run/my1.sock" -u root -e "DROP TABLE demo_shop.orders"
REDISCLI_AUTH=$(cat "$lab/secrets/redis-password") redis-cli -h 127.0.3.10 FLUSHALL >/dev/null
echo "half the PostgreSQL orders deleted, the MariaDB table dropped, the Redis cache flushed"

for layer in shop/sqldb shop/mariadb shop/cache shop/sessions; do
    step "stowage restore $layer --backup latest --yes"
    run restore "$layer" --backup latest --yes
done

step "after the restore"
echo "PostgreSQL demo_shop.orders on pg1: $(runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -X -At -h "$lab/run/pg1" -U postgres -d demo_shop -c 'SELECT count(*) FROM orders') rows, on the replica pg2: $(runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -X -At -h "$lab/run/pg2" -U postgres -d demo_shop -c 'SELECT count(*) FROM orders')"
echo "MariaDB demo_shop.orders on my1: $(mariadb --no-defaults -S "$lab/run/my1.sock" -u root -N -e 'SELECT count(*) FROM demo_shop.orders') rows"
echo "Redis shop/cache on rd1: $(REDISCLI_AUTH=$(cat "$lab/secrets/redis-password") redis-cli -h 127.0.3.10 DBSIZE) keys"

# The add-on's Install, then the scheduler running every policy.
for layer in shop/sqldb shop/mariadb shop/cache shop/sessions; do
    step "stowage addon install $layer --schedule '* * * * *' --keep 3"
    run addon install "$layer" --schedule "* * * * *" --keep 3
done
step "stowage scheduler   (until every shop layer has had a scheduled run; then SIGTERM)"
"$stowage" scheduler >"$lab/log/scheduler.log" 2>&1 &
scheduler=$!
for _ in $(seq 1 150); do
    # Layers whose last run is a scheduled one that succeeded (the manual backups above are
    # in the run catalog too).
    ok=$({ "$stowage" status shop --no-probe --json 2>/dev/null || true; } | python3 -c '
import json, sys
doc = json.load(sys.stdin)
print(sum(1 for l in doc["layers"] if (l.get("lastRun") or {}).get("outcome") == "ok" and (l.get("lastRun") or {}).get("trigger") != "manual"))' 2>/dev/null || echo 0)
    [ "$ok" -ge 4 ] && break
    sleep 1
done
kill -TERM "$scheduler"
wait "$scheduler" || { echo "demo: the scheduler exited $?"; cat "$lab/log/scheduler.log"; exit 1; }
cat "$lab/log/scheduler.log"
step "stowage status"
run status
echo
echo "demo: done; the lab keeps running (stop it with: bash fixtures/lab/lab.sh down)"
