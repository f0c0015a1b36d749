# Sourced by the benchmarks that own the lab for their run (bench/run.sh, bench/s3.sh,
# bench/pg-parallel.sh), from the repository's root: a release build, the lab up and
# stopped again when the script exits, and what they all use: $stowage (the release CLI),
# $lab, STOWAGE_AGENT_BINARY, PSQL_ADMIN and MY_ADMIN (the lab's servers as their
# superusers, over their sockets: no password in argv). STOWAGE_CONFIG and the installed
# agents are the script's choice (bench/s3.sh makes inventories of its own).
bash scripts/setup.sh release >/dev/null
export STOWAGE_AGENT_BINARY=$PWD/.build-agent/release/stowage-agent
stowage=$PWD/.build/release/stowage
bash fixtures/lab/lab.sh up >/dev/null
trap 'bash fixtures/lab/lab.sh down >/dev/null 2>&1 || true' EXIT
lab=$(bash fixtures/lab/lab.sh dir)
PSQL_ADMIN=(runuser -u postgres -- psql -X -q -h "$lab/run/pg1" -U postgres)
MY_ADMIN=(mariadb --no-defaults -S "$lab/run/my1.sock" -u root)

# Returns once the lab's replicas of ENGINE's primary (pg2 of pg1, my2 of my1, rd2 of rd1, a
# cluster's replicas of their masters) have replayed
# everything the primary has written so far; exits the script after TIMEOUT seconds.
# Benchmarks call it between variants: a replica replaying one restore's hundreds of MB of
# WAL or binlog would otherwise take the cores of the next variant.
replica_caught_up() {
    local engine=$1 timeout=${2:-300} target file pos i
    case $engine in
        postgresql)
            target=$("${PSQL_ADMIN[@]}" -d postgres -At -c "SELECT pg_current_wal_lsn()")
            for i in $(seq 1 $((timeout * 10))); do
                [ "$(runuser -u postgres -- psql -X -q -h "$lab/run/pg2" -U postgres -d template1 -At \
                    -c "SELECT pg_last_wal_replay_lsn() >= '$target'::pg_lsn")" = t ] && return 0
                sleep 0.1
            done
            echo "bench: pg2 did not catch up with pg1 in $timeout s" >&2
            exit 1 ;;
        mysql)
            # MASTER_POS_WAIT returns once the replica has applied up to the position (-1: timeout).
            read -r file pos < <("${MY_ADMIN[@]}" -N -e "SHOW MASTER STATUS" | awk '{ print $1, $2 }')
            [ "$(mariadb --no-defaults -S "$lab/run/my2.sock" -u root -N -e "SELECT MASTER_POS_WAIT('$file', $pos, $timeout)")" != -1 ] && return 0
            echo "bench: my2 did not catch up with my1 in $timeout s" >&2
            exit 1 ;;
        redis | rediscluster)
            # Every replica's link up with no full resync in progress (a restore makes each
            # one load the whole dataset again: seconds of CPU) and its master seeing it
            # online at its own offset.
            local replicas r m
            if [ "$engine" = redis ]; then
                replicas=127.0.3.11
            else
                replicas=$(redis-cli -h 127.0.4.1 CLUSTER NODES | awk '$3 ~ /slave/ { split($2, a, ":"); print a[1] }')
            fi
            for r in $replicas; do
                for i in $(seq 1 $((timeout * 10))); do
                    local info
                    info=$(redis-cli -h "$r" INFO replication | tr -d '\r')
                    m=$(awk -F: '$1 == "master_host" { print $2 }' <<<"$info")
                    if grep -q '^master_link_status:up' <<<"$info" && grep -q '^master_sync_in_progress:0' <<<"$info" \
                        && [ "$(awk -F: '$1 == "slave_repl_offset" { print $2 }' <<<"$info")" = \
                            "$(redis-cli -h "$m" INFO replication | tr -d '\r' | awk -F: '$1 == "master_repl_offset" { print $2 }')" ]; then
                        break
                    fi
                    [ "$i" -lt $((timeout * 10)) ] || { echo "bench: redis replica $r did not catch up in $timeout s" >&2; exit 1; }
                    sleep 0.1
                done
            done ;;
    esac
}

# Returns once ENGINE's servers have done the background writing the last variant left
# them: PostgreSQL a checkpoint on pg1 and, once pg2 has replayed it, a restartpoint on pg2;
# MariaDB InnoDB's dirty pages flushed and its purge done, on my1 and my2. Otherwise the
# checkpoint or flushing after one restore's hundreds of MB lands on whichever variant runs
# next (a PostgreSQL restore took 5.6 to 9.0 s on the same data in one run).
servers_quiet() {
    local engine=$1 s i pct dirty history
    case $engine in
        postgresql)
            "${PSQL_ADMIN[@]}" -d postgres -c CHECKPOINT >/dev/null
            replica_caught_up postgresql
            runuser -u postgres -- psql -X -q -h "$lab/run/pg2" -U postgres -d template1 -c CHECKPOINT >/dev/null ;;
        mysql)
            replica_caught_up mysql
            for s in my1 my2; do
                local my=(mariadb --no-defaults -S "$lab/run/$s.sock" -u root -N)
                pct=$("${my[@]}" -e "SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
                "${my[@]}" -e "SET GLOBAL innodb_max_dirty_pages_pct = 0"
                for i in $(seq 1 1200); do
                    read -r dirty history < <("${my[@]}" -e "SELECT
                        (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'),
                        COALESCE((SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_HISTORY_LIST_LENGTH'), 0)")
                    [ "${dirty:-0}" -le 16 ] && [ "${history:-0}" -le 1000 ] && break
                    sleep 0.1
                done
                "${my[@]}" -e "SET GLOBAL innodb_max_dirty_pages_pct = $pct"
                [ "$i" -lt 1200 ] || echo "bench: $s still had $dirty dirty pages and a history list of $history after 120 s" >&2
            done ;;
    esac
}
