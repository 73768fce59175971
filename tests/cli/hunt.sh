#!/usr/bin/env bash
# hunt.sh: CLI regressions found by a bug hunt, each checked against what
# luajit does with the same command line (SPEC §5: `arg` as in luajit).
# Usage: hunt.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

ARGS='print("0=" .. tostring(arg[0]), "-1=" .. tostring(arg[-1]), "1=" .. tostring(arg[1]), "n=" .. #arg)'

NAME="-e without a script: arg[0] is nil and arg[-1] the code, as luajit sets them"
run 10 "$LUAJIT" -e "$ARGS"
want="$OUT"
run 10 "$CORIO" -e "$ARGS"
check_rc 0 && check_out_eq "$want" && check_out_has "0=nil" && pass

NAME="-e before a script: during -e, arg is the script's (arg[0] the script), as luajit"
printf 'X = 1\n' >"$TMP/s.lua"
run 10 "$LUAJIT" -e "$ARGS" "$TMP/s.lua" q
want="$OUT"
run 10 "$CORIO" -e "$ARGS" "$TMP/s.lua" q
check_rc 0 && check_out_eq "$want" && check_out_has "0=$TMP/s.lua" \
  && check_out_has "1=q" && pass

NAME="an uncaught error prints its whole traceback (it was cut at 511 bytes)"
cat >"$TMP/deep.lua" <<'LUA'
local corio = require "corio"
local function f(n)
  if n == 0 then error("deep failure with a reasonably long message") end
  return (f(n - 1))
end
corio.scope(function(s)
  s:spawn(function() f(30) end)
end)
LUA
run 10 "$CORIO" "$TMP/deep.lua"
check_rc 1 && check_err_has "deep failure with a reasonably long message" \
  && check_err_has "spawned at" && {
  n=$(grep -c "in function 'f'" "$TMP/err" || true)
  if [ "$n" -ge 20 ]; then pass; else fail "only $n frames of f in the traceback"; fi
}

NAME="a file collected unclosed whose last write fails says so on stderr (the bytes were lost silently)"
cat >"$TMP/full.lua" <<'LUA'
local corio = require "corio"
local fs = require "corio.fs"
corio.run(function()
  local f = fs.open("/dev/full", "w")
  f:write("hello")
  local g = fs.open(arg[1], "w")
  g:write("kept")
end)
print("done")
LUA
run 10 "$CORIO" "$TMP/full.lua" "$TMP/kept.txt"
check_rc 0 && check_out_has "done" \
  && check_err_has "corio: /dev/full: 5 buffered bytes were lost" \
  && check_err_has "no space left on device" \
  && check_err_lacks "kept.txt" && {
  if [ "$(cat "$TMP/kept.txt")" = kept ]; then pass
  else fail "the other file's buffered bytes were not written"; fi
}

NAME="a scope a coroutine left open on the task's chain (resumed without corio's wrapper) runs its defers when closed"
# A coroutine.resume saved before corio was loaded does not detach the
# scopes the coroutine leaves open; leaving the enclosing scope closes
# them. Their deferred functions used to be dropped.
luajit_run 15 -e '
local raw = coroutine.resume
local corio = require("corio")
corio.run(function()
  local log = {}
  local co = coroutine.create(function()
    corio.move_on_after(5, function()
      corio.defer(function() log[#log + 1] = "defer1" end)
      corio.defer(function() log[#log + 1] = "defer2" end)
      coroutine.yield()
    end)
  end)
  local ok, err = pcall(corio.scope, function() raw(co) end)
  print(ok, type(err) == "table" and err.kind,
    tostring(err):find("still open", 1, true) ~= nil)
  print(table.concat(log, ","))
  corio.sleep(0.001)
  print("usable")
end)'
check_rc 0 && check_out_eq "$(printf 'false\terror\ttrue\ndefer2,defer1\nusable')" && pass

NAME="scopes still open on the task's chain when its body ends run their defers, inner first, before the task's, and the task fails saying so"
luajit_run 15 -e '
local raw = coroutine.resume
local corio = require("corio")
local log = {}
local ok, err = pcall(corio.run, function()
  corio.defer(function() log[#log + 1] = "task" end)
  local co = coroutine.create(function()
    corio.move_on_after(5, function()
      corio.defer(function() log[#log + 1] = "outer" end)
      corio.shield(function()
        corio.defer(function() log[#log + 1] = "inner1" end)
        corio.defer(function() log[#log + 1] = "inner2" end)
        coroutine.yield()
      end)
    end)
  end)
  raw(co)   -- not corio'"'"'s wrapper: the scopes stay on the task'"'"'s chain
  return "the body returned"
end)
print(ok, type(err) == "table" and err.kind,
  tostring(err):find("a task body ended while a scope entered inside it by another coroutine was still open", 1, true) ~= nil)
print(table.concat(log, ","))'
check_rc 0 && check_out_eq "$(printf 'false\terror\ttrue\ninner2,inner1,outer,task')" && pass

finish
