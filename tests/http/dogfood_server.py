#!/usr/bin/python3
"""Test server for tests/spec/dogfood_spec.lua (Python 3 standard library).

Prints "PORT <n> <pid>" on its first line, serves HTTP/1.1 with keep-alive
on 127.0.0.1, and exits when its parent dies or after --lifetime seconds.

Routes (counters are per path+query, so each test uses its own key):
  /page/<i>?fail=K&mode=503|hang|reset   the first K hits fail (a 503, a
                                         response that never comes, or a
                                         connection reset), later hits
                                         answer "page <i>\n" * 100
  /slow/<i>?d=S                          answers after S seconds
  /file/<n>?rate=B&tick=S                n deterministic bytes, B bytes
                                         every S seconds; honours
                                         "Range: bytes=a-" (206); with
                                         cut=K&cuts=C the first C hits reset
                                         the connection after K bytes of
                                         their range; with stall=K&st=S a
                                         pause of S seconds after K bytes
  /moved/<i>?to=PATH                     a 301 to PATH (default /page/<i>)
  /events?n=N&d=S&k=K&p=P                N JSON lines (chunked), one every
                                         S seconds, a pause of P after line K
  /hits                                  the counters, as JSON
"""
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402  (tests/http/server.py)

HITS = {}
LOCK = threading.Lock()


CONTENT = {}


def content(n):
    # byte i is (i * 7 + i // 251) % 256: a pattern that tells offsets
    # apart; it repeats every 251 * 256 bytes, so one period is made and
    # repeated (large files are made at once, not byte by byte)
    period = 251 * 256
    with LOCK:
        data = CONTENT.get(n)
        if data is None:
            block = CONTENT.get("period")
            if block is None:
                block = CONTENT["period"] = bytes(
                    (i * 7 + i // 251) % 256 for i in range(period))
            data = CONTENT[n] = (block * (n // period + 1))[:n]
    return data


class Handler(server.Handler):
    """server.py's handler (send_body, quiet log) with these routes."""
    server_version = "corio-dogfood"

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        path = u.path
        with LOCK:
            HITS[self.path] = HITS.get(self.path, 0) + 1
            hit = HITS[self.path]
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if path == "/hits":
            with LOCK:
                body = json.dumps(HITS)
            return self.send_body(200, body, "application/json")
        if path.startswith("/page/"):
            i = path.split("/")[2]
            if hit <= int(q.get("fail", "0")):
                mode = q.get("mode", "503")
                if mode == "hang":
                    time.sleep(float(q.get("d", "30")))
                    self.close_connection = True
                    return
                if mode == "reset":
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                return self.send_body(503, "try again",
                                      headers=[("Retry-After", "0")])
            return self.send_body(200, ("page %s\n" % i) * 100)
        if path == "/events":
            # n JSON lines, chunked, one every d seconds, with a pause of
            # p seconds after line k
            n, d = int(q.get("n", "5")), float(q.get("d", "0.01"))
            k, p = int(q.get("k", "0")), float(q.get("p", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for i in range(1, n + 1):
                    line = ('{"seq": %d}\n' % i).encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                    time.sleep(p if i == k else d)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        if path.startswith("/moved/"):
            to = q.get("to", "/page/" + path.split("/")[2])
            return self.send_body(301, "", headers=[("Location", to)])
        if path.startswith("/slow/"):
            time.sleep(float(q.get("d", "1")))
            return self.send_body(200, "slow %s\n" % path.split("/")[2])
        if path.startswith("/file/"):
            size = int(path.split("/")[2])
            data = content(size)
            rate = int(q.get("rate", "65536"))
            tick = float(q.get("tick", "0.01"))
            start = 0
            rng = self.headers.get("Range")
            status = 200
            if rng:
                if not rng.startswith("bytes=") or not rng[6:].endswith("-"):
                    return self.send_body(416, "bad range")
                start = int(rng[6:-1])
                if start >= size:
                    return self.send_body(416, "range past the end", headers=[
                        ("Content-Range", "bytes */%d" % size)])
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", '"f%d"' % size)
            self.send_header("Content-Length", str(size - start))
            if status == 206:
                self.send_header("Content-Range",
                                 "bytes %d-%d/%d" % (start, size - 1, size))
            self.end_headers()
            cut = int(q.get("cut", "-1"))
            if hit > int(q.get("cuts", "0")):
                cut = -1
            stall = int(q.get("stall", "-1"))
            try:
                pos = start
                while pos < size:
                    end = min(size, pos + rate)
                    if cut >= 0 and end - start >= cut:
                        end = start + cut
                    if stall >= 0 and pos - start < stall <= end - start:
                        self.wfile.write(data[pos:start + stall])
                        self.wfile.flush()
                        time.sleep(float(q.get("st", "30")))
                        pos = start + stall
                        continue
                    self.wfile.write(data[pos:end])
                    self.wfile.flush()
                    pos = end
                    if cut >= 0 and pos - start >= cut:
                        self.connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
                        self.connection.close()
                        self.close_connection = True
                        return
                    if pos < size:
                        time.sleep(tick)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        return self.send_body(404, "not found")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = \
        do_OPTIONS = handle_any


if __name__ == "__main__":
    server.main(Handler)
