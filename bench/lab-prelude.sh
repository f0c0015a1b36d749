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
