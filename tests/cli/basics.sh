#!/usr/bin/env bash
# basics.sh: the corio program (SPEC §5): --version, -e, script args,
# uncaught errors (traceback, exit 1), rule 11's corio.run in the main
# chunk, and that cancelled timers do not keep the process alive (rule 7).
# Usage: basics.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

NAME="--version prints a version and exits 0"
run 10 "$CORIO" --version
check_rc 0 && {
  if grep -qiE 'corio[^0-9]*[0-9]+\.[0-9]+' "$TMP/out"; then pass
  else fail "stdout has no 'corio <major>.<minor>' version"; fi
}

NAME="-e runs code, print goes to stdout"
run 10 "$CORIO" -e 'print("hi", 1 + 1)'
check_rc 0 && check_out_eq "$(printf 'hi\t2')" && pass

NAME="-e code finds corio loaded as a global, as at the REPL; a script does not"
run 10 "$CORIO" -e 'corio.sleep(0.01) print(corio == require("corio"))'
check_rc 0 && check_out_eq "true" && {
  printf 'print(rawget(_G, "corio"))\n' > "$TMP/noglobal.lua"
  run 10 "$CORIO" "$TMP/noglobal.lua"
  check_rc 0 && check_out_eq "nil" && pass
}

NAME="-ecode (the code attached, as lua and luajit take it) runs it; mixed with -e code, in order"
run 10 "$CORIO" '-eprint("hi", 1 + 1)'
check_rc 0 && check_out_eq "$(printf 'hi\t2')" && {
  printf 'print("script", X + Y, ...)\n' >"$TMP/ecode.lua"
  run 10 "$CORIO" -eX=1 -e 'Y = 2' '-ecorio.sleep(0.01) print("e", X + Y)' "$TMP/ecode.lua" a
  check_rc 0 && check_out_eq "$(printf 'e\t3\nscript\t3\ta')" && {
    run 10 "$CORIO" '-eerror("attached fails")' -e 'print("next ran")'
    check_rc 1 && check_err_has "attached fails" && check_out_lacks "next ran" && pass
  }
}

NAME="an unknown option and -e without code are usage errors: exit 2, usage on stderr"
run 10 "$CORIO" --no-such-option
check_rc 2 && check_err_has "unknown option '--no-such-option'" && {
  run 10 "$CORIO" -e
  check_rc 2 && check_err_has "-e code" && pass
}

NAME="the built corio finds its own modules without LUA_PATH"
run 10 env -u LUA_PATH -u LUA_CPATH "$CORIO" -e \
  'local corio = require("corio"); corio.sleep(0.01); print(type(corio.spawn))'
check_rc 0 && check_out_eq "function" && pass

NAME="-e code is the root task: it waits for the children it spawned"
run 10 "$CORIO" -e '
local corio = require("corio")
corio.spawn(function() corio.sleep(0.05); print("child") end)
print("main")'
check_rc 0 && check_out_eq "$(printf 'main\nchild')" && pass

NAME="'-' runs the script from standard input, with its args, as luajit does"
run 10 sh -c "printf 'print(select(\"#\", ...), ...)\\nprint(arg[0])\\n' | \"\$0\" - a b" "$CORIO"
check_rc 0 && check_out_eq "$(printf '2\ta\tb\n-')" && pass

NAME="script args: arg and ... are set as luajit sets them"
run 10 "$CORIO" "$FIX/args.lua" a "b c"
check_rc 0 && check_out_has "0=$FIX/args.lua" && check_out_has "n=2" \
  && check_out_has "1=a" && check_out_has "2=b c" \
  && check_out_has "varargs=2 a|b c" && pass
corio_args="$(grep -v '^minus1=' "$TMP/out" || true)"
corio_minus1="$(grep '^minus1=' "$TMP/out" || true)"

NAME="script args: same as under luajit"
run 10 "$LUAJIT" "$FIX/args.lua" a "b c"
luajit_args="$(grep -v '^minus1=' "$TMP/out" || true)"
if [ "$corio_args" = "$luajit_args" ]; then pass
else fail "corio printed:
$corio_args
luajit printed:
$luajit_args"; fi

NAME="script args: arg[-1] is the interpreter"
case "$corio_minus1" in
  minus1=*corio) pass ;;
  *) fail "arg[-1] should name the corio program, got '$corio_minus1'" ;;
esac

NAME="an uncaught error in the main chunk prints a traceback, exits 1"
run 10 "$CORIO" "$FIX/error_main.lua"
check_rc 1 && check_err_has "main chunk failed" \
  && check_err_has "error_main.lua:3" && check_err_has "traceback" \
  && check_err_has "error_main.lua:6" && pass

NAME="rule 2: an unjoined child's error is not silent: traceback, exit 1"
run 10 "$CORIO" "$FIX/error_child.lua"
check_rc 1 && check_err_has "child task failed" \
  && check_err_has "error_child.lua:4" && check_err_has "error_child.lua:6" \
  && check_out_lacks "not reached" && pass

NAME="a non-string error value is printed with tostring, exit 1"
run 10 "$CORIO" "$FIX/error_table.lua"
check_rc 1 && check_err_has "custom table error" && pass

NAME="an uncaught error in -e code exits 1"
run 10 "$CORIO" -e 'error("from -e")'
check_rc 1 && check_err_has "from -e" && pass

NAME="a syntax error in -e code exits 1"
run 10 "$CORIO" -e 'this is not lua'
check_rc 1 && { if [ -n "$ERR" ]; then pass; else fail "stderr is empty"; fi; }

NAME="a missing script exits 1 and names it"
run 10 "$CORIO" "$TMP/no_such_script.lua"
check_rc 1 && check_err_has "no_such_script.lua" && pass

NAME="os.exit(n) exits with n"
run 10 "$CORIO" -e 'os.exit(3)'
check_rc 3 && pass

NAME="rule 11: the main chunk may call corio.run (results, children)"
run 10 "$CORIO" "$FIX/run_in_main.lua"
check_rc 0 && check_out_eq "$(printf 'results\t3\tx\nchild of run done\nafter run')" \
  && pass

NAME="rule 11: corio.run in the main chunk raises fn's error as under luajit"
# Under luajit corio.run wraps a string error in kind "error" (the error
# crosses the root task's boundary); the same script must behave the same
# under corio.
code='local corio = require("corio")
local ok, err = pcall(corio.run, function() error("inner failure", 0) end)
print(ok, type(err) == "table" and err.kind, type(err) == "table" and err.value)'
luajit_run 10 -e "$code"
luajit_out="$OUT"
run 10 "$CORIO" -e "$code"
check_rc 0 && check_out_eq "$luajit_out" \
  && check_out_eq "$(printf 'false\terror\tinner failure')" && pass

NAME="rule 11: corio.run inside fn of the main chunk's corio.run raises"
# only the main chunk itself may call corio.run; fn is not the main chunk
# (and under luajit this inner call raises too)
run 10 "$CORIO" -e '
local corio = require("corio")
corio.run(function()
  local ok, err = pcall(corio.run, function() print("nested ran") end)
  print("nested", ok, tostring(err):find("corio.scope", 1, true) ~= nil)
end)'
check_rc 0 && check_out_eq "$(printf 'nested\tfalse\ttrue')" && pass

NAME="rule 11: corio.run inside a spawned task raises naming corio.scope"
run 10 "$CORIO" -e '
local corio = require("corio")
local t = corio.spawn(function()
  return pcall(corio.run, function() print("ran") end)
end)
local ok, err = t:join()
print(ok, tostring(err):find("corio.scope", 1, true) ~= nil)'
check_rc 0 && check_out_eq "$(printf 'false\ttrue')" && pass

NAME="rule 11: corio.run in a script run by dofile explains why it cannot wait"
# dofile is a C function: the root task cannot suspend inside it. corio.run
# there must raise the clear error (this once crashed undoing its join),
# and the same script runs through loadfile.
printf '%s\n' 'local corio = require("corio")' \
  'print("run", corio.run(function() corio.yield(); return 7 end))' \
  > "$TMP/inner.lua"
run 10 "$CORIO" -e "
local ok, err = pcall(dofile, '$TMP/inner.lua')
print('dofile', ok, tostring(err):find('cannot suspend', 1, true) ~= nil)
loadfile('$TMP/inner.lua')()"
check_rc 0 && check_out_eq "$(printf 'dofile\tfalse\ttrue\nrun\t7')" && pass

NAME="rule 7: a cancelled sleep's timer does not keep the process alive"
start=$(date +%s)
run 10 "$CORIO" -e '
local corio = require("corio")
corio.scope(function(s)
  s:spawn(function() corio.sleep(100) end)
  corio.sleep(0.01)
  s:cancel()
end)
print(corio.move_on_after(0.01, corio.sleep, 100))'
elapsed=$(( $(date +%s) - start ))
check_rc 0 && check_out_eq "false" && {
  if [ "$elapsed" -le 3 ]; then pass
  else fail "took ${elapsed}s: a cancelled timer kept the loop alive"; fi
}

NAME="rule 1: corio.run (the CLI root) waits for every descendant"
run 10 "$CORIO" -e '
local corio = require("corio")
corio.spawn(function()
  corio.spawn(function() corio.sleep(0.05); print("grandchild") end)
end)'
check_rc 0 && check_out_eq "grandchild" && pass

# CORIO_POLL_MS (docs/semantics.md, rule 15): how often a busy ready queue
# polls. poll_pass.lua arms a 5 ms deadline before one ~100 ms pass.
NAME="CORIO_POLL_MS unset: a long pass polls, the deadline cuts the wait in time"
run 20 env -u CORIO_POLL_MS "$CORIO" "$FIX/poll_pass.lua"
check_rc 0 && check_out_eq "cut in time: true" && pass

NAME="CORIO_POLL_MS=0 polls by count only: the deadline is seen after the pass"
run 20 env CORIO_POLL_MS=0 "$CORIO" "$FIX/poll_pass.lua"
check_rc 0 && check_out_eq "cut in time: false" && check_err_lacks "ignoring" && pass

NAME="CORIO_POLL_MS=1000 is taken as 1000 ms (longer than the pass)"
run 20 env CORIO_POLL_MS=1000 "$CORIO" "$FIX/poll_pass.lua"
check_rc 0 && check_out_eq "cut in time: false" && pass

for bad in abc -3 1.5 99999999999; do
  NAME="CORIO_POLL_MS='$bad' is refused with a warning naming it; 2 ms is used"
  run 20 env CORIO_POLL_MS="$bad" "$CORIO" "$FIX/poll_pass.lua"
  check_rc 0 && check_out_eq "cut in time: true" \
    && check_err_has "ignoring CORIO_POLL_MS='$bad'" && check_err_has "using 2" && pass
done

for bad in soon 0; do
  NAME="CORIO_DEBUG_SLOW_MS='$bad' (not a number of ms >= 1) is refused with a warning"
  run 20 env CORIO_DEBUG=1 CORIO_DEBUG_SLOW_MS=$bad "$CORIO" -e 'print("ok")'
  check_rc 0 && check_out_eq "ok" && check_err_has "ignoring CORIO_DEBUG_SLOW_MS='$bad'" \
    && check_err_has "using 100" && pass
done

# CORIO_DEBUG (docs/getting-started.md): 1, true, yes, on turn the watch on
# and 0, false, no, off or empty leave it off (any case); anything else
# was taken as on. A step of ~150 ms against a threshold of 20 ms.
printf 'local t = os.clock() while os.clock() - t < 0.15 do end print("spun")\n' >"$TMP/spin.lua"
res=""
for v in 1 true YES On 0 False no OFF ""; do
  run 20 env CORIO_DEBUG="$v" CORIO_DEBUG_SLOW_MS=20 "$CORIO" "$TMP/spin.lua"
  if grep -q "slow step" "$TMP/err"; then res="$res $v=on"; else res="$res $v=off"; fi
done
NAME="CORIO_DEBUG: 1/true/yes/on turn the watch on, 0/false/no/off/empty leave it off"
OUT="$res"
check_out_eq " 1=on true=on YES=on On=on 0=off False=off no=off OFF=off =off" && pass
for bad in banana 2 "on please"; do
  NAME="CORIO_DEBUG='$bad' is not taken as on: one warning line naming it, the watch stays off"
  run 20 env CORIO_DEBUG="$bad" CORIO_DEBUG_SLOW_MS=20 "$CORIO" "$TMP/spin.lua"
  check_rc 0 && check_out_eq "spun" && check_err_lacks "slow step" \
    && check_err_has "corio: ignoring CORIO_DEBUG='$bad'" && check_err_has "using off" && {
      if [ "$(wc -l <"$TMP/err")" = 1 ]; then pass; else fail "more than one line on stderr"; fi
    }
done

finish
