#!/usr/bin/python3
"""Test server for tests/spec/http_upload_spec.lua (streamed request
bodies). server.py's routes, and:

  /sum          reads the body (chunked or Content-Length) piece by piece,
                never holding it whole, and answers JSON: its length, its
                SHA-256, how it was framed and the method
  /sha?rep=N    answers the SHA-256 of the body repeated N times
  /early?code=C answers C without reading the body, and closes (&wait=S:
                after S seconds, else at once)
  /stall?d=S    reads the headers, then nothing for S seconds, then closes
  /slow-sum?d=S reads the body in 16 KiB pieces, S seconds apart, and
                answers as /sum
"""
import hashlib
import json
import os
import socket
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402


class Handler(server.Handler):
    def pieces(self, delay=0.0):
        """The body's bytes as they come, in pieces of at most 64 KiB."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            while True:
                line = self.rfile.readline()
                if not line:
                    raise EOFError("the body ended before its last chunk")
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                while n > 0:
                    piece = self.rfile.read(min(n, 65536))
                    if not piece:
                        raise EOFError("the body ended mid-chunk")
                    n -= len(piece)
                    yield piece
                    if delay:
                        time.sleep(delay)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                piece = self.rfile.read(min(left, 16384 if delay else 65536))
                if not piece:
                    raise EOFError("the body ended short of its Content-Length")
                left -= len(piece)
                yield piece
                if delay:
                    time.sleep(delay)

    def summed(self, delay=0.0):
        h, n = hashlib.sha256(), 0
        for piece in self.pieces(delay):
            h.update(piece)
            n += len(piece)
        out = {
            "n": n, "sha": h.hexdigest(), "method": self.command,
            "chunked": "chunked" in (self.headers.get("Transfer-Encoding") or ""),
            "length": self.headers.get("Content-Length") or "",
        }
        return self.send_body(200, json.dumps(out), "application/json")

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/sum":
            return self.summed()
        if u.path == "/slow-sum":
            return self.summed(float(q.get("d", "0.05")))
        if u.path == "/sha":
            body = b"".join(self.pieces())
            h = hashlib.sha256()
            for _ in range(int(q.get("rep", "1"))):
                h.update(body)
            return self.send_body(200, h.hexdigest())
        if u.path == "/early":
            time.sleep(float(q.get("wait", "0")))
            self.close_connection = True
            return self.send_body(int(q.get("code", "413")), "too large",
                                  headers=[("Connection", "close")])
        if u.path == "/stall":
            time.sleep(float(q.get("d", "3")))
            self.close_connection = True
            return
        return server.Handler.handle_any(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = \
        do_OPTIONS = handle_any


if __name__ == "__main__":
    server.main(Handler)
