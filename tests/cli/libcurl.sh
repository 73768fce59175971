#!/usr/bin/env bash
# libcurl.sh: corio loads libcurl only when the first HTTP client is made
# (runtime/curl_dyn.c), so a script that does no HTTP never maps it, and a
# missing or wrong libcurl is a clear error from corio.http, not a crash.
# Usage: libcurl.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

maps_curl='local f = io.open("/proc/self/maps"); local s = f:read("*a"); f:close()
print(s:find("libcurl", 1, true) and "curl mapped" or "no curl")'

NAME="a script without HTTP does not map libcurl"
run 10 "$CORIO" -e "$maps_curl"
check_rc 0 && check_out_eq "no curl" && pass

NAME="require 'corio.http' alone does not map libcurl"
run 10 "$CORIO" -e "require('corio.http'); $maps_curl"
check_rc 0 && check_out_eq "no curl" && pass

NAME="the first client maps libcurl"
run 10 "$CORIO" -e "require('corio.http').client(); $maps_curl"
check_rc 0 && check_out_eq "curl mapped" && pass

NAME="CORIO_LIBCURL naming a missing library: a clear error naming it"
run 10 env CORIO_LIBCURL=/nonexistent/libcurl-x.so "$CORIO" -e '
local http = require("corio.http")
local ok, err = pcall(http.client)
print(ok, err)
ok, err = pcall(http.get, "http://127.0.0.1:9/")
print(ok, err)'
check_rc 0 && check_out_has "false" \
  && check_out_has "cannot load libcurl (/nonexistent/libcurl-x.so" && {
    if [ "$(grep -c 'cannot load libcurl' "$TMP/out")" -eq 2 ]; then pass
    else fail "both client() and get() should fail the same way"; fi
  }

NAME="CORIO_LIBCURL naming a library without curl: names the missing function"
run 10 env CORIO_LIBCURL=libc.so.6 "$CORIO" -e '
print(pcall(require("corio.http").client))'
check_rc 0 && check_out_has "libcurl has no function curl_global_init" && pass

finish
