#!/usr/bin/env python3
"""The RESTORE commands (RESP, for `redis-cli --pipe`) that recreate every key of a server.

    redis_restores.py SOCKET OUT

SOCKET is a scratch redis-server's unix socket, loaded from an RDB; OUT gets one
`RESTORE key ttl payload REPLACE` per key (ttl: the key's PTTL, 0 without one).

The add-on restores Redis with RedisShake in its restore mode (scripts/redis-restore.sh of
jelastic-jps/database-backup-addon): it reads each RDB file in turn and sends every key to
the live server as a RESTORE. bench/run.sh prepares these commands from the plain dump
before the timed rounds, so the add-on's restore as measured leaves out RedisShake's own
reading and parsing of the file: a lower bound of its time.
"""
import socket
import sys

from redis_data import resp  # the same RESP encoding as the data set's commands


class Conn:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.f = self.sock.makefile("rb", buffering=1 << 20)

    def send(self, *commands: tuple) -> None:
        self.sock.sendall(b"".join(resp(*c) for c in commands))

    def reply(self):
        line = self.f.readline()
        if not line:
            raise SystemExit("redis_restores: the scratch server closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b":":
            return int(rest)
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        if kind == b"+":
            return rest
        raise SystemExit(f"redis_restores: the scratch server answered {line[:200]!r}")


def main() -> None:
    conn = Conn(sys.argv[1])
    written = 0
    with open(sys.argv[2], "wb") as out:
        cursor = b"0"
        while True:
            conn.send((b"SCAN", cursor, b"COUNT", b"2000"))
            cursor, keys = conn.reply()
            conn.send(*[c for k in keys for c in ((b"DUMP", k), (b"PTTL", k))])
            for k in keys:
                payload, ttl = conn.reply(), conn.reply()
                if payload is None:  # expired between SCAN and DUMP
                    continue
                out.write(resp(b"RESTORE", k, max(ttl, 0), payload, b"REPLACE"))
                written += 1
            if cursor == b"0":
                break
    print(written)


if __name__ == "__main__":
    main()
