#!/usr/bin/env python3
"""A fault in front of an S3 store, for the lab tests: answers the first N requests with
503 SlowDown (what a throttling store says), then forwards every request unchanged (the Host
header too, so SigV4 signatures still match). With --die-after-chunk it forwards the first
chunk a backup writes, then exits at once: the store is gone mid-backup, as a crashed
server (connections refused from then on). Prints "ready PORT" once listening. Stops by
itself after a while (bounded).

usage: s3_throttling_proxy.py LISTEN_ADDR LISTEN_PORT UPSTREAM_HOST:PORT N [--die-after-chunk]"""
import http.client
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

addr, port, upstream, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
die_after_chunk = "--die-after-chunk" in sys.argv[5:]
lock = threading.Lock()
served = {"503": 0}


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with lock:
            throttle = served["503"] < limit
            if throttle:
                served["503"] += 1
        if throttle:
            msg = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(msg)
            return
        host, _, uport = upstream.partition(":")
        c = http.client.HTTPConnection(host, int(uport), timeout=30)
        headers = {k: v for k, v in self.headers.items()}
        c.request(self.command, self.path, body=body if body else None, headers=headers)
        r = c.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        if die_after_chunk and self.command == "PUT" and "/chunks/" in self.path and r.status == 200:
            self.wfile.flush()
            os._exit(0)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


server = ThreadingHTTPServer((addr, port), Proxy)
threading.Timer(300, server.shutdown).start()
print("ready", port, flush=True)
try:
    server.serve_forever()
finally:
    print("served-503", served["503"], file=sys.stderr, flush=True)
