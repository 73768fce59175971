#!/usr/bin/env bash
# coro_parity.sh: rule 11 meets rule 13: a generator (the user's own
# coroutine) whose corio body yields, run under a stock luajit where no
# loop is running. Each check failed before the fix committed with it.
# Usage: coro_parity.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

printf 'a\nb\nc\n' >"$TMP/lines.txt"

# the same script under luajit and under corio
cat >"$TMP/with_open.lua" <<LUA
local fs = require("corio.fs")
local gen = coroutine.wrap(function()
  fs.with_open("$TMP/lines.txt", "r", function(f)
    for l in f:lines() do coroutine.yield(l) end
  end)
  return nil
end)
local got = {}
for l in gen do got[#got + 1] = l end
print(#got, table.concat(got, ","))
LUA

NAME="rule 11/13: fs.with_open in a generator under luajit yields every line"
luajit_run 10 "$TMP/with_open.lua"
check_rc 0 && check_out_eq "$(printf '3\ta,b,c')" && pass

NAME="rule 13: the same generator under corio yields every line"
run 10 "$CORIO" "$TMP/with_open.lua"
check_rc 0 && check_out_eq "$(printf '3\ta,b,c')" && pass

cat >"$TMP/bodies.lua" <<'LUA'
local corio = require("corio")
local orig = coroutine.yield
local cases = {
  { "corio.scope", function(body) corio.scope(body) end },
  { "corio.shield", function(body) corio.shield(body) end },
  { "corio.timeout", function(body) corio.timeout(5, body) end },
  { "corio.move_on_after", function(body) corio.move_on_after(5, body) end },
  { "obj:with", function(body) corio.semaphore(1):with(body) end },
  { "obj:with", function(body) corio.lock():with(body) end },
}
for _, case in ipairs(cases) do
  local name, call = case[1], case[2]
  local got = {}
  local gen = coroutine.wrap(function()
    call(function()
      -- a generator of the body's own still yields to the body
      local inner = coroutine.wrap(function() coroutine.yield("inner") end)
      got[#got + 1] = inner()
      coroutine.yield("item")
    end)
    return "end"
  end)
  local ok, err = pcall(function()
    while true do
      local v = gen()
      got[#got + 1] = v
      if v == "end" then break end
    end
  end)
  local msg = ok and "" or tostring(type(err) == "table" and err.message or err)
  print(name, ok, table.concat(got, ","),
    msg:find("coroutine.yield in the body of " .. name, 1, true) ~= nil,
    msg:find("bodies.lua:%d+:") ~= nil,
    coroutine.yield == orig)
end
LUA

NAME="rule 11/13: a body's yield under luajit is refused by name, not dropped"
luajit_run 10 "$TMP/bodies.lua"
check_rc 0 && check_out_eq "$(printf '%s\n' \
  $'corio.scope\tfalse\tinner\ttrue\ttrue\ttrue' \
  $'corio.shield\tfalse\tinner\ttrue\ttrue\ttrue' \
  $'corio.timeout\tfalse\tinner\ttrue\ttrue\ttrue' \
  $'corio.move_on_after\tfalse\tinner\ttrue\ttrue\ttrue' \
  $'obj:with\tfalse\tinner\ttrue\ttrue\ttrue' \
  $'obj:with\tfalse\tinner\ttrue\ttrue\ttrue')" && pass

NAME="rule 13: under corio the same bodies yield through"
run 10 "$CORIO" "$TMP/bodies.lua"
check_rc 0 && check_out_eq "$(printf '%s\n' \
  $'corio.scope\ttrue\tinner,item,end\tfalse\tfalse\ttrue' \
  $'corio.shield\ttrue\tinner,item,end\tfalse\tfalse\ttrue' \
  $'corio.timeout\ttrue\tinner,item,end\tfalse\tfalse\ttrue' \
  $'corio.move_on_after\ttrue\tinner,item,end\tfalse\tfalse\ttrue' \
  $'obj:with\ttrue\tinner,item,end\tfalse\tfalse\ttrue' \
  $'obj:with\ttrue\tinner,item,end\tfalse\tfalse\ttrue')" && pass

NAME="rule 11: a body outside any coroutine still runs under luajit"
luajit_run 10 -e '
local corio = require("corio")
print(corio.timeout(1, function() corio.sleep(0.001); return "ok" end))
print(corio.semaphore(1):with(function() return "with" end))'
check_rc 0 && check_out_eq "$(printf 'ok\nwith')" && pass

finish
