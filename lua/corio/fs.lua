-- corio.fs: files on libuv's fs requests (SPEC §3), io-like. The C half
-- (corio.core.fs, bindings/fs.c + runtime/fs.c) buffers reads and writes
-- and splits lines; this module raises the errors the C calls return (on
-- the task's own stack), runs blocking calls made outside a loop under
-- corio.run (rule 11), and builds with_open, read_file, mkdir{parents}...
--
-- Errors: kind "fs" with op, path, code ("ENOENT") and errno; kind
-- "closed" for a file used after close. Every blocking call here is a
-- checkpoint. A submitted request cannot be undone: a task cancelled while
-- it waits for one gets the result, and the cancel surfaces at its next
-- checkpoint (SPEC rule 7).
local core = require "corio.core"
local corio = require "corio"

core.register_own(debug.getinfo(1, "S").source)

local c = core.fs
local NOLOOP = core.NOLOOP
local NEED_FILL, NEED_FLUSH, NEED_BIG = c.NEED_FILL, c.NEED_FLUSH, c.NEED_BIG
local error, type, select, pcall, unpack, tostring = error, type, select, pcall, unpack, tostring
local run, shield, in_task = corio.run, corio.shield, core.in_task
local co_running = coroutine.running

local M = {}

-- A File is a table {_ud = userdata, _p = pointer}: the userdata owns the
-- C file (its __gc closes it); the FFI pointer (to the userdata's block,
-- which the table keeps alive) lets JIT-compiled traces call the per-line
-- fast paths inline (a lua_CFunction call would end the trace at every
-- line). Without the FFI, the C functions do the same work.
local File = {}
local FileMT = { __index = File, __metatable = "corio.File" }
M.File = File

local ffi_ok, ffi = pcall(require, "ffi")
local ffi_line, ffi_put, ffi_put2, ffi_string, pp, pn, ffi_cast
if ffi_ok then
  ffi_line = ffi.cast("int (*)(void *, const char **, size_t *, int)", c.ffi_line)
  ffi_put = ffi.cast("int (*)(void *, const char *, size_t)", c.ffi_put)
  ffi_put2 = ffi.cast("int (*)(void *, const char *, size_t, const char *, size_t)", c.ffi_put2)
  ffi_string, ffi_cast = ffi.string, ffi.cast
  pp, pn = ffi.new("const char *[1]"), ffi.new("size_t[1]")
end
local c_ptr = c.ptr

local function wrap(ud)
  local p = ffi_ok and ffi_cast("void *", c_ptr(ud)) or nil
  return setmetatable({ _ud = ud, _p = p }, FileMT)
end

FileMT.__tostring = function(f) return tostring(f._ud) end

local function ud_of(f, fname)
  local ud = type(f) == "table" and rawget(f, "_ud")
  if not ud then
    error(("bad argument #1 to '%s' (corio.File expected, got %s)"):format(fname, type(f)), 3)
  end
  return ud
end

-- Turns. Tasks sharing a file take turns, FIFO, as Python's file objects
-- serialise the threads that share one: a call that has to wait for a
-- request (fill, push, flush, a big write, close) holds the file's turn
-- until it is done, and a task whose call finds the turn held waits for
-- it. (Before, the second task got EBUSY: many tasks writing result lines
-- to one file, as a crawler does, failed as soon as two of them needed a
-- flush at once.) A call that needs no request (a buffered write, a read
-- from the buffer) takes no turn; if it finds another task's request in
-- flight (EBUSY from C), it waits for that task's turn to end and asks
-- again. turns[ud] = {owner = task, depth = n, {task, event}...}.
local turns = setmetatable({}, { __mode = "k" })
local current, new_event = corio.current, corio.event
local tremove = table.remove

local function release_turn(t)
  t.depth = t.depth - 1
  if t.depth > 0 then return end
  local w = tremove(t, 1)
  if w then
    t.owner, t.depth = w[1], 1
    w[2]:set()
  else
    t.owner = nil
  end
end

-- Wait for the turn held by another task; returns holding it.
local function wait_turn(t, me)
  local w = { me, new_event() }
  t[#t + 1] = w
  local ok, e = pcall(w[2].wait, w[2])
  if ok then return end
  for i = 1, #t do
    if t[i] == w then
      tremove(t, i)
      break
    end
  end
  -- cancelled after the turn was handed over: hand it on
  if t.owner == me then release_turn(t) end
  error(e, 0)
end

local function turn_of(ud)
  local t = turns[ud]
  if t == nil then
    t = { depth = 0 }
    turns[ud] = t
  end
  return t
end

local function done_turn(t, ok, ...)
  release_turn(t)
  if ok then return ... end
  error((...), 0)
end

-- fn(...) holding ud's turn (in a task; outside one nothing shares).
local function with_turn(ud, fn, ...)
  local me = current()
  if me == nil then return fn(...) end
  local t = turn_of(ud)
  local owner = t.owner
  if owner == nil then
    t.owner, t.depth = me, 1
  elseif rawequal(owner, me) then
    t.depth = t.depth + 1
  else
    wait_turn(t, me)
  end
  return done_turn(t, pcall(fn, ...))
end

-- e is the EBUSY of a call that found another task's request in flight:
-- wait until that task's turn ends, and true (ask again); false if e is
-- another error.
local function waited_turn(ud, e)
  if type(e) ~= "table" or e.code ~= "EBUSY" then return false end
  local t, me = turns[ud], current()
  if t == nil or me == nil or t.owner == nil or rawequal(t.owner, me) then
    return false
  end
  wait_turn(t, me)
  release_turn(t)
  return true
end

-- One blocking C call: its value, or raise its error.
local function call(fn, ...)
  local ok, v = fn(...)
  if ok then return v end
  if v == NOLOOP then return run(call, fn, ...) end
  error(v, 0)
end

local c_fill, c_flush, c_push = c.fill, c.flush, c.push
local function fill(f) return with_turn(f, call, c_fill, f) end

-- Blocking calls that may only make progress (wait for a write-behind,
-- write part of the buffer): `true, 1` when done, `true` to ask again.
local function until_done(fn, f)
  while true do
    local ok, v = fn(f)
    if ok then
      if v == 1 then return end
    elseif v == NOLOOP then
      return run(until_done, fn, f)
    else
      error(v, 0)
    end
  end
end
local function flush(f) return with_turn(f, until_done, c_flush, f) end
-- the write buffer is full
local function push(f) return with_turn(f, until_done, c_push, f) end

-- open --------------------------------------------------------------------

local c_open, c_check_open = c.open, c.check_open

-- A path argument of a function that passes it on: checked here, so that
-- the error names that function and its caller's line.
local function check_path(p, n, fname)
  if type(p) ~= "string" then
    error(("bad argument #%d to '%s' (string expected, got %s)")
      :format(n, fname, type(p)), 3)
  end
  -- (the kernel would stop at the NUL: see check_path_arg, bindings/fs.c)
  if p:find("\0", 1, true) then
    error(("bad argument #%d to '%s' (path contains a NUL byte)"):format(n, fname), 3)
  end
end

-- An options table holds only the names in `known`: a misspelt option
-- ({parent = true}) is an error, as in corio.http, not silently ignored.
local check_opts = corio._check_opts
local OPEN_OPTS = { buffer_size = true }
local STAT_OPTS = { follow = true }
local MKDIR_OPTS = { parents = true, mode = true }
local PARENTS_ONLY = { parents = true }

-- fs.open(path [, mode [, {buffer_size = n}]]) -> File. A checkpoint.
function M.open(path, mode, opts)
  local size
  if opts ~= nil then
    check_opts(opts, OPEN_OPTS, 3, "open")
    size = opts.buffer_size
  end
  local ok, f = c_open(path, mode, size)
  if ok then return wrap(f) end
  if f == NOLOOP then return run(M.open, path, mode, opts) end
  error(f, 0)
end

-- io.type's answer: "file", "closed file" or nil.
function M.type(f)
  if getmetatable(f) ~= "corio.File" then return nil end
  return c.state(f._ud)
end

-- (for corio.http) whether an open file's size is its length: a regular
-- file or a block device, not a FIFO or a character device (/dev/zero
-- seeks, to 0, and never ends)
function M._regular(f)
  return c.regular(f._ud)
end

-- reading -----------------------------------------------------------------

local c_read1, c_line = c.read1, c.line

local function check_fmt(fmt, i, fname)
  local t = type(fmt)
  if t == "number" then
    if fmt >= 0 then return end
  elseif t == "string" then
    if fmt:match("^%*?[alLn]") then return end
  end
  error(("bad argument #%d to '%s' (invalid format)"):format(i, fname), 3)
end

-- One format: its value (nil at EOF), filling the buffer as needed.
-- The first c_read1 is the call's checkpoint; the ones after a fill are
-- not (filled = true): a cancel that came while a fill ran (which cannot
-- be undone, rule 7) lets the read return what that fill brought, and
-- surfaces at the next checkpoint, which is the next fill if the read
-- needs more (its bytes then stay in the buffer for the next read).
local function read1(f, fmt, i)
  f = f._ud
  local filled = false
  while true do
    local v, e = c_read1(f, fmt, i, filled)
    if v == NEED_FILL then
      fill(f)
      filled = true
    elseif v == NEED_FLUSH then
      flush(f)
    elseif v == false then
      if not waited_turn(f, e) then error(e, 0) end
    else
      return v
    end
  end
end

local function read_many(f, n, ...)
  local out = {}
  for i = 1, n do
    local v = read1(f, (select(i, ...)), i)
    out[i] = v
    if v == nil then return unpack(out, 1, i) end
  end
  return unpack(out, 1, n)
end

-- f:read(fmt...) as Lua's io: "a", "l", "L", "n" (also "*a"...), counts.
-- A checkpoint.
function File.read(f, ...)
  ud_of(f, "read")
  local n = select("#", ...)
  if n == 0 then
    local s = c_line(f._ud)
    if s then return s end
    return read1(f, "l", 1)
  end
  for i = 1, n do check_fmt((select(i, ...)), i, "read") end
  if n == 1 then return read1(f, (...), 1) end
  return read_many(f, n, ...)
end

-- LuaJIT compiles a loop over an iterator closure specialised to that
-- very closure, and the trace keeps it as a constant: the file it holds
-- stayed open after the loop was left and the file dropped, until the
-- trace was flushed (the collector could not close it). LuaJIT
-- specialises to the prototype instead once the prototype made 3
-- closures: poly() makes them when the module loads, for every iterator
-- that holds a file (http.lua does so for streams).
local function poly(maker, ...)
  for _ = 1, 3 do maker(...) end
end
local function ffi_lines_iter(f, p, ikeep, k)
  return function()
    if ffi_line(p, pp, pn, ikeep) ~= 0 then return ffi_string(pp[0], pn[0]) end
    return read1(f, k, 1)
  end
end
local function c_lines_iter(f, ud, keep, k)
  return function()
    local s = c_line(ud, keep)
    if s then return s end
    return read1(f, k, 1)
  end
end
local function formats_iter(f, n, fmts)
  return function() return read_many(f, n, unpack(fmts, 1, n)) end
end
local function chunks_iter(f, size)
  return function() return read1(f, size, 1) end
end
poly(ffi_lines_iter)
poly(c_lines_iter)
poly(formats_iter)
poly(chunks_iter)

-- f:lines(fmt...): an iterator of f:read(fmt...); "l"/"L" take whole
-- lines straight from the C buffer. The file stays open at the end.
function File.lines(f, ...)
  -- self first, for every format: f.lines(x, "n") returned an iterator
  -- that failed inside corio at its first call
  local ud = ud_of(f, "lines")
  -- a closed file raises here, as io's lines does (it returned an
  -- iterator that raised at its first call)
  if c.state(ud) == "closed file" then error(c.closed(ud, "lines"), 2) end
  local n = select("#", ...)
  local fmt = ...
  if n == 0 or (n == 1 and type(fmt) == "string" and fmt:match("^%*?[lL]")) then
    local keep = n == 1 and fmt:match("^%*?L") ~= nil or nil
    local k = keep and "L" or "l"
    local p = f._p
    if p then return ffi_lines_iter(f, p, keep and 1 or 0, k) end
    return c_lines_iter(f, ud, keep, k)
  end
  -- named 'lines', the function called (it said 'read')
  for i = 1, n do check_fmt((select(i, ...)), i, "lines") end
  return formats_iter(f, n, { ... })
end

-- f:chunks([size]): an iterator of strings of size bytes (65536 by
-- default; the last may be shorter).
function File.chunks(f, size)
  local ud = ud_of(f, "chunks")
  -- a closed file raises here, as f:lines(size) does
  if c.state(ud) == "closed file" then error(c.closed(ud, "chunks"), 2) end
  if size == nil then size = 65536 end
  if type(size) ~= "number" or size < 1 or size ~= size then
    error(("bad argument #1 to 'chunks' (positive number expected, got %s)")
      :format(tostring(size)), 2)
  end
  size = math.floor(size)
  return chunks_iter(f, size)
end

-- writing -----------------------------------------------------------------

local c_write, c_seek, c_close, c_wbig = c.write, c.seek, c.close, c.wbig

-- A string at least as long as the buffer: written straight from the
-- string, after what is buffered, in the background (a "+" file waits).
local function write_big_turn(ud, s)
  while true do
    local ok, v = c_wbig(ud, s)
    if ok then
      if v == 1 then return end
      if v == 2 then return flush(ud) end
      -- waited for the write in flight: ask again
    elseif v == NOLOOP then
      return run(write_big_turn, ud, s)
    else
      error(v, 0)
    end
  end
end
local function write_big(ud, s) return with_turn(ud, write_big_turn, ud, s) end

-- f:write(...) -> f: strings and numbers into the write buffer; a full
-- buffer is written out before returning. A checkpoint.
local function write_slow(f, ...)
  local r, e = c_write(ud_of(f, "write"), ...)
  if r == true then return f end
  if r == false and waited_turn(f._ud, e) then return write_slow(f, ...) end
  if r == NEED_FLUSH then
    push(f._ud)
    return f
  end
  if r == NEED_BIG then
    -- the values before the e-th are buffered
    write_big(f._ud, (select(e, ...)))
    if e < select("#", ...) then return write_slow(f, select(e + 1, ...)) end
    return f
  end
  error(e, 0)
end

local function put(f, p, v)
  if type(v) ~= "string" then
    if type(v) ~= "number" then return false end
    v = tostring(v)
  end
  local r = ffi_put(p, v, #v)
  if r == 0 then return true end
  if r < 0 then return false end
  push(f._ud)
  return true
end

function File.write(f, ...)
  local p = type(f) == "table" and f._p
  if not p then return write_slow(f, ...) end
  local n = select("#", ...)
  -- (nothing to write: the C call still says if the file is closed)
  if n == 0 then return write_slow(f) end
  if n == 2 then
    -- the common f:write(s, "\n") without a loop in the trace
    local a, b = ...
    if type(a) == "string" and type(b) == "string" then
      local r = ffi_put2(p, a, #a, b, #b)
      if r == 0 then return f end
      if r > 0 then
        push(f._ud)
        return f
      end
      -- r < 0: nothing was written; the slow path reports why
    end
    if not put(f, p, a) then return write_slow(f, ...) end
    if not put(f, p, b) then return write_slow(f, b) end
    return f
  end
  for i = 1, n do
    local v = select(i, ...)
    if type(v) ~= "string" then
      -- numbers as io writes them ("%.14g", as tostring does)
      if type(v) ~= "number" then return write_slow(f, ...) end
      v = tostring(v)
    end
    local r = ffi_put(p, v, #v)
    if r ~= 0 then
      if r < 0 then return write_slow(f, select(i, ...)) end
      push(f._ud)
    end
  end
  return f
end

-- f:flush() -> f. A checkpoint; raises the error of a failed write.
function File.flush(f)
  flush(ud_of(f, "flush"))
  return f
end

-- f:seek([whence [, offset]]) -> position, as io ("set", "cur", "end").
-- Writes what is buffered first.
function File.seek(f, whence, offset)
  while true do
    local r, e = c_seek(ud_of(f, "seek"), whence, offset)
    if r == NEED_FLUSH then
      flush(f._ud)
    elseif r == NEED_FILL then
      fill(f._ud) -- waits for the read-ahead in flight
    elseif r == false then
      if not waited_turn(f._ud, e) then error(e, 0) end
    else
      return r
    end
  end
end

-- f:close() -> true: writes what is buffered, then closes; raises the
-- error of the write or the close. A checkpoint: a cancelled task still
-- closes the file, dropping unwritten data, then gets Cancelled (use
-- with_open, or close inside corio.shield, to write it out regardless).
local close_turn
function File.close(f)
  return with_turn(ud_of(f, "close"), close_turn, f)
end
function close_turn(f)
  local ud = f._ud
  local first
  while true do
    local ok, e = c_close(ud)
    if ok then
      -- true after waiting for a write-behind: close for real now
      if c.state(ud) == "closed file" then break end
    elseif e == NOLOOP then
      return run(File.close, f)
    elseif first or c.state(ud) == "closed file" then
      first = first or e
      break
    else
      -- the write-behind failed: close anyway, then raise its error
      first = e
    end
  end
  if first then error(first, 0) end
  return true
end

-- with_open ---------------------------------------------------------------

local function close_after(f, ok, ...)
  if c.state(f._ud) == "file" then
    if ok then
      shield(File.close, f)
    else
      -- the body's error wins; the close error goes with it
      local cok, cerr = pcall(shield, File.close, f)
      local e = ...
      if not cok and type(e) == "table" and e.close_error == nil then
        pcall(function() e.close_error = cerr end)
      end
    end
  end
  if ok then return ... end
  error((...), 0)
end

-- fs.with_open(path, mode, fn) -> fn's results: fn(f), and f is closed
-- however fn ends (error or cancel); buffered data is written out under a
-- shield, so a cancel does not lose it.
function M.with_open(path, mode, fn)
  c_check_open(path, mode, "with_open")
  if type(fn) ~= "function" then
    error(("bad argument #3 to 'with_open' (function expected, got %s)"):format(type(fn)), 2)
  end
  if not in_task() then
    if co_running() == nil then return run(M.with_open, path, mode, fn) end
    -- In the user's coroutine (rule 13, outside a loop): fn runs in it, so
    -- that its yields reach that coroutine's resumer, and each blocking
    -- call runs its own corio.run. Under one run, fn would run in that
    -- run's root task, whose bare yields are corio.yield: a generator's
    -- lines would be dropped (init.lua, run_body).
    local f = M.open(path, mode)
    return close_after(f, pcall(fn, f))
  end
  local f = M.open(path, mode)
  return close_after(f, pcall(fn, f))
end

local function read_all(f) return f:read("a") end

function M.read_file(path)
  check_path(path, 1, "read_file")
  return M.with_open(path, "rb", read_all)
end

-- Once the open has truncated the file, the data is written under a
-- shield: a task cancelled while the open ran (which cannot be undone,
-- rule 7) finishes the write, and gets Cancelled at its next checkpoint,
-- rather than leave the file empty. (A cancel before the open raises
-- there, and the file is untouched.) As trio's and anyio's
-- Path.write_text/write_bytes, which run on a thread a cancel waits for.
local function write_all(f, data) shield(f.write, f, data) end

function M.write_file(path, data)
  check_path(path, 1, "write_file")
  if type(data) ~= "string" and type(data) ~= "number" then
    error(("bad argument #2 to 'write_file' (string expected, got %s)"):format(type(data)), 2)
  end
  return M.with_open(path, "wb", function(f) write_all(f, data) end)
end

-- fs.lines(path, fmt...): like io.lines: the file closes at the end.
-- Every format's value, as io.lines returns them (fs.lines(p, "n", "n")).
-- (Its iterators hold the file: made by makers poly() ran, as above.)
local function close_at_end_iter(f, it)
  return function()
    local v = it()
    if v == nil and c.state(f._ud) == "file" then f:close() end
    return v
  end
end
local function close_at_end_many_iter(f, it)
  local function close_at_end(v, ...)
    if v == nil and c.state(f._ud) == "file" then f:close() end
    return v, ...
  end
  return function() return close_at_end(it()) end
end
poly(close_at_end_iter)
poly(close_at_end_many_iter)

function M.lines(path, ...)
  check_path(path, 1, "lines")
  local n = select("#", ...)
  for i = 1, n do
    local fmt = select(i, ...)
    local t = type(fmt)
    if not ((t == "number" and fmt >= 0) or (t == "string" and fmt:match("^%*?[alLn]"))) then
      -- before the file is opened
      error(("bad argument #%d to 'lines' (invalid format)"):format(i + 1), 2)
    end
  end
  local f = M.open(path, "r")
  local it = File.lines(f, ...)
  if n <= 1 then return close_at_end_iter(f, it) end
  return close_at_end_many_iter(f, it)
end

-- paths -------------------------------------------------------------------

local c_stat, c_mkdir, c_unlink, c_rmdir = c.stat, c.mkdir, c.unlink, c.rmdir
local c_rename, c_scandir, c_copy = c.rename, c.scandir, c.copy

-- fs.stat(path [, {follow = false}]) -> {size, mtime, mode, type, ...}
function M.stat(path, opts)
  check_opts(opts, STAT_OPTS, 2, "stat")
  return call(c_stat, path, opts ~= nil and opts.follow == false)
end

-- fs.exists(path) -> boolean: false when the path (or a parent) is
-- missing, or a symbolic link loop; other errors (EACCES) raise.
function M.exists(path)
  check_path(path, 1, "exists")
  local ok, v = c_stat(path)
  if ok then return true end
  if v == NOLOOP then return run(M.exists, path) end
  -- ELOOP: a symbolic link loop leads nowhere, as a dangling link does
  -- (Python's os.path.exists and pathlib's exists say False for it too)
  if type(v) == "table" and (v.code == "ENOENT" or v.code == "ENOTDIR"
      or v.code == "ELOOP") then
    return false
  end
  error(v, 0)
end

-- fs.mkdir(path [, {parents = true, mode = 0777}]): with parents, missing
-- parents are made and an existing directory is fine (mkdir -p).
function M.mkdir(path, opts)
  local parents, mode = false, nil
  if opts ~= nil then
    check_opts(opts, MKDIR_OPTS, 2, "mkdir")
    parents, mode = opts.parents, opts.mode
    -- a number, as luv and Python take it (tonumber("755", 8), 493): a
    -- string such as "755" would be read as decimal 755 (01363)
    if mode ~= nil and (type(mode) ~= "number" or mode < 0 or mode > 4095
        or mode % 1 ~= 0) then
      error(("bad argument #2 to 'mkdir' (opts.mode: an integer from 0 to 0x0fff (07777) expected, got %s)")
        :format(type(mode) == "number" and tostring(mode) or type(mode)), 2)
    end
  end
  local ok, e = c_mkdir(path, mode)
  if ok then return end
  if e == NOLOOP then return run(M.mkdir, path, opts) end
  if parents and type(e) == "table" then
    if e.code == "EEXIST" then
      local st_ok, st = pcall(M.stat, path)
      if st_ok and st.type == "directory" then return end
      -- the stat is a checkpoint: a task cancelled while the mkdir ran
      -- gets Cancelled there, not this EEXIST of a directory that exists
      if not st_ok and corio.is_cancelled(st) then error(st, 0) end
    elseif e.code == "ENOENT" then
      local parent = path:match("^(.*[^/])/+[^/]+/*$")
      if parent then
        -- opts.mode is for path only: missing parents get the default
        -- (0777 less the umask), as with mkdir -p -m and Python's
        -- os.makedirs since 3.7 (a mode without write or search bits
        -- on a parent would stop the next mkdir, unless run as root)
        M.mkdir(parent, PARENTS_ONLY)
        return M.mkdir(path, opts)
      end
    end
  end
  error(e, 0)
end

-- fs.remove(path): a file, or an empty directory (as os.remove).
function M.remove(path)
  local ok, e = c_unlink(path)
  if ok then return end
  if e == NOLOOP then return run(M.remove, path) end
  if type(e) == "table" and (e.code == "EISDIR" or e.code == "EPERM") then
    local ok2, e2 = c_rmdir(path)
    if ok2 then return end
    if e.code == "EISDIR" or (type(e2) == "table" and e2.code ~= "ENOTDIR") then
      error(e2, 0)
    end
  end
  error(e, 0)
end

function M.rename(src, dst)
  check_path(src, 1, "rename")
  check_path(dst, 2, "rename")
  call(c_rename, src, dst)
end

-- fs.copy(src, dst): uv_fs_copyfile (copy_file_range/sendfile).
function M.copy(src, dst)
  check_path(src, 1, "copy")
  check_path(dst, 2, "copy")
  call(c_copy, src, dst)
end

-- fs.scandir(path) -> iterator of name, type ("file", "directory",
-- "link", ...). The listing is read at once.
function M.scandir(path)
  check_path(path, 1, "scandir")
  local list = call(c_scandir, path)
  local i = -1
  return function()
    i = i + 2
    local name = list[i]
    if name == nil then return nil end
    return name, list[i + 1]
  end
end

return M
