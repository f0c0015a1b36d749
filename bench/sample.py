#!/usr/bin/env python3
"""Samples /proc every 50 ms while a benchmark variant runs: per process role, the peak RSS
and the CPU time (utime + stime at the last sample) of every process whose command line
matches one of the roles. Roles of stowage agents come from the SSH connection they serve
(SSH_CONNECTION's server address): a storage node's address is a storage agent, any other
a database-node agent. Stops when the stop file appears; prints JSON.

usage: sample.py STOPFILE STORAGE_ADDR[,STORAGE_ADDR...]
"""
import json, os, sys, time

stop, storage = sys.argv[1], set(sys.argv[2].split(","))
tick = os.sysconf("SC_CLK_TCK")
# Only processes started while sampling: the lab's servers and listeners are not the variant's.
since = float(open("/proc/uptime").read().split()[0]) * tick - tick
page = os.sysconf("SC_PAGE_SIZE")
seen = {}  # pid -> {role, rss, cpu}


def role(pid, cmd):
    if "stowage-agent-" in cmd and " serve" in cmd:
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            conn = next((e for e in env if e.startswith(b"SSH_CONNECTION=")), b"").decode().split()
            return "storage agent" if len(conn) == 4 and conn[2] in storage else "db agent"
        except OSError:
            return None
    # The fork in which a Redis server writes a snapshot names itself redis-rdb-*.
    if cmd.startswith("redis-rdb"):
        return "redis snapshot"
    # A PostgreSQL server's backends and parallel workers started for the variant.
    if cmd.startswith("postgres: "):
        return "postgres server"
    for r in ("pg_dumpall", "pg_dump", "mariadb-dump", "gzip", "gunzip", "restic", "psql", "mariadb", "redis-server", "redis-cli"):
        if cmd.split(" ")[0].endswith(r):
            return r
    if "stowage " in cmd or cmd.startswith("stowage") or "/stowage " in cmd:
        return "coordinator"
    return None


while not os.path.exists(stop):
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        pid = int(p)
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
            if pid not in seen:
                stat = open(f"/proc/{pid}/stat").read()
                if int(stat[stat.rindex(")") + 2:].split()[19]) < since:
                    continue
                r = role(pid, cmd)
                if r is None:
                    continue
                seen[pid] = {"role": r, "rss": 0, "cpu": 0.0}
            st = open(f"/proc/{pid}/stat").read()
            fields = st[st.rindex(")") + 2:].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick
            rss = int(fields[21]) * page
            s = seen[pid]
            s["rss"] = max(s["rss"], rss)
            s["cpu"] = max(s["cpu"], cpu)
        except (OSError, ValueError, IndexError):
            continue
    time.sleep(0.05)

out = {}
for s in seen.values():
    o = out.setdefault(s["role"], {"processes": 0, "peak_rss_mib": 0.0, "cpu_s": 0.0})
    o["processes"] += 1
    o["peak_rss_mib"] = round(max(o["peak_rss_mib"], s["rss"] / 1048576), 1)
    o["cpu_s"] = round(o["cpu_s"] + s["cpu"], 2)
print(json.dumps(out, sort_keys=True))
