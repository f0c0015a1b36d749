#!/usr/bin/env python3
"""Redis commands (RESP, for `redis-cli --pipe`) that load KEYS keys of mixed types and sizes.

    redis_data.py KEYS OUTDIR [SLOTS ...]

Deterministic (seeded). Per 20 keys: 12 strings (70% 20-100 B, 25% 100-1000 B, 5% 1-4 KiB;
half random hex, half repetitive text), 3 hashes (5-20 fields), 2 lists (5-30 items),
1 set, 1 sorted set, 1 string with a one-day TTL. Written to OUTDIR/all.resp; with SLOTS
(one argument per Redis Cluster master, e.g. 0-5460 5461-10922 10923-16383) each key goes to
OUTDIR/N.resp of the master whose slots hold it instead.
"""
import random
import sys

def _table():
    t = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        t.append(crc & 0xFFFF)
    return t

_T = _table()

def crc16(data: bytes) -> int:
    # CRC16-CCITT (XMODEM), as Redis Cluster uses for key slots.
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _T[((crc >> 8) ^ b) & 0xFF]
    return crc

def slot(key: bytes) -> int:
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key) % 16384

def resp(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

WORDS = [b"order", b"shipped", b"to", b"customer", b"pending", b"refund", b"cart", b"session", b"user", b"item"]

def value(rng: random.Random, n: int) -> bytes:
    if rng.random() < 0.5:
        return rng.randbytes((n + 1) // 2).hex().encode()[:n]
    text = b" ".join(rng.choice(WORDS) for _ in range(n // 5 + 1))
    return text[:n]

def size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.70:
        return rng.randint(20, 100)
    if r < 0.95:
        return rng.randint(100, 1000)
    return rng.randint(1024, 4096)

def main() -> None:
    keys, outdir = int(sys.argv[1]), sys.argv[2]
    masters = [[tuple(map(int, r.split("-"))) if "-" in r else (int(r), int(r)) for r in arg.split(",") if r] for arg in sys.argv[3:]]
    outs = [open(f"{outdir}/{n}.resp", "wb") for n in range(len(masters))] or [open(f"{outdir}/all.resp", "wb")]
    bufs = [[] for _ in outs]
    rng = random.Random(7)
    for i in range(keys):
        kind = i % 20
        if kind < 12:
            key = b"str:%d" % i
            cmd = resp(b"SET", key, value(rng, size(rng)))
        elif kind < 15:
            key = b"hash:%d" % i
            fields = []
            for f in range(rng.randint(5, 20)):
                fields += [b"f%d" % f, value(rng, rng.randint(10, 50))]
            cmd = resp(b"HSET", key, *fields)
        elif kind < 17:
            key = b"list:%d" % i
            cmd = resp(b"RPUSH", key, *[value(rng, rng.randint(10, 60)) for _ in range(rng.randint(5, 30))])
        elif kind == 17:
            key = b"set:%d" % i
            cmd = resp(b"SADD", key, *[b"m%d" % rng.randint(0, 10**6) for _ in range(rng.randint(5, 30))])
        elif kind == 18:
            key = b"zset:%d" % i
            members = []
            for _ in range(rng.randint(5, 30)):
                members += [b"%d" % rng.randint(0, 10**6), b"m%d" % rng.randint(0, 10**6)]
            cmd = resp(b"ZADD", key, *members)
        else:
            key = b"ttl:%d" % i
            cmd = resp(b"SET", key, value(rng, size(rng)), b"EX", b"86400")
        n = 0
        if masters:
            sl = slot(key)
            n = next(m for m, rs in enumerate(masters) if any(a <= sl <= b for a, b in rs))
        bufs[n].append(cmd)
        if len(bufs[n]) >= 10000:
            outs[n].write(b"".join(bufs[n]))
            bufs[n].clear()
    for o, b in zip(outs, bufs):
        o.write(b"".join(b))
        o.close()

if __name__ == "__main__":
    main()
