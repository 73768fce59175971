-- hunt_badinput_spec.lua: a table-driven sweep of bad input over every
-- public function and method (docs/api.md, docs/http.md), inside a task
-- and outside any loop (a stock luajit, SPEC rule 11). The product rule:
-- a wrong argument type or value raises a clear error naming the function
-- and the argument (a plain string in Lua's wording for misuse; kind
-- "invalid" for corio.http, with nothing sent), never a crash or a hang,
-- and the runtime works on afterwards. badargs_spec.lua throws every value
-- at every function and checks only that nothing crashes or hangs; this
-- file checks what each error says, one case at a time.

local corio = require("corio")
local fs = require("corio.fs")
local http = require("corio.http")
local testing = require("corio.testing")
local cb = require("corio.busted")
local helpers = require("tests.spec.helpers")

-- The cases, as source: this process loads it for the sweep inside a
-- task, and a stock luajit loads the same file for the sweep outside a
-- loop. build(E) returns the list; E holds the modules and fixtures.
-- A case: { label, match, fn, args (packed), kind = corio error kind or
-- nil for a plain string, inside = true when it only applies in a task,
-- outside = the match outside a loop when it differs, ok = true for an
-- accepted value (documented) that must not raise }.
local CASES = [==[
local E = ...
local corio, fs, http, testing, cb = E.corio, E.fs, E.http, E.testing, E.cb
local NaN, inf = 0 / 0, math.huge
local cases = {}
local function pack(...) return { n = select("#", ...), ... } end
local function c(label, match, fn, ...)
  cases[#cases + 1] = { label = label, match = match, fn = fn, args = pack(...) }
  return cases[#cases]
end
local function k(kind, label, match, fn, ...)
  local case = c(label, match, fn, ...)
  case.kind = kind
  return case
end
local function inside(case) case.inside = true return case end
local function accepted(label, fn, ...)
  local case = c(label, nil, fn, ...)
  case.ok = true
  return case
end
local function f() end
local sem, lock, ev, ch = E.sem, E.lock, E.ev, E.ch

-- corio: running, tasks, time ---------------------------------------------
c("run(nil)", "bad argument #1 to 'run' (function expected, got nil)", corio.run, nil).inside_match =
  "corio.run: called inside a running task"
inside(c("spawn(nil)", "bad argument #1 to 'spawn' (function expected, got nil)", corio.spawn, nil))
inside(c("spawn(5)", "bad argument #1 to 'spawn' (function expected, got number)", corio.spawn, 5))
inside(c("spawn(lock)", "bad argument #1 to 'spawn' (function expected, got userdata)", corio.spawn, lock))
c("sleep(nil)", "bad argument #1 to 'sleep' (number expected, got nil)", corio.sleep, nil)
c("sleep('1')", "bad argument #1 to 'sleep' (number expected, got string)", corio.sleep, "1")
c("sleep(NaN)", "bad argument #1 to 'sleep' (seconds is NaN)", corio.sleep, NaN)
c("sleep(-1)", "bad argument #1 to 'sleep' (seconds must be >= 0, got -1)", corio.sleep, -1)
c("sleep(-inf)", "bad argument #1 to 'sleep' (seconds must be >= 0, got -inf)", corio.sleep, -inf)
c("sleep(lock)", "bad argument #1 to 'sleep' (number expected, got userdata)", corio.sleep, lock)
accepted("sleep(-0)", corio.sleep, -0.0)
-- corio: scopes --------------------------------------------------------------
for _, name in ipairs { "timeout", "move_on_after" } do
  local fn = corio[name]
  c(name .. "(nil, f)", "bad argument #1 to '" .. name .. "' (number expected, got nil)", fn, nil, f)
  c(name .. "('1', f)", "bad argument #1 to '" .. name .. "' (number expected, got string)", fn, "1", f)
  c(name .. "(NaN, f)", "bad argument #1 to '" .. name .. "' (seconds is NaN)", fn, NaN, f)
  c(name .. "(-1, f)", "bad argument #1 to '" .. name .. "' (seconds must be >= 0, got -1)", fn, -1, f)
  c(name .. "(-inf, f)", "bad argument #1 to '" .. name .. "' (seconds must be >= 0, got -inf)", fn, -inf, f)
  c(name .. "(1, nil)", "bad argument #2 to '" .. name .. "' (function expected, got nil)", fn, 1, nil)
  c(name .. "(1, 5, x)", "bad argument #2 to '" .. name .. "' (function expected, got number)", fn, 1, 5, "x")
  c(name .. "(1, sem)", "bad argument #2 to '" .. name .. "' (function expected, got userdata)", fn, 1, sem)
  accepted(name .. "(inf, f)", fn, inf, f)
end
for _, name in ipairs { "scope", "shield" } do
  local fn = corio[name]
  c(name .. "(nil)", "bad argument #1 to '" .. name .. "' (function expected, got nil)", fn, nil)
  c(name .. "(5)", "bad argument #1 to '" .. name .. "' (function expected, got number)", fn, 5)
  c(name .. "({}, x)", "bad argument #1 to '" .. name .. "' (function expected, got table)", fn, {}, "x")
  c(name .. "(ch)", "bad argument #1 to '" .. name .. "' (function expected, got userdata)", fn, ch)
end
inside(c("defer(nil)", "bad argument #1 to 'defer' (function expected, got nil)", corio.defer, nil))
inside(c("defer('x')", "bad argument #1 to 'defer' (function expected, got string)", corio.defer, "x"))
-- corio: many at once --------------------------------------------------------
c("gather(nil)", "bad argument #1 to 'gather' (table expected, got nil)", corio.gather, nil)
c("gather({5})", "bad argument #1 to 'gather' (element 1 is a number, expected a function or a Task)",
  corio.gather, { 5 })
c("gather({}, 5)", "bad argument #2 to 'gather' (table expected, got number)", corio.gather, {}, 5)
c("gather({f}, {return_error = true})", "bad argument #2 to 'gather' (unknown option 'return_error')",
  corio.gather, { f }, { return_error = true })
c("map(nil, f)", "bad argument #1 to 'map' (table expected, got nil)", corio.map, nil, f)
c("map({1}, nil)", "bad argument #2 to 'map' (function expected, got nil)", corio.map, { 1 }, nil)
c("map({1}, f, 5)", "bad argument #3 to 'map' (table expected, got number)", corio.map, { 1 }, f, 5)
for _, v in ipairs { 0, -1, 1.5, NaN, -inf, "2" } do
  c("map limit " .. tostring(v), "bad argument #3 to 'map' (limit must be a positive integer, got "
    .. tostring(v) .. ")", corio.map, { 1 }, f, { limit = v })
end
c("map({1}, f, {limt = 2})", "bad argument #3 to 'map' (unknown option 'limt')", corio.map, { 1 }, f,
  { limt = 2 })
accepted("map limit inf", corio.map, { 1 }, f, { limit = inf })
c("first(nil)", "bad argument #1 to 'first' (table expected, got nil)", corio.first, nil)
c("first({})", "bad argument #1 to 'first' (empty list)", corio.first, {})
c("first({f, 'x'})", "bad argument #1 to 'first' (element 2 is a string, expected a function or a Task)",
  corio.first, { f, "x" })
-- corio: synchronisation -----------------------------------------------------
for _, v in ipairs { -1, 1.5, NaN, inf, -inf, 1e308 } do
  c("semaphore(" .. tostring(v) .. ")", "bad argument #1 to 'semaphore' (non-negative integer expected, got "
    .. tostring(v) .. ")", corio.semaphore, v)
end
c("semaphore('1')", "bad argument #1 to 'semaphore' (number expected, got string)", corio.semaphore, "1")
c("semaphore(lock)", "bad argument #1 to 'semaphore' (number expected, got userdata)", corio.semaphore, lock)
for _, v in ipairs { -1, 1.5, NaN, -inf, 1e308, 2 ^ 32, 2 ^ 32 - 1 } do
  c("channel(" .. tostring(v) .. ")", "bad argument #1 to 'channel' (capacity must be a non-negative "
    .. "integer below 2^32 - 1 or math.huge, got " .. tostring(v) .. ")", corio.channel, v)
end
c("channel('1')", "bad argument #1 to 'channel' (number expected, got string)", corio.channel, "1")
c("channel(false)", "bad argument #1 to 'channel' (number expected, got boolean)", corio.channel, false)
accepted("channel(-0)", corio.channel, -0.0)
accepted("channel(2^32 - 2)", corio.channel, 2 ^ 32 - 2)
accepted("channel(math.huge)", corio.channel, inf)
-- methods with a bad self: another corio object, nothing, a number
local bad_selves = { { "nil", nil }, { "5", 5 } }
local function selves(tname, methods, others)
  for _, m in ipairs(methods) do
    local fn = E.methods[tname][m]
    for _, o in ipairs(others) do
      c(tname .. "." .. m .. "(" .. o[1] .. ")", "bad self to '" .. m .. "' (corio." .. tname
        .. " expected, got " .. type(o[2]), fn, o[2])
    end
    for _, o in ipairs(bad_selves) do
      c(tname .. "." .. m .. "(" .. o[1] .. ")", "bad self to '" .. m .. "'", fn, o[2])
    end
  end
end
-- a light userdata is "userdata" too, but its pointer is no corio object:
-- the magic was read at whatever it points to (NOLOOP is a char: the
-- sanitizer build saw a global-buffer-overflow)
local lu = { "light userdata", E.lightud }
-- a zero-size userdata (newproxy's) has no first word: the magic was read
-- past its end
local zp = { "zero-size userdata", E.proxy }
selves("Semaphore", { "acquire", "release" }, { { "lock", lock }, { "channel", ch }, lu, zp })
selves("Lock", { "acquire", "release", "locked" }, { { "semaphore", sem }, { "event", ev }, lu, zp })
selves("Event", { "wait", "set", "clear", "is_set" }, { { "lock", lock }, { "semaphore", sem }, lu, zp })
selves("Channel", { "send", "recv", "try_send", "try_recv", "close", "iter" },
  { { "semaphore", sem }, { "lock", lock }, lu, zp })
for _, t in ipairs { "Semaphore", "Lock" } do
  local with = E.methods[t].with
  c(t .. ".with(f)", "bad self to 'with' (corio.Semaphore or corio.Lock expected, got function", with, f)
  c(t .. ".with(event, f)", "bad self to 'with' (corio.Semaphore or corio.Lock expected, got userdata",
    with, ev, f)
  c(t .. ".with(5, f)", "bad self to 'with' (corio.Semaphore or corio.Lock expected, got number", with, 5, f)
end
c("sem:with(nil)", "bad argument #1 to 'with' (function expected, got nil)", sem.with, sem, nil)
c("lock:with(5)", "bad argument #1 to 'with' (function expected, got number)", lock.with, lock, 5)
c("lock:release() (not held)", "lock:release(): the lock is not held", lock.release, lock)
c("ch:send(nil)", "bad argument #1 to 'send' (nil cannot be sent on a channel", ch.send, ch, nil)
c("ch:try_send(nil)", "bad argument #1 to 'try_send' (nil cannot be sent on a channel", ch.try_send, ch, nil)
k("closed", "closed ch:send(1)", "channel:send(): the channel is closed", ch.send, E.closed_ch, 1)
k("closed", "closed ch:try_send(1)", "channel:try_send(): the channel is closed", ch.try_send, E.closed_ch, 1)
-- read-only fields
for _, o in ipairs { { "semaphore", sem, "available" }, { "channel", ch, "capacity" },
    { "lock", lock, "x" }, { "event", ev, "x" } } do
  c(o[1] .. "." .. o[3] .. " = 1", o[1] .. ": field '" .. o[3] .. "' cannot be set",
    function() o[2][o[3]] = 1 end)
end
-- tasks and scopes (a Task and a Scope exist inside a task only)
if E.task then
  for _, m in ipairs { "join", "cancel", "status" } do
    inside(c("Task." .. m .. "(lock)", "bad self to '" .. m .. "' (corio.Task expected, got userdata",
      E.task[m], lock))
    inside(c("Task." .. m .. "(nil)", "bad self to '" .. m .. "' (corio.Task expected", E.task[m], nil))
    inside(c("Task." .. m .. "(light userdata)", "bad self to '" .. m .. "' (corio.Task expected, got userdata",
      E.task[m], E.lightud))
    inside(c("Task." .. m .. "(zero-size userdata)", "bad self to '" .. m .. "' (corio.Task expected, got userdata",
      E.task[m], E.proxy))
  end
  inside(c("task.id = 1", "task: field 'id' cannot be set (only 'name')", function() E.task.id = 1 end))
  inside(c("task.name = nil", "task: field 'name' must be a string, got nil",
    function() E.task.name = nil end))
  inside(c("task.name = {}", "task: field 'name' must be a string, got table",
    function() E.task.name = {} end))
  local s = E.scope
  inside(c("Scope.spawn(lock, f)", "bad self to 'spawn' (corio.Scope expected, got userdata", s.spawn, lock, f))
  inside(c("Scope.cancel(nil)", "bad self to 'cancel' (corio.Scope expected", s.cancel, nil))
  inside(c("Scope.cancel(zero-size userdata)", "bad self to 'cancel' (corio.Scope expected, got userdata",
    s.cancel, E.proxy))
  inside(c("returned scope:spawn(f)", "scope:spawn(): the scope has returned and takes no new tasks",
    s.spawn, s, f))
  inside(c("scope.cancelled = true", "scope: field 'cancelled' cannot be set",
    function() s.cancelled = true end))
end
-- threads --------------------------------------------------------------------
c("thread_pool_size(nil)", "bad argument #1 to 'thread_pool_size' (number expected, got nil)",
  corio.thread_pool_size, nil)
c("thread_pool_size('8')", "bad argument #1 to 'thread_pool_size' (number expected, got string)",
  corio.thread_pool_size, "8")
for _, v in ipairs { 0, 1025, 1.5, NaN, inf, -1 } do
  c("thread_pool_size(" .. tostring(v) .. ")", "bad argument #1 to 'thread_pool_size' (an integer from 1 to "
    .. "1024 expected, got " .. tostring(v) .. ")", corio.thread_pool_size, v)
end
c("to_thread(nil)", "bad argument #1 to 'to_thread' (Lua function expected, got nil)", corio.to_thread, nil)
c("to_thread(print)", "bad argument #1 to 'to_thread' (a C function cannot run in a worker)",
  corio.to_thread, print)
c("to_thread(fn with upvalue)", "bad argument #1 to 'to_thread' (the function has upvalues ('sem')",
  corio.to_thread, function() return sem end)
c("to_thread(f, 1, print)", "bad argument #3 to 'to_thread' (cannot send the arguments to a worker",
  corio.to_thread, function() end, 1, print)
c("to_thread(f, {lock})", "bad argument #2 to 'to_thread' (cannot send the arguments to a worker",
  corio.to_thread, function() end, { lock })
-- errors ----------------------------------------------------------------------
c("new_error(nil, 'm')", "bad argument #1 to 'new_error' (string expected, got nil)", corio.new_error, nil, "m")
c("new_error({}, 'm')", "bad argument #1 to 'new_error' (string expected, got table)", corio.new_error, {}, "m")
c("new_error('k', {})", "bad argument #2 to 'new_error' (string expected, got table)", corio.new_error, "k", {})
c("new_error('k', 'm', 'x')", "bad argument #3 to 'new_error' (table expected, got string)",
  corio.new_error, "k", "m", "x")
c("new_error('k', 'm', false)", "bad argument #3 to 'new_error' (table expected, got boolean)",
  corio.new_error, "k", "m", false)
accepted("new_error('k')", corio.new_error, "k")
c("is_error(e, false)", "bad argument #2 to 'is_error' (string expected, got boolean)",
  corio.is_error, E.an_error, false)
c("is_error(e, {})", "bad argument #2 to 'is_error' (string expected, got table)", corio.is_error, E.an_error, {})
-- corio.testing ----------------------------------------------------------------
c("autojump(nil)", "bad argument #1 to 'autojump' (function expected, got nil)", testing.autojump, nil)
c("autojump(lock)", "bad argument #1 to 'autojump' (function expected, got userdata)", testing.autojump, lock)
c("sleep_real(NaN)", "bad argument #1 to 'sleep_real' (seconds is NaN)", testing.sleep_real, NaN)
c("sleep_real(-1)", "bad argument #1 to 'sleep_real' (seconds must be >= 0, got -1)", testing.sleep_real, -1)
c("sleep_real('1')", "bad argument #1 to 'sleep_real' (number expected, got string)", testing.sleep_real, "1")
c("assert_checkpoints(5)", "bad argument #1 to 'assert_checkpoints' (function expected, got number)",
  testing.assert_checkpoints, 5)
c("assert_checkpoints(no checkpoint)", "assert_checkpoints: the function returned without passing through "
  .. "a checkpoint", testing.assert_checkpoints, function() end)
-- corio.busted -------------------------------------------------------------------
for _, v in ipairs { 0, -1, NaN, -inf } do
  c("busted.timeout(" .. tostring(v) .. ")", "bad argument #1 to 'timeout' (positive number or false "
    .. "expected, got " .. tostring(v) .. ")", cb.timeout, v, f)
end
c("busted.timeout('1')", "bad argument #1 to 'timeout' (positive number or false expected, got string)",
  cb.timeout, "1", f)
c("busted.timeout(1, 5)", "bad argument #2 to 'timeout' (function expected, got number)", cb.timeout, 1, 5)
c("busted.run(5)", "bad argument #1 to 'run' (table expected, got number)", cb.run, 5)
c("busted.run('spec')", "bad argument #1 to 'run' (table expected, got string)", cb.run, "spec")
-- corio.fs ------------------------------------------------------------------------
local p, d = E.path, E.dir
c("fs.open(nil)", "bad argument #1 to 'open' (string expected, got nil)", fs.open, nil)
c("fs.open(5)", "bad argument #1 to 'open' (string expected, got number)", fs.open, 5)
c("fs.open(path with NUL)", "bad argument #1 to 'open' (path contains a NUL byte)", fs.open, p .. "\0x")
c("fs.open(p, 'zz')", "bad argument #2 to 'open' (invalid mode 'zz')", fs.open, p, "zz")
c("fs.open(p, '')", "bad argument #2 to 'open' (invalid mode '')", fs.open, p, "")
c("fs.open(p, 5)", "bad argument #2 to 'open' (string expected, got number)", fs.open, p, 5)
c("fs.open(p, 'a\\0b')", "bad argument #2 to 'open' (mode contains a NUL byte)", fs.open, p, "a\0b")
c("fs.open(p, 'r\\0')", "bad argument #2 to 'open' (mode contains a NUL byte)", fs.open, p, "r\0")
c("fs.open(p, 'r', 5)", "bad argument #3 to 'open' (table expected, got number)", fs.open, p, "r", 5)
c("fs.open(p, 'r', {bufsize = 1})", "bad argument #3 to 'open' (unknown option 'bufsize')", fs.open, p, "r",
  { bufsize = 1 })
for _, v in ipairs { 0, -1, NaN, inf, 2 ^ 31, "1" } do
  c("fs.open buffer_size " .. tostring(v), "bad argument #3 to 'open' (buffer_size must be a number in "
    .. "[1, 2^30], got " .. (type(v) == "number" and tostring(v) or type(v)) .. ")", fs.open, p, "r",
    { buffer_size = v })
end
c("with_open(nil, 'r', f)", "bad argument #1 to 'with_open' (string expected, got nil)", fs.with_open, nil, "r", f)
c("with_open(p, 'zz', f)", "bad argument #2 to 'with_open' (invalid mode 'zz')", fs.with_open, p, "zz", f)
c("with_open(p, 'w\\0', f)", "bad argument #2 to 'with_open' (mode contains a NUL byte)", fs.with_open, p,
  "w\0", f)
c("with_open(p, 'r', nil)", "bad argument #3 to 'with_open' (function expected, got nil)", fs.with_open, p, "r", nil)
c("read_file(nil)", "bad argument #1 to 'read_file' (string expected, got nil)", fs.read_file, nil)
c("read_file(NUL)", "bad argument #1 to 'read_file' (path contains a NUL byte)", fs.read_file, "a\0b")
c("write_file(nil, 'x')", "bad argument #1 to 'write_file' (string expected, got nil)", fs.write_file, nil, "x")
c("write_file(p, {})", "bad argument #2 to 'write_file' (string expected, got table)", fs.write_file, d .. "/w", {})
c("write_file(p, nil)", "bad argument #2 to 'write_file' (string expected, got nil)", fs.write_file, d .. "/w", nil)
c("lines(nil)", "bad argument #1 to 'lines' (string expected, got nil)", fs.lines, nil)
c("lines(p, 'x')", "bad argument #2 to 'lines' (invalid format)", fs.lines, p, "x")
c("lines(p, -1)", "bad argument #2 to 'lines' (invalid format)", fs.lines, p, -1)
c("stat(nil)", "bad argument #1 to 'stat' (string expected, got nil)", fs.stat, nil)
c("stat(p, 5)", "bad argument #2 to 'stat' (table expected, got number)", fs.stat, p, 5)
c("stat(p, {folow = false})", "bad argument #2 to 'stat' (unknown option 'folow')", fs.stat, p, { folow = false })
c("exists(nil)", "bad argument #1 to 'exists' (string expected, got nil)", fs.exists, nil)
c("exists(NUL)", "bad argument #1 to 'exists' (path contains a NUL byte)", fs.exists, "a\0b")
c("mkdir(nil)", "bad argument #1 to 'mkdir' (string expected, got nil)", fs.mkdir, nil)
c("mkdir(d, 5)", "bad argument #2 to 'mkdir' (table expected, got number)", fs.mkdir, d .. "/m", 5)
for _, v in ipairs { -1, 1.5, NaN, 4096, "755" } do
  c("mkdir mode " .. tostring(v), "bad argument #2 to 'mkdir' (opts.mode: an integer from 0 to 0x0fff",
    fs.mkdir, d .. "/m", { mode = v })
end
c("mkdir(d, {parent = true})", "bad argument #2 to 'mkdir' (unknown option 'parent')", fs.mkdir, d .. "/m",
  { parent = true })
c("remove(nil)", "bad argument #1 to 'remove' (string expected, got nil)", fs.remove, nil)
c("remove(NUL)", "bad argument #1 to 'remove' (path contains a NUL byte)", fs.remove, p .. "\0")
c("rename(nil, p)", "bad argument #1 to 'rename' (string expected, got nil)", fs.rename, nil, p)
c("rename(p, nil)", "bad argument #2 to 'rename' (string expected, got nil)", fs.rename, p, nil)
c("rename(p, NUL)", "bad argument #2 to 'rename' (path contains a NUL byte)", fs.rename, p, p .. "\0")
c("copy(nil, p)", "bad argument #1 to 'copy' (string expected, got nil)", fs.copy, nil, p)
c("copy(p, NUL)", "bad argument #2 to 'copy' (path contains a NUL byte)", fs.copy, p, "a\0b")
c("scandir(nil)", "bad argument #1 to 'scandir' (string expected, got nil)", fs.scandir, nil)
c("scandir(NUL)", "bad argument #1 to 'scandir' (path contains a NUL byte)", fs.scandir, d .. "\0")
accepted("fs.type(5)", fs.type, 5)
-- fs.File methods
local file, closed = E.file, E.closed_file
for _, m in ipairs { "read", "write", "seek", "flush", "close", "lines", "chunks" } do
  c("File." .. m .. "(nil)", "bad argument #1 to '" .. m .. "' (corio.File expected, got nil)", file[m], nil)
  c("File." .. m .. "(lock)", "bad argument #1 to '" .. m .. "' (corio.File expected, got userdata)", file[m], lock)
end
-- lines and chunks check at the first step
for _, m in ipairs { "read", "write", "seek", "flush", "close" } do
  c("File." .. m .. "({_ud = zero-size userdata})", "bad argument #1 to '" .. m
    .. "' (corio.File expected, got userdata)", file[m], { _ud = E.proxy })
end
for _, v in ipairs { "x", -1, NaN, -inf, true } do
  c("f:read(" .. tostring(v) .. ")", "bad argument #1 to 'read' (invalid format)", file.read, file, v)
end
c("f:read('l', 'x')", "bad argument #2 to 'read' (invalid format)", file.read, file, "l", "x")
c("f:lines('x')", "bad argument #1 to 'lines' (invalid format)", file.lines, file, "x")
c("f:lines('n', -1)", "bad argument #2 to 'lines' (invalid format)", file.lines, file, "n", -1)
c("File.lines(5, 'n')", "bad argument #1 to 'lines' (corio.File expected, got number)", file.lines, 5, "n")
c("File.lines(lock, 'a', 'l')", "bad argument #1 to 'lines' (corio.File expected, got userdata)", file.lines,
  lock, "a", "l")
for _, v in ipairs { 0, -1, NaN, "x" } do
  c("f:chunks(" .. tostring(v) .. ")", "bad argument #1 to 'chunks' (positive number expected, got "
    .. tostring(v) .. ")", file.chunks, file, v)
end
c("f:seek(5)", "bad argument #1 to 'seek' (string expected, got number)", file.seek, file, 5)
c("f:seek('x')", "bad argument #1 to 'seek' (invalid option 'x')", file.seek, file, "x")
c("f:seek('set', '1')", "bad argument #2 to 'seek' (number expected, got string)", file.seek, file, "set", "1")
for _, v in ipairs { NaN, inf, -inf, 2 ^ 63, -1e300 } do
  c("f:seek('set', " .. tostring(v) .. ")", "bad argument #2 to 'seek' (offset out of range, got "
    .. tostring(v) .. ")", file.seek, file, "set", v)
end
c("f:seek('cur', NaN)", "bad argument #2 to 'seek' (offset out of range, got nan)", file.seek, file, "cur", NaN)
c("f:write({})", "bad argument #1 to 'write' (string expected, got table)", file.write, file, {})
c("f:write(true)", "bad argument #1 to 'write' (string expected, got boolean)", file.write, file, true)
for _, m in ipairs { "read", "write", "seek", "flush", "close" } do
  k("closed", "closed f:" .. m .. "()", m .. " " .. p .. ": the file is closed", closed[m], closed)
end
-- corio.http: clients ------------------------------------------------------------
local client, U = E.client, "http://example.invalid/x"
k("invalid", "client(5)", "bad argument #1 to 'client' (table expected, got number)", http.client, 5)
k("invalid", "client{bogus}", "bad argument #1 to 'client' (unknown option 'bogus')", http.client, { bogus = 1 })
local client_opts = {
  { "base_url", "ftp://x", "base_url: an http or https URL expected, got ftp://x" },
  { "base_url", 5, "base_url: an http or https URL expected, got 5" },
  { "base_url", "http:///x", "base_url: URL without a host" },
  { "base_url", "http://a b/", "base_url: URL contains whitespace or a NUL byte" },
  { "base_url", "http://a/\0", "base_url: URL contains whitespace or a NUL byte" },
  { "ca_bundle", 5, "ca_bundle: path string expected" },
  { "ca_bundle", "/etc/ssl/certs\0x", "ca_bundle: path contains a NUL byte" },
  { "verify", "/etc/ssl/certs\0x", "verify: path contains a NUL byte" },
  { "timeout", -1, "timeout: non-negative number expected, got -1" },
  { "timeout", NaN, "timeout: non-negative number expected, got nan" },
  { "timeout", "1", "timeout: number or table expected, got string" },
  { "timeout", { connect = -1 }, "timeout.connect: non-negative number expected, got -1" },
  { "timeout", { conect = 1 }, "timeout: unknown phase 'conect'" },
  { "limits", 5, "limits: table expected" },
  { "limits", { max_connections = 0 }, "limits.max_connections: positive integer expected, got 0" },
  { "limits", { max_connections = 1.5 }, "limits.max_connections: positive integer expected, got 1.5" },
  { "limits", { max_keepalive = -1 }, "limits.max_keepalive: non-negative integer expected, got -1" },
  { "limits", { keepalive_expiry = NaN }, "limits.keepalive_expiry: non-negative number expected, got nan" },
  { "limits", { max_conn = 1 }, "limits: unknown option 'max_conn'" },
  { "max_redirects", -1, "max_redirects: non-negative integer expected, got -1" },
  { "max_redirects", 0.5, "max_redirects: non-negative integer expected, got 0.5" },
  { "transport", 5, "transport: function expected, got number" },
  { "decompress", "no", "decompress: boolean expected, got string" },
  { "headers", 5, "headers: table expected, got number" },
  { "headers", { ["a b"] = "v" }, "headers: invalid header name \"a b\"" },
  { "headers", { X = "v\r\nY: z" }, "headers: header X: value contains CR, LF or NUL" },
  { "headers", { X = {} }, "headers: header X: an empty array" },
  { "headers", { ["Content-Length"] = "1" }, "headers: Content-Length and Transfer-Encoding belong to each" },
}
for _, o in ipairs(client_opts) do
  k("invalid", "client{" .. o[1] .. " = " .. tostring(o[2]) .. "}", "bad argument #1 to 'client' (" .. o[3],
    http.client, { [o[1]] = o[2] })
end
-- requests: nothing is sent (E.sent counts what the transport saw)
local req = {
  { "get", { nil }, "bad argument #1 to 'get' (url: string expected, got nil)" },
  { "get", { 5 }, "bad argument #1 to 'get' (url: string expected, got number)" },
  { "get", { "" }, "bad argument #1 to 'get' (url: URL without scheme: \"\")" },
  { "get", { "ftp://x/" }, "bad argument #1 to 'get' (url: unsupported scheme 'ftp')" },
  { "get", { "http:///x" }, "bad argument #1 to 'get' (url: URL without a host)" },
  { "get", { "http://a/ b" }, "bad argument #1 to 'get' (url: URL contains whitespace or a NUL byte" },
  { "get", { "http://a/\0" }, "GET http://a/\\0: bad argument #1 to 'get' (url: URL contains whitespace or a NUL byte" },
  { "get", { U, 5 }, "bad argument #2 to 'get' (opts: table expected, got number)" },
  { "get", { U, { parms = {} } }, "bad argument #2 to 'get' (unknown option 'parms')" },
  { "get", { U, { params = 5 } }, "bad argument #2 to 'get' (params: table expected" },
  { "get", { U, { params = { k = { 1, print } } } }, "bad argument #2 to 'get' (params: value of 'k'" },
  { "get", { U, { params = { [true] = 1 } } }, "bad argument #2 to 'get' (params: key string or number" },
  { "get", { U, { params = { k = print } } }, "bad argument #2 to 'get' (params: value of 'k'" },
  { "get", { U, { headers = { X = true } } }, "bad argument #2 to 'get' (headers: header X: string, number" },
  { "get", { U, { headers = { X = "a\0b" } } }, "bad argument #2 to 'get' (headers: header X: value contains" },
  { "get", { U, { headers = { ["X\0"] = "v" } } }, "bad argument #2 to 'get' (headers: invalid header name" },
  { "get", { U, { timeout = -1 } }, "bad argument #2 to 'get' (timeout: non-negative number expected, got -1)" },
  { "get", { U, { timeout = { read = NaN } } }, "bad argument #2 to 'get' (timeout.read: non-negative number" },
  { "get", { U, { timeout = { reed = 1 } } }, "bad argument #2 to 'get' (timeout: unknown phase 'reed')" },
  { "get", { U, { max_redirects = -1 } }, "bad argument #2 to 'get' (max_redirects: non-negative integer" },
  { "get", { U, { max_redirects = 1.5 } }, "bad argument #2 to 'get' (max_redirects: non-negative integer" },
  { "post", { U, { json = NaN } }, "bad argument #2 to 'post' (json: " },
  { "post", { U, { json = { f = print } } }, "bad argument #2 to 'post' (json: " },
  { "post", { U, { body = 5 } }, "bad argument #2 to 'post' (body: string, function (an iterator of chunks) or open corio.fs file expected, got number)" },
  { "post", { U, { body = "x", json = 1 } }, "bad argument #2 to 'post' (give only one of json, body and form)" },
  { "post", { U, { form = 5 } }, "bad argument #2 to 'post' (form: table expected" },
  { "post", { U, { body = "x", headers = { ["Content-Length"] = "5" } } },
    "bad argument #2 to 'post' (headers: Content-Length \"5\" does not match the body (1 bytes)" },
  { "head", { U, { body = "x" } }, "bad argument #2 to 'head' (a HEAD request cannot send a body" },
  { "request", { nil, U }, "bad argument #1 to 'request' (method: an HTTP method name expected, got nil)" },
  { "request", { "GET /x", U }, "bad argument #1 to 'request' (method: an HTTP method name expected" },
  { "request", { "GE\0T", U }, "bad argument #1 to 'request' (method: an HTTP method name expected, got GE\\0T)" },
  { "request", { "GET", 5 }, "bad argument #2 to 'request' (url: string expected, got number)" },
  { "request", { "GET", U, 5 }, "bad argument #3 to 'request' (opts: table expected, got number)" },
  { "stream", { "GET", U, nil, 5 }, "bad argument #4 to 'stream' (fn: function expected, got number)" },
  { "stream", { "GET", nil }, "bad argument #2 to 'stream' (url: string expected, got nil)" },
}
for _, r in ipairs(req) do
  local a = r[2]
  k("invalid", "client:" .. r[1] .. " " .. r[3], r[3], client[r[1]], client, a[1], a[2], a[3], a[4])
end
for _, m in ipairs { "get", "post", "put", "patch", "delete", "head", "options", "request", "stream",
    "stats", "close" } do
  k("invalid", "Client." .. m .. "(nil)", "bad self to '" .. m .. "' (corio.http client expected",
    client[m], nil, U)
  k("invalid", "Client." .. m .. "(lock)", "bad self to '" .. m .. "' (corio.http client expected",
    client[m], lock, U)
end
k("invalid", "http.get(nil)", "bad argument #1 to 'get' (url: string expected, got nil)", http.get, nil)
k("invalid", "http.request(5, U)", "bad argument #1 to 'request' (method: an HTTP method name expected, got 5)",
  http.request, 5, U)
k("invalid", "http.stream('GET', {})", "bad argument #2 to 'stream' (url: string expected, got table)",
  http.stream, "GET", {})
k("invalid", "http.urlencode(nil)", "bad argument #1 to 'urlencode' (string, number or boolean expected, got nil)",
  http.urlencode, nil)
k("invalid", "http.urlencode({})", "bad argument #1 to 'urlencode' (string, number or boolean expected, got table)",
  http.urlencode, {})
k("closed", "closed client:get(U)", "the client was closed", client.get, E.closed_client, U)
-- responses
local r = E.response
if r then
  k("invalid", "r:get_all(nil)", "bad argument #1 to 'get_all' (name: string expected, got nil)", r.get_all, r, nil)
  k("invalid", "r:get_all(5)", "bad argument #1 to 'get_all' (name: string expected, got number)", r.get_all, r, 5)
  for _, m in ipairs { "text", "json", "read", "close", "iter_bytes", "iter_lines", "raise_for_status" } do
    k("invalid", "Response." .. m .. "(nil)", "bad self to '" .. m .. "' (corio.http response expected",
      r[m], nil)
    k("invalid", "Response." .. m .. "(client)", "bad self to '" .. m .. "' (corio.http response expected",
      r[m], client)
  end
end
if E.closed_stream then
  local s = E.closed_stream
  for _, m in ipairs { "read", "text", "json" } do
    inside(k("closed", "closed stream:" .. m .. "()", "the stream is closed", s[m], s))
  end
  inside(k("closed", "closed stream:iter_bytes() loop", "the stream is closed",
    function() for _ in s:iter_bytes() do end end))
  inside(k("closed", "closed stream:iter_lines() loop", "the stream is closed",
    function() for _ in s:iter_lines() do end end))
end
return cases
]==]

-- Fixtures for the cases. In a task: a Task, a returned Scope, a closed
-- stream too. outside: the same minus those (run by a stock luajit).
local FIXTURES = [==[
local corio, fs, http, testing, cb, dir, in_task = ...
local E = { corio = corio, fs = fs, http = http, testing = testing, cb = cb, dir = dir }
E.path = dir .. "/file.txt"
local h = assert(io.open(E.path, "w"))
h:write("line 1\nline 2\n")
h:close()
E.sem, E.lock, E.ev, E.ch = corio.semaphore(1), corio.lock(), corio.event(), corio.channel(1)
E.lightud = require("corio.core").NOLOOP
E.proxy = newproxy(false)
assert(type(E.lightud) == "userdata")
E.closed_ch = corio.channel(1)
E.closed_ch:close()
E.an_error = corio.new_error("x", "y")
E.methods = {}
for name, o in pairs { Semaphore = E.sem, Lock = E.lock, Event = E.ev, Channel = E.ch } do
  E.methods[name] = setmetatable({}, { __index = function(_, m) return o[m] end })
end
E.file = fs.open(E.path, "r+")
E.closed_file = fs.open(E.path, "r")
E.closed_file:close()
E.sent = 0
E.client = http.client { transport = function()
  E.sent = E.sent + 1
  return { status = 200, body = "a\nb\n" }
end }
E.closed_client = http.client { transport = function() return { status = 200 } end }
E.closed_client:close()
E.response = E.client:get("http://example.invalid/ok")
E.sent = 0
if in_task then
  E.task = corio.spawn(function() end)
  E.task:join()
  corio.scope(function(s) E.scope = s end)
  E.closed_stream = E.client:stream("GET", "http://example.invalid/ok")
  E.closed_stream:close()
  E.sent = 0
end
return E
]==]

local function describe_err(err)
  if corio.is_error(err) then return ("corio error of kind %s: %s"):format(err.kind, err.message) end
  return type(err) .. ": " .. tostring(err)
end

-- Check one outcome against its case; returns nil or a complaint.
local function judge(case, ok, err, in_task)
  local label = case.label
  if case.ok then
    if not ok then return label .. ": raised " .. describe_err(err) .. " for an accepted value" end
    return nil
  end
  if ok then return label .. ": returned instead of raising" end
  local match = in_task and case.inside_match or case.match
  if case.kind then
    if not corio.is_error(err, case.kind) then
      return label .. ": expected a corio error of kind " .. case.kind .. ", got " .. describe_err(err)
    end
    if not err.message:find(match, 1, true) then
      return label .. ": message " .. ("%q"):format(err.message) .. " lacks " .. ("%q"):format(match)
    end
  else
    if type(err) ~= "string" then
      return label .. ": expected a plain string error, got " .. describe_err(err)
    end
    if not err:find(match, 1, true) then
      return label .. ": message " .. ("%q"):format(err) .. " lacks " .. ("%q"):format(match)
    end
    if err:find("attempt to ", 1, true) then return label .. ": an internal error: " .. err end
  end
  return nil
end

local function healthy()
  local t = corio.spawn(function() return 7 end)
  corio.sleep(0)
  assert.equal(7, t:join())
end

local dir
setup(function()
  dir = os.tmpname()
  os.remove(dir)
  fs.mkdir(dir)
end)
teardown(function()
  for name in fs.scandir(dir) do fs.remove(dir .. "/" .. name) end
  fs.remove(dir)
end)

local function fd_count()
  local n = 0
  for _ in fs.scandir("/proc/self/fd") do n = n + 1 end
  return n
end

describe("bad input to every public function, inside a task", function()
  it("raises an error naming the function and the argument, within a deadline, and the loop goes on",
    function()
      local E = assert(loadstring(FIXTURES, "=fixtures"))(corio, fs, http, testing, cb, dir, true)
      local cases = assert(loadstring(CASES, "=cases"))(E)
      assert.is_true(#cases > 300, "the sweep lost its cases: " .. #cases)
      local tasks_before = #corio.tasks()
      local complaints = {}
      local fds
      for pass = 1, 2 do
        for _, case in ipairs(cases) do
          local a = case.args
          local done, ok, err = corio.move_on_after(5, pcall, case.fn, unpack(a, 1, a.n))
          local bad
          if not done then bad = case.label .. ": hung (no outcome after 5 s)"
          else bad = judge(case, ok, err, true) end
          if bad and pass == 1 then complaints[#complaints + 1] = bad end
          healthy()
        end
        -- a second pass opens no more descriptors than the first left
        if pass == 1 then fds = fd_count() else assert.equal(fds, fd_count(), "descriptors leaked") end
      end
      assert.are.same({}, complaints)
      assert.equal(0, E.sent, "a request with bad input reached the transport")
      assert.equal(tasks_before, #corio.tasks(), "tasks left running")
      -- the fixtures still work after all that
      assert.equal("line 1", E.file:seek("set", 0) == 0 and E.file:read("l"))
      E.file:close()
      E.sem:acquire()
      E.sem:release()
      assert.equal(1, E.sem.available)
      assert.is_true(E.ch:try_send(1))
      assert.equal(1, E.ch:recv())
      assert.equal(200, E.client:get("http://example.invalid/after").status)
      E.client:close()
    end)
end)

describe("bad input to every public function, outside a loop (stock luajit, rule 11)", function()
  it("raises the same errors, as plain strings for misuse, and corio.run works afterwards", function()
    -- CTest sets these (tests/CMakeLists.txt); a bare `corio test` may not
    if not os.getenv("CORIO_LUA_CPATH") then return end
    local cases_file, fixtures_file = dir .. "/cases.lua", dir .. "/fixtures.lua"
    fs.write_file(cases_file, CASES)
    fs.write_file(fixtures_file, FIXTURES)
    local script = dir .. "/outside.lua"
    fs.write_file(script, ([[
package.path = os.getenv("CORIO_LUA_PATH") .. ";" .. package.path
package.cpath = os.getenv("CORIO_LUA_CPATH") .. ";" .. package.cpath
local corio = require "corio"
local fs, http = require "corio.fs", require "corio.http"
local testing, cb = require "corio.testing", require "corio.busted"
local E = assert(loadfile(%q))(corio, fs, http, testing, cb, %q, false)
local cases = assert(loadfile(%q))(E)
for i, case in ipairs(cases) do
  if not case.inside then
    local a = case.args
    local ok, err = pcall(case.fn, unpack(a, 1, a.n))
    local kind, msg = "", tostring(err)
    if corio.is_error(err) then kind, msg = err.kind, tostring(err.message)
    elseif type(err) ~= "string" then kind = "(" .. type(err) .. ")" end
    io.write(i, "\t", tostring(ok), "\t", kind, "\t", (msg:gsub("[\n\t\\%%z]", function(c)
      return c == "\\" and "\\\\" or c == "\n" and "\\n" or c == "\t" and "\\t" or "\\0" end)), "\n")
  end
end
io.write("SENT\t", E.sent, "\n")
E.file:close()
E.client:close()
io.write("HEALTH\t", tostring(corio.run(function()
  local t = corio.spawn(function() return 7 end)
  corio.sleep(0)
  return t:join()
end)), "\n")
]]):format(fixtures_file, dir, cases_file))
    local cmd = ("timeout 120 %s %q 2>&1; echo \"EXIT $?\""):format(os.getenv("LUAJIT") or "luajit", script)
    local out = helpers.shell(cmd)
    assert.matches("\nEXIT 0\n$", "\n" .. out, 1, false)
    assert.is_nil(out:find("Sanitizer", 1, true), out)
    assert.is_nil(out:find("runtime error:", 1, true), out)
    assert.matches("\nSENT\t0\n", out)
    assert.matches("\nHEALTH\t7\n", out)
    local E = assert(loadstring(FIXTURES, "=fixtures"))(corio, fs, http, testing, cb, dir, false)
    local cases = assert(loadstring(CASES, "=cases"))(E)
    E.file:close()
    E.client:close()
    local complaints, seen = {}, 0
    for line in out:gmatch("[^\n]+") do
      local i, ok, kind, msg = line:match("^(%d+)\t(%a+)\t([^\t]*)\t(.*)$")
      if i then
        seen = seen + 1
        local case = cases[tonumber(i)]
        msg = msg:gsub("\\(.)", { n = "\n", t = "\t", ["0"] = "\0", ["\\"] = "\\" })
        local err = msg
        if kind ~= "" and kind:sub(1, 1) ~= "(" then err = corio.new_error(kind, msg) end
        if kind:sub(1, 1) == "(" then err = setmetatable({}, { __tostring = function() return kind .. msg end }) end
        local bad = judge(case, ok == "true", err, false)
        if bad then complaints[#complaints + 1] = bad end
      end
    end
    assert.is_true(seen > 250, "the outside sweep ran " .. seen .. " cases:\n" .. out)
    assert.are.same({}, complaints)
  end)
end)

describe("defects found by the sweep", function()
  it("a channel of capacity 2^31 or more shows it as it is, not as a negative int", function()
    assert.equal("corio.Channel(0/2147483648)", tostring(corio.channel(2 ^ 31)))
    local ch = corio.channel(2 ^ 32 - 2)
    assert.equal(2 ^ 32 - 2, ch.capacity)
    assert.equal("corio.Channel(0/4294967294)", tostring(ch))
    assert.is_true(ch:try_send(1))
    assert.equal("corio.Channel(1/4294967294)", tostring(ch))
  end)

  it("a finite capacity of 2^32 - 1 is refused, not taken for math.huge (an unbounded channel)", function()
    local ok, err = pcall(corio.channel, 2 ^ 32 - 1)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'channel'", err)
    assert.equal(math.huge, corio.channel(math.huge).capacity)
  end)

  it("-0 is 0: a semaphore of -0 permits and a deadline of -0 s", function()
    assert.equal("corio.Semaphore(available=0)", tostring(corio.semaphore(-0.0)))
    local ok, err = pcall(corio.timeout, -0.0, function() corio.sleep(1) end)
    assert.is_false(ok)
    assert.equal("the deadline of 0 s passed (corio.timeout)", err.message)
    assert.equal("0", tostring(err.seconds))
  end)

  it("names the function when called through pcall or an alias (it said '?' or the alias)", function()
    local tps, ne, ie = corio.thread_pool_size, corio.new_error, corio.is_error
    assert.matches("to 'thread_pool_size'", select(2, pcall(tps, nil)))
    assert.matches("to 'thread_pool_size'", select(2, pcall(function() tps(true) end)))
    assert.matches("to 'new_error'", select(2, pcall(ne, nil)))
    assert.matches("to 'new_error'", select(2, pcall(function() ne(false) end)))
    assert.matches("to 'is_error'", select(2, pcall(ie, 1, false)))
  end)

  it("seek with an offset of NaN, an infinity or past off_t raises before lseek, and the file goes on",
    function()
      local p = dir .. "/seek.txt"
      fs.write_file(p, "abc")
      local f = fs.open(p, "r")
      for _, v in ipairs { 0 / 0, math.huge, -math.huge, 2 ^ 63 } do
        local ok, err = pcall(f.seek, f, "set", v)
        assert.is_false(ok)
        assert.equal("string", type(err))
        assert.matches("bad argument #2 to 'seek' %(offset out of range", err)
      end
      -- from the current position, an offset that would overflow is EINVAL, as lseek says
      assert.equal(1, f:seek("set", 1))
      local ok, err = pcall(f.seek, f, "cur", 9.2e18)
      assert.is_false(ok)
      assert.equal("fs", err.kind)
      assert.equal("EINVAL", err.code)
      assert.equal("bc", f:read("a"))
      f:close()
    end)

  it("fs.open with a NUL byte in the mode opens nothing (\"a\\0b\" opened the file to append)", function()
    local p = dir .. "/nul_mode.txt"
    local ok, err = pcall(fs.open, p, "w\0x")
    assert.is_false(ok)
    assert.matches("mode contains a NUL byte", err)
    assert.is_false(fs.exists(p))
  end)

  it("corio.http refuses a ca_bundle with a NUL byte and a base_url with white space at client()", function()
    local ok, err = pcall(http.client, { ca_bundle = "/etc/ssl/certs/ca-certificates.crt\0x" })
    assert.is_false(ok)
    assert.equal("invalid", err.kind)
    assert.matches("ca_bundle: path contains a NUL byte", err.message)
    ok, err = pcall(http.client, { base_url = "http://a b/" })
    assert.is_false(ok)
    assert.equal("invalid", err.kind)
    assert.matches("to 'client' %(base_url:", err.message)
  end)

  it("a userdata smaller than the object, starting with its magic, is no corio object", function()
    -- A small userdata whose first word happens to be a corio magic: the
    -- type check read the magic alone, and try_recv took the 24 bytes of
    -- an event for a 64-byte channel and read (and wrote) past them. The
    -- first word is set through the FFI (a userdata converts to the
    -- address of its bytes) and put back at once.
    local ffi = require("ffi")
    local ch = corio.channel(1)
    local magic = ffi.cast("uint32_t *", ch)[0]
    local results = {}
    for _, case in ipairs { { "event", corio.event() }, { "semaphore", corio.semaphore(0) } } do
      local w = ffi.cast("uint32_t *", case[2])
      local saved = w[0]
      w[0] = magic
      local ok, err = pcall(ch.try_recv, case[2])
      w[0] = saved
      results[#results + 1] = case[1] .. ": " .. tostring(ok) .. " "
        .. (tostring(err):match("bad self to 'try_recv' %(corio.Channel expected, got userdata") or tostring(err))
    end
    assert.same({
      "event: false bad self to 'try_recv' (corio.Channel expected, got userdata",
      "semaphore: false bad self to 'try_recv' (corio.Channel expected, got userdata",
    }, results)
    ch:send("still works")
    assert.equal("still works", ch:recv())
  end)

  it("gather and map refuse an unknown option (a misspelt return_errors was ignored)", function()
    local ok, err = pcall(corio.gather, { function() error("x") end }, { return_error = true })
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'gather' %(unknown option 'return_error'%)", err)
  end)

  it("sem.with(fn) names the bad self, and takes no permit", function()
    local sem = corio.semaphore(1)
    local ok, err = pcall(sem.with, function() end)
    assert.is_false(ok)
    assert.matches("bad self to 'with'", err)
    assert.equal(1, sem.available)
  end)

  it("a NUL byte in a message is kept, and shown escaped where corio.http names a method or URL", function()
    assert.equal("a\0b", corio.new_error("k", "a\0b").message)
    local c = http.client { transport = function() return { status = 200 } end }
    local ok, err = pcall(c.get, c, "http://a/\0")
    assert.is_false(ok)
    assert.is_nil(err.message:find("\0", 1, true))
    assert.matches("^GET http://a/\\0: bad argument #1 to 'get'", err.message)
    assert.equal("http://a/\0", err.url)
    ok, err = pcall(c.request, c, "GE\0T", "http://a/")
    assert.matches("got GE\\0T%)$", err.message)
    c:close()
  end)

  it("corio.run(5) in the main chunk of the corio program names 'run', not an inner 'spawn'", function()
    local corio_exe = os.getenv("CORIO")
    if not corio_exe then return end   -- CTest sets it
    local script = dir .. "/main_run.lua"
    fs.write_file(script, "local corio = require 'corio'\n"
      .. "print(select(2, pcall(corio.run, 5)))\n"
      .. "print(corio.run(function(a) return a end, 'still works'))\n")
    local out = corio.to_thread(function(cmd)
      local h = io.popen(cmd)
      local s = h:read("*a")
      h:close()
      return s
    end, ("%q %q 2>&1"):format(corio_exe, script))
    assert.matches("^bad argument #1 to 'run' %(function expected, got number%)\nstill works\n$", out)
  end)

  it("read-only fields of sync objects and scopes say so", function()
    local ok, err = pcall(function() corio.semaphore().available = 3 end)
    assert.is_false(ok)
    assert.matches("semaphore: field 'available' cannot be set", err)
  end)
end)
