#!/usr/bin/env python3
"""A TCP proxy for the lab tests: forwards every connection on LISTEN_ADDR:LISTEN_PORT to
UPSTREAM_HOST:PORT. The test cuts whoever uses it off by stopping it (SIGSTOP: connections
stay open, nothing passes, new ones hang in the backlog) and lets it go on with SIGCONT, as a
network partition between one coordinator and the shared catalog. Prints "ready PORT" once
listening. Stops by itself after a while (bounded).

usage: tcp_proxy.py LISTEN_ADDR LISTEN_PORT UPSTREAM_HOST:PORT"""
import socket
import sys
import threading

addr, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
uhost, uport = upstream.rsplit(":", 1)


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client):
    try:
        up = socket.create_connection((uhost, int(uport)), timeout=5)
        up.settimeout(None)
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, up), daemon=True).start()
    threading.Thread(target=pump, args=(up, client), daemon=True).start()


server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((addr, port))
server.listen(64)
threading.Timer(900, lambda: server.close()).start()
print(f"ready {port}", flush=True)
try:
    while True:
        c, _ = server.accept()
        serve(c)
except OSError:
    pass
