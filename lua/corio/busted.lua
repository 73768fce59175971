--[[
corio/busted.lua: runs busted specs inside the corio runtime (`corio test`).

Every body busted runs for a test runs as its own root task, as if written
`corio.run(body)`: `it` (and its aliases `spec`, `test`), `before_each`,
`after_each`, `setup`/`teardown` (strict and lazy), and the function given to
busted's `finally`. So spec files call async functions directly. File and
`describe` bodies (also `insulate` and `expose`) only declare tests and stay
plain calls; a blocking corio call there runs synchronously (SPEC §1 rule 11).
A test's bodies are separate root tasks: before_each, the test, its finally
and after_each each get their own loop run and their own timeout. The root
task is named after the test (or the hook) in corio.tasks().

Timeouts (default 5 s; the environment variable CORIO_TEST_TIMEOUT changes
the default, "off" disables it):

  local cb = require "corio.busted"
  cb.timeout(10)          -- at file level or in a describe body: that block
                          -- and everything nested in it, wherever the call
                          -- sits in the block (like busted's randomize())
  it("slow", cb.timeout(1, function() ... end))   -- this one body
  describe("io", cb.timeout(10, function() ... end)) -- this block
  cb.timeout(false)       -- no timeout (a hung test then hangs)

A body that has not ended when its timeout fires fails with "test timed out
after N s" and every task of the test with the file:line where it was
suspended, taken from corio.tasks() before anything is cancelled. The
timeout counts real time, also under corio.testing.autojump. A test that
waits for something that can never happen is reported this way too (the
timeout's timer keeps corio's deadlock detection from firing; with
timeout(false) the deadlock error is reported instead). A body that
returns while tasks it spawned are still alive fails with "test left N
tasks running" and names them, with where they are suspended; they are
cancelled. "Still alive" is judged after the other tasks ran until all of
them block (corio.testing.wait_all_tasks_blocked), so a child that just
finishes without blocking is not reported.

Tasks that ignore their cancel (inside corio.shield, or catching
Cancelled in a loop) would hold corio.run, and so the whole run, forever.
After any cancel of a body's tasks (timeout, tasks left, the body's or a
child's error, SIGINT) the runner waits a grace, as long as the body's
timeout, for them to end. If some still run then, it stops the run: the
test fails with the tasks still running and where each is suspended (also
on stderr), busted's blocks are closed so that its output handler prints
the summary so far, and the process exits with the number of failures and
errors (at least 1). The remaining tests and the open blocks' after_each
and teardown do not run. With timeout(false) there is no grace either.
A task that catches Cancelled around a checkpoint in a loop does not hold
the loop: a cancelled checkpoint spends the task's budget (rule 15), so
the watcher's timer fires.

Errors: corio wraps a string or luassert table that crosses a task
boundary in an error of kind "error" with the original in `.value`; the
original is raised again to busted, so an assertion (in the test or in a
child task) is an ordinary failure with luassert's message, `pending()`
stays pending and a string error stays an error. The body's own errors
are caught where they are raised. The traceback of the raising task (and
where it was spawned), without the integration's frames, goes after the
message of string and corio errors, and into busted's trace for failures
(busted prints it with -v). Other real errors of the same test
(`err.errors`) are appended as a note.

The hook: busted/core.lua's `busted.safe(descriptor, run, element)` runs
every block. run() wraps `safe` on the busted instance when busted.core
creates it, and replaces the `run` of body blocks by the task-running
function; `busted.getTrace` is wrapped to hand busted the task's trace
instead of this file's frame. Everything else (output handlers, --filter,
--pattern, --tags, .busted files) is busted's own.

run() returns the number of failures plus errors as busted's runner counts
them (capped at 255 so that it never wraps to 0), 0 for a clean run, 1 for
a usage error, and 130 after SIGINT: SIGINT cancels the running body (its
cleanup runs), no further test runs, the enclosing teardowns still do.

Not here: the virtual clock (corio.testing), the CLI (bindings/cli.c).
]]

local corio = require "corio"
local testing = require "corio.testing"

local M = {}

-- The runner's own tasks (each body's timeout watcher) are not the test's:
-- corio.tasks() leaves them out, so that a body sees what corio.run(body)
-- would show, its own task and the tasks it started (a test that checked
-- `#corio.tasks() == 1`, or cancelled every task but its own, met the
-- watcher). SIGUSR1's dump still shows them. all_tasks is the full list,
-- for the runner's reports.
local all_tasks = corio.tasks
local hidden = setmetatable({}, { __mode = "k" })
local function visible_tasks()
  local list = all_tasks()
  if next(hidden) == nil then return list end
  local out = {}
  for _, e in ipairs(list) do
    if not hidden[e.task] then out[#out + 1] = e end
  end
  return out
end
corio.tasks = visible_tasks

-- The runner's own references: a spec may stub corio's functions
-- (stub(corio, "spawn") to test code that spawns) and not revert them,
-- as busted reverts nothing; the next body's runner then met the stub
-- (its watcher was nil: every later test failed with an error of this
-- file).
local c_run, c_spawn, c_current = corio.run, corio.spawn, corio.current
local c_shield, c_is_cancelled = corio.shield, corio.is_cancelled
local os_exit -- os.exit as run() found it (a test may stub os.exit)
local sleep_real = testing.sleep_real
local wait_all_tasks_blocked = testing.wait_all_tasks_blocked

local DEFAULT_TIMEOUT = 5

-- The descriptors whose element.run is a body to run as a task; `finally`
-- is recognised separately because its run is not element.run.
local BODY = {
  it = true, before_each = true, after_each = true,
  lazy_setup = true, lazy_teardown = true,
  strict_setup = true, strict_teardown = true,
}

-- Modules loaded before busted's file insulation takes its snapshot of
-- package.loaded, so that a spec's require does not load them again for
-- every file (a C module would run its luaopen_ twice). Missing ones are
-- skipped; a real load error shows up at the spec's own require.
local PRELOAD = { "corio.fs", "corio.http" }

local the_busted          -- the busted instance of the running `corio test`
local ran = false         -- busted's runner works once per process
local interrupted = false -- SIGINT cancelled a body: stop, exit 130
-- Per block (busted context element: suite, file, describe) and per body
-- function: seconds, or false for none. Weak keys: busted owns both.
local block_timeouts = setmetatable({}, { __mode = "k" })
local fn_timeouts = setmetatable({}, { __mode = "k" })
-- The trace of the error a body task just raised; our busted.getTrace hands
-- it to busted.safe's error handler, which asks for it first thing.
local handoff_trace

local Exit = {}           -- metatable of the value our busted exit() raises

-- What busted has open, kept from its events for stop_run to close as
-- busted would: the suite's 'suite start' arguments, the file and
-- describe blocks ({ channel, element, parent }, outermost first); and
-- the failures and errors so far, counted as busted's runner counts them.
-- (A test is open while its `it` or `finally` body runs: stop_run knows
-- that from the body.)
local suite_args
local open_blocks = {}
local failures = 0

---------------------------------------------------------------------------
-- Source locations

local function dir_of(path)
  return path and path:match("^(.*)/[^/]*$")
end

local own_file = debug.getinfo(1, "S").source:match("^@(.*)")
local own_dir = dir_of(own_file)
local busted_dir
do
  local ok, core = pcall(require, "busted.core")
  if ok and type(core) == "function" then
    busted_dir = dir_of(debug.getinfo(core, "S").source:match("^@(.*)"))
  end
end

-- Does short_src (which Lua may cut to "...tail") name the path full?
local function same_path(short, full)
  if not short or not full then return false end
  if short == full then return true end
  if short:sub(1, 3) == "..." then
    local tail = short:sub(4)
    return #tail > 0 and full:sub(-#tail) == tail
  end
  return false
end

-- Frames of corio's Lua, busted and luassert are not where a test failed.
local function internal(file)
  return file == "[C]" or same_path(dir_of(file), own_dir)
    or same_path(dir_of(file), busted_dir)
    or file:match("luassert[/\\].*%.lua$") ~= nil
end

local function split_where(where)
  if type(where) ~= "string" then return nil end
  local file, line = where:match("^(.*):(%d+)$")
  if not file then return nil end
  return file, tonumber(line)
end

-- The first frame of a traceback that is in the user's code.
local function user_frame(tb)
  if type(tb) ~= "string" then return nil end
  for file, line in ("\n" .. tb):gmatch("\n%s*([^\n]-):(%d+):") do
    if not internal(file) then return file, tonumber(line) end
  end
  return nil
end

-- A task's traceback without the frames of this file, which runs every
-- body, and, as busted's own traces do, starting at the first frame in the
-- user's code (not in error(), luassert, busted or corio).
local function trim_traceback(tb)
  local lines, leading = {}, true
  for line in (tb .. "\n"):gmatch("([^\n]*)\n") do
    local frame = line:match("^%s*([^\n]-):%d+: in ")
      or line:match("^%s*(%[C%]): in ")
    local file = frame or line:match(" spawned at ([^\n]-):%d+%)$")
    if frame and leading and internal(frame) then
      file = own_file
    elseif frame then
      leading = false
    end
    if not (file and same_path(file, own_file)) then
      lines[#lines + 1] = line
    end
  end
  while lines[#lines] == "" do lines[#lines] = nil end
  -- the xpcall that ran the body sat right below it
  if (lines[#lines] or ""):match("^%s*%[C%]: in function 'xpcall'$") then
    lines[#lines] = nil
  end
  return table.concat(lines, "\n")
end

local function make_trace(element, file, line, traceback, message)
  if not file then
    local t = element and element.trace
    if t and t.short_src then
      file, line = t.short_src, t.currentline
    else
      file, line = "?", 0
    end
  end
  return {
    short_src = file, currentline = line, source = "@" .. file,
    traceback = traceback, message = message,
  }
end

---------------------------------------------------------------------------
-- Timeouts

local function check_seconds(seconds)
  if seconds == false then return false end
  if type(seconds) ~= "number" or not (seconds > 0) then
    error(("bad argument #1 to 'timeout' (positive number or false "
      .. "expected, got %s)"):format(
        type(seconds) == "number" and tostring(seconds) or type(seconds)), 3)
  end
  if seconds == math.huge then return false end
  return seconds
end

-- CORIO_TEST_TIMEOUT: seconds (> 0), or off / false / 0 / inf for none;
-- unset or empty: the default. Anything else is nil and an error, which
-- M.run raises before any test: a value such as "30s" used to be ignored
-- without a word, and the run timed tests out after the default 5 s.
local function env_timeout()
  local env = os.getenv("CORIO_TEST_TIMEOUT")
  if env == nil or env == "" then return DEFAULT_TIMEOUT end
  if env == "off" or env == "false" then return false end
  local n = tonumber(env)
  if n == 0 or n == math.huge then return false end
  if n and n > 0 then return n end
  return nil, ("CORIO_TEST_TIMEOUT must be a positive number of seconds, "
    .. "or off (got '%s')"):format(env)
end

local function default_timeout()
  local t = env_timeout()
  if t == nil then return DEFAULT_TIMEOUT end
  return t
end

-- timeout(seconds): the timeout of every body in the enclosing file or
-- describe block, nested blocks included. timeout(seconds, fn): fn's own,
-- returns fn (for `it(name, timeout(1, function() ... end))`).
function M.timeout(seconds, fn)
  seconds = check_seconds(seconds)
  if fn ~= nil then
    if type(fn) ~= "function" then
      error("bad argument #2 to 'timeout' (function expected, got "
        .. type(fn) .. ")", 2)
    end
    fn_timeouts[fn] = seconds
    return fn
  end
  if not the_busted then
    error("corio.busted.timeout: no busted run is active "
      .. "(run the specs with `corio test`)", 2)
  end
  local ctx = the_busted.context.get()
  if BODY[ctx.descriptor] then
    error("corio.busted.timeout(n) sets the timeout of a file or describe "
      .. "block, call it there; for one body use it(name, timeout(n, fn))", 2)
  end
  block_timeouts[ctx] = seconds
end

local function timeout_for(run, element)
  local t = fn_timeouts[run]
  if t ~= nil then return t end
  local ctx = element
  while ctx do
    t = block_timeouts[ctx]
    if t ~= nil then return t end
    -- describe(name, timeout(n, fn)): fn is that block's body (it was
    -- ignored without a word: its tests had the default)
    if ctx ~= element and type(ctx.run) == "function" then
      t = fn_timeouts[ctx.run]
      if t ~= nil then return t end
    end
    ctx = the_busted.context.parent(ctx)
  end
  return default_timeout()
end

---------------------------------------------------------------------------
-- Running one body as a root task

local function describe_task(e, root)
  local s = ("'%s' (%s%s"):format(tostring(e.name),
    rawequal(e.task, root) and "the test's own task, " or "",
    tostring(e.status))
  if e.parent then s = s .. ", child of '" .. tostring(e.parent) .. "'" end
  s = s .. ")"
  if e.where then
    s = s .. " suspended at " .. e.where
  elseif e.status == "pending" then
    s = s .. " not started yet"
  elseif type(e.spawned_at) == "string" then
    -- suspended with no frame of the user's (corio.spawn(corio.sleep, 60)
    -- runs corio's function only): say what it waits in and where it was
    -- spawned, or the report named a bare 'task 14'
    s = s .. (e.waiting and (" waiting in " .. tostring(e.waiting)) or "")
      .. ", spawned at " .. e.spawned_at
  end
  return s
end

-- corio.tasks() without the given tasks.
local function tasks_but(a, b)
  local list = {}
  for _, e in ipairs(visible_tasks()) do
    if not rawequal(e.task, a) and not rawequal(e.task, b) then
      list[#list + 1] = e
    end
  end
  return list
end

-- Runs body as the root task of corio.run (named `name`). A watcher child
-- sleeps `seconds` of real time (the body may run on corio.testing's
-- virtual clock), lists the tasks and cancels the root; the flags in `out`
-- say whether the body ended, raised, timed out or left tasks.
-- Once the body has returned, the other tasks get to run until all of them
-- block (wait_all_tasks_blocked), so that a child which just finishes is
-- not taken for one left running; what is still alive then was left, and
-- is cancelled (task:cancel() is no error of the root's scope).
-- The body's own error is caught where it is raised, with its traceback,
-- and the other tasks are cancelled at once: a Cancelled that the body
-- raises itself (join() on a task it cancelled) is not an error of the
-- root's scope, so the run would otherwise wait for them all. A child's
-- real error still ends corio.run (SPEC rule 2).
--
-- The grace: whenever tasks were cancelled (the timeout fired, the body
-- left tasks or raised, a child's error or SIGINT cancelled the run), the
-- watcher is cancelled too, catches it, and waits, shielded, up to
-- `seconds` more for the body and every other task to end. A task that
-- ignores its cancel (inside corio.shield, or catching Cancelled in a
-- loop) would hold corio.run, and so the whole `corio test`, forever:
-- once the grace is over, stop_run reports the test and the tasks still
-- running and ends the process. Only a clean end (out.finished) stops
-- the watcher without a grace.
local task_lines   -- defined below, with the other reports
local register_framework -- ditto, with the installing
local stop_run     -- ditto

local function cancel_all(list)
  for _, e in ipairs(list) do e.task:cancel() end
end

-- Up to `grace` s of real time (polled: nothing wakes a task when another
-- ends, short of joining it), for the body to have ended and every task
-- but the root and the caller too. True when they did.
-- Work still pending counts too (pending_work): a to_thread worker runs
-- on after its caller was cancelled, and corio.run waits for it, so one
-- that never ends hung the whole run after the test's timeout.
local pending_work = require("corio.core").pending_work
local function settle(out, grace)
  local me = c_current()
  local waited, step = 0, 0.001
  local function ended()
    return out.body_done and #tasks_but(me, out.root) == 0
      and pending_work() == 0
  end
  if ended() then return true end
  local done = true
  while not ended() do
    if waited >= grace then
      done = false
      break
    end
    local s = math.min(step, grace - waited)
    sleep_real(s)
    waited = waited + s
    step = math.min(step * 2, 0.05)
  end
  return done
end

local function watch(out, seconds, ctx)
  if pcall(sleep_real, seconds) then
    out.timed_out = true
    if out.returned then
      -- a task that never blocks kept wait_all_tasks_blocked busy
      out.left = tasks_but(c_current(), out.root)
      cancel_all(out.left)
    else
      out.tasks = tasks_but(c_current())
      out.root:cancel()
    end
  elseif out.finished and pending_work() == 0 then
    return
  end
  -- cancelled: the root cancelled it (tasks left, the body raised) or the
  -- run's scope was (a child's error, SIGINT); or the timeout fired
  c_shield(function()
    if not settle(out, seconds) then
      stop_run(out, seconds, ctx, c_current())
    end
  end)
end

local function run_task(body, seconds, name, ctx)
  local out = {}
  local function on_error(e)
    out.body_tb = (debug.traceback("", 2):gsub("^\n", ""))
    return e
  end
  local ok, err = pcall(c_run, function()
    local root = c_current()
    root.name = name
    out.root = root
    local watcher
    if seconds then
      watcher = c_spawn(watch, out, seconds, ctx)
      watcher.name = "corio.busted timeout"
      hidden[watcher] = true
    end
    local body_ok, e = xpcall(body, on_error)
    out.body_done = true
    if not body_ok then out.raised, out.body_error = true, e end
    if out.timed_out then return end
    if not body_ok then
      -- the watcher first, so that its grace begins at once
      local others = tasks_but(root, watcher)
      if watcher then watcher:cancel() end
      cancel_all(others)
      return
    end
    out.returned = true
    wait_all_tasks_blocked()
    if out.timed_out then return end
    local left = tasks_but(root, watcher)
    if #left > 0 then
      out.left = left
      if watcher then watcher:cancel() end -- first: see above
      cancel_all(left)
      for _, e in ipairs(left) do pcall(e.task.join, e.task) end
      return
    end
    out.finished = true
    if watcher then watcher:cancel() end
  end)
  return ok, err, out
end

local function is_corio_error(e)
  return type(e) == "table" and type(rawget(e, "kind")) == "string"
    and getmetatable(e) ~= nil
end

-- The value the user raised: corio's kind "error" wrapper is undone.
local function original(e)
  if is_corio_error(e) and e.kind == "error" and e.value ~= nil then
    return e.value
  end
  return e
end

local function one_line(v)
  if is_corio_error(v) then
    v = v.kind == "error" and v.value ~= nil and v.value or v.message
  end
  if type(v) == "table" and v.message ~= nil then v = v.message end
  local s = tostring(v)
  return (s:gsub("\n.*", ""))
end

-- The other real errors err carries besides its first one, as a note.
local function extra_errors(err, value)
  if not is_corio_error(err) or type(err.errors) ~= "table" then return "" end
  local lines = {}
  for _, e in ipairs(err.errors) do
    if not rawequal(e, err) and not rawequal(original(e), value) then
      lines[#lines + 1] = "\n  " .. one_line(e)
    end
  end
  if #lines == 0 then return "" end
  return "\nother errors in the same test:" .. table.concat(lines)
end

-- value with note appended to its message, keeping busted's failure type.
local function with_note(value, note)
  if note == "" then return value end
  if type(value) == "string" then return value .. note end
  if type(value) == "table" and type(value.message) == "string" then
    local copy = {}
    for k, v in pairs(value) do copy[k] = v end
    copy.message = value.message .. note
    return setmetatable(copy, getmetatable(value))
  end
  if is_corio_error(value) then return tostring(value) .. note end
  return value
end

local function busted_failure(msg)
  local _, f = pcall(the_busted.fail, msg, 0)
  return f
end

local function fmt_seconds(s)
  return ("%g"):format(s)
end

-- Where to point a report about tasks: the root's suspension point if it
-- is in the user's code, else the first task's that is.
local function tasks_location(list, root)
  local best_file, best_line
  for _, e in ipairs(list) do
    local file, line = split_where(e.where)
    if file and not internal(file) then
      if rawequal(e.task, root) then return file, line end
      if not best_file then best_file, best_line = file, line end
    end
  end
  return best_file, best_line
end

function task_lines(list, root)
  local lines = {}
  for _, e in ipairs(list) do
    lines[#lines + 1] = "\n  " .. describe_task(e, root)
  end
  return table.concat(lines)
end

-- Runs one body. Returns nothing when it passed, or the value to raise to
-- busted and the trace to report with it.
-- The report of a test whose tasks were cancelled because they were left
-- running or the timeout fired: message (prefixed with the user's file:line
-- when there is one), file, line; nil for neither.
local function cancel_report(out, seconds)
  local file, line, msg
  if out.left then
    file, line = tasks_location(out.left, out.root)
    local n = #out.left
    msg = ("test left %d task%s running%s:%s"):format(
      n, n == 1 and "" or "s",
      out.timed_out and (" (still running when the %s s timeout fired)")
        :format(fmt_seconds(seconds)) or "",
      task_lines(out.left, out.root))
  elseif out.timed_out then
    file, line = tasks_location(out.tasks, out.root)
    msg = ("test timed out after %s s; its tasks then:%s")
      :format(fmt_seconds(seconds), task_lines(out.tasks, out.root))
  else
    return nil
  end
  if file then msg = ("%s:%d: %s"):format(file, line, msg) end
  return msg, file, line
end

local function run_body(body, element, seconds, name, descriptor)
  local ok, err, out = run_task(body, seconds, name,
    { element = element, descriptor = descriptor, name = name })
  if not ok and is_corio_error(err) and err.kind == "interrupted" then
    -- SIGINT cancelled this body (rule 12): report it, run no further
    -- tests (busted still runs the enclosing teardowns), exit 130.
    interrupted = true
    return true, tostring(err.message), make_trace(element)
  end
  -- what the test raised after the timeout or with tasks left, if real
  local trailer = ""
  if out.raised and not c_is_cancelled(out.body_error) then
    trailer = "\nafterwards the test raised: " .. one_line(out.body_error)
  elseif not ok and not c_is_cancelled(err) then
    trailer = "\nafterwards the test raised: " .. one_line(err)
  end
  local msg, file, line = cancel_report(out, seconds)
  if msg then
    return true, busted_failure(msg .. trailer), make_trace(element, file, line)
  end
  if ok and not out.raised then return false end

  -- The error to report: the body's own, unless it is the Cancelled that
  -- a child's real error caused; then corio.run raises that error.
  local e, tb, note = err, nil, ""
  if out.raised and not (c_is_cancelled(out.body_error) and not ok) then
    e, tb = out.body_error, out.body_tb
    if not ok and not c_is_cancelled(err) then
      note = "\nthe test's other tasks raised: " .. one_line(err)
    end
  end
  local value = original(e)
  if is_corio_error(e) and type(e.traceback) == "string" then
    tb = e.traceback
  end
  tb = tb and trim_traceback(tb)
  -- nothing left but the heading (every frame was the integration's, as
  -- for it(name, 5)): no traceback, rather than an empty one
  if tb and tb:match("^%s*stack traceback:%s*$") then tb = nil end
  local file, line = user_frame(tb)
  if not file and type(value) == "table" and type(value.message) == "string"
  then
    file, line = value.message:match("^([^\n]-):(%d+): ")
    line = tonumber(line)
  end
  -- A string error shows the task's traceback in its message, so busted's
  -- -v must not print it twice; failures show it with -v only.
  note = extra_errors(e, value) .. note
  local trace_tb = tb
  if type(value) == "string" and tb then
    value = value .. "\n" .. tb
    trace_tb = nil
  elseif is_corio_error(value) then
    -- corio's other kinds (cancelled, timeout, deadlock, ...) are errors
    -- to busted; written out, with the trimmed traceback
    local msg = tostring(value.message):gsub("%s+$", "")
    if msg:sub(1, #value.kind + 1) ~= value.kind .. ":" then
      msg = value.kind .. ": " .. msg
    end
    value = msg .. (tb and "\n" .. tb or "")
    trace_tb = nil
  end
  value = with_note(value, note)
  -- in the shape of busted's own (debug.traceback's "\nstack traceback:
  -- ...\n"): its junit handler writes message .. traceback, and -v's
  -- handlers print it after a line of its own
  if trace_tb then trace_tb = "\n" .. trace_tb .. "\n" end
  return true, value, make_trace(element, file, line, trace_tb)
end

---------------------------------------------------------------------------
-- Stopping the run: cancelled tasks that do not end

-- Called by the watcher (run_task, `watcher` is its task) when the grace
-- after a cancel is over and tasks still run: they would hold corio.run,
-- so every later test, forever. Reports them on stderr, fails the body in busted, closes the
-- blocks busted has open so that its output handler prints the summary
-- so far (and a junit or TAP report is complete), and ends the process
-- with the number of failures and errors. The remaining tests, the
-- after_each and teardown hooks of the open blocks do not run: they would
-- run beside tasks that still use what those hooks release.
function stop_run(out, grace, ctx, watcher)
  local still = {}
  for _, e in ipairs(tasks_but(watcher)) do
    -- a root whose body ended only waits for the others
    if not (out.body_done and rawequal(e.task, out.root)) then
      still[#still + 1] = e
    end
  end
  local n, nwork = #still, pending_work()
  local lines = task_lines(still, out.root)
  local why, file, line = cancel_report(out, grace)
  if not why then
    if out.raised and not c_is_cancelled(out.body_error) then
      why = "test raised: " .. one_line(out.body_error)
        .. "; its other tasks were cancelled"
    else
      why = "the test's tasks were cancelled (a task's error, or SIGINT)"
    end
    file, line = tasks_location(still, out.root)
    if file then why = ("%s:%d: %s"):format(file, line, why) end
  end
  local what
  if n > 0 then
    what = ("%d task%s still running %s s after %s cancelled (%s "
      .. "cancellation: inside corio.shield, or catching Cancelled)"):format(
      n, n == 1 and "" or "s", fmt_seconds(grace),
      n == 1 and "it was" or "they were", n == 1 and "it ignores"
      or "they ignore")
  end
  if nwork > 0 then
    -- work that outlives its cancelled task: it cannot be stopped, and
    -- corio.run waits for it (a to_thread worker in a loop, say)
    local w = ("%d operation%s (a to_thread worker, a file or HTTP "
      .. "request, a host op) still running %s s after %s task was "
      .. "cancelled"):format(nwork, nwork == 1 and "" or "s",
      fmt_seconds(grace), nwork == 1 and "its" or "their")
    what = what and what .. "; and " .. w or w
  end
  local colon = lines ~= "" and ":" or ""   -- (no task list: work only)
  io.stderr:write(("corio test: %s: %s%s%s\ncorio test: stopping the run "
    .. "here: the remaining tests and the open blocks' after_each and "
    .. "teardown do not run\n"):format(ctx.name, what, colon, lines))
  io.stderr:flush()

  local b, element = the_busted, ctx.element
  local msg = ("%s\n%s; corio test stopped the run here%s%s"):format(
    why, what, colon, lines)
  local status = ctx.descriptor == "it" and "failure" or "error"
  local trace = make_trace(element, file, line)
  local parent = b.context.parent(element)
  b.publish({ status, element.descriptor }, element, parent,
    b.rewriteMessage(element, busted_failure(msg), trace), trace)
  if ctx.descriptor == "it" or ctx.descriptor == "finally" then
    b.safe_publish("test", { "test", "end" }, element, parent, status)
  end
  for i = #open_blocks, 1, -1 do
    local o = open_blocks[i]
    b.safe_publish(o[1], { o[1], "end" }, o[2], o[3])
  end
  if suite_args then
    b.safe_publish("suite", { "suite", "end" }, unpack(suite_args, 1, 3))
  end
  b.publish({ "exit" })
  io.stdout:flush()
  io.stderr:flush()
  os_exit(math.max(1, math.min(failures, 255)))
end

---------------------------------------------------------------------------
-- Installing into busted

-- The root task's name in corio.tasks() and in reports: the test's name,
-- or the hook's as spec files spell it.
local HOOK_NAMES = { strict_setup = "setup", strict_teardown = "teardown" }

local function task_name(descriptor, element)
  if descriptor == "it" and type(element.name) == "string" then
    return element.name
  end
  return HOOK_NAMES[descriptor] or descriptor
end

-- busted's and luassert's Lua files are corio's own to the runtime
-- (core.register_own), as corio's are: a task's suspension site and spawn
-- site, --debug's slow-step report and the position of corio's errors
-- then name the spec's line, not busted's environment (which every
-- global a test reads goes through) or luassert's spy. Their sources are
-- taken from the functions of the modules loaded by the time the suite
-- starts (busted, its output handler, luassert).
local register_own = require("corio.core").register_own
local FRAMEWORK = { "busted", "luassert", "say", "mediator" }
local registered = {}
local function register_source(f)
  local src = debug.getinfo(f, "S").source
  if src:sub(1, 1) == "@" and not registered[src] then
    registered[src] = true
    register_own(src)
  end
end
local busted_core_fn  -- busted.core's own function (package.loaded holds
                      -- the wrapper while busted runs)
function register_framework()
  if busted_core_fn then register_source(busted_core_fn) end
  for name, mod in pairs(package.loaded) do
    local top = name:match("^[^.]+")
    for _, prefix in ipairs(FRAMEWORK) do
      if top == prefix then
        if type(mod) == "function" then
          register_source(mod)
        elseif type(mod) == "table" then
          for _, v in pairs(mod) do
            if type(v) == "function" then register_source(v) end
          end
          local mt = getmetatable(mod)
          if type(mt) == "table" then
            for _, v in pairs(mt) do
              if type(v) == "function" then register_source(v) end
            end
          end
        end
        break
      end
    end
  end
end

local function install(busted)
  the_busted = busted

  -- After SIGINT, no further test runs. skipAll is set after busted
  -- published the error: its runner resets skipAll when it counts one.
  local function after_safe(...)
    handoff_trace = nil -- taken by safe's handler; never for a later call
    if interrupted then busted.skipAll = true end
    return ...
  end

  -- what stop_run needs to know about the run so far
  local function opened(channel)
    return function(element, parent)
      open_blocks[#open_blocks + 1] = { channel, element, parent }
      return nil, true
    end
  end
  local function closed(element)
    for i = #open_blocks, 1, -1 do
      if rawequal(open_blocks[i][2], element) then
        table.remove(open_blocks, i)
        break
      end
    end
    return nil, true
  end
  local function count()
    failures = failures + 1
    return nil, true
  end
  busted.subscribe({ "suite", "start" }, function(...)
    suite_args, open_blocks = { ... }, {}
    register_framework()
    return nil, true
  end)
  busted.subscribe({ "file", "start" }, opened("file"))
  busted.subscribe({ "file", "end" }, closed)
  busted.subscribe({ "describe", "start" }, opened("describe"))
  busted.subscribe({ "describe", "end" }, closed)
  busted.subscribe({ "failure" }, count)
  busted.subscribe({ "error" }, count)
  -- busted publishes a file that does not compile with an empty trace, and
  -- its TAP handler concatenates the trace's line: the run died there and
  -- the other files never ran. Give it the file and the compile error's
  -- line. (Subscribers of this sub-channel run before those of "error".)
  busted.subscribe({ "error", "file" }, function(element, _, message, trace)
    if type(trace) == "table" and trace.currentline == nil then
      trace.short_src = trace.short_src or element.name
      trace.currentline = tonumber(tostring(message):match(":(%d+):")) or 0
    end
    return nil, true
  end, { priority = 1 })

  local safe, get_trace = busted.safe, busted.getTrace

  function busted.safe(descriptor, run, element)
    if descriptor == "finally" or (BODY[descriptor] and run == element.run)
    then
      local body = run
      run = function()
        local failed, value, trace = run_body(body, element,
          timeout_for(body, element), task_name(descriptor, element),
          descriptor)
        if failed then
          handoff_trace = trace
          error(value, 0)
        end
      end
    end
    return after_safe(safe(descriptor, run, element))
  end

  function busted.getTrace(element, level, msg)
    local t = handoff_trace
    if t then
      handoff_trace = nil
      t.message = msg -- as busted's trace carries the error raised
      return t
    end
    -- one level more: this wrapper's own frame
    local info = get_trace(element, (level or 3) + 1, msg)
    return info
  end
end

local function launch()
  local runner = require "busted.runner"
  -- busted names itself after the file that calls its runner; this chunk
  -- is that caller (not a tail call, so it stays on the stack).
  local chunk = assert(loadstring(
    "local runner = ...\nrunner({ standalone = false })\nreturn 0",
    "@corio test"))
  return chunk(runner)
end

-- `corio test [busted args]`: run busted with args (the global `arg` when
-- nil) on the main state, outside any loop. Returns the exit status.
function M.run(args)
  -- another value was ignored (busted ran with the global arg instead)
  if args ~= nil and type(args) ~= "table" then
    error(("bad argument #1 to 'run' (table expected, got %s)"):format(type(args)), 2)
  end
  -- Each body is its own corio.run. Inside a task (the main chunk of
  -- `corio script.lua` or -e is one) that corio.run makes the body a
  -- child of the caller, so the caller was taken for a task the test
  -- left running: reported after the grace, cancelled, and the run
  -- stopped after the first test.
  if c_current() ~= nil then
    error("corio.busted.run: called inside a running task (under the corio "
      .. "program a script's main chunk is one); run the specs with "
      .. "`corio test [busted args]`, or call it from a luajit script "
      .. "outside corio.run", 2)
  end
  if ran then
    error("corio.busted.run: busted runs only once per process", 2)
  end
  ran = true
  os_exit = os.exit
  local ok_env, env_err = env_timeout()
  if ok_env == nil then error(env_err, 0) end
  if type(args) == "table" then
    -- (arg[0] as the caller's: busted's cli reads it for --lua, below)
    if args[0] == nil and type(_G.arg) == "table" then args[0] = _G.arg[0] end
    _G.arg = args
  end
  for _, name in ipairs(PRELOAD) do pcall(require, name) end

  -- busted's runner and cli take compatibility.exit when they load; ours
  -- raises instead of exiting so that run() can return the status.
  local compat = require "busted.compatibility"
  local make_core = require "busted.core"
  busted_core_fn = make_core
  local saved_exit = compat.exit
  compat.exit = function(code)
    error(setmetatable({ code = code }, Exit), 0)
  end
  -- busted's --lua (on the command line or in a .busted file) re-runs
  -- busted under another interpreter, outside corio, with compatibility's
  -- execute (its only use; the cli takes it when it loads). That cannot
  -- work here: it failed with "attempt to concatenate a nil value".
  local saved_execute = compat.execute
  compat.execute = function()
    error("error: --lua is not supported: corio test runs the specs in "
      .. "corio's own runtime (run busted itself for another interpreter)", 0)
  end
  if type(_G.arg) == "table" and _G.arg[0] == nil then _G.arg[0] = "corio" end
  package.loaded["busted.core"] = function(...)
    local busted = make_core(...)
    install(busted)
    return busted
  end

  local ok, err = pcall(launch)
  compat.exit = saved_exit
  compat.execute = saved_execute
  package.loaded["busted.core"] = make_core

  if not ok and getmetatable(err) ~= Exit then error(err, 0) end
  if interrupted then return 130 end
  if ok then return 0 end
  local code = tonumber(err.code) or 1
  if code > 255 then code = 255 end
  return code
end

return M
