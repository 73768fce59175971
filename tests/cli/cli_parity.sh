#!/usr/bin/env bash
# cli_parity.sh: the corio program against the stock luajit program (SPEC
# §5: "arg set as in luajit"; README "CLI"). The same scripts run under
# both and their stdout, stderr shape and exit status are compared; where
# corio differs on purpose (usage errors exit 2, the error report names
# the task and prints any error value) docs/getting-started.md says so.
# Usage: cli_parity.sh path/to/corio   (or CORIO=path/to/corio)
source "$(dirname "$0")/lib.sh"

if ! command -v "$LUAJIT" >/dev/null 2>&1; then
  echo "cli_parity: no '$LUAJIT' to compare with; skipped"
  exit 0
fi

# both LIMIT ARGS...: run ARGS under luajit (LJ_RC, LJ_OUT, LJ_ERR), then
# under corio (RC, OUT, ERR, as run sets them), in $TMP/w. args.lua
# writes the interpreter's own path (the lowest arg index) as INTERP.
W="$TMP/w"
mkdir -p "$W"
both() {
  local limit="$1"
  shift
  (cd "$W" && run "$limit" "$LUAJIT" "$@"
   printf '%s\n' "$RC" >"$TMP/lj_rc"; cp "$TMP/out" "$TMP/lj_out"
   cp "$TMP/err" "$TMP/lj_err")
  LJ_RC="$(cat "$TMP/lj_rc")"
  LJ_OUT="$(cat "$TMP/lj_out")"
  LJ_ERR="$(cat "$TMP/lj_err")"
  cd "$W"
  run "$limit" "$CORIO" "$@"
  cd - >/dev/null
}
same_rc() {
  if [ "$RC" -ne "$LJ_RC" ]; then
    fail "exit code $RC, luajit's is $LJ_RC"
    return 1
  fi
}
same_out() {
  if [ "$OUT" != "$LJ_OUT" ]; then
    fail "stdout differs from luajit's:
$LJ_OUT"
    return 1
  fi
}
# first line of stderr after the program's name ("luajit: " / "corio: ")
same_err_line1() {
  local a b
  a="$(printf '%s\n' "$LJ_ERR" | head -n1)"
  b="$(printf '%s\n' "$ERR" | head -n1)"
  if [ "${a#luajit: }" != "${b#corio: }" ]; then
    fail "stderr's first line differs from luajit's: $a"
    return 1
  fi
}

cat >"$W/args.lua" <<'LUA'
local t, lo = {}, 0
while arg[lo - 1] ~= nil do lo = lo - 1 end   -- the interpreter's index
for i = -3, #arg do
  t[#t + 1] = i .. "=" .. (i == lo and lo < 0 and "INTERP" or tostring(arg[i]))
end
print(table.concat(t, " "))
print(select("#", ...), ...)
LUA

NAME="arg and ...: arg[0], arg[-1], arguments with spaces and empty ones, as luajit"
both 10 args.lua "a b" "" x ""
check_rc 0 && same_out && check_out_has "0=args.lua 1=a b 2= 3=x 4=" && pass

NAME="arg: -e code before the script sees the script's arg, as luajit (negative indices)"
both 10 -e 'print("e", arg[0], arg[-1], #arg)' args.lua q
check_rc 0 && same_out && check_out_has "-2=-e" && pass

NAME="arg: '--' before the script is arg[-1], as luajit"
both 10 -- args.lua q
check_rc 0 && same_out && check_out_has "-1=-- 0=args.lua 1=q" && pass

NAME="script path: absolute, as luajit"
both 10 "$W/args.lua" 1
check_rc 0 && same_out && check_out_has "0=$W/args.lua 1=1" && pass

NAME="script path: through a symlink, arg[0] the link's name, as luajit"
ln -s args.lua "$W/link.lua"
both 10 link.lua
check_rc 0 && same_out && check_out_has "0=link.lua" && pass

NAME="script path: relative with a directory, as luajit"
mkdir -p "$W/d"
cp "$W/args.lua" "$W/d/args.lua"
both 10 d/../d/args.lua z
check_rc 0 && same_out && check_out_has "0=d/../d/args.lua 1=z" && pass

NAME="a shebang first line is skipped, as luajit"
printf '#!/usr/bin/env corio\nprint("shebang ok", ...)\n' >"$W/sb.lua"
both 10 sb.lua 1
check_rc 0 && same_out && check_out_eq "shebang ok	1" && pass

NAME="a syntax error names file:line, exits 1, nothing run, as luajit"
printf 'print("ran")\nlocal x = = 2\n' >"$W/syn.lua"
both 10 syn.lua
check_rc 1 && same_out && same_err_line1 && check_err_has "syn.lua:2:" && pass

NAME="error(table with __tostring): its text, exit 1, as luajit"
echo 'error(setmetatable({}, {__tostring = function() return "TS-text" end}))' >"$W/e1.lua"
both 10 e1.lua
check_rc 1 && same_rc && check_err_has "TS-text" && check_err_has "e1.lua:1: in main chunk" && pass

NAME="error(number): position added, exit 1, as luajit"
echo 'error(42)' >"$W/e2.lua"
both 10 e2.lua
check_rc 1 && same_rc && check_err_has "e2.lua:1: 42" && pass

# luajit says "(error object is not a string)" for a table and nothing at
# all for nil; corio names the type and gives the traceback (documented).
NAME="error(plain table): exit 1; corio names the value's type and the line"
echo 'error({})' >"$W/e3.lua"
both 10 e3.lua
check_rc 1 && same_rc && check_err_has "(error object is a table value)" \
  && check_err_has "e3.lua:1: in main chunk" && pass

NAME="error(nil): exit 1; corio says so (luajit prints nothing)"
echo 'error(nil)' >"$W/e4.lua"
both 10 e4.lua
check_rc 1 && same_rc && check_err_has "(error object is a nil value)" && pass

for v in 3 true false "" 0; do
  NAME="os.exit($v) in the main chunk: same status, io.write output flushed, as luajit"
  echo "io.write('buffered') os.exit($v) print('not reached')" >"$W/x.lua"
  both 10 x.lua
  same_rc && same_out && check_out_eq "buffered" && pass
done

NAME="os.exit after setvbuf('full'): the buffer is flushed, as luajit"
echo "io.stdout:setvbuf('full') io.write('a', 'b') os.exit(5)" >"$W/x2.lua"
both 10 x2.lua
check_rc 5 && same_out && check_out_eq "ab" && pass

for v in 7 true false; do
  case "$v" in true) want=0 ;; false) want=1 ;; *) want=$v ;; esac
  NAME="os.exit($v) in a spawned task: exit $want, output before it flushed"
  cat >"$W/tx.lua" <<LUA
local corio = require "corio"
io.write("before")
corio.spawn(function() io.write(" in-task") os.exit($v) end)
corio.sleep(5)
print("not reached")
LUA
  run 10 "$CORIO" "$W/tx.lua"
  check_rc "$want" && check_out_eq "before in-task" && pass
done

NAME="io.write without a newline at exit is written, as luajit"
echo "io.write('no newline')" >"$W/nl.lua"
both 10 nl.lua
check_rc 0 && same_out && check_out_eq "no newline" && pass

NAME="the main chunk's return values are dropped, exit 0, as luajit"
echo "return false, 'x', 3" >"$W/ret.lua"
both 10 ret.lua
check_rc 0 && same_out && check_out_eq "" && check_err_lacks "x" && pass

NAME="print to a pipe closed early (| head -c0): SIGPIPE as luajit, no crash"
echo "for i = 1, 200000 do print(i) end" >"$W/many.lua"
set +e
timeout 10 "$LUAJIT" "$W/many.lua" 2>/dev/null | head -c0
LJ_RC=${PIPESTATUS[0]}
timeout 10 "$CORIO" "$W/many.lua" 2>"$TMP/err" | head -c0
RC=${PIPESTATUS[0]}
set -e
same_rc && check_err_lacks "Assertion" && pass

# A closed standard descriptor: libuv's own descriptors would take its
# number and libuv aborts closing them (was: "uv__close: Assertion `fd >
# STDERR_FILENO' failed", SIGABRT). luajit just runs.
echo "io.stderr:write('') print('to closed stdout')" >"$W/cl.lua"
for fd in 0 1 2; do
  NAME="run with descriptor $fd closed: exit 0 as luajit, no abort"
  set +e
  (cd "$W" && eval "timeout 10 \"$LUAJIT\" cl.lua $fd>&-" >/dev/null 2>&1)
  LJ_RC=$?
  (cd "$W" && eval "timeout 10 \"$CORIO\" cl.lua $fd>&-" >"$TMP/out" 2>"$TMP/err")
  RC=$?
  set -e
  check_rc 0 && same_rc && check_err_lacks "Assertion" && pass
done
NAME="-e code with stdout closed: exit 0, no abort"
set +e
(timeout 10 "$CORIO" -e 'print(1)' >&- 2>"$TMP/err"); RC=$?
set -e
check_rc 0 && check_err_lacks "Assertion" && pass

NAME="'-' reads the script from stdin, arg[0] is '-', as luajit"
set +e
(cd "$W" && timeout 10 "$LUAJIT" - x "y z" <args.lua >"$TMP/lj_out" 2>/dev/null)
LJ_RC=$?
(cd "$W" && timeout 10 "$CORIO" - x "y z" <args.lua >"$TMP/out" 2>"$TMP/err")
RC=$?
set -e
LJ_OUT="$(cat "$TMP/lj_out")"
OUT="$(cat "$TMP/out")"
check_rc 0 && same_rc && same_out && check_out_has "0=- 1=x 2=y z" && pass

# luajit leaves arg nil here; corio keeps a table (arg[-1] the interpreter)
# but, as luajit, no arg[0]: there is no script name (was: arg[0] was the
# corio binary's path, as if it were the script).
NAME="a program piped in with no arguments: arg[0] is nil, as luajit"
set +e
echo 'print(arg and arg[0], select("#", ...))' | timeout 10 "$LUAJIT" >"$TMP/lj_out" 2>&1
echo 'print(arg and arg[0], select("#", ...))' | timeout 10 "$CORIO" >"$TMP/out" 2>"$TMP/err"
RC=$?
set -e
LJ_OUT="$(cat "$TMP/lj_out")"; OUT="$(cat "$TMP/out")"
check_rc 0 && same_out && check_out_eq "nil	0" && pass

NAME="a script named '-x.lua' is an option unless after -- or ./ (as luajit)"
cp "$W/args.lua" "$W/-x.lua"
both 10 -x.lua
if [ "$LJ_RC" -eq 0 ] || [ "$RC" -ne 2 ]; then
  fail "expected both to refuse it (luajit 1, corio 2), got luajit $LJ_RC"
else
  check_err_has "unknown option '-x.lua'" && pass
fi
NAME="'-- -x.lua' and './-x.lua' run it, as luajit"
both 10 -- -x.lua a
check_rc 0 && same_out && check_out_has "0=-x.lua 1=a" && {
  both 10 ./-x.lua b
  check_rc 0 && same_out && check_out_has "0=./-x.lua 1=b" && pass; }

NAME="an unknown option: usage on stderr, exit 2 (luajit: 1, documented)"
both 10 -Z args.lua
if check_rc 2 && check_err_has "usage: corio" && check_out_eq ""; then
  if [ "$LJ_RC" -ne 1 ]; then fail "luajit's status is $LJ_RC, docs say 1"
  elif ! grep -q "luajit. uses 1" "$REPO/docs/getting-started.md"; then
    fail "docs/getting-started.md does not note luajit's 1"
  else pass; fi
fi

NAME="--version and -v: one line 'corio X.Y.Z (LuaJIT ...)' on stdout, exit 0"
for o in --version -v; do
  run 10 "$CORIO" "$o"
  check_rc 0 || break
  if ! printf '%s\n' "$OUT" | grep -qxE 'corio [0-9]+\.[0-9]+\.[0-9]+ \(LuaJIT [^)]+\)'; then
    fail "unexpected version line for $o"
    break
  fi
  [ "$o" = -v ] && pass
done

NAME="require of a module next to the script, run from its folder, as luajit"
mkdir -p "$W/m"
echo 'return {v = "next to it"}' >"$W/m/mymod.lua"
echo 'print(require("mymod").v)' >"$W/m/main.lua"
(cd "$W/m" && run 10 "$LUAJIT" main.lua && printf '%s' "$OUT" >"$TMP/lj_out" \
 && run 10 "$CORIO" main.lua && printf '%s' "$OUT" >"$TMP/co_out") || true
if [ "$(cat "$TMP/lj_out" 2>/dev/null)" = "next to it" ] \
   && [ "$(cat "$TMP/co_out" 2>/dev/null)" = "next to it" ]; then pass
else fail "luajit printed '$(cat "$TMP/lj_out")', corio '$(cat "$TMP/co_out")'"; fi

NAME="LUA_PATH and LUA_CPATH are honoured (corio's own paths put first)"
mkdir -p "$W/lp"
echo 'return {v = "via LUA_PATH"}' >"$W/lp/lpmod.lua"
echo 'print(require("lpmod").v, package.cpath:find("/nowhere/?.so", 1, true) ~= nil)' >"$W/lp.lua"
run 10 env LUA_PATH="$W/lp/?.lua;;" LUA_CPATH="/nowhere/?.so;;" "$LUAJIT" "$W/lp.lua"
LJ_OUT="$OUT"
run 10 env LUA_PATH="$W/lp/?.lua;;" LUA_CPATH="/nowhere/?.so;;" "$CORIO" "$W/lp.lua"
check_rc 0 && same_out && check_out_eq "via LUA_PATH	true" && pass

NAME="a module body that calls corio (suspends) fails with the documented message"
echo 'local corio = require "corio"; corio.sleep(0.01); return {}' >"$W/m/amod.lua"
echo 'package.path = "'"$W"'/m/?.lua;" .. package.path; require("amod")' >"$W/am.lua"
run 10 "$CORIO" "$W/am.lua"
check_rc 1 && check_err_has "a module body run by require" \
  && check_err_has "amod.lua:1:" && pass

finish
