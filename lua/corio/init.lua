-- corio: structured concurrency for LuaJIT on libuv.
-- This module is the Lua surface over the C core (corio.core): it raises
-- the errors that blocking C calls return (so they are raised on the task's
-- own stack), runs blocking calls made outside a loop under corio.run
-- (SPEC rule 11), builds scopes/timeouts/shields on the core's scope
-- primitives, and lets corio calls suspend through the user's own
-- coroutines (rule 13). gather/map/first are in corio.gather.
local core = require "corio.core"

local M = {}

local error, type, select, pcall, xpcall = error, type, select, pcall, xpcall

-- The C functions that Lua wrappers stand in for, by method name, so that
-- a bad self is named as the method the user called (bindings/common.c).
local cnames = {}
debug.getregistry()["corio.cnames"] = cnames

-- Library functions this module replaces (coroutine.resume and wrap, the
-- debug mode's watches), kept as {table, key, original, replacement}:
-- corio_free puts the originals back in a state its host keeps (an
-- adopted one), where the replacements would call a freed runtime.
local patched = {}
debug.getregistry()["corio.patched"] = patched
local function patch(tbl, key, fn)
  patched[#patched + 1] = { tbl, key, tbl[key], fn }
  tbl[key] = fn
end

local NOLOOP = core.NOLOOP
local in_task, is_error = core.in_task, core.is_error
local c_checkpoint = core.checkpoint

-- A checkpoint for calls built in Lua (rule 3): raise Cancelled if the
-- task's scope is cancelled.
local function checkpoint()
  local ok, e = c_checkpoint()
  if ok or e == NOLOOP then return end
  error(e, 0)
end
M._checkpoint = checkpoint

-- For corio.gather and corio.fs (internal): an options table holds only
-- the names in `known`; a misspelt one ({return_error = true}) is an error
-- naming argument n of fname, as in corio.http, not silently ignored. nil
-- is no options. Raised at the caller of the function that calls this.
function M._check_opts(opts, known, n, fname)
  if opts == nil then return end
  if type(opts) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(n, fname, type(opts)), 3)
  end
  for k in pairs(opts) do
    if not known[k] then
      error(("bad argument #%d to '%s' (unknown option '%s')"):format(n, fname, tostring(k)), 3)
    end
  end
end

core.register_own(debug.getinfo(1, "S").source)

M.version = core.version
M.Error = core.error_class("error")
M.Cancelled = core.error_class("cancelled")
M.TimeoutError = core.error_class("timeout")
M.DeadlockError = core.error_class("deadlock")

function M.is_cancelled(err) return is_error(err, "cancelled") end
M.is_error = is_error
M.new_error = core.error
M.now = core.now
M.current = core.current
M.spawn = core.spawn
M.tasks = core.tasks
M.defer = core.defer
M.thread_pool_size = core.thread_pool_size

local SCOPE_GROUP, SCOPE_TIMEOUT, SCOPE_MOVE_ON, SCOPE_SHIELD = 1, 2, 3, 4
local scope_enter, scope_fail, scope_wait = core.scope_enter, core.scope_fail, core.scope_wait
local scope_defers, scope_leave = core.scope_defers, core.scope_leave

-- run --------------------------------------------------------------------

local function run_done(ok, ...)
  if ok then return ... end
  error((...), 0)
end

local scope

-- The CLI's main chunk calling corio.run(fn): fn runs as a child task of
-- the root (so, as under luajit, its errors cross a task boundary and
-- corio.run inside fn raises). A deadlock while it runs cancels only its
-- scope, and it raises the deadlock error, as corio.run does under luajit.
local run_nested, run_nested_end = core.run_nested, core.run_nested_end
local function as_child(s, fn, ...)
  run_nested(s)
  return s:spawn(fn, ...):join()
end

local function nested_done(ok, ...)
  local dl = run_nested_end()
  if dl ~= nil then error(dl, 0) end
  if ok then return ... end
  error((...), 0)
end

function M.run(fn, ...)
  if core.run_check() then
    -- checked here, as core.run checks it: the spawn below named itself
    -- ("init.lua:81: bad argument #1 to 'spawn'") for corio.run(5)
    if type(fn) ~= "function" then
      error(("bad argument #1 to 'run' (function expected, got %s)"):format(type(fn)), 2)
    end
    return nested_done(pcall(scope, as_child, fn, ...))
  end
  return run_done(core.run(fn, ...))
end
local run = M.run

-- sleep and yield ---------------------------------------------------------

local c_sleep, c_yield = core.sleep, core.yield

function M.sleep(seconds)
  local ok, e = c_sleep(seconds)
  if ok then return end
  if e == NOLOOP then return run(M.sleep, seconds) end
  error(e, 0)
end

-- c_yield raises Cancelled itself, except when it first yielded to let
-- the others run (rule 15): it then returns false, Cancelled.
function M.yield()
  local ok, e = c_yield()
  if ok == false then error(e, 0) end
end

-- scopes -------------------------------------------------------------------

-- Run the deferred functions of scope s, newest first, under its cancel
-- state. A handler error is recorded on the scope (after any error in
-- flight, so it is chained, not lost); a Cancelled from a handler counts as
-- the body's.
local body_handler
local function run_scope_defers(s, list, ok, err)
  for i = #list, 1, -1 do
    local hok, herr = xpcall(list[i], body_handler)
    if not hok then
      if is_error(herr, "cancelled") then
        if ok then ok, err = false, herr end
      else
        scope_fail(s, herr)
      end
    end
  end
  return ok, err
end

local timeout_error

-- error(e, 0), marked for body_handler (below)
local function reraise(e) error(e, 0) end

-- Wait until the scope has no tasks left: true, true; or false, err. A
-- wait that suspended asks again, since tasks may have been spawned into
-- the scope (which has not returned) before this task ran again.
local close_open
local function wait_tasks(s)
  local waited, idle = scope_wait(s)
  if waited == nil then
    -- scopes entered inside s are still open: close them first
    close_open(s)
    waited, idle = scope_wait(s, true)
  end
  while waited and idle == nil do waited, idle = scope_wait(s, true) end
  return waited, idle
end

local function finish(s, kind, ok, ...)
  local err
  if not ok then
    err = ...
    scope_fail(s, err)
  end
  local waited, werr = wait_tasks(s)
  if not waited and ok then
    -- inside a C call (table.sort, dofile, ...) the task cannot wait for
    -- the scope's children: they were cancelled and handed to the
    -- enclosing scope; the scope is left raising the explanation
    ok, err = false, werr
    scope_fail(s, werr)
  end
  local list = scope_defers(s)
  local body_ok = ok
  while list do
    ok, err = run_scope_defers(s, list, ok, err)
    -- the handlers may have spawned tasks into the scope (it has not
    -- returned: wait for them too) or deferred more functions (run them)
    waited, werr = wait_tasks(s)
    if not waited and ok then
      ok, err = false, werr
      scope_fail(s, werr)
    end
    list = scope_defers(s)
  end
  local code, e = scope_leave(s, ok, err)
  if code == 0 then
    if not body_ok then return end
    if kind == SCOPE_MOVE_ON then return true, ... end
    return ...
  elseif code == 1 then
    if kind == SCOPE_TIMEOUT and s.deadline_fired then
      error(timeout_error(s), 0)
    elseif kind == SCOPE_MOVE_ON then
      return false
    elseif body_ok then
      return ...
    end
    return
  end
  reraise(e)
end

-- Scopes still open inside s when its body ended, entered by a coroutine
-- that yielded out of them and was resumed by no wrapper below (so they
-- stayed on the task's chain; e.g. through a coroutine.resume saved before
-- corio was loaded), or whose own exit raised. Each is finished, innermost
-- first, as its body would have been: one entered by another coroutine as
-- if the body raised (tasks cancelled and awaited, deferred functions run),
-- and s then raises that error; the others as if the body returned.
local scope_top = core.scope_top
local ABANDONED = "a scope (or task body) ended while a scope entered inside it by "
  .. "another coroutine was still open (a coroutine yielded out of that "
  .. "scope's body and was abandoned); the inner scope was closed and its "
  .. "deferred functions ran"
function close_open(s)
  local err, any, last
  while true do
    local d, kind, foreign = scope_top(s)
    if d == nil or d == last then break end
    last = d
    if foreign then
      err = err or core.error("error", ABANDONED)
      any = true
      local ok, e = pcall(finish, d, kind, false, err)
      if not ok then err = e end
    else
      local ok, e = pcall(finish, d, kind, true)
      if not ok then scope_fail(s, e) end
    end
  end
  if any then scope_fail(s, err) end
end

-- Scope bodies run under xpcall with this handler, so an error keeps the
-- traceback of where it was raised: a corio error gets it in .traceback;
-- any other value is raised on unchanged (rule 10), and its traceback is
-- noted for the task's thread, where the task boundary finds it if the
-- value ends the task.
-- The notes of a thread: { n = k, e1, tb1, e2, tb2, ... }, newest first,
-- at most NOTES values (a scope can fail with its body's error and with
-- those of its deferred functions, all raised on the same thread).
local body_tracebacks = setmetatable({}, { __mode = "k" })
debug.getregistry()["corio.tb"] = body_tracebacks
local traceback, co_running = debug.traceback, coroutine.running
local NOTES = 4
local function noted_tb(co, e)
  local l = body_tracebacks[co]
  if l then
    for i = 1, 2 * l.n, 2 do
      if rawequal(l[i], e) then return l[i + 1] end
    end
  end
end
debug.getregistry()["corio.noted_tb"] = noted_tb
local function note_tb(co, e, tb)
  local l = body_tracebacks[co]
  if l == nil then
    body_tracebacks[co] = { n = 1, e, tb }
    return
  end
  local n = l.n
  for i = 1, 2 * n, 2 do  -- an older note of the same value goes
    if rawequal(l[i], e) then
      for j = i, 2 * n - 2 do l[j] = l[j + 2] end
      n = n - 1
      break
    end
  end
  if n == NOTES then n = n - 1 end
  for j = 2 * n, 1, -1 do l[j + 2] = l[j] end
  l[1], l[2] = e, tb
  for j = 2 * n + 3, 2 * NOTES do l[j] = nil end
  l.n = n + 1
end
-- A value corio raises again (a scope leaving with its body's error, the
-- stream form of corio.http) goes through reraise: the handler of an
-- enclosing body then keeps the note made where the value was first
-- raised, instead of noting the re-raise inside corio (before, a plain
-- error from a scope nested in another body, or in a gather function,
-- showed init.lua's `error` as where it came from; rule 9).
local getinfo = debug.getinfo
function body_handler(e)
  if is_error(e) then
    if rawget(e, "traceback") == nil then
      e.traceback = (traceback("", 2):gsub("^\n", ""))
    end
  else
    local co = co_running()
    if co then
      -- levels: 1 this handler, 2 error(), 3 reraise
      if not (getinfo(3, "f").func == reraise and noted_tb(co, e)) then
        note_tb(co, e, (traceback("", 2):gsub("^\n", "")))
      end
    end
  end
  return e
end
-- for corio.http's stream form (kept off the module table: not public API)
debug.getregistry()["corio.reraise"] = { reraise = reraise, handler = body_handler }

local function check_fn(fn, name, n)
  if type(fn) ~= "function" then
    error(("bad argument #%d to '%s' (function expected, got %s)")
      :format(n, name, type(fn)), 3)
  end
end

-- Entering and leaving a scope. scope_enter returns nothing when no task
-- runs (rule 11: run the call under corio.run). A body that returned with
-- nothing to wait for, run or raise leaves through the FFI (core.c
-- ffi_scope_leave), else finish goes the long way. Only corio.scope's body
-- sees its scope object; the others are reused once left that way. When
-- fn gets no arguments, a function of fixed arity runs it: the trace that
-- starts after scope_enter (a C call) could not compile passing varargs.
local SCOPE_BODY = 5
local ffi_ok, ffi = pcall(require, "ffi")
local rt_ptr = ffi_ok and ffi.cast("void *", core.rt) or nil
local c_leave = ffi_ok and ffi.cast("int (*)(void *, void *)", core.ffi_scope_leave)

local function leave(s, kind, ok, ...)
  if ok and c_leave and c_leave(rt_ptr, s) ~= 0 then return ... end
  return finish(s, kind, ok, ...)
end

-- fn is checked first, also outside a loop: raised inside the corio.run
-- of rule 11, a bad fn came back wrapped in kind "error", with corio's own
-- frames for its traceback, instead of the plain string raised in a task.
--
-- A body run that way outside a loop (rule 11) runs as the root task of
-- a corio.run of its own, not in the caller's thread: called from the
-- user's coroutine (a generator under a stock luajit whose corio.timeout
-- or sem:with body yields each item), a coroutine.yield in the body would
-- reach that run's scheduler, which takes a bare yield for corio.yield
-- and drops its values: the generator would run to its end with nothing
-- yielded. The run cannot hand the yield on (its loop runs inside a C
-- call), so while it runs, coroutine.yield refuses one made by the body's
-- own thread, naming the function and what works instead.
local co_yield0 = coroutine.yield
local function restore_yield(prev, guard, ok, ...)
  if coroutine.yield == guard then coroutine.yield = prev end
  if ok then return ... end
  error((...), 0)
end
local function run_body(name, public, ...)
  if co_running() == nil then return run(public, ...) end
  local root
  local function guard(...)
    if root ~= nil and co_running() == root then
      error(("coroutine.yield in the body of %s, called outside a running "
        .. "loop from a coroutine: the body runs in a corio.run of its own "
        .. "(rule 11), and the yield cannot reach the coroutine that called "
        .. "%s; resume that coroutine inside corio.run (or under the corio "
        .. "program), where the body runs in it"):format(name, name), 2)
    end
    return co_yield0(...)
  end
  local prev = coroutine.yield
  coroutine.yield = guard
  return restore_yield(prev, guard, pcall(run, function(...)
    root = co_running()
    return public(...)
  end, ...))
end
M._run_body = run_body

local function not_entered(public, name, n, ...)
  check_fn((select(n, ...)), name, n)
  return run_body("corio." .. name, public, ...)
end

local function scope0(fn)
  local s = type(fn) == "function" and scope_enter(SCOPE_GROUP)
  if not s then return not_entered(scope, "scope", 1, fn) end
  return leave(s, SCOPE_GROUP, xpcall(fn, body_handler, s))
end

function scope(fn, ...)
  if select("#", ...) == 0 then return scope0(fn) end
  local s = type(fn) == "function" and scope_enter(SCOPE_GROUP)
  if not s then return not_entered(scope, "scope", 1, fn, ...) end
  return leave(s, SCOPE_GROUP, xpcall(fn, body_handler, s, ...))
end
M.scope = scope

local function shield0(fn)
  local s = type(fn) == "function" and scope_enter(SCOPE_SHIELD)
  if not s then return not_entered(M.shield, "shield", 1, fn) end
  return leave(s, SCOPE_SHIELD, xpcall(fn, body_handler))
end

function M.shield(fn, ...)
  if select("#", ...) == 0 then return shield0(fn) end
  local s = type(fn) == "function" and scope_enter(SCOPE_SHIELD)
  if not s then return not_entered(M.shield, "shield", 1, fn, ...) end
  return leave(s, SCOPE_SHIELD, xpcall(fn, body_handler, ...))
end

-- corio.timeout and corio.move_on_after; done(s, ok, ...) leaves the scope
local function with_deadline(kind, name, done)
  local public
  -- asyncio.wait_for(aw, timeout) takes the function first: name the
  -- order rather than blame the second argument for being a number
  local function swapped(seconds, fn)
    if type(seconds) == "function" and type(fn) == "number" then
      error(("bad argument #1 to '%s' (number expected, got function; the seconds "
        .. "come first: corio.%s(seconds, fn, ...))"):format(name, name), 3)
    end
  end
  local function fixed(seconds, fn)
    local s = type(fn) == "function" and scope_enter(kind, seconds)
    if not s then
      swapped(seconds, fn)
      return not_entered(public, name, 2, seconds, fn)
    end
    return done(s, xpcall(fn, body_handler))
  end
  public = function(seconds, fn, ...)
    if select("#", ...) == 0 then return fixed(seconds, fn) end
    local s = type(fn) == "function" and scope_enter(kind, seconds)
    if not s then
      swapped(seconds, fn)
      return not_entered(public, name, 2, seconds, fn, ...)
    end
    return done(s, xpcall(fn, body_handler, ...))
  end
  return public
end
M.timeout = with_deadline(SCOPE_TIMEOUT, "timeout", function(s, ok, ...)
  return leave(s, SCOPE_TIMEOUT, ok, ...)
end)
M.move_on_after = with_deadline(SCOPE_MOVE_ON, "move_on_after", function(s, ok, ...)
  if ok and c_leave and c_leave(rt_ptr, s) ~= 0 then return true, ... end
  return finish(s, SCOPE_MOVE_ON, ok, ...)
end)

timeout_error = function(s)
  local e = core.error("timeout",
    ("the deadline of %g s passed (corio.timeout)"):format(s.timeout))
  e.seconds = s.timeout
  e.traceback = (debug.traceback("", 3):gsub("^\n", ""))
  return e
end

-- fn(a, b) in a body of its own, as corio.scope(function(_, a, b) return
-- fn(a, b) end) would run it: gather.lua's own_body, which only a task's
-- own function calls (never a user's coroutine), so its scope can be
-- entered through the FFI, from bpool, where ffi_scope_leave's 2 puts it.
local bpool, nbpool = {}, 0
local c_body_enter = ffi_ok and ffi.cast("int (*)(void *, void *)", core.ffi_body_enter)

local function body_leave(s, ok, ...)
  if ok and c_leave then
    local r = c_leave(rt_ptr, s)
    if r == 2 then
      nbpool = nbpool + 1
      bpool[nbpool] = s
    end
    if r ~= 0 then return ... end
  end
  return finish(s, SCOPE_GROUP, ok, ...)
end

local function body_enter()
  local n = nbpool
  if n > 0 and c_body_enter(rt_ptr, bpool[n]) ~= 0 then
    local s = bpool[n]
    bpool[n] = nil
    nbpool = n - 1
    return s
  end
  return scope_enter(SCOPE_BODY)
end

function M._body(fn, a, b)
  return body_leave(body_enter(), xpcall(fn, body_handler, a, b))
end

-- The deferred functions of a task's own body run on a fresh thread of the
-- task once its body and children ended (runtime/task.c).
do
  local task_fail = core.task_fail
  debug.getregistry()["corio.run_defers"] = function(list)
    for i = #list, 1, -1 do
      local ok, e = xpcall(list[i], body_handler)
      if not ok then task_fail(e) end
    end
  end
end

-- tasks ----------------------------------------------------------------------

local Task = core.methods("corio.Task")
local c_join = Task.join
cnames[c_join] = "join"

local function join_done(task, ok, ...)
  if ok then return ... end
  local e = ...
  if e == NOLOOP then error("task:join(): no loop is running", 2) end
  error(e, 0)
end

-- Fast paths through the FFI: calls that complete at once run C code
-- straight from JIT-compiled Lua, without the Lua C function call (which
-- ends a compiled trace). Each C side checks its object's type and every
-- condition, and returns 0 to send the call down the C function. A task
-- that ended with no result or one nil, boolean or number is joined this
-- way (bindings/core.c ffi_join).
if ffi_ok then
  local ffi_join = ffi.cast("int (*)(void *, void *, double *)", core.ffi_join)
  local ffi_now = ffi.cast("double (*)(void *)", core.ffi_now)
  local rt = rt_ptr
  local out = ffi.new("double[1]")
  M.now = function() return ffi_now(rt) end
  function Task.join(task)
    -- a corio object (its __metatable): a light userdata is "userdata"
    -- too, and the C side would read its magic at whatever it points to
    if getmetatable(task) == "corio" then
      local r = ffi_join(rt, task, out)
      if r == 4 then return out[0]
      elseif r == 3 then return out[0] ~= 0
      elseif r == 2 then return nil
      elseif r == 1 then return
      end
    end
    return join_done(task, c_join(task))
  end
else
  function Task.join(task) return join_done(task, c_join(task)) end
end

-- sync objects -------------------------------------------------------------

local sync = core.sync
M.semaphore = sync.semaphore
M.lock = sync.lock
M.event = sync.event
M.channel = core.channel

local function blocking_method(methods, name)
  local c_fn = methods[name]
  cnames[c_fn] = name
  local wrapper
  wrapper = function(self)
    local ok, e = c_fn(self)
    if ok then return end
    if e == NOLOOP then return run(wrapper, self) end
    error(e, 0)
  end
  methods[name] = wrapper
end

-- fn failed with e and the release raised rerr too (fn released a lock
-- itself, say): rerr is chained to e, as a defer handler's error is to the
-- error in flight (rule 9), not lost. A Cancelled is not reported (rule
-- 2): the release's error is raised instead.
local function chain_release_error(e, rerr)
  if is_error(e, "cancelled") then return rerr end
  if not is_error(e) then e = core.wrap_error(e, coroutine.running()) end
  local list = e.errors
  if #list == 0 then list[1] = e end
  list[#list + 1] = rerr
  return e
end

local function release_after(self, ok, ...)
  if ok then
    self:release()
    return ...
  end
  local e = ...
  local rok, rerr = pcall(self.release, self)
  if not rok then e = chain_release_error(e, rerr) end
  error(e, 0)
end

local sem_mt, lock_mt = core.metatable("corio.Semaphore"), core.metatable("corio.Lock")
local getmetatable_raw = debug.getmetatable
local function with(self, fn, ...)
  -- self first: sem.with(fn) said "bad argument #1 to 'with' (function
  -- expected, got nil)", and another value of self an internal error
  local mt = getmetatable_raw(self)
  if mt ~= sem_mt and mt ~= lock_mt then
    error(("bad self to 'with' (corio.Semaphore or corio.Lock expected, got %s; "
      .. "call it as obj:with(fn, ...))"):format(type(self)), 2)
  end
  -- outside a loop, the whole of it under one corio.run (rule 11): a lock
  -- taken by one run's task would be broken once that run ended
  if type(fn) ~= "function" then
    error(("bad argument #1 to 'with' (function expected, got %s)"):format(type(fn)), 2)
  end
  if not in_task() then return run_body("obj:with", with, self, fn, ...) end
  self:acquire()
  return release_after(self, pcall(fn, ...))
end

local Sem, Lock, Event = core.methods("corio.Semaphore"), core.methods("corio.Lock"), core.methods("corio.Event")
blocking_method(Sem, "acquire")
do
  -- Outside a loop a blocking call runs in a corio.run of its own (rule
  -- 11), whose task would end holding the lock: the lock would be broken
  -- as soon as acquire returned, and the caller's release and every later
  -- acquire would fail naming a task it never saw. A lock is owned by a
  -- task, and outside a loop there is none: refuse, saying what works.
  local c_acquire = Lock.acquire
  cnames[c_acquire] = "acquire"
  Lock.acquire = function(self)
    local ok, e = c_acquire(self)
    if ok then return end
    if e == NOLOOP then
      error("lock:acquire(): called outside a loop, where no task can own the lock "
        .. "(the lock would be broken at once); use lock:with(fn) to run fn holding "
        .. "it, or call acquire inside corio.run", 2)
    end
    error(e, 0)
  end
end
blocking_method(Event, "wait")
Sem.with, Lock.with = with, with

-- semaphore acquire with a permit free, release, and wait on a set event
-- through the FFI (bindings/sync.c; see Task.join above)
if ffi_ok then
  local sig = "int (*)(void *, void *)"
  local rt = rt_ptr
  local function fast(methods, name, cfn)
    local f, slow = ffi.cast(sig, cfn), methods[name]
    if type(slow) == "function" and cnames[slow] == nil then cnames[slow] = name end
    methods[name] = function(self)
      if getmetatable(self) == "corio" and f(rt, self) ~= 0 then return end
      return slow(self)
    end
  end
  fast(Sem, "acquire", sync.ffi_sem_acquire)
  fast(Sem, "release", sync.ffi_sem_release)
  fast(Event, "wait", sync.ffi_event_wait)
  fast(Lock, "acquire", sync.ffi_lock_acquire)
  fast(Lock, "release", sync.ffi_lock_release)
end

local Chan = core.methods("corio.Channel")
do
  local c_send, c_recv = Chan.send, Chan.recv
  cnames[c_send], cnames[c_recv] = "send", "recv"
  local function send(ch, v)
    local ok, e = c_send(ch, v)
    if ok then return end
    if e == NOLOOP then return run(send, ch, v) end
    error(e, 0)
  end
  local recv
  local function recv_fail(ch, e)
    if e == NOLOOP then return run(recv, ch) end
    error(e, 0)
  end
  recv = function(ch)
    local ok, v, closed = c_recv(ch)
    if ok then
      if closed then return nil, closed end
      return v
    end
    return recv_fail(ch, v)
  end
  Chan.send, Chan.recv = send, recv
  -- LuaJIT compiles a loop over an iterator closure specialised to that
  -- very closure and keeps it in the trace, with the channel and every
  -- value still buffered in it, after the loop was left and the channel
  -- dropped. Once a prototype made 3 closures it specialises to the
  -- prototype instead: they are made here (fs.lua and http.lua do the
  -- same for files and streams).
  local function chan_iter(ch) return function() return (recv(ch)) end end
  for _ = 1, 3 do chan_iter(nil) end
  function Chan.iter(ch)
    -- checked here, not at the first step: a bad self would be named
    -- there as a bad self to 'recv'
    if type(ch) ~= "userdata" or tostring(ch):sub(1, 14) ~= "corio.Channel(" then
      error(("bad self to 'iter' (corio.Channel expected, got %s; call it as obj:iter(...))")
        :format(type(ch)), 2)
    end
    return chan_iter(ch)
  end
end

-- Method lookup in Lua: the C __index stays for properties (task.name,
-- scope.cancelled, ...), methods are found first with one table lookup.
for _, name in ipairs { "corio.Task", "corio.Scope", "corio.Semaphore", "corio.Channel" } do
  local mt = core.metatable(name)
  local methods, get = mt.methods, mt.__index
  mt.__index = function(self, k)
    local m = methods[k]
    if m ~= nil then return m end
    return get(self, k)
  end
end
for _, name in ipairs { "corio.Lock", "corio.Event" } do
  local mt = core.metatable(name)
  mt.__index = mt.methods
end
-- Their fields are read-only: setting one (sem.available = 5) raised
-- "attempt to index ... (a userdata value)", as if it could not be read.
for name, what in pairs { ["corio.Scope"] = "scope", ["corio.Semaphore"] = "semaphore",
    ["corio.Channel"] = "channel", ["corio.Lock"] = "lock", ["corio.Event"] = "event" } do
  local mt = core.metatable(name)
  if mt.__newindex == nil then
    mt.__newindex = function(_, k)
      error(("%s: field '%s' cannot be set (its fields are read-only)")
        :format(what, tostring(k)), 2)
    end
  end
end

-- user coroutines (rule 13) ------------------------------------------------
-- A corio call inside a coroutine the user resumes yields with its task
-- blocked or queued (core.own_yield tells); these wrappers pass that
-- suspension up to the scheduler and hand the resume values back down, so
-- the user's coroutine never sees it. While a coroutine runs under them,
-- "corio.resumers" maps it to the coroutine that resumed it: a corio call
-- checks that the chain reaches its task's thread before it suspends
-- (runtime/loop.c), so a yield no wrapper would pass up is refused with
-- an error instead of being taken by the resumer for its own.
do
  local co_resume, co_yield, co_create = coroutine.resume, coroutine.yield, coroutine.create
  local co_running = coroutine.running
  local own_yield = core.own_yield
  local resumers = setmetatable({}, { __mode = "k" })
  debug.getregistry()["corio.resumers"] = resumers
  -- Scopes a coroutine left open by yielding out of their bodies go with
  -- it (bindings/core.c): detached when it yields or returns to its
  -- resumer, put back on top of the resumer's innermost scope when it is
  -- resumed. A chain left detached is closed as abandoned when the scope
  -- (or task body) it was detached from ends: a deferred function of that
  -- scope attaches it there and finishes each of its scopes, innermost
  -- first, as if its body had raised (its tasks are cancelled and awaited,
  -- its deferred functions run), then raises that error in the enclosing
  -- scope. parked[co] is the record of co's detached chain.
  local scope_cur, scope_detach = core.scope_cur, core.scope_detach
  local scope_foreign_base = core.scope_foreign_base
  -- foreign[1]: how many scopes entered by user coroutines are open (parked
  -- chains included). While it is 0, a resume has nothing to put back, and
  -- the scope current before it can be found afterwards (the innermost one
  -- no user coroutine entered), so the common resume makes no call into C.
  local foreign = core.foreign
  local scope_attach, c_defer = core.scope_attach, core.defer
  local parked = setmetatable({}, { __mode = "k" })

  -- Where the abandoned coroutine is suspended (its first frame outside
  -- this file), so that the error names the generator the user left,
  -- not only the scope that found it; nil once it was collected.
  local this_file = debug.getinfo(1, "S").source
  local function suspended_at(ref)
    local co = ref[1]
    if co == nil then return nil end
    for level = 0, 50 do
      local info = debug.getinfo(co, level, "Sl")
      if info == nil then break end
      if info.currentline and info.currentline > 0 and info.source ~= this_file then
        return info.short_src .. ":" .. info.currentline
      end
    end
  end

  local function close_parked(rec)
    local top, bottom = rec.top, rec.bottom
    rec.top, rec.bottom, rec.detached = nil, nil, false
    local base = scope_cur()
    if not scope_attach(top, bottom) then return end
    -- Finishing the scopes may wait for their tasks: meanwhile another
    -- task must not resume the coroutine into them (it took them over, and
    -- this task waited for good: a deadlock)
    rec.closing = true
    -- (protected: the scopes just attached must be finished whatever it does)
    local found, where = pcall(suspended_at, rec.co)
    if not found then where = nil end
    local err = core.error("error", where and ABANDONED
      .. " (the coroutine is suspended at " .. where .. ")" or ABANDONED)
    local last
    while true do
      local d, kind = scope_top(base)
      if d == nil or d == last then break end
      last = d
      local ok, e = pcall(finish, d, kind, false, err)
      if not ok then err = e end
    end
    -- Closed as if its body had raised: the coroutine cannot go on in a
    -- body whose scope was finished (its defers ran, its tasks ended, the
    -- enclosing scope raised for it), as a Python generator is not
    -- resumed after aclose(): resuming it is refused and coroutine.status
    -- says "dead"
    rec.closing, rec.closed = nil, true
    error(err, 0)
  end

  local function park(co, base)
    local top, bottom = scope_detach(base)
    if top == nil then return end
    local rec = parked[co]
    if rec == nil or rec.base ~= base then
      -- one closer per coroutine and scope: a generator that yields in a
      -- loop does not pile up deferred functions
      rec = { base = base, co = setmetatable({ co }, { __mode = "v" }) }
      parked[co] = rec
      -- Run after the handlers deferred before this one (LIFO would run
      -- it first): one of those may close the generator itself, as
      -- Python's aclosing does (a defer that resumes it to its end),
      -- registered right after the generator was made and so before its
      -- first yield out of a scope. The closer defers itself once more,
      -- behind them; it closes the scopes only if they are still parked.
      local closer
      closer = function()
        if rec.detached and not rec.again then
          rec.again = true
          c_defer(closer)
          return
        end
        rec.base = nil
        if rec.detached then close_parked(rec) end
      end
      c_defer(closer)
    end
    rec.top, rec.bottom, rec.detached = top, bottom, true
  end

  local function unpark(co)
    local rec = parked[co]
    if rec ~= nil and rec.detached then
      local top, bottom = rec.top, rec.bottom
      rec.top, rec.bottom, rec.detached = nil, nil, false
      scope_attach(top, bottom)
    end
  end

  local function pass(co, base, ok, ...)
    if ok and own_yield() then
      return pass(co, base, co_resume(co, co_yield(...)))
    end
    resumers[co] = nil
    if foreign[1] ~= 0 then
      if base == nil then base = scope_foreign_base() end
      if base ~= nil and scope_cur() ~= base then park(co, base) end
    end
    return ok, ...
  end
  -- A generator that raised: its error is raised again here, in the
  -- thread that resumed it, and the frames where it was raised (on the
  -- dead coroutine's stack) would be lost from the traceback (rule 9).
  -- Note them, with the resumer's own, for that thread as body_handler
  -- does (the task boundary or an enclosing body keeps that note), and
  -- raise through reraise so that an enclosing body_handler keeps it.
  -- Only on the error path; corio errors carry their own traceback.
  local function wrap_failed(co, e)
    local me = co_running()
    if me == nil or is_error(e) then error(e, 0) end
    local tb = noted_tb(co, e) or (traceback(co, "", 0):gsub("^\n", ""))
    note_tb(me, e, tb .. "\n\t(resumed by)"
      .. (traceback("", 2):gsub("^\nstack traceback:", "")))
    return reraise(e)
  end
  local function unwrap(co, ok, ...)
    if ok then return ... end
    return wrap_failed(co, (...))
  end
  -- A coroutine suspended in a corio call that a task waits in (its
  -- resumer is still noted) belongs to that task until the call returns:
  -- resumed by another, the call would return the other's values.
  local co_status = coroutine.status
  local BUSY = "cannot resume a coroutine that is suspended in a corio "
    .. "call (a task waits in it; it goes on when that call returns)"
  local CLOSING = "cannot resume a coroutine whose scopes are being closed "
    .. "(it yielded out of a scope inside another that has ended, which "
    .. "closes them and raises that error)"
  local TASK = false
  local TASK_THREAD = "cannot resume the thread of a task: it runs under "
    .. "corio's scheduler only, which resumes it when what it waits for "
    .. "is done (wake it with an event or a channel, or cancel its task)"
  local CLOSED = "cannot resume dead coroutine (its scopes were closed: it "
    .. "yielded out of a scope inside another that ended, which closed them "
    .. "as if their bodies had raised)"
  local function closing(co)
    local rec = parked[co]
    if rec == nil then return nil end
    if rec.closing then return CLOSING end
    if rec.closed then return CLOSED end
  end
  local my_resume, my_wrap
  my_resume = function(co, ...)
    if type(co) ~= "thread" then
      error(("bad argument #1 to 'resume' (coroutine expected, got %s)")
        :format(type(co)), 2)
    end
    if resumers[co] ~= nil then
      if resumers[co] == TASK and co_status(co) == "suspended" then
        return false, TASK_THREAD
      end
      if co_status(co) == "suspended" then return false, BUSY end
      -- running or normal (it resumed the caller's chain): Lua refuses
      -- it; its resumer stays noted (cleared, the chain from a corio
      -- call below it would no longer reach the task)
      return co_resume(co, ...)
    end
    local refused = closing(co)
    if refused then return false, refused end
    resumers[co] = co_running()
    local base
    if foreign[1] ~= 0 then
      base = scope_cur()
      if base ~= nil then unpark(co) end
    end
    return pass(co, base, co_resume(co, ...))
  end
  my_wrap = function(f)
    if type(f) ~= "function" then
      error(("bad argument #1 to 'wrap' (function expected, got %s)")
        :format(type(f)), 2)
    end
    local co = co_create(f)
    return function(...)
      if resumers[co] ~= nil then
        if co_status(co) == "suspended" then error(BUSY, 2) end
        local _, e = co_resume(co, ...)   -- running or normal: refused
        error(e, 0)
      end
      local refused = closing(co)
      if refused then error(refused, 2) end
      resumers[co] = co_running()
      local base
      if foreign[1] ~= 0 then
        base = scope_cur()
        if base ~= nil then unpark(co) end
      end
      return unwrap(co, pass(co, base, co_resume(co, ...)))
    end
  end
  -- A task's own thread (got from coroutine.running in the task) is
  -- resumed by the scheduler only: resumed by another task it would
  -- return from its corio call with that task's values, run on as that
  -- task, and fail when the scheduler resumed it later. Marked as its
  -- own resumer TASK (no thread: a chain that reaches it ends there),
  -- so that coroutine.resume refuses it in the check it makes anyway.
  local task_thread = core.task_thread
  local function my_running()
    local co = co_running()
    if co ~= nil and resumers[co] == nil and co == task_thread() then
      resumers[co] = TASK
    end
    return co
  end
  local function my_status(co)
    if type(co) ~= "thread" then
      error(("bad argument #1 to 'status' (coroutine expected, got %s)")
        :format(type(co)), 2)
    end
    local st = co_status(co)
    if st == "suspended" then
      local rec = parked[co]
      if rec ~= nil and rec.closed then return "dead" end
    end
    return st
  end
  patch(coroutine, "resume", my_resume)
  patch(coroutine, "wrap", my_wrap)
  patch(coroutine, "status", my_status)
  patch(coroutine, "running", my_running)
end

-- to_thread ------------------------------------------------------------------
do
  local buffer = require "string.buffer"
  local c_to_thread = core.to_thread
  local unpack, getinfo, dump = unpack, debug.getinfo, string.dump
  -- bytecode of functions already sent, so each is dumped once
  local dumped = setmetatable({}, { __mode = "k" })
  -- What the core needs for fn: its bytecode; fn itself for a host's C
  -- function (corio_push_thread_fn); false to have the core refuse it.
  local function prepare(fn)
    local tf = type(fn)
    if tf == "userdata" then return fn end
    if tf ~= "function" then
      error(("bad argument #1 to 'to_thread' (Lua function expected, got %s)")
        :format(tf), 3)
    end
    local info = getinfo(fn, "Su")
    if info.nups > 0 or info.what == "C" then return false end
    local code = dump(fn)
    dumped[fn] = code
    return code
  end
  -- Where the caller called to_thread, for the end of the worker's
  -- traceback (as "(task N spawned at ...)" ends a task's): the first Lua
  -- frame outside this file above slow (done and to_thread tail-called
  -- it). The worker's traceback alone did not say which call failed;
  -- Python's and trio's show the caller's frames too.
  local here = getinfo(1, "S").source
  local function called_at()
    for level = 3, 50 do
      local info = getinfo(level, "Sl")
      if info == nil then return "" end
      if info.currentline > 0 and info.source ~= here then
        return ("\n\t(to_thread called at %s:%d)"):format(info.short_src, info.currentline)
      end
    end
    return ""
  end
  local function worker_error(s, value)
    local msg, tb = s:match("^(.-)\n(stack traceback:.*)$")
    local at = called_at()
    if tb ~= nil then tb = tb .. at
    elseif at ~= "" then tb = "stack traceback:" .. at end
    error(core.error("error", msg or s, { traceback = tb or "", value = value }), 0)
  end
  local function slow(kind, ...)
    if kind == 1 then   -- results that needed string.buffer
      local r = buffer.decode((...))
      return unpack(r, 1, r.n)
    elseif kind == 2 then   -- the worker's error, with its traceback
      worker_error((...))
    elseif kind == 3 then   -- the same for a table raised: {message, table}
      local r = buffer.decode((...))
      worker_error(r[1], r[2])
    elseif kind == NOLOOP then
      return run(M.to_thread, (...), select(3, ...))
    end
    error(kind, 0)
  end
  local function done(ok, ...)
    if ok then return ... end
    return slow(...)
  end
  -- A worker requires as its caller would: it gets package.path and
  -- cpath, sent when they changed (strings compare by identity here, so
  -- the check is cheap). Workers used to keep Lua's default paths, and a
  -- module on a path the script added was "not found" in fn. pkg is the
  -- table require reads its paths from (package.loaded.package, which
  -- require returns also after a script set the global package = nil).
  local thread_paths, pkg = core.thread_paths, require("package")
  local sent_path, sent_cpath
  local function send_paths()
    local path, cpath = pkg.path, pkg.cpath
    if type(path) ~= "string" or type(cpath) ~= "string" then return end
    thread_paths(path, cpath)
    sent_path, sent_cpath = path, cpath
  end
  function M.to_thread(fn, ...)
    local code = dumped[fn]
    if code == nil then code = prepare(fn) end
    if pkg.path ~= sent_path or pkg.cpath ~= sent_cpath then send_paths() end
    return done(c_to_thread(fn, code, ...))
  end
end

-- Async functions of an embedding host (corio_push_async in corio.h):
-- values a suspended call resumes with start with OPMARK, then ok.
do
  local OPMARK = core.OPMARK
  local function op_done(ok, ...)
    if ok then return ... end
    error((...), 0)
  end
  local function done(first, ...)
    if first == OPMARK then return op_done(...) end
    return first, ...
  end
  debug.getregistry()["corio.async_wrap"] = function(cfn)
    return function(...) return done(cfn(...)) end
  end
end

-- Debug mode: blocking stdlib calls made inside a task are reported once
-- per call site, with what to use instead. They still run.
if core.debug_mode() then
  local seen = {}
  local function watch(tbl, lib, name, instead)
    local orig = tbl[name]
    if type(orig) ~= "function" then return end
    patch(tbl, name, function(...)
      if in_task() then
        local info = debug.getinfo(2, "Sl")
        local site = info and (info.short_src .. ":" .. tostring(info.currentline)) or "?"
        local key = name .. "@" .. site
        if not seen[key] then
          seen[key] = true
          io.stderr:write(("corio: %s.%s at %s blocks the loop inside a task; %s\n")
            :format(lib, name, site, instead))
        end
      end
      return orig(...)
    end)
  end
  watch(os, "os", "execute", "run it with corio.to_thread(function(c) return os.execute(c) end, cmd)")
  watch(io, "io", "popen", "read the command's output in corio.to_thread")
  watch(io, "io", "read", "read standard input in corio.to_thread, or before the loop starts")
end

local gather = require "corio.gather"
M.gather, M.map, M.first = gather.gather, gather.map, gather.first

return M
