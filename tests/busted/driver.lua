--[[
tests/busted/driver.lua: runs `corio test` on the fixtures in
tests/spec/fixtures/busted/, which fail on purpose, and checks the exit
status and the report text: the failing test's name, the timeout, the
file:line where each task was suspended, the name of a task left running,
assertion failures in child tasks counted as failures, string errors with
their traceback, SIGINT, and busted's own options (-o TAP, --filter,
--pattern, a .busted file) passing through. It does not test corio
itself; tests/spec/busted_spec.lua runs passing async specs.

  luajit tests/busted/driver.lua [path/to/corio]
  (default: $CORIO, else build/corio)

Plain luajit runs it, so that a broken runtime cannot hide its own failure.
Exit status 0 when every check passed, 1 otherwise.
]]

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return (os.getenv("PWD") or ".") .. "/" .. path
end

local root = absolute(here .. "/../..")
local corio_exe = arg[1] or os.getenv("CORIO") or (root .. "/build/corio")
corio_exe = absolute(corio_exe)
local fixtures = "tests/spec/fixtures/busted/"

local failed, checks = 0, 0

-- Runs `corio test args...` in the repository root; returns status, output
-- (stdout and stderr together) and the wall time in seconds. With
-- `interrupt` (seconds), SIGINT is sent to corio that long after its start.
local function corio_test(args, interrupt)
  local words = {}
  for i, a in ipairs(args) do words[i] = shell_quote(a) end
  local run = ("%s test %s 2>&1"):format(shell_quote(corio_exe),
    table.concat(words, " "))
  if interrupt then
    run = ("%s & pid=$!; sleep %g; kill -INT $pid; wait $pid"):format(
      run, interrupt)
  end
  local cmd = ("cd %s && s=$(date +%%s.%%N) && { %s; }; "
    .. "echo \"@status=$? @start=$s @end=$(date +%%s.%%N)\"")
    :format(shell_quote(root), run)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  local status, t0, t1 = out:match("@status=(%d+) @start=(%S+) @end=(%S+)\n$")
  out = out:gsub("@status=[^\n]*\n$", "")
  return tonumber(status), out, (tonumber(t1) or 0) - (tonumber(t0) or 0)
end

-- The line of a fixture that carries the comment "-- @mark".
local function line_of(file, mark)
  local n = 0
  for line in io.lines(root .. "/" .. fixtures .. file) do
    n = n + 1
    if line:find("-- @" .. mark, 1, true) then return n end
  end
  error("no line marked @" .. mark .. " in " .. file)
end

local function at(file, mark)
  return fixtures .. file .. ":" .. line_of(file, mark)
end

local current, current_out

local function check(ok, what)
  checks = checks + 1
  if not ok then
    failed = failed + 1
    io.write(("FAIL [%s] %s\n"):format(current, what))
  end
end

local function has(s)
  check(current_out:find(s, 1, true) ~= nil, "output lacks: " .. s)
end

local function lacks(s)
  check(current_out:find(s, 1, true) == nil, "output has: " .. s)
end

-- One `corio test` run and its checks; the output is shown when a check
-- of this case failed.
local function case(name, args, status, fn, interrupt)
  current = name
  local before = failed
  local got, out, secs = corio_test(args, interrupt)
  current_out = out
  check(got == status, ("exit status %s, expected %d"):format(
    tostring(got), status))
  fn(out, secs)
  if failed > before then
    io.write("---- output of corio test " .. table.concat(args, " ")
      .. "\n" .. out .. "----\n")
  else
    io.write(("ok   [%s]\n"):format(name))
  end
end

case("timeout", { fixtures .. "timeout.lua" }, 2, function(out, secs)
  has("timeouts sleeps past its timeout")
  has("test timed out after 0.2 s")
  has("'sleeps past its timeout' (the test's own task, running) "
    .. "suspended at " .. at("timeout.lua", "root-sleep"))
  has("'sleeping child' (running, child of 'sleeps past its timeout') "
    .. "suspended at " .. at("timeout.lua", "child-sleep"))
  -- the failure is located where the test's root task was suspended
  has(at("timeout.lua", "root-sleep") .. ": test timed out")
  has("timeouts has its own timeout")
  has("test timed out after 0.1 s")
  has(at("timeout.lua", "own-sleep"))
  has("1 success / 2 failures / 0 errors / 0 pending")
  check(secs < 5, ("took %.1f s: the timeouts did not cut the sleeps"):format(
    secs))
end)

case("timeout -o TAP", { "-o", "TAP", fixtures .. "timeout.lua" }, 2,
  function(out)
    has("not ok 1 - timeouts sleeps past its timeout")
    has("not ok 2 - timeouts has its own timeout")
    has("ok 3 - timeouts passes within the timeout")
    has("# Failure message: " .. at("timeout.lua", "root-sleep")
      .. ": test timed out after 0.2 s")
    has("1..3")
    lacks("successes /")
  end)

case("timeout --filter", { "--filter", "passes within",
  fixtures .. "timeout.lua" }, 0, function(out)
    has("1 success / 0 failures / 0 errors / 0 pending")
  end)

case("leftover", { fixtures .. "leftover.lua" }, 1, function(out, secs)
  has("leftovers leaves a task running")
  has(at("leftover.lua", "left-sleep") .. ": test left 1 task running:")
  has("'forgotten sleeper' (running, child of 'leaves a task running') "
    .. "suspended at " .. at("leftover.lua", "left-sleep"))
  has("1 success / 1 failure / 0 errors / 0 pending")
  check(secs < 5, ("took %.1f s: the left task was waited for"):format(secs))
end)

case("child_assert", { fixtures .. "child_assert.lua" }, 3, function(out)
  has("0 successes / 3 failures / 0 errors / 0 pending")
  has("assertions in tasks fails in a joined child")
  has(at("child_assert.lua", "joined-assert")
    .. ": Expected objects to be equal.")
  has(at("child_assert.lua", "unjoined-assert")
    .. ": Expected objects to be the same.")
  has(at("child_assert.lua", "body-assert")
    .. ": Expected objects to be the same.")
  lacks("Error ->")
end)

case("string_error", { fixtures .. "string_error.lua" }, 3, function(out)
  has("0 successes / 0 failures / 3 errors / 0 pending")
  has(at("string_error.lua", "body-error") .. ": boom from the test")
  has(at("string_error.lua", "child-error") .. ": boom from a child")
  has(at("string_error.lua", "hook-error") .. ": boom from before_each")
  has("stack traceback")
  -- the tracebacks are the raising tasks', not the integration's
  has(at("string_error.lua", "body-error") .. ": in function")
  has(at("string_error.lua", "hook-error") .. ": in function")
  lacks("corio/busted.lua")
  lacks("this test must not run")
end)

case("string_error -v", { "-v", fixtures .. "string_error.lua" }, 3,
  function(out)
    -- busted prints its trace's traceback with -v: it is the task's
    has(at("string_error.lua", "child-error") .. ": in function")
  end)

case("kinds", { fixtures .. "kinds.lua" }, 0, function(out)
  has("4 successes / 0 failures / 0 errors / 2 pending")
  has("waits for something")
end)

case("slow_start", { fixtures .. "slow_start.lua" }, 0, function(out)
  -- fails while corio.testing.sleep_real arms its libuv timer from the
  -- loop's cached time, which is stale after busy work outside the loop
  has("1 success / 0 failures / 0 errors / 0 pending")
end)

case(".busted file", { "-C", fixtures }, 0, function(out)
  -- its ROOT picks kinds.lua and its output is TAP
  has("ok 2 - block kinds runs an async finally")
  has("1..6")
end)

case("--pattern", { "--pattern=^kind", fixtures }, 0, function(out)
  has("4 successes / 0 failures / 0 errors / 2 pending")
  lacks("timed out")
end)

case("interrupt", { fixtures .. "interrupt.lua" }, 130, function(out, secs)
  has("interrupt is interrupted")
  has("interrupted by SIGINT")
  has("after_each ran")
  lacks("ran after SIGINT")
  check(secs < 10, ("took %.1f s: SIGINT did not cut the sleep"):format(secs))
end, 1.5)

io.write(("%d of %d checks failed\n"):format(failed, checks))
os.exit(failed == 0 and 0 or 1)
