#!/usr/bin/env bash
# busted_parity.sh: `corio test` against stock busted 2.1.1, for what a
# busted user relies on (output handlers, hook order, exit status). Each
# case names what busted itself does; the differences corio keeps on
# purpose are in docs/api.md ("corio.busted").
# Usage: busted_parity.sh path/to/corio
. "$(dirname "$0")/lib.sh"

# check_next FILE A B: some line equal to A is followed by a line equal to B
check_next() {
  if ! awk -v a="$2" -v b="$3" 'prev == a && $0 == b { found = 1 }
      { prev = $0 } END { exit !found }' "$1"; then
    fail "expected a line '$2' followed by a line '$3'"
    return 1
  fi
}

cat >"$TMP/fail_spec.lua" <<'LUA'
local corio = require "corio"
it("fails", function()
  corio.sleep(0.001)
  assert.is_true(false)
end)
LUA

# busted hands its handlers a traceback shaped as debug.traceback's
# ("\nstack traceback:\n\t...\n"); corio's started at "stack traceback:",
# so junit wrote "(boolean) truestack traceback:" into the failure, and
# -v printed it with no blank line before it.
NAME="-o junit: a failure's message and its traceback on lines of their own, as busted"
run 30 "$CORIO" test -o junit "$TMP/fail_spec.lua"
check_rc 1 \
  && check_next "$TMP/out" "(boolean) true" "stack traceback:" \
  && check_next "$TMP/out" "	$TMP/fail_spec.lua:4: in function &lt;$TMP/fail_spec.lua:2&gt;" "</failure>" \
  && pass

NAME="-v: a failure's traceback after a blank line, as busted"
run 30 "$CORIO" test -v "$TMP/fail_spec.lua"
check_rc 1 \
  && check_next "$TMP/out" "(boolean) true" "" \
  && check_next "$TMP/out" "" "stack traceback:" \
  && pass

# corio.busted's own API. describe(name, timeout(n, fn)) reads as the
# per-body form that it(name, timeout(n, fn)) documents; it was ignored
# without a word (the block's tests had the default 5 s).
NAME="describe(name, timeout(n, fn)): the block's tests and hooks get n s"
cat >"$TMP/block_timeout_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
describe("wrapped", cb.timeout(0.2, function()
  it("sleeps past it", function() corio.sleep(1.5) end)
  describe("nested", function()
    before_each(function() corio.sleep(1.5) end)
    it("waits in its hook", function() end)
  end)
  describe("its own", function()
    cb.timeout(3)
    it("sleeps within it", function() corio.sleep(0.4) end)
  end)
end))
insulate("insulated", cb.timeout(0.2, function()
  it("sleeps past it too", function() corio.sleep(1.5) end)
end))
LUA
run 30 "$CORIO" test "$TMP/block_timeout_spec.lua"
check_rc 3 \
  && check_out_has "1 success / 2 failures / 1 error" \
  && check_out_has "block_timeout_spec.lua:4: test timed out after 0.2 s" \
  && check_out_has "block_timeout_spec.lua:6: test timed out after 0.2 s" \
  && check_out_has "block_timeout_spec.lua:15: test timed out after 0.2 s" \
  && pass

# A body that is no function: busted reports "attempt to call a number
# value"; corio added a "stack traceback:" heading with no frame under it
# (every frame was the runner's, which it trims).
NAME="it(name, 5): the error alone, no empty traceback heading"
cat >"$TMP/number_body_spec.lua" <<'LUA'
it("number body", 5)
LUA
run 30 "$CORIO" test "$TMP/number_body_spec.lua"
check_rc 1 \
  && check_out_has "attempt to call a number value" \
  && check_out_lacks "stack traceback" \
  && pass

# Documented behaviour (docs/api.md, corio.busted), checked here.
NAME="os.exit(3) in a test: the run ends there with status 3, as busted"
cat >"$TMP/exit_spec.lua" <<'LUA'
local corio = require "corio"
it("a", function() end)
it("exits", function() io.write("before exit\n") corio.sleep(0.01) os.exit(3) end)
it("b", function() print("RAN AFTER EXIT") end)
LUA
run 30 "$CORIO" test -o TAP "$TMP/exit_spec.lua"
check_rc 3 \
  && check_out_has "ok 1 - a" \
  && check_out_has "before exit" \
  && check_out_lacks "RAN AFTER EXIT" \
  && pass

NAME="a task a setup leaves running: the setup fails, its block's tests are skipped, its teardown runs; a channel it made is the tests'"
cat >"$TMP/setup_task_spec.lua" <<'LUA'
local corio = require "corio"
describe("background task from setup", function()
  setup(function() corio.spawn(function() corio.sleep(60) end) end)
  teardown(function() print("TEARDOWN RAN") end)
  it("skipped", function() print("SKIPPED TEST RAN") end)
end)
describe("a channel from setup", function()
  local ch
  setup(function() ch = corio.channel(1) end)
  it("uses it", function() ch:send(1) assert.equal(1, ch:recv()) end)
end)
LUA
run 30 "$CORIO" test "$TMP/setup_task_spec.lua"
check_rc 1 \
  && check_out_has "1 success / 0 failures / 1 error" \
  && check_out_has "background task from setup setup" \
  && check_out_has "setup_task_spec.lua:3: test left 1 task running:" \
  && check_out_has "TEARDOWN RAN" \
  && check_out_lacks "SKIPPED TEST RAN" \
  && pass

NAME="corio.busted.timeout(n) in busted's --helper and -e: the whole run's timeout"
cat >"$TMP/helper.lua" <<'LUA'
require("corio.busted").timeout(0.2)
LUA
cat >"$TMP/sleep_spec.lua" <<'LUA'
local corio = require "corio"
it("sleeps 1.5 s", function() corio.sleep(1.5) end)
LUA
run 30 "$CORIO" test --helper="$TMP/helper.lua" "$TMP/sleep_spec.lua"
check_rc 1 && check_out_has "test timed out after 0.2 s" && pass
NAME="... and with -e"
run 30 "$CORIO" test -e 'require("corio.busted").timeout(0.2)' "$TMP/sleep_spec.lua"
check_rc 1 && check_out_has "test timed out after 0.2 s" && pass

# --debug's slow-step report names the innermost line outside corio's
# own Lua. Every global a spec reads goes through busted's environment
# (an __index on the body's fenv), so a busy test was mostly reported
# "now at .../busted/environment.lua:21" or "busted/context.lua:115".
# busted's and luassert's files now count as corio's own there.
NAME="CORIO_DEBUG=1: a busy test's slow step is reported at the spec's line, not in busted"
cat >"$TMP/busy_spec.lua" <<'LUA'
describe("a", function() describe("b", function()
  it("busy reading globals", function()
    local t = os.clock()
    while os.clock() - t < 0.3 do
      local _ = assert, spy, stub, mock, match, describe, it, pending
    end
  end)
end) end)
LUA
ok=1
for i in 1 2 3; do
  run 30 env CORIO_DEBUG=1 "$CORIO" test "$TMP/busy_spec.lua"
  if ! check_rc 0 || ! grep -q "slow step: busy reading globals has held the loop for over 100 ms and is still running, now at $TMP/busy_spec.lua:[45]\$" "$TMP/err"; then
    ok=0
    fail "run $i: no report at busy_spec.lua:4 or 5"
    break
  fi
done
[ "$ok" = 1 ] && pass

# corio.busted.run runs each body as its own corio.run; called from the
# main chunk of `corio script.lua` (a task), those runs were children of
# the script's task, which the first test then "left running": after a
# 5 s grace the script's own task was cancelled and the run stopped.
NAME="corio.busted.run inside a running task (corio script.lua): refused at once, naming it"
cat >"$TMP/ok_spec.lua" <<'LUA'
it("passes", function() end)
LUA
cat >"$TMP/runner.lua" <<'LUA'
local status = require("corio.busted").run({ (...) })
print("status", status)
LUA
run 30 "$CORIO" "$TMP/runner.lua" "$TMP/ok_spec.lua"
check_rc 1 \
  && check_err_has "runner.lua:1: corio.busted.run: called inside a running task" \
  && check_err_has "corio test [busted args]" \
  && check_out_lacks "status" \
  && check_err_lacks "still running" \
  && pass

NAME="corio.busted.run from a plain luajit script still runs the specs"
luajit_run 30 "$TMP/runner.lua" "$TMP/ok_spec.lua"
check_rc 0 && check_out_has "1 success / 0 failures" && check_out_has "status	0" && pass

finish
