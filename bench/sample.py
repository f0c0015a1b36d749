#!/usr/bin/env python3
"""Samples /proc every 50 ms while a benchmark variant runs: per process role, the peak RSS
and the CPU time (utime + stime at the last sample) of every process whose command line
matches one of the roles. Roles of stowage agents come from the SSH connection they serve
(SSH_CONNECTION's server address): a storage node's address is a storage agent, any other
a database-node agent. The lab's servers that run all along (mariadbd, redis-server, the
postgres processes, sshd's listeners) count with the CPU time they used while sampling, as
role "<name> (running)"; sshd's per-connection processes as "sshd". Besides the roles: the
whole machine's busy share over the sampling (/proc/stat), the law a variant's wall time
cannot beat when it is near 100%: all processes' CPU seconds over the cores. Stops when the
stop file appears; prints JSON.

usage: sample.py STOPFILE STORAGE_ADDR[,STORAGE_ADDR...]
"""
import json, os, sys, time

stop, storage = sys.argv[1], set(sys.argv[2].split(","))
tick = os.sysconf("SC_CLK_TCK")
# Only processes started while sampling: the lab's servers and listeners are not the variant's.
since = float(open("/proc/uptime").read().split()[0]) * tick - tick
page = os.sysconf("SC_PAGE_SIZE")
seen = {}  # pid -> {role, rss, cpu, base}


def machine_ticks():
    """(busy, total) jiffies of all cores so far."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    return sum(f) - idle, sum(f)


# The servers of the lab that run before and after a variant: their CPU while it ran.
RUNNING = ("postgres", "mariadbd", "redis-server", "sshd")


def running_role(cmd):
    name = cmd.split(" ")[0].split("/")[-1].rstrip(":")
    if name in RUNNING:
        return f"{name} (running)"
    return None


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
    # sshd's processes for one connection (privilege-separated child, session).
    if cmd.startswith("sshd: "):
        return "sshd"
    # A PostgreSQL server's backends and parallel workers started for the variant.
    if cmd.startswith("postgres: "):
        return "postgres server"
    for r in ("pg_dumpall", "pg_dump", "mariadb-dump", "gzip", "gunzip", "restic", "psql", "mariadb", "redis-server", "redis-cli"):
        if cmd.split(" ")[0].endswith(r):
            return r
    if "stowage " in cmd or cmd.startswith("stowage") or "/stowage " in cmd:
        return "coordinator"
    return None


busy0, total0 = machine_ticks()
while True:
    last = os.path.exists(stop)
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        pid = int(p)
        try:
            if pid not in seen:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
                stat = open(f"/proc/{pid}/stat").read()
                fields = stat[stat.rindex(")") + 2:].split()
                before = int(fields[19]) < since
                r = running_role(cmd) if before else role(pid, cmd)
                if r is None:
                    continue
                # A process running before counts from here on (its RSS is not the variant's).
                base = (int(fields[11]) + int(fields[12])) / tick if before else 0.0
                seen[pid] = {"role": r, "rss": 0, "cpu": 0.0, "base": base, "before": before}
            st = open(f"/proc/{pid}/stat").read()
            fields = st[st.rindex(")") + 2:].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick
            rss = int(fields[21]) * page
            s = seen[pid]
            if not s["before"]:
                s["rss"] = max(s["rss"], rss)
            s["cpu"] = max(s["cpu"], cpu - s["base"])
        except (OSError, ValueError, IndexError):
            continue
    if last:
        break
    time.sleep(0.05)
busy1, total1 = machine_ticks()
# The sampler's own reading of /proc is not the variant's load.
me = open("/proc/self/stat").read()
me = me[me.rindex(")") + 2:].split()
busy1 -= int(me[11]) + int(me[12])

out = {}
for s in seen.values():
    o = out.setdefault(s["role"], {"processes": 0, "peak_rss_mib": 0.0, "cpu_s": 0.0})
    o["processes"] += 1
    o["peak_rss_mib"] = round(max(o["peak_rss_mib"], s["rss"] / 1048576), 1)
    o["cpu_s"] = round(o["cpu_s"] + s["cpu"], 2)
# Running servers that used no CPU while sampling are not part of the variant.
out = {k: o for k, o in out.items() if not (k.endswith("(running)") and o["cpu_s"] == 0)}
for o in out.values():
    if o["peak_rss_mib"] == 0:
        del o["peak_rss_mib"]
out["machine"] = {"busy_share": round((busy1 - busy0) / max(1, total1 - total0), 3), "cores": os.cpu_count(),
                  "busy_cpu_s": round((busy1 - busy0) / tick, 2)}
print(json.dumps(out, sort_keys=True))
