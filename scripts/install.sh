#!/usr/bin/env bash
# Installs Stowage on this machine (Debian 12, as root): a release build of `stowage` and
# `stowage-agent` in PREFIX/bin, the docs in PREFIX/share/doc/stowage, the configuration
# folder /etc/stowage (an example inventory if there is none), the state folder
# /var/lib/stowage, the system user `stowage`, and the scheduler's systemd unit.
#
#   scripts/install.sh [--prefix /usr/local] [--binaries DIR] [--user stowage]
#
# --binaries DIR takes `stowage` from DIR and the agent from .build-agent/release instead of
# building (tests). DESTDIR=/some/root installs under that root (no user is created, no
# systemctl is run). Running it again upgrades the binaries and leaves configuration,
# credentials and state alone.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local binaries= user=stowage
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --binaries) binaries=$2; shift 2 ;;
        --user) user=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
done
root=${DESTDIR:-}
[ -n "$root" ] || [ "$(id -u)" = 0 ] || { echo "install: run as root (or with DESTDIR for a staged install)" >&2; exit 1; }

if [ -z "$binaries" ]; then
    bash scripts/setup.sh release
    binaries=.build/release
fi
agent=.build-agent/release/stowage-agent
for f in "$binaries/stowage" "$agent"; do
    [ -x "$f" ] || { echo "install: $f is missing (build first: scripts/setup.sh release)" >&2; exit 1; }
done

if [ -z "$root" ] && ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/stowage --no-create-home --shell /usr/sbin/nologin "$user"
fi
owner=$user
[ -n "$root" ] && owner=$(id -un)

install -d -m 0755 "$root$prefix/bin" "$root$prefix/share/doc/stowage" "$root/etc/systemd/system"
# The agent goes beside stowage: `stowage agent install` copies it to the nodes from there.
install -m 0755 "$binaries/stowage" "$root$prefix/bin/stowage"
install -m 0755 "$agent" "$root$prefix/bin/stowage-agent"
install -m 0644 docs/*.md docs/openapi.json "$root$prefix/share/doc/stowage/"
install -d -m 0755 "$root$prefix/share/doc/stowage/json"
install -m 0644 docs/json/*.json "$root$prefix/share/doc/stowage/json/"
install -d -m 0750 "$root/etc/stowage"
install -d -m 0700 "$root/etc/stowage/credentials"
install -d -m 0700 -o "$owner" "$root/var/lib/stowage"
if [ ! -e "$root/etc/stowage/stowage.yaml" ]; then
    install -m 0640 fixtures/inventories/example.yaml "$root/etc/stowage/stowage.yaml"
fi
[ -z "$root" ] && chgrp "$user" /etc/stowage /etc/stowage/stowage.yaml
unit=$root/etc/systemd/system/stowage-scheduler.service
sed -e "s|/usr/local/bin/stowage|$prefix/bin/stowage|" -e "s|/usr/local/share/doc|$prefix/share/doc|" \
    -e "s|^User=stowage|User=$user|" -e "s|^Group=stowage|Group=$user|" \
    contrib/systemd/stowage-scheduler.service >"$unit"
chmod 0644 "$unit"
[ -z "$root" ] && command -v systemctl >/dev/null && systemctl daemon-reload 2>/dev/null || true

echo "installed: $prefix/bin/stowage ($("$root$prefix/bin/stowage" --version)), $prefix/bin/stowage-agent, the unit stowage-scheduler.service"
echo "next: edit /etc/stowage/stowage.yaml, put the storage password in /etc/stowage/credentials/storage-password (mode 600),"
echo "      then: stowage ssh trust NODE; stowage agent install; stowage addon install ENV/LAYER ...; systemctl enable --now stowage-scheduler"
