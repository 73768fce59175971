#!/usr/bin/env bash
# hunt3.sh: CLI and debugging-aid regressions found by a third bug hunt
# (SPEC §5, §8, rule 12).
# Usage: hunt3.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

# Job control: background jobs get SIGINT as in an interactive shell.
set -m

NAME="an uncaught error from two children prints both tracebacks (§5)"
cat >"$TMP/two.lua" <<'LUA'
local corio = require "corio"
corio.scope(function(s)
  s:spawn(function() corio.sleep(0.01) error("child one") end)
  s:spawn(function() corio.sleep(0.01) error("child two") end)
  corio.sleep(5)
end)
LUA
run 10 "$CORIO" "$TMP/two.lua"
check_rc 1 && check_err_has "child one" && check_err_has "child two" \
  && check_err_has_re "two.lua:3: in function" \
  && check_err_has_re "two.lua:4: in function" && pass


NAME="rule 12: a second SIGINT exits at once while a task spins in Lua"
cat >"$TMP/spin.lua" <<'LUA'
io.stdout:write("ready\n"); io.stdout:flush()
local x = 0
while true do x = x + 1 end
LUA
start "$CORIO" "$TMP/spin.lua"
if wait_for ready 10; then
  kill -INT "$PID"; sleep 0.2; kill -INT "$PID" 2>/dev/null || true
  reap 5
  check_rc 130 && pass
else
  reap 1; fail "never got ready"
fi

# (not os.execute: system() ignores SIGINT in the caller, as for luajit)
NAME="rule 12: a second SIGINT exits at once while a task blocks in C"
start "$CORIO" -e 'local ffi = require "ffi"
ffi.cdef "unsigned int sleep(unsigned int);"
io.stdout:write("ready\n") io.stdout:flush()
for i = 1, 10 do ffi.C.sleep(3) end'
if wait_for ready 10; then
  sleep 0.2
  kill -INT "$PID"; sleep 0.2; kill -INT "$PID" 2>/dev/null || true
  reap 5
  check_rc 130 && pass
else
  reap 1; fail "never got ready"
fi

NAME="--debug reports a compiled (JIT) Lua loop while it still spins (§8)"
cat >"$TMP/jit.lua" <<'LUA'
local corio = require "corio"
local t = corio.spawn(function()
  local t0 = os.clock()
  while os.clock() - t0 < 3 do end
end)
t.name = "spinner"
t:join()
LUA
start "$CORIO" --debug "$TMP/jit.lua"
if wait_err "still running" 2 && kill -0 "$PID" 2>/dev/null; then
  reap 20
  check_rc 0 && check_err_has_re "spinner has held the loop .* now at .*jit.lua:4" \
    && pass
else
  reap 20
  fail "no report within 2 s of a 3 s spin (reported only at its end?)"
fi

NAME="--debug reports a task blocked in a C call while it still blocks (§8)"
cat >"$TMP/cblock.lua" <<'LUA'
local corio = require "corio"
local ffi = require "ffi"
ffi.cdef "unsigned int sleep(unsigned int);"
local t = corio.spawn(function()
  ffi.C.sleep(3)
end)
t.name = "c sleeper"
t:join()
LUA
start "$CORIO" --debug "$TMP/cblock.lua"
if wait_err "still running" 2 && kill -0 "$PID" 2>/dev/null; then
  reap 20
  check_rc 0 && check_err_has "slow step: c sleeper has held the loop" \
    && check_err_has "inside a C call" \
    && check_err_has_re "c sleeper .* now at .*cblock.lua:[56]" && pass
else
  reap 20
  fail "no report within 2 s of a 3 s call (reported only when it returned?)"
fi

NAME="CORIO_DEBUG=off, false, no (any case) leave --debug off; yes turns it on"
printf 'local t = os.clock() while os.clock() - t < 0.4 do end\n' >"$TMP/spin2.lua"
res=""
for v in off false No 0 "" yes; do
  run 20 env CORIO_DEBUG="$v" "$CORIO" "$TMP/spin2.lua"
  if grep -q "slow step" "$TMP/err"; then res="$res $v=on"; else res="$res $v=off"; fi
done
OUT="$res"
check_rc 0 && check_out_eq " off=off false=off No=off 0=off =off yes=on" && pass

NAME="SIGUSR1 during a last step that spins is answered, not lost (§8)"
start "$CORIO" -e 'io.stdout:write("ready\n") io.stdout:flush()
local t = os.clock() while os.clock() - t < 1 do end print("end")'
if wait_for ready 10; then
  sleep 0.2
  kill -USR1 "$PID"
  reap 10
  check_rc 0 && check_out_has "end" && check_err_has "live task" && pass
else
  reap 1; fail "never got ready"
fi

NAME="SIGUSR1's tree says where the root task waits, as corio.tasks() does"
printf 'io.stdout:write("ready\\n") io.stdout:flush()\nlocal corio = require "corio"\ncorio.sleep(0.8)\nprint("went on")\n' >"$TMP/root.lua"
start "$CORIO" "$TMP/root.lua"
if wait_for ready 10; then
  sleep 0.2
  kill -USR1 "$PID"
  reap 10
  check_rc 0 && check_out_has "went on" \
    && check_err_has_re "task 1 \[running\] waiting in sleep at .*root.lua:3 \(root\)" \
    && pass
else
  reap 1; fail "never got ready"
fi

NAME="SIGUSR1 during a blocking read of the main chunk does not interrupt it (handlers restart system calls)"
# The main chunk blocks in a read outside any corio call; a handler
# without SA_RESTART made that read fail with EINTR.
start "$CORIO" -e 'io.stdout:write("ready\n") io.stdout:flush()
local f = io.popen("sleep 1; echo piped")
print("read:", f:read("*l"))'
if wait_for ready 10; then
  sleep 0.3
  kill -USR1 "$PID"
  reap 10
  check_rc 0 && check_out_has "$(printf 'read:\tpiped')" && check_out_lacks "Interrupted" && pass
else
  reap 1; fail "never got ready"
fi

NAME="SIGUSR1 at the REPL prompt does not kill the REPL (§8: the program goes on)"
python3 - "$CORIO" >"$TMP/out" 2>"$TMP/err" <<'PY'
import os, pty, select, signal, subprocess, sys, time
master, slave = pty.openpty()
p = subprocess.Popen([sys.argv[1]], stdin=slave, stdout=slave, stderr=slave,
                     close_fds=True, start_new_session=True)
os.close(slave)
out = b""
def until(tok, t=20.0):
    global out
    end = time.time() + t
    while time.time() < end and tok not in out:
        r, _, _ = select.select([master], [], [], 0.05)
        if r:
            try: out += os.read(master, 4096)
            except OSError: break
    return tok in out
until(b"> ")
os.write(master, b"= 40 + 1\n"); until(b"41\r\n> ")
p.send_signal(signal.SIGUSR1)
time.sleep(0.3)
os.write(master, b"= 40 + 2\n")
ok = until(b"42\r\n", 10)
until(b"42\r\n> ", 10)
# Ctrl-D as repl.py gives it: after the prompt, a moment for libedit to
# switch the terminal to raw mode, a second one if the first was lost
time.sleep(0.3)
for attempt in range(2):
    os.write(master, b"\x04")
    try:
        p.wait(timeout=10)
        break
    except subprocess.TimeoutExpired:
        pass
if p.poll() is None: p.kill(); p.wait()
print("alive-after-usr1" if ok else "dead", "rc", p.returncode)
PY
RC=$?
OUT="$(cat "$TMP/out")"
check_rc 0 && check_out_eq "alive-after-usr1 rc 0" && pass

finish
