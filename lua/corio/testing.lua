-- corio.testing: helpers for tests of async code. autojump runs code on a
-- virtual clock that jumps to the next deadline whenever every task is
-- blocked (so a spec that sleeps an hour runs at once);
-- wait_all_tasks_blocked waits until every other task is blocked;
-- assert_checkpoints fails unless a function passed a checkpoint.
local core = require "corio.core"
local corio = require "corio"

core.register_own(debug.getinfo(1, "S").source)

local M = {}

-- The virtual clock is the runtime's, not a task's: it is on while any
-- autojump body runs, in any task (core.vclock counts them), so one task's
-- autojump ending does not switch it off under another's.
local function restore(ok, ...)
  core.vclock(false)
  if ok then return ... end
  error((...), 0)
end

function M.autojump(fn, ...)
  if type(fn) ~= "function" then
    error(("bad argument #1 to 'autojump' (function expected, got %s)"):format(type(fn)), 2)
  end
  if not core.in_task() then return corio.run(M.autojump, fn, ...) end
  core.vclock(true)
  return restore(pcall(fn, ...))
end

-- sleep_real(seconds): sleep on the real clock even under autojump (for
-- watchdogs, such as the per-test timeout of corio.busted).
function M.sleep_real(seconds)
  local ok, e = core.sleep_real(seconds)
  if ok then return end
  if e == core.NOLOOP then return corio.run(M.sleep_real, seconds) end
  error(e, 0)
end

-- trio's wait_all_tasks_blocked(cushion) waits until the tasks stayed
-- blocked for `cushion` seconds; this one has no cushion, and a port that
-- passes one must learn so rather than silently get none.
function M.wait_all_tasks_blocked(...)
  if select("#", ...) > 0 then
    error(("bad argument #1 to 'wait_all_tasks_blocked' (no arguments "
      .. "expected, got %s: there is no cushion)"):format(type((...))), 2)
  end
  local ok, e = core.idle()
  if ok then return end
  if e == core.NOLOOP then return end
  error(e, 0)
end

local function count_after(before, ...)
  if core.checkpoints() == before then
    error("assert_checkpoints: the function returned without passing "
      .. "through a checkpoint", 3)
  end
  return ...
end

-- Outside a loop: fn runs under corio.run, and the check is made after
-- it, so that its failure is the string error it is inside a task (raised
-- inside the run, it came back wrapped in kind "error").
local function passed(before, ...)
  return core.checkpoints() ~= before, ...
end
local function counted(fn, ...)
  return passed(core.checkpoints(), fn(...))
end
local function check_passed(ok, ...)
  if not ok then
    error("assert_checkpoints: the function returned without passing "
      .. "through a checkpoint", 3)
  end
  return ...
end

function M.assert_checkpoints(fn, ...)
  if type(fn) ~= "function" then
    error(("bad argument #1 to 'assert_checkpoints' (function expected, got %s)"):format(type(fn)), 2)
  end
  if not core.in_task() then return check_passed(corio.run(counted, fn, ...)) end
  return count_after(core.checkpoints(), fn(...))
end

return M
