-- corio.gather: gather, map and first, built on corio.scope. Each runs its
-- functions as child tasks of one scope, so a failure cancels the rest
-- (unless return_errors), cancellation from outside reaches every child,
-- and nothing outlives the call.
local core = require "corio.core"

core.register_own(debug.getinfo(1, "S").source)

local M = {}
local corio -- resolved at first use: corio requires this module

local type, pcall, xpcall, error = type, pcall, xpcall, error
local floor = math.floor
local is_error, wrap_error = core.is_error, core.wrap_error
local c_checkpoint = core.checkpoint
local c_checkpoint_fast = core.checkpoint_fast
-- the entry check of a call that needs no wait, through the FFI (as
-- http.lua's stream reads; bindings/core.c ffi_check)
local ffi_ok, ffi = pcall(require, "ffi")
local ffi_check = ffi_ok and ffi.cast("int (*)(void *)", core.ffi_check) or nil
local rt_ptr = ffi_ok and ffi.cast("void *", core.rt) or nil

-- gather or map of an empty list: nothing to spawn or wait for, so the
-- call completes at once, like a fast path, and counts against the task's
-- budget (rule 15): a loop over batches that are often empty still lets
-- the other tasks (the ones filling the batches) run. Its entry
-- checkpoint (lib) has raised Cancelled already if the scope is cancelled.
local function empty_done()
  local ok, e = c_checkpoint_fast()
  if ok or e == core.NOLOOP then return end
  error(e, 0)
end

-- Whether v is the cancellation of the calling task itself (its scope is
-- cancelled), rather than a Cancelled it was handed, e.g. by joining a
-- task that was cancelled, which is an ordinary failure of that function.
local function own_cancel(v)
  return is_error(v, "cancelled") and not c_checkpoint()
end

local function lib()
  corio = corio or require "corio"
  corio._checkpoint()
  return corio
end

-- As a task boundary would: keep corio errors, wrap other values, and keep
-- the traceback of where it was raised.
-- A value that is not a corio error raised out of a scope body (own_body)
-- had its traceback noted by the body's handler (init.lua): use that one.
local function boundary(e)
  local noted = not is_error(e) and debug.getregistry()["corio.noted_tb"]
  noted = noted and noted(coroutine.running(), e)
  e = wrap_error(e)
  if noted then
    e.traceback = noted
  elseif rawget(e, "traceback") == nil then
    e.traceback = (debug.traceback("", 2):gsub("^\n", ""))
  end
  -- and the spawn site of this task, once (rule 9): the error leaves it
  -- in errors[i] or first's list, not through the task's end
  return wrap_error(e, nil, true)
end

local function is_task(v)
  return type(v) == "userdata" and tostring(v):sub(1, 11) == "corio.Task("
end

-- v must be an array: keys 1..#v and no other. With a hole, #v may stop
-- before it or not (Lua leaves it open), so the elements after a hole were
-- dropped or kept by chance, and a table with only other keys ({a = f})
-- ran nothing and returned {}: refuse both, naming the index or the key,
-- before anything starts. Returns #v.
local function check_list(v, fname)
  if type(v) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(v)), 3)
  end
  local n, inside, other = #v, 0, nil
  for k in pairs(v) do
    if type(k) == "number" and k >= 1 and k <= n and k == floor(k) then
      inside = inside + 1
    elseif other == nil then
      other = k
    end
  end
  if inside == n and other == nil then return n end
  -- #v stopped after a hole, or before one (a key beyond n), or a key is
  -- no array index at all
  for i = 1, n do
    if v[i] == nil then
      error(("bad argument #1 to '%s' (element %d is a nil: an array without holes expected)")
        :format(fname, i), 3)
    end
  end
  if type(other) == "number" and other > n and other == floor(other) and other < math.huge then
    error(("bad argument #1 to '%s' (element %d is a nil but element %d is set: an array"
      .. " without holes expected)"):format(fname, n + 1, other), 3)
  end
  error(("bad argument #1 to '%s' (key %s is not an array index: an array expected)")
    :format(fname, type(other) == "string" and ("'" .. other .. "'") or tostring(other)), 3)
end

-- fn(...) as a body of its own: its deferred functions run, and the tasks
-- it spawned are awaited, when it returns, not when the task running it
-- ends (a map worker runs many items); and a deferred function's error is
-- an error of this call. It is a scope that only corio keeps (corio._body),
-- which is reused when the call spawned, deferred and raised nothing.
-- Fixed arity (fn gets two arguments: map's item and index, or gather's
-- function), so that LuaJIT compiles it (see init.lua's scope0).
local function own_body(fn, a, b) return corio._body(fn, a, b) end

-- The user's function, called through this so that a traceback names it
-- by where it was defined ("in function <app.lua:12>"), as xpcall's callee
-- is named, instead of by corio's local that held it ("in function 'f'").
local function unnamed(f) return f end

-- An error handler that changes nothing (see map's worker).
local function pass(e) return e end

-- Run fn(a, b) for results[i], in a body of its own when own (the task runs
-- other calls too, or errs is given); with return_errors (errs given), a
-- failure goes to errs[i] instead of failing the scope (a Cancelled still
-- propagates).
local function collect(results, errs, own, i, fn, a, b)
  if not errs then
    if own then results[i] = (own_body(fn, a, b))
    else results[i] = (unnamed(fn)(a, b)) end
    return
  end
  local ok, v = xpcall(own_body, boundary, fn, a, b)
  if ok then
    results[i] = v
  elseif not c_checkpoint() then
    -- the call itself is cancelled (with return_errors only an outer
    -- cancel or deadline does that): its Cancelled goes on, and so does
    -- an error raised while it was being cancelled (a deferred cleanup's):
    -- kept in errs, the call would return as if not cancelled
    error(v, 0)
  else
    errs[i] = v
  end
end

local function call_one(f)
  if is_task(f) then return (f:join()) end
  return (unnamed(f)())
end

-- The options each takes: a misspelt key ({return_error = true}) was
-- ignored without a word; corio._check_opts refuses it.
local GATHER_OPTS, MAP_OPTS = { return_errors = true }, { return_errors = true, limit = true }

function M.gather(fns, opts)
  local c = lib()
  local n = check_list(fns, "gather")
  c._check_opts(opts, GATHER_OPTS, 2, "gather")
  for i = 1, n do
    local f = fns[i]
    if type(f) ~= "function" and not is_task(f) then
      error(("bad argument #1 to 'gather' (element %d is a %s, expected a function or a Task)")
        :format(i, type(f)), 2)
    end
  end
  local return_errors = opts and opts.return_errors
  local results, errors = {}, return_errors and {} or nil
  if n == 0 then
    empty_done()
    if return_errors then return results, errors end
    return results
  end
  c.scope(function(s)
    for i = 1, n do
      local f = fns[i]
      s:spawn(function() collect(results, errors, false, i, call_one, f) end)
    end
  end)
  if return_errors then return results, errors end
  return results
end

function M.map(items, fn, opts)
  local c = lib()
  local n = check_list(items, "map")
  if type(fn) ~= "function" then
    error(("bad argument #2 to 'map' (function expected, got %s)"):format(type(fn)), 2)
  end
  c._check_opts(opts, MAP_OPTS, 3, "map")
  local limit = opts and opts.limit or math.max(n, 1)
  if type(limit) ~= "number" or limit < 1 or limit ~= math.floor(limit) then
    error(("bad argument #3 to 'map' (limit must be a positive integer, got %s)")
      :format(tostring(limit)), 2)
  end
  local return_errors = opts and opts.return_errors
  local results, errors = {}, return_errors and {} or nil
  if n == 0 then
    empty_done()
    if return_errors then return results, errors end
    return results
  end
  local next_i = 0
  local own = limit < n   -- a worker runs several calls
  -- `limit` workers pull the next index in turn: order is kept in results
  -- and at most `limit` calls run at once.
  -- Once a call failed (its error, or a Cancelled, leaves its worker), no
  -- worker takes another item: a call that had finished while the failing
  -- one was raising would otherwise start the next item, past the failure.
  -- A flag, not a checkpoint per item, which costs a C call each. An
  -- outer cancel is seen before each later item through the FFI check
  -- (a few ns): otherwise, with functions that catch their Cancelled, a
  -- worker went on through every remaining item after the cancel.
  -- Only when own: a worker then runs several calls, each in a body whose
  -- handler kept the traceback, so catching and raising the error again
  -- loses nothing; otherwise a worker runs one call and has no next item.
  local stopped = false
  local function worker()
    local later = false
    while next_i < n and not stopped do
      if later and (ffi_check == nil or ffi_check(rt_ptr) == 0) then
        -- cancelled, a deadline near, or no FFI: the C check decides
        local ok, e = c_checkpoint()
        if not ok and e ~= core.NOLOOP then
          stopped = true
          error(e, 0)
        end
      end
      later = own
      next_i = next_i + 1
      local i = next_i
      if own then
        local ok, e = xpcall(collect, pass, results, errors, own, i, fn, items[i], i)
        if not ok then
          stopped = true
          error(e, 0)
        end
      else
        collect(results, errors, own, i, fn, items[i], i)
      end
    end
  end
  c.scope(function(s)
    for _ = 1, math.min(limit, n) do s:spawn(worker) end
  end)
  if return_errors then return results, errors end
  return results
end

function M.first(fns)
  local c = lib()
  local n = check_list(fns, "first")
  if n == 0 then error("bad argument #1 to 'first' (empty list)", 2) end
  for i = 1, n do
    local f = fns[i]
    if type(f) ~= "function" and not is_task(f) then
      error(("bad argument #1 to 'first' (element %d is a %s, expected a function or a Task)")
        :format(i, type(f)), 2)
    end
  end
  local winner, value
  local errs, nerr, seen = {}, 0, {}
  -- as a scope lists its errors (rule 2): each once (a Task given twice
  -- fails twice with one error), and the errors an error already lists (a
  -- gather that failed inside a function) kept, since the first error's
  -- own list is replaced by this one
  local function add_error(e)
    if seen[e] then return end
    seen[e] = true
    nerr = nerr + 1
    errs[nerr] = e
  end
  c.scope(function(s)
    for i = 1, n do
      local f = fns[i]
      s:spawn(function()
        -- in a body of its own, so that what the function deferred runs
        -- before it counts: a cleanup that fails makes a failure (which
        -- does not end the race), not an error of the whole first
        local ok, v = xpcall(own_body, boundary, call_one, f)
        if ok then
          if winner == nil then
            winner, value = i, v
            s:cancel()
          end
        elseif own_cancel(v) then
          error(v, 0)
        else
          add_error(v)
          local inner = rawget(v, "errors")
          if type(inner) == "table" then
            for k = 1, #inner do add_error(inner[k]) end
          end
        end
      end)
    end
  end)
  if winner ~= nil then return value, winner end
  local first = errs[1]
  if first == nil then
    -- every function was cancelled without a winner (e.g. an outer cancel)
    first = core.error("cancelled", "corio.first: every function was cancelled")
  end
  first.errors = errs
  error(first, 0)
end

return M
