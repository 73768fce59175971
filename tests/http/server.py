#!/usr/bin/python3
"""Test server for tests/spec/http_spec.lua (Python 3 standard library).

Listens on 127.0.0.1 with an ephemeral port, prints "PORT <n>" and its
pid on the first line of stdout, and serves HTTP/1.1 with keep-alive:
well-behaved routes plus fault routes that break the protocol on purpose
(slow headers, slow body, reset mid-body, truncated chunked body, garbage
status line, oversized headers, never answering, redirect chains, a
request body never read). With --tls CERT KEY it speaks HTTPS. It
exits when its parent dies or after --lifetime seconds, so a crashed spec
never leaves it behind.
"""
import gzip
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "corio-test"

    def log_message(self, fmt, *args):
        pass

    def send_body(self, status, body, ctype="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def raw(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            body = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields
                    return body
                body += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        path = u.path
        if path == "/no-read":
            # never reads the request body: an upload stalls once the
            # socket buffers are full (write timeout)
            time.sleep(float(q.get("d", "3")))
            self.close_connection = True
            return
        if path == "/slow-read":
            # reads the request body (Content-Length) in pieces of `n`
            # bytes every `d` seconds, then answers with its length
            left = int(self.headers.get("Content-Length") or 0)
            got, step, d = 0, int(q.get("n", "1048576")), float(q.get("d", "0.05"))
            while left > 0:
                piece = self.rfile.read(min(step, left))
                if not piece:
                    break
                got += len(piece)
                left -= len(piece)
                time.sleep(d)
            return self.send_body(200, str(got))
        body = self.read_body()
        if path == "/ok":
            return self.send_body(200, "hello")
        if path == "/ok-then-close":
            # a keep-alive response (no "Connection: close"), then the
            # server closes the connection while the client keeps it
            self.send_body(200, "hello")
            self.wfile.flush()
            self.close_connection = True
            return
        if path == "/echo":
            hdrs = {}
            for k, v in self.headers.items():
                hdrs.setdefault(k.lower(), []).append(v)
            out = {
                "method": self.command,
                "path": path,
                "query": u.query,
                "args": urllib.parse.parse_qs(u.query),
                "headers": {k: ", ".join(v) for k, v in hdrs.items()},
                "body": body.decode("latin-1"),
                "port": self.client_address[1],
            }
            return self.send_body(200, json.dumps(out), "application/json")
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            return self.send_body(code, "status %d" % code)
        if path.startswith("/bytes/"):
            n = int(path.split("/")[2])
            return self.send_body(200, b"x" * n, "application/octet-stream")
        if path == "/json":
            return self.send_body(200, '{"a": [1, 2], "b": "c"}',
                                  "application/json")
        if path == "/notjson":
            return self.send_body(200, "{nope", "application/json")
        if path == "/headers":
            self.send_response(200)
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
            self.send_header("X-Mixed-Case", "yes")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/slow-headers":
            time.sleep(float(q.get("d", "2")))
            return self.send_body(200, "late")
        if path == "/slow-body":
            # headers, some bytes, a pause of d, then the rest
            d = float(q.get("d", "2"))
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.raw(b"12345")
            time.sleep(d)
            self.raw(b"67890")
            return
        if path == "/drip":
            # n bytes, one every d seconds: never a long gap
            n, d = int(q.get("n", "5")), float(q.get("d", "0.05"))
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for _ in range(n):
                self.raw(b".")
                time.sleep(d)
            return
        if path == "/reset":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.raw(b"x" * 1000)
            time.sleep(float(q.get("d", "0.05")))
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if path == "/truncated-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.raw(b"5\r\nhello\r\n10\r\nabc")
            self.close_connection = True
            return
        if path == "/garbage":
            self.raw(b"HELLO THERE\r\nthis is not http\r\n\r\n")
            self.close_connection = True
            return
        if path == "/big-headers":
            self.send_response(200)
            for i in range(200):
                self.send_header("X-Big-%d" % i, "v" * 1000)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/never":
            time.sleep(3600)
            return
        if path.startswith("/redirect/"):
            n = int(path.split("/")[2])
            if n <= 0:
                return self.send_body(200, "landed")
            return self.send_body(302, "", headers=[
                ("Location", "/redirect/%d" % (n - 1))])
        if path.startswith("/slow-redirect/"):
            # waits d seconds, then redirects to /slow-redirect/<n-1>
            n, d = int(path.split("/")[2]), float(q.get("d", "0.3"))
            time.sleep(d)
            if n <= 0:
                return self.send_body(200, "landed")
            return self.send_body(302, "", headers=[
                ("Location", "/slow-redirect/%d?d=%s" % (n - 1, q.get("d", "0.3")))])
        if path == "/redirect-to":
            code = int(q.get("code", "302"))
            return self.send_body(code, "", headers=[("Location", q["url"])])
        if path == "/stream":
            # n chunks of size bytes, chunked encoding
            n, size = int(q.get("n", "10")), int(q.get("size", "1000"))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * size
            for _ in range(n):
                self.raw(b"%x\r\n%s\r\n" % (size, chunk))
            self.raw(b"0\r\n\r\n")
            return
        if path == "/gzip":
            # n numbered lines, gzip-encoded when the client accepts gzip
            # (and always with ?force=1); ?bad=1 sends a corrupt stream
            n = int(q.get("n", "10"))
            plain = b"".join(b"%d\n" % i for i in range(n))
            accepts = "gzip" in (self.headers.get("Accept-Encoding") or "")
            if not (accepts or q.get("force") or q.get("bad")):
                return self.send_body(200, plain)
            data = gzip.compress(plain, mtime=0)
            if q.get("bad"):
                data = data[:10] + b"\xff" * 32 + data[42:]
            return self.send_body(200, data, "text/plain",
                                  [("Content-Encoding", "gzip"),
                                   ("X-Plain-Length", str(len(plain)))])
        if path == "/lines":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in [b"one\r\ntw", b"o\nthr", b"ee\r", b"\nfour"]:
                self.raw(b"%x\r\n%s\r\n" % (len(part), part))
                time.sleep(0.01)
            self.raw(b"0\r\n\r\n")
            return
        if path == "/drip-head":
            # the status line and headers one byte every d seconds (a gap
            # shorter than the client's read timeout, the whole head much
            # longer), then the body at once
            d = float(q.get("d", "0.03"))
            self.connection.setsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY, 1)
            head = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                    b"X-Long: " + b"v" * int(q.get("n", "10")) + b"\r\n\r\n")
            for i in range(len(head)):
                self.raw(head[i:i + 1])
                time.sleep(d)
            self.raw(b"hello")
            return
        if path == "/stall-head":
            # part of the head, then silence for d seconds (mid-line, or
            # with ?at=lines after whole header lines)
            d = float(q.get("d", "30"))
            self.connection.setsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY, 1)
            if q.get("at") == "lines":
                self.raw(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n")
            else:
                self.raw(b"HTTP/1.1 2")
            time.sleep(d)
            self.close_connection = True
            return
        if path == "/numbers":
            # the numbers 0 to n-1, one a line: a body whose every byte
            # can be checked
            n = int(q.get("n", "1000"))
            return self.send_body(200, b"".join(b"%d\n" % i
                                                for i in range(n)))
        if path == "/cr-lines":
            # lines ended by CR, CRLF and LF, a CR at the end of a chunk
            # (some followed by LF in the next) and at the end of the body
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in [b"a\rb\r", b"\nc\r\r", b"\n", b"d\re\r"]:
                self.raw(b"%x\r\n%s\r\n" % (len(part), part))
                time.sleep(0.01)
            self.raw(b"0\r\n\r\n")
            return
        if path == "/trailers":
            # a chunked body followed by a trailer field
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Trailer")
            self.end_headers()
            self.raw(b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
            return
        if path == "/chunks":
            # hunt_stream_spec: a chunked body of the given parts (each a
            # repeated ?c=, percent-encoded, so any bytes), one chunk each,
            # d seconds apart so that they reach the client one by one
            parts = [urllib.parse.unquote_to_bytes(kv[2:])
                     for kv in u.query.split("&") if kv[:2] == "c=" and kv[2:]]
            d = float(q.get("d", "0.01"))
            self.send_response(int(q.get("status", "200")))
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in parts:
                self.raw(b"%x\r\n%s\r\n" % (len(part), part))
                time.sleep(d)
            self.raw(b"0\r\n\r\n")
            return
        # hunt_request_spec: responses without a body (?code=204, 304 or
        # 1xx-free others, with the headers a real server sends), a
        # redirect to itself, a body in a given encoding (?enc=deflate
        # zlib-wrapped, rawdeflate, gzip) and a JSON body with a BOM
        if path == "/nobody":
            self.send_response(int(q.get("code", "204")))
            self.send_header("ETag", '"v1"')
            if q.get("cl"):
                self.send_header("Content-Length", q["cl"])
            self.end_headers()
            return
        if path == "/loop":
            return self.send_body(int(q.get("code", "302")), "", headers=[
                ("Location", self.path)])
        if path == "/encoded":
            import zlib
            plain = q.get("text", "hello, encoded").encode()
            enc = q.get("enc", "deflate")
            if enc == "gzip":
                data = gzip.compress(plain, mtime=0)
            elif enc == "rawdeflate":
                co = zlib.compressobj(wbits=-15)
                data = co.compress(plain) + co.flush()
            else:
                data = zlib.compress(plain)
            return self.send_body(200, data, "text/plain", [
                ("Content-Encoding", "gzip" if enc == "gzip" else "deflate")])
        if path == "/bom-json":
            return self.send_body(200, b'\xef\xbb\xbf{"a": 1}',
                                  "application/json; charset=utf-8")
        if path == "/raw-target":
            # the request target exactly as it came on the request line
            # (a fragment sent by mistake would show here)
            return self.send_body(200, self.path)
        return self.send_body(404, "not found")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = \
        do_OPTIONS = handle_any


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # the fault routes break connections on purpose


def main(handler=None):
    """Serve handler (default: Handler) as the docstring says; the other
    test servers (dogfood_server.py) run their own handler through it."""
    lifetime = 300.0
    tls = None
    args = sys.argv[1:]
    while args:
        if args[0] == "--lifetime" and len(args) > 1:
            lifetime = float(args[1])
            args = args[2:]
        elif args[0] == "--tls" and len(args) > 2:
            tls = (args[1], args[2])  # certificate, key (PEM files)
            args = args[3:]
        else:
            sys.exit("usage: server.py [--lifetime S] [--tls CERT KEY]")
    srv = Server(("127.0.0.1", 0), handler or Handler)
    if tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d %d" % (srv.server_address[1], os.getpid()), flush=True)
    parent = os.getppid()

    def watchdog():
        t0 = time.time()
        while time.time() - t0 < lifetime and os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
