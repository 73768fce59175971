--[[
corio/busted.lua: runs busted specs inside the corio runtime (`corio test`).

Every body busted runs for a test runs as its own root task, as if written
`corio.run(body)`: `it` (and its aliases `spec`, `test`), `before_each`,
`after_each`, `setup`/`teardown` (strict and lazy), and the function given to
busted's `finally`. So spec files call async functions directly. File and
`describe` bodies (also `insulate` and `expose`) only declare tests and stay
plain calls; a blocking corio call there runs synchronously (SPEC §1 rule 11).
A test's bodies are separate root tasks: before_each, the test, its finally
and after_each each get their own loop run and their own timeout.

Timeouts (default 5 s; the environment variable CORIO_TEST_TIMEOUT changes
the default, "off" disables it):

  local cb = require "corio.busted"
  cb.timeout(10)          -- at file level or in a describe body: that block
                          -- and everything nested in it, wherever the call
                          -- sits in the block (like busted's randomize())
  it("slow", cb.timeout(1, function() ... end))   -- this one body
  cb.timeout(false)       -- no timeout (a hung test then hangs)

A body that has not ended when its timeout fires fails with "timed out after
N s" and, taken from corio.tasks() before anything is cancelled, every task
of the test with the file:line where it was suspended. A body that returns
while tasks it spawned are still alive fails with "test left tasks running"
and names them; they are cancelled. "Still alive" is judged after the other
tasks had the chance to run until they all block
(corio.testing.wait_all_tasks_blocked), so a child that just finishes
without blocking is not reported.

Errors: an error that leaves a body crosses the root task's boundary, so
corio wraps strings and luassert's tables in an error of kind "error" with
the original in `.value`. The original value is raised again to busted, so
an assertion is reported as an ordinary failure with its own message,
`pending()` stays pending and a string error stays an error. The corio
traceback (the raising task's stack and where it was spawned) goes into
busted's trace (shown with -v) and, for string errors, after the message.
Other real errors of the same scope (`err.errors`) are appended as notes.

The hook: busted/core.lua's `busted.safe(descriptor, run, element)` runs
every block; run() wraps `safe` on the busted instance as busted.core
creates it, and turns the body blocks' `run` into the task-running function
above. `busted.getTrace` is wrapped so that busted reports the task's trace
rather than this file's frame. Everything else (output handlers, --filter,
--pattern, .busted files) is busted's own. run() returns the number of
failures plus errors, as busted's runner counts them (capped at 255 so that
it never wraps to 0), 0 for a clean run, and 1 for a usage error.

Not here: the virtual clock (corio.testing), the CLI (bindings/cli.c).
]]

local corio = require "corio"

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
local PRELOAD = { "corio.testing", "corio.fs", "corio.http" }

local the_busted          -- the busted instance of the running `corio test`
local ran = false         -- busted's runner works once per process
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

local own_dir = dir_of(debug.getinfo(1, "S").source:match("^@(.*)"))
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

local function describe_task(e)
  local s = ("'%s' (%s"):format(tostring(e.name), tostring(e.status))
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

-- Let the test's other tasks run until all of them block, so that a child
-- which just finishes is not taken for one left running.
local function settle()
  local testing = package.loaded["corio.testing"]
  if type(testing) == "table" and testing.wait_all_tasks_blocked then
    testing.wait_all_tasks_blocked()
  else
    corio.yield()
  end
end

-- Runs body as corio.run's root task, inside a scope next to a watcher
-- task that sleeps `seconds`, lists the tasks and cancels the scope.
-- scope:cancel() makes the scope return normally (SPEC rule 5), so the
-- flags in `out` say whether the body ended, timed out or left tasks.
local function run_task(body, seconds)
  local out = {}
  local ok, err = pcall(corio.run, function()
    local root = corio.current()
    out.root = root
    corio.scope(function(s)
      local watcher
      if seconds then
        watcher = s:spawn(function()
          corio.sleep(seconds)
          out.timed_out = true
          out.tasks = tasks_but(corio.current())
          s:cancel()
        end)
      end
      body()
      if out.timed_out then return end
      settle()
      if out.timed_out then return end
      local left = tasks_but(root, watcher)
      if #left > 0 then out.left = left end
      s:cancel()
    end)
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

local function task_lines(list)
  local lines = {}
  for _, e in ipairs(list) do lines[#lines + 1] = "\n  " .. describe_task(e) end
  return table.concat(lines)
end

-- Runs one body. Returns nothing when it passed, or the value to raise to
-- busted and the trace to report with it.
local function run_body(body, element, seconds)
  local ok, err, out = run_task(body, seconds)
  local trailer = ""
  if not ok then
    trailer = "\nafterwards the test raised: " .. one_line(err)
  end
  if out.timed_out then
    local file, line = tasks_location(out.tasks, out.root)
    local msg = ("test timed out after %s s; its tasks then:%s")
      :format(fmt_seconds(seconds), task_lines(out.tasks)) .. trailer
    if file then msg = ("%s:%d: %s"):format(file, line, msg) end
    return true, busted_failure(msg), make_trace(element, file, line)
  end
  if out.left then
    local file, line = tasks_location(out.left, out.root)
    local n = #out.left
    local msg = ("test left %d task%s running:%s"):format(
      n, n == 1 and "" or "s", task_lines(out.left)) .. trailer
    if file then msg = ("%s:%d: %s"):format(file, line, msg) end
    return true, busted_failure(msg), make_trace(element, file, line)
  end
  if ok then return false end

  local value = original(err)
  local tb = is_corio_error(err) and err.traceback or nil
  if type(tb) ~= "string" then tb = nil end
  local file, line = user_frame(tb)
  if not file and type(value) == "table" and type(value.message) == "string"
  then
    file, line = value.message:match("^([^\n]-):(%d+): ")
    line = tonumber(line)
  end
  -- A string error shows the task's traceback in its message, so busted's
  -- -v must not print it twice; failures show it with -v only.
  local note = extra_errors(err, value)
  local trace_tb = tb
  if type(value) == "string" and tb then
    value = value .. "\n" .. tb
    trace_tb = nil
  elseif is_corio_error(value) then
    trace_tb = nil -- its __tostring gives message and traceback
  end
  value = with_note(value, note)
  return true, value, make_trace(element, file, line, trace_tb)
end

---------------------------------------------------------------------------
-- Installing into busted

local function install(busted)
  the_busted = busted
  local safe, get_trace = busted.safe, busted.getTrace

  function busted.safe(descriptor, run, element)
    if descriptor == "finally" or (BODY[descriptor] and run == element.run)
    then
      local body = run
      run = function()
        local failed, value, trace =
          run_body(body, element, timeout_for(body, element))
        if failed then
          handoff_trace = trace
          error(value, 0)
        end
      end
    end
    return safe(descriptor, run, element)
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

  if ok then return 0 end
  if getmetatable(err) ~= Exit then error(err, 0) end
  local code = tonumber(err.code) or 1
  if code > 255 then code = 255 end
  return code
end

return M
