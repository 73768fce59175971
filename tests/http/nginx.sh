#!/usr/bin/env bash
# Start a private nginx for the HTTP/2 specs (tests/spec/http2_spec.lua):
#   bash tests/http/nginx.sh start DIR     -> prints "PORTS <h2c> <h2-tls> <pid>"
#   bash tests/http/nginx.sh stop DIR
# DIR is a fresh temporary directory: it gets the config, a self-signed
# certificate for 127.0.0.1, the document root, logs and the pid file, so
# nothing outside it is touched and no root is needed. Two servers on free
# 127.0.0.1 ports: HTTP/2 in clear text (prior knowledge; nginx 1.22 has no
# h2c upgrade) and HTTP/2 over TLS (ALPN h2, http/1.1). Exit 77 when nginx
# or openssl is missing (the spec then skips with that message).
set -euo pipefail
cmd=${1:-} dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

if [[ "$cmd" == stop ]]; then
  if [[ -s "$dir/nginx.pid" ]]; then kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true; fi
  exit 0
fi

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || { echo "nginx is not installed (apt install nginx)"; exit 77; }
command -v openssl >/dev/null || { echo "openssl is not installed"; exit 77; }

mkdir -p "$dir/www" "$dir/www/up" "$dir/tmp"
# nginx started by root runs its worker as nobody: it must read the root
chmod 755 "$dir" "$dir/www"
chmod 777 "$dir/www/up" "$dir/tmp"  # PUT stores there
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" \
  >/dev/null 2>&1
printf hello > "$dir/www/ok"
# 256 KiB of a known pattern: larger than one HTTP/2 flow-control window
/usr/bin/python3 -c '
import sys
sys.stdout.buffer.write(bytes(i % 251 for i in range(262144)))' > "$dir/www/256k.bin"
# 16 MiB: more than curl takes in before a paused stream stops the flow
for _ in $(seq 64); do cat "$dir/www/256k.bin"; done > "$dir/www/16m.bin"
chmod 644 "$dir/www/ok" "$dir/www/256k.bin" "$dir/www/16m.bin"

# Two free ports: bind to port 0, read the port, close. Another process
# could take one before nginx binds it; nginx then fails and so does the
# spec, loudly.
read -r p1 p2 < <(/usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
daemon on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  default_type application/octet-stream;
  keepalive_timeout 60s;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  server {
    listen 127.0.0.1:$p1 http2;
    root $dir/www;
    # uploads (http2_spec's streamed bodies): PUT stores the body
    location /up/ { dav_methods PUT; client_max_body_size 64m; }
  }
  server {
    listen 127.0.0.1:$p2 ssl http2;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    root $dir/www;
    location /up/ { dav_methods PUT; client_max_body_size 64m; }
  }
}
EOF
# daemon on: nginx returns once its master has bound the ports
"$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/start.log" 2>&1 \
  || { echo "nginx did not start: $(tail -3 "$dir/start.log" "$dir/error.log" 2>/dev/null | tr '\n' ' ')"; exit 1; }
for _ in $(seq 50); do [[ -s "$dir/nginx.pid" ]] && break; sleep 0.1; done
echo "PORTS $p1 $p2 $(cat "$dir/nginx.pid")"
