-- hunt_fs_spec.lua: regressions found by a bug hunt in corio.fs and
-- corio.to_thread, each checked against what Lua's io (LuaJIT), Python or
-- the docs say: the position of an "a" file, modes with "b" before "+",
-- a File reached from a finaliser after its own, a finaliser that raises
-- while a task is handed its fs or to_thread result, the names and lines
-- of argument errors of the wrappers, 64-bit integers through to_thread.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local fs = require("corio.fs")

local dir

local function path(name) return dir .. "/" .. name end

local io_write, io_read = helpers.io_write, helpers.io_read

local remove_dir
setup(function() dir, remove_dir = helpers.temp_dir("corio-hunt-fs") end)

teardown(function() if remove_dir then remove_dir() end end)

-- The line of the caller, for "where" checks.
local function here() return debug.getinfo(2, "l").currentline end

describe("hunt: fs modes and positions", function()
  it("an 'a' file starts at the end: seek reports the size, as io and Python do", function()
    local p = path("append.txt")
    io_write(p, "0123456789")
    local g = assert(io.open(p, "ab"))
    local want = g:seek()
    g:close()
    assert.equal(10, want)
    local f = fs.open(p, "a")
    assert.equal(want, f:seek())
    assert.equal(7, f:seek("cur", -3))   -- was EINVAL: the position was 0
    f:write("xy")                         -- O_APPEND: still at the end
    assert.equal(12, f:seek())
    f:close()
    assert.equal("0123456789xy", io_read(p))
    -- "a+" keeps reading from the start (as io)
    f = fs.open(p, "a+")
    assert.equal(0, f:seek())
    assert.equal("0123", f:read(4))
    f:close()
  end)

  it("accepts 'b' before '+' as LuaJIT's io.open does ('rb+', 'wb+', 'ab+')", function()
    local p = path("bplus.txt")
    io_write(p, "abc\n")
    local f = fs.open(p, "rb+")
    assert.equal("abc", f:read("l"))
    f:write("def\n")
    f:close()
    assert.equal("abc\ndef\n", io_read(p))
    f = fs.open(p, "wb+")
    f:write("w")
    f:seek("set", 0)
    assert.equal("w", f:read("a"))
    f:close()
    f = fs.open(p, "ab+")
    f:write("a")
    f:close()
    assert.equal("wa", io_read(p))
    for _, m in ipairs { "rb++", "r+b+", "rbx", "b" } do
      assert.matches("bad argument #2 to 'open' %(invalid mode", tostring(catch(fs.open, p, m)))
    end
  end)
end)

describe("hunt: f:write() with no values", function()
  it("raises 'closed' on a closed file, as io does (it returned the file)", function()
    local f = fs.open(path("w0.txt"), "w")
    assert.equal(f, f:write())
    f:close()
    local e = catch(f.write, f)
    assert.equal("closed", e.kind)
  end)
end)

describe("hunt: rename errors", function()
  it("name both paths: the destination's directory may be the one missing", function()
    local p = path("rn.txt")
    io_write(p, "x")
    local e = catch(fs.rename, p, path("nodir/x"))
    assert.equal("fs", e.kind)
    assert.equal("ENOENT", e.code)
    assert.equal(p, e.path)
    assert.equal(path("nodir/x"), e.dst)
    assert.matches("rename " .. p:gsub("%p", "%%%0") .. " %-> " ..
      path("nodir/x"):gsub("%p", "%%%0") .. ": ENOENT", e.message)
  end)
end)

describe("hunt: mkdir's mode", function()
  it("takes a number, and refuses a string (\"755\" was decimal 755: 01363)", function()
    fs.mkdir(path("m700"), { mode = 448 })   -- 0700
    assert.equal(448, fs.stat(path("m700")).mode)
    for _, m in ipairs { "755", {}, -1, 4096, 1.5 } do
      local e = catch(fs.mkdir, path("mbad"), { mode = m })
      assert.matches("bad argument #2 to 'mkdir' %(opts%.mode", tostring(e))
    end
    assert.is_false(fs.exists(path("mbad")))
  end)
end)

describe("hunt: CRLF lines", function()
  it("read('l') and lines() keep the '\\r' of a CRLF line, as io does (docs/api.md)", function()
    local p = path("crlf.txt")
    io_write(p, "a\r\nb\r\n\r\nc\r")
    local want = {}
    for l in io.lines(p) do want[#want + 1] = l end
    assert.same({ "a\r", "b\r", "\r", "c\r" }, want)
    local got = {}
    for l in fs.lines(p) do got[#got + 1] = l end
    assert.same(want, got)
    local f = fs.open(p)
    assert.equal("a\r", f:read("l"))
    assert.equal("b\r\n", f:read("L"))
    f:close()
  end)
end)

describe("hunt: fs.lines with formats", function()
  it("returns every format's value, as io.lines does", function()
    local p = path("nums.txt")
    io_write(p, "1 2\n3 4\n")
    local want, got = {}, {}
    for a, b in io.lines(p, "n", "n") do want[#want + 1] = { a, b } end
    for a, b in fs.lines(p, "n", "n") do got[#got + 1] = { a, b } end
    assert.same({ { 1, 2 }, { 3, 4 } }, want)
    assert.same(want, got)
    want, got = {}, {}
    for a, b in io.lines(p, 1, "l") do want[#want + 1] = { a, b } end
    for a, b in fs.lines(p, 1, "l") do got[#got + 1] = { a, b } end
    assert.same(want, got)
  end)

  it("refuses a bad format under its own name, before opening the file", function()
    local l
    local ok, err = pcall(function() l = here() fs.lines(path("nums.txt"), "l", "z") end)
    assert.is_false(ok)
    assert.matches("hunt_fs_spec%.lua:" .. l .. ": bad argument #3 to 'lines' %(invalid format%)",
      tostring(err))
    -- (a missing file is not opened, so the format error comes first)
    assert.matches("bad argument #2 to 'lines'", tostring(catch(fs.lines, path("nope"), -1)))
  end)
end)

describe("hunt: a File reached from a finaliser", function()
  it("raises 'closed' after its own __gc ran, instead of touching freed memory", function()
    -- Objects collected in one cycle are finalised in turn, and one's
    -- finaliser can reach another whose __gc already ran (LuaJIT keeps
    -- them reachable for that cycle). Pairs in both orders of creation.
    local seen, errors = {}, {}
    local function watch(f)
      local proxy = newproxy(true)
      getmetatable(proxy).__gc = function()
        seen[#seen + 1] = tostring(fs.type(f)) .. " " .. tostring(f)
        local ok, e = pcall(f.write, f, "x")    -- the FFI fast path
        if not ok then errors[#errors + 1] = e end
        ok, e = pcall(f.write, f, "x", "y")     -- two strings at once
        if not ok then errors[#errors + 1] = e end
      end
      return proxy
    end
    for i = 1, 40 do
      local p1 = watch(nil)
      local f1 = fs.open(path("fin" .. i .. "a"), "w")
      getmetatable(p1).__gc = getmetatable(watch(f1)).__gc
      local f2 = fs.open(path("fin" .. i .. "b"), "w")
      local p2 = watch(f2)
    end
    collectgarbage()
    collectgarbage()
    local dead = 0
    for _, s in ipairs(seen) do
      if s:find("^closed file corio%.File%(") then dead = dead + 1 end
    end
    assert.is_true(#seen >= 80, "every finaliser ran")
    assert.is_true(dead > 0, "some finaliser ran after its file's")
    for _, e in ipairs(errors) do
      assert.equal("closed", type(e) == "table" and e.kind or tostring(e))
    end
  end)
end)

describe("hunt: a finaliser that raises while a task is handed its result", function()
  -- The values a suspended task resumes with (an fs result or error, a
  -- to_thread result) were made on its own suspended thread; an
  -- allocation there can run a __gc finaliser on it, and one that raises,
  -- even inside its own pcall, wrecked that thread's stack (a crash in
  -- the traceback, or "attempt to call a number value"). The collector
  -- runs all the time here, so that finalisers run at those allocations.
  local with_busy_gc, junk = helpers.with_busy_gc, helpers.raising_garbage

  it("fs results and errors", function()
    local p = path("gc.txt")
    io_write(p, "a\nb\n")
    local ran = junk()
    with_busy_gc(function()
      for _ = 1, 300 do
        junk()
        junk()
        local f = fs.open(p)
        assert.equal("a\nb\n", f:read("a"))
        f:close()
        assert.equal("fs", catch(fs.stat, path("missing")).kind)
        for _ in fs.scandir(dir) do end
      end
    end)
    assert.is_true(junk() > ran + 1, "finalisers ran")
  end)

  it("to_thread results and errors", function()
    with_busy_gc(function()
      for _ = 1, 300 do
        junk()
        junk()
        local a, t = corio.to_thread(function() return "a", { 1, "b" } end)
        assert.equal("a", a)
        assert.same({ 1, "b" }, t)
        assert.matches("w", tostring(catch(corio.to_thread, function() error("w") end)))
      end
    end)
  end)
end)

describe("hunt: the same in the core (runtime/loop.c)", function()
  -- corio__deliver_cancelled made the Cancelled error on the suspended
  -- task's thread (lua_State co), so cancelling a blocked task while a
  -- raising finaliser was due segfaulted the same way.
  -- 2,000 real deadlines of 0.1 ms (libuv counts whole milliseconds): ~3 s
  -- alone, more on a loaded machine, so more than the default 5 s limit.
  it("a blocked task cancelled while a raising finaliser is due", require("corio.busted").timeout(30, function()
    local junk = helpers.raising_garbage
    local ev = corio.event()
    helpers.with_busy_gc(function()
      for _ = 1, 2000 do
        junk()
        junk()
        corio.move_on_after(0.0001, function() ev:wait() end)
        corio.scope(function(s)
          local t = s:spawn(function() corio.sleep(1) end)
          corio.yield()
          t:cancel()
        end)
      end
    end)
  end))
end)

describe("hunt: autojump and real work", function()
  -- SPEC §6: the virtual clock jumps "whenever every task is blocked on
  -- timers". It jumped whenever the ready queue was empty after a
  -- non-blocking poll, also while a to_thread worker or an fs request was
  -- still running, so a deadline around real work fired at once.
  it("a deadline does not pass while a to_thread worker runs", function()
    local testing = require("corio.testing")
    local r = testing.autojump(function()
      return corio.timeout(10, corio.to_thread, function()
        local t = os.clock()
        while os.clock() - t < 0.2 do end
        return "done"
      end)
    end)
    assert.equal("done", r)
  end)
  it("a deadline does not pass while a file is read", function()
    local testing = require("corio.testing")
    local p = path("aj.txt")
    io_write(p, ("x"):rep(1048576))
    local n = testing.autojump(function()
      return corio.timeout(10, function() return #fs.read_file(p) end)
    end)
    assert.equal(1048576, n)
  end)
end)

describe("hunt: argument errors name the function called, at the caller's line", function()
  local p
  before_each(function()
    p = path("args.txt")
    io_write(p, "x\n")
  end)

  local function where_is_here(err, line)
    local s = tostring(err)
    assert.matches("hunt_fs_spec%.lua:" .. line .. ": ", s)
    return s
  end

  it("with_open, read_file, write_file, lines", function()
    assert.matches("bad argument #1 to 'with_open' %(string expected, got number%)",
      tostring(catch(fs.with_open, 42, "r", print)))
    assert.matches("bad argument #2 to 'with_open' %(invalid mode 'zz'%)",
      tostring(catch(fs.with_open, p, "zz", print)))
    assert.matches("bad argument #2 to 'with_open' %(string expected, got number%)",
      tostring(catch(fs.with_open, p, 5, print)))
    assert.matches("bad argument #1 to 'read_file' %(string expected, got number%)",
      tostring(catch(fs.read_file, 42)))
    assert.matches("bad argument #1 to 'write_file' %(string expected, got nil%)",
      tostring(catch(fs.write_file, nil, "x")))
    assert.matches("bad argument #1 to 'lines' %(string expected, got table%)",
      tostring(catch(fs.lines, {})))
    -- the position is the caller's, not inside corio's fs.lua
    local l
    local ok, err = pcall(function() l = here() fs.read_file(42) end)
    assert.is_false(ok)
    where_is_here(err, l)
    ok, err = pcall(function() l = here() fs.with_open(p, "zz", print) end)
    where_is_here(err, l)
    ok, err = pcall(function() l = here() fs.lines(false) end)
    where_is_here(err, l)
    ok, err = pcall(function() l = here() fs.write_file(1, "x") end)
    where_is_here(err, l)
  end)

  it("outside a loop too: the check comes before corio.run (stock luajit)", function()
    -- CTest sets these (tests/CMakeLists.txt); a bare `corio test` may not
    if not os.getenv("CORIO_LUA_CPATH") then return end
    local cmd = ([[%s -e "package.path = os.getenv('CORIO_LUA_PATH') ]] ..
      [[package.cpath = os.getenv('CORIO_LUA_CPATH') ]] ..
      [[local fs = require 'corio.fs' ]] ..
      [[local ok, e = pcall(function() fs.read_file(42) end) print(e) ]] ..
      [[ok, e = pcall(function() fs.with_open('x', 'zz', print) end) print(e)" 2>&1]])
      :format(os.getenv("LUAJIT") or "luajit")
    local out = helpers.shell(cmd)
    assert.matches("%(command line%):1: bad argument #1 to 'read_file'", out)
    assert.matches("%(command line%):1: bad argument #2 to 'with_open' %(invalid mode 'zz'%)", out)
  end)

  it("exists, rename, copy, scandir", function()
    local l
    assert.matches("bad argument #1 to 'exists' %(string expected, got number%)",
      tostring(catch(fs.exists, 42)))
    assert.matches("bad argument #2 to 'rename' %(string expected, got nil%)",
      tostring(catch(fs.rename, p, nil)))
    assert.matches("bad argument #1 to 'copy' %(string expected, got number%)",
      tostring(catch(fs.copy, 1, p)))
    assert.matches("bad argument #1 to 'scandir' %(string expected, got number%)",
      tostring(catch(fs.scandir, 42)))
    local ok, err = pcall(function() l = here() fs.rename(1, 2) end)
    where_is_here(err, l)
    ok, err = pcall(function() l = here() fs.copy(p, {}) end)
    where_is_here(err, l)
    ok, err = pcall(function() l = here() fs.scandir(true) end)
    where_is_here(err, l)
  end)

  it("f:seek with a whence that is not a string", function()
    local f = fs.open(p)
    local l
    local ok, err = pcall(function() l = here() f:seek({}) end)
    assert.is_false(ok)
    local s = where_is_here(err, l)
    assert.matches("bad argument #1 to 'seek' %(string expected, got table%)", s)
    assert.equal(0, f:seek())
    f:close()
  end)
end)

describe("hunt: to_thread", function()
  it("passes 64-bit integer cdata both ways (the worker could not decode them)", function()
    -- (no cdata literal in fn: loading one would set the FFI up in the
    -- worker by chance)
    local a, b = corio.to_thread(function(x, t) return x, t, t[1] end, 1LL, { 3ULL })
    assert.equal("cdata", type(a))
    assert.is_true(a == 1LL and b[1] == 3ULL)
  end)
end)
