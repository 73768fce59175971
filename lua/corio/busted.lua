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

local function default_timeout()
  local env = os.getenv("CORIO_TEST_TIMEOUT")
  if env == "off" or env == "false" or env == "0" then return false end
  local n = tonumber(env)
  if n and n > 0 and n < math.huge then return n end
  return DEFAULT_TIMEOUT
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
  end
  return s
end

-- corio.tasks() without the given tasks.
local function tasks_but(a, b)
  local list = {}
  for _, e in ipairs(corio.tasks()) do
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
local task_lines   -- defined below, with the other reports

local function run_task(body, seconds, name)
  local out = {}
  local function cancel_all(list)
    for _, e in ipairs(list) do e.task:cancel() end
  end
  local function on_error(e)
    out.body_tb = (debug.traceback("", 2):gsub("^\n", ""))
    return e
  end
  local ok, err = pcall(corio.run, function()
    local root = corio.current()
    root.name = name
    out.root = root
    local watcher
    if seconds then
      watcher = corio.spawn(function()
        testing.sleep_real(seconds)
        out.timed_out = true
        if out.waiting_left then
          -- tasks the test left ignore their cancel (corio.shield): the
          -- run must wait for them, so say why it does not go on
          local still = tasks_but(corio.current(), root)
          io.stderr:write(("corio test: %s: %d task%s the test left running "
            .. "ignore%s cancellation (inside corio.shield?); the run waits "
            .. "for %s:%s\n"):format(name, #still, #still == 1 and "" or "s",
            #still == 1 and "s" or "", #still == 1 and "it" or "them",
            task_lines(still, root)))
          io.stderr:flush()
        elseif out.returned then
          -- a task that never blocks kept wait_all_tasks_blocked busy
          out.left = tasks_but(corio.current(), root)
          cancel_all(out.left)
        else
          out.tasks = tasks_but(corio.current())
          root:cancel()
        end
      end)
      watcher.name = "corio.busted timeout"
    end
    local body_ok, e = xpcall(body, on_error)
    if not body_ok then out.raised, out.body_error = true, e end
    if out.timed_out then return end
    if not body_ok then
      cancel_all(tasks_but(root))
      return
    end
    out.returned = true
    testing.wait_all_tasks_blocked()
    if out.timed_out then return end
    local left = tasks_but(root, watcher)
    if #left > 0 then
      out.left = left
      cancel_all(left)
      -- the watcher stays until they ended: one that ignores its cancel
      -- holds the run, and the watcher then says so when the timeout fires
      out.waiting_left = true
      for _, e in ipairs(left) do pcall(e.task.join, e.task) end
    end
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
local function run_body(body, element, seconds, name)
  local ok, err, out = run_task(body, seconds, name)
  if not ok and is_corio_error(err) and err.kind == "interrupted" then
    -- SIGINT cancelled this body (rule 12): report it, run no further
    -- tests (busted still runs the enclosing teardowns), exit 130.
    interrupted = true
    return true, tostring(err.message), make_trace(element)
  end
  -- what the test raised after the timeout or with tasks left, if real
  local trailer = ""
  if out.raised and not corio.is_cancelled(out.body_error) then
    trailer = "\nafterwards the test raised: " .. one_line(out.body_error)
  elseif not ok and not corio.is_cancelled(err) then
    trailer = "\nafterwards the test raised: " .. one_line(err)
  end
  if out.left then
    local file, line = tasks_location(out.left, out.root)
    local n = #out.left
    local msg = ("test left %d task%s running%s:%s"):format(
      n, n == 1 and "" or "s",
      out.timed_out and (" (still running when the %s s timeout fired)")
        :format(fmt_seconds(seconds)) or "",
      task_lines(out.left, out.root)) .. trailer
    if file then msg = ("%s:%d: %s"):format(file, line, msg) end
    return true, busted_failure(msg), make_trace(element, file, line)
  end
  if out.timed_out then
    local file, line = tasks_location(out.tasks, out.root)
    local msg = ("test timed out after %s s; its tasks then:%s")
      :format(fmt_seconds(seconds), task_lines(out.tasks, out.root)) .. trailer
    if file then msg = ("%s:%d: %s"):format(file, line, msg) end
    return true, busted_failure(msg), make_trace(element, file, line)
  end
  if ok and not out.raised then return false end

  -- The error to report: the body's own, unless it is the Cancelled that
  -- a child's real error caused; then corio.run raises that error.
  local e, tb, note = err, nil, ""
  if out.raised and not (corio.is_cancelled(out.body_error) and not ok) then
    e, tb = out.body_error, out.body_tb
    if not ok and not corio.is_cancelled(err) then
      note = "\nthe test's other tasks raised: " .. one_line(err)
    end
  end
  local value = original(e)
  if is_corio_error(e) and type(e.traceback) == "string" then
    tb = e.traceback
  end
  tb = tb and trim_traceback(tb)
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
  return true, value, make_trace(element, file, line, trace_tb)
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

local function install(busted)
  the_busted = busted

  -- After SIGINT, no further test runs. skipAll is set after busted
  -- published the error: its runner resets skipAll when it counts one.
  local function after_safe(...)
    handoff_trace = nil -- taken by safe's handler; never for a later call
    if interrupted then busted.skipAll = true end
    return ...
  end

  local safe, get_trace = busted.safe, busted.getTrace

  function busted.safe(descriptor, run, element)
    if descriptor == "finally" or (BODY[descriptor] and run == element.run)
    then
      local body = run
      run = function()
        local failed, value, trace = run_body(body, element,
          timeout_for(body, element), task_name(descriptor, element))
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
  if ran then
    error("corio.busted.run: busted runs only once per process", 2)
  end
  ran = true
  if type(args) == "table" then _G.arg = args end
  for _, name in ipairs(PRELOAD) do pcall(require, name) end

  -- busted's runner and cli take compatibility.exit when they load; ours
  -- raises instead of exiting so that run() can return the status.
  local compat = require "busted.compatibility"
  local make_core = require "busted.core"
  local saved_exit = compat.exit
  compat.exit = function(code)
    error(setmetatable({ code = code }, Exit), 0)
  end
  package.loaded["busted.core"] = function(...)
    local busted = make_core(...)
    install(busted)
    return busted
  end

  local ok, err = pcall(launch)
  compat.exit = saved_exit
  package.loaded["busted.core"] = make_core

  if not ok and getmetatable(err) ~= Exit then error(err, 0) end
  if interrupted then return 130 end
  if ok then return 0 end
  local code = tonumber(err.code) or 1
  if code > 255 then code = 255 end
  return code
end

return M
