-- hunt_fs2_spec.lua: regressions found by a second bug hunt in corio.fs,
-- used as an aiofiles/trio or Lua io user would: paths with a NUL byte,
-- reading on after the end of a file that grew, ...

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local fs = require("corio.fs")

local dir

local function path(name) return dir .. "/" .. name end

local io_write, io_read = helpers.io_write, helpers.io_read

local remove_dir
setup(function() dir, remove_dir = helpers.temp_dir("corio-hunt-fs2") end)

teardown(function() if remove_dir then remove_dir() end end)

local function msg(e) return type(e) == "table" and tostring(e.message or e) or tostring(e) end

describe("hunt2: a path with a NUL byte", function()
  it("is refused, not cut at the NUL (it opened or truncated another file)", function()
    local p = path("nul.txt")
    io_write(p, "keep me")
    local e = catch(fs.open, p .. "\0.bak", "w")
    assert.matches("bad argument #1 to 'open' %(path contains a NUL byte%)", msg(e))
    assert.equal("keep me", io_read(p))   -- was truncated
    e = catch(fs.open, p .. "\0x")
    assert.matches("NUL byte", msg(e))
    for _, call in ipairs {
      { "read_file", fs.read_file, p .. "\0" },
      { "write_file", fs.write_file, p .. "\0", "x" },
      { "with_open", fs.with_open, p .. "\0", "r", function() end },
      { "lines", fs.lines, p .. "\0" },
      { "stat", fs.stat, p .. "\0" },
      { "exists", fs.exists, p .. "\0" },
      { "remove", fs.remove, p .. "\0" },
      { "mkdir", fs.mkdir, dir .. "/d\0x" },
      { "scandir", fs.scandir, dir .. "\0" },
      { "copy", fs.copy, p, path("c") .. "\0" },
      { "rename", fs.rename, p .. "\0", path("r") },
    } do
      e = catch(call[2], unpack(call, 3))
      assert.matches("to '" .. call[1] .. "' %(path contains a NUL byte%)", msg(e))
    end
    assert.equal("keep me", io_read(p))
    assert.is_false(fs.exists(path("c")))
    assert.is_false(fs.exists(dir .. "/d"))
  end)
end)

describe("hunt2: reading on after the end of a file", function()
  it("sees bytes appended since the end was reported, as io and Python do", function()
    local p = path("grow.log")
    io_write(p, "a\n")
    local f = fs.open(p)
    assert.equal("a", f:read("l"))
    assert.is_nil(f:read("l"))
    local h = assert(io.open(p, "a")); h:write("b\nc"); h:close()
    assert.equal("b", f:read("l"))   -- was nil for ever
    assert.equal("c", f:read("l"))
    assert.is_nil(f:read("l"))
    h = assert(io.open(p, "a")); h:write("d\n"); h:close()
    local got = {}
    for l in f:lines() do got[#got + 1] = l end
    assert.same({ "d" }, got)
    assert.equal("", f:read("a"))
    h = assert(io.open(p, "a")); h:write("12 tail"); h:close()
    assert.equal(12, f:read("n"))
    assert.equal(" tail", f:read(100))
    assert.is_nil(f:read(1))
    f:close()
  end)

  it("the same for a small buffer and after a read-ahead hit the end", function()
    local p = path("grow2.log")
    io_write(p, ("x"):rep(100) .. "\n")
    local f = fs.open(p, "r", { buffer_size = 16 })
    assert.equal(100, #f:read("l"))
    assert.is_nil(f:read("l"))
    local h = assert(io.open(p, "a")); h:write(("y"):rep(40) .. "\n"); h:close()
    assert.equal(("y"):rep(40), f:read("l"))
    assert.is_nil(f:read("L"))
    f:close()
  end)
end)

describe("hunt2: a FIFO", function()
  it("closes after a read took what it wanted, while the writer stays (no read-ahead held the pool)", function()
    local p = path("fifo")
    assert(os.execute("mkfifo " .. p) == 0)
    local h = assert(io.open(p, "r+"))   -- a writer that stays, and does not block this open
    h:write("one\ntwo\n"); h:flush()
    local f = fs.open(p)
    assert.equal("one", f:read("l"))
    assert.equal("two", f:read("l"))
    local closed = false
    corio.scope(function(s)
      s:spawn(function() f:close(); closed = true end)
      corio.sleep(0.3)
      -- (was: close waited for a read-ahead blocked in read(2) for good;
      -- closing the writer ends it, so that a failure does not hang)
      local was = closed
      h:close()
      assert.is_true(was, "close hung behind a read-ahead on the FIFO")
    end)
    assert.equal("closed file", fs.type(f))
  end)

  it("a read nobody answers is not cancelled until the writer closes (docs/api.md, corio.fs)", function()
    -- The documented limit: the read blocks a pool thread, and a timeout's
    -- cancel surfaces only once it returns. A writer that closes after
    -- 0.6 s ends it: the read returns its result (EOF, rule 7) and the
    -- timeout of 0.1 s is reported at the next checkpoint, not before.
    local p = path("fifo2")
    assert(os.execute("mkfifo " .. p) == 0)
    local h = assert(io.open(p, "r+"))
    local f = fs.open(p)
    local t0, t_err, ok, err, got, read_done = corio.now()
    corio.scope(function(s)
      s:spawn(function()
        ok, err = pcall(corio.timeout, 0.1, function()
          got = f:read("l")
          read_done = true
          corio.yield()
        end)
        t_err = corio.now() - t0
      end)
      corio.sleep(0.6)
      h:close()   -- EOF: the read returns
    end)
    assert.is_false(ok)
    assert.equal("timeout", err.kind)
    assert.is_true(read_done)
    assert.is_nil(got)
    assert.is_true(t_err >= 0.55, "the read was cancelled after " .. t_err .. " s")
    f:close()
  end)
end)

-- Run a script under the corio program in a child process: its output
-- (stdout and stderr) and exit status.
local function run_script(script)
  local sp = os.tmpname()
  local h = assert(io.open(sp, "w"))
  h:write(script)
  h:close()
  local exe = os.getenv("CORIO") or "build/corio"
  local out, rc = corio.to_thread(function(cmd)
    local pr = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
    local o = pr:read("*a")
    pr:close()
    return (o:gsub("rc=%d+\n?$", "")), tonumber(o:match("rc=(%d+)\n?$"))
  end, ("LUA_PATH=%q LUA_CPATH=%q %s %q"):format(
      os.getenv("CORIO_LUA_PATH") or "./lua/?.lua;./lua/?/init.lua;;",
      os.getenv("CORIO_LUA_CPATH") or "./build/lib/lua/5.1/?.so;;", exe, sp))
  os.remove(sp)
  return out, rc
end

describe("hunt2: os.exit with a file still open", function()
  it("writes its buffer out, as io's files are (it was lost silently)", function()
    local p1, p2, p3 = path("exit1.txt"), path("exit2.txt"), path("exit3.txt")
    local out, rc = run_script(([[
      local corio = require "corio"
      local fs = require "corio.fs"
      A = fs.open(%q, "w"); A:write("outside a loop\n")
      corio.run(function()
        B = fs.open(%q, "a"); B:write("inside a loop\n")
        C = fs.open(%q, "w+"); C:write("plus"); C:flush(); C:seek("set", 0)
        C:read(1); C:write("L")
      end)
      local g = io.open(%q, "w"); g:write("io too\n")
      os.exit(3)
    ]]):format(p1, p2, p3, path("io.txt")))
    assert.equal(3, rc, out)
    assert.equal("", out)
    assert.equal("io too\n", io_read(path("io.txt")))
    assert.equal("outside a loop\n", io_read(p1))   -- was ""
    assert.equal("inside a loop\n", io_read(p2))
    assert.equal("pLus", io_read(p3))
  end)

  it("a file closed before exit is not written again", function()
    local p = path("exit4.txt")
    local out, rc = run_script(([[
      local fs = require "corio.fs"
      local f = fs.open(%q, "w"); f:write("once\n"); f:close()
      local g = fs.open(%q, "a"); g:write("twice?\n"); g:close()
      os.exit(0)
    ]]):format(p, p))
    assert.equal(0, rc, out)
    assert.equal("once\ntwice?\n", io_read(p))
  end)
end)
