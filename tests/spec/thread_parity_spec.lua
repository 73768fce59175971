-- thread_parity_spec.lua: corio.to_thread case by case against Python's
-- asyncio.to_thread, trio.to_thread.run_sync (abandon_on_cancel, its
-- limiter) and luv's uv.new_work / uv.queue_work, and against what a
-- careful user would expect. Where corio differs on purpose (values are
-- copied, not shared; metatables do not cross; fn has no upvalues),
-- docs/api.md (to_thread) and docs/coming-from-python.md say so, and the
-- case here checks what corio does instead.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch, mono = helpers.catch, helpers.mono

local function pack(...)
  return { n = select("#", ...), ... }
end

-- A generous watchdog for anything that could hang on a broken runtime.
local function guard(fn, ...)
  return corio.timeout(30, fn, ...)
end

-- fn for to_thread: hold the worker `secs` of real time, off the CPU (a
-- CPU loop on os.clock() would count every thread's time).
local function real_sleep(secs, ...)
  local ffi = require("ffi")
  pcall(ffi.cdef, "int usleep(unsigned int);")
  ffi.C.usleep(secs * 1e6)
  return ...
end

-- fn for to_thread: hold `secs`, then write `text` to the file `path`.
local function sleep_then_write(secs, path, text)
  local ffi = require("ffi")
  pcall(ffi.cdef, "int usleep(unsigned int);")
  ffi.C.usleep(secs * 1e6)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return text
end

local function read_file(path)
  local f = io.open(path, "r")
  if f == nil then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Run a script in a child process under a stock luajit (prog "luajit") or
-- the corio program (prog "corio"), with extra environment `env` ("" for
-- none); returns its stdout and stderr together, and its exit status.
local function run_script(prog, script, env)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local exe = prog == "corio" and (os.getenv("CORIO") or "build/corio")
    or (os.getenv("LUAJIT") or "luajit")
  local out, rc = corio.to_thread(function(cmd)
    local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
    local o = p:read("*a")
    p:close()
    return (o:gsub("rc=%d+\n?$", "")), tonumber(o:match("rc=(%d+)\n?$"))
  end, ("LUA_PATH=%q LUA_CPATH=%q %s %s %q"):format(
    os.getenv("CORIO_LUA_PATH") or "./lua/?.lua;./lua/?/init.lua;;",
    os.getenv("CORIO_LUA_CPATH") or "./build/lib/lua/5.1/?.so;;",
    env or "", exe, path))
  os.remove(path)
  return out, rc
end

describe("thread parity: values that cross", function()
  it("nested tables, mixed array and hash parts, holes and odd keys come back equal", function()
    local t = {
      1, 2, nil, 4, [10] = "ten",
      x = { y = { z = { "deep", false } } },
      [1.5] = "float key", [true] = "bool key", [-3] = "negative",
    }
    local back = corio.to_thread(function(v) return v end, t)
    assert.same(t, back)
    assert.is_nil(back[3])
    assert.equal("ten", back[10])
    assert.equal("bool key", back[true])
    assert.equal("float key", back[1.5])
    -- a table as a key crosses too (as a fresh table)
    local k = {}
    local kb = corio.to_thread(function(v) return v end, { [k] = 1 })
    local key, val = next(kb)
    assert.equal("table", type(key))
    assert.is_true(key ~= k)
    assert.equal(1, val)
  end)

  it("random nested values come back equal (round trip, both directions, many at once)", function()
    for _, seed in ipairs(helpers.stress_seeds({ 7, 8 })) do
      local rand = helpers.lcg(seed)
      local function value(depth)
        local k = rand(depth > 3 and 5 or 7)
        if k == 1 then return nil
        elseif k == 2 then return rand(2) == 1
        elseif k == 3 then return (rand(2000) - 1000) / (rand(7))
        elseif k == 4 then
          local t = {}
          for i = 1, rand(40) - 1 do t[i] = string.char(rand(256) - 1) end
          return table.concat(t)
        elseif k == 5 then return ({ 1 / 0, -1 / 0, 2 ^ 60, -0.0, 2 ^ -1074 })[rand(5)]
        end
        local t = {}
        for i = 1, rand(6) - 1 do t[i] = value(depth + 1) end
        for _ = 1, rand(4) - 1 do
          local key = rand(2) == 1 and ("k" .. rand(100)) or (rand(100) + 0.5)
          t[key] = value(depth + 1)
        end
        return t
      end
      local args = {}
      for i = 1, 40 do args[i] = pack(value(0), value(0), value(0)) end
      local back = corio.map(args, function(a)
        return pack(corio.to_thread(function(...) return ... end, unpack(a, 1, a.n)))
      end, { limit = 16 })
      for i = 1, #args do assert.same(args[i], back[i]) end
    end
  end)

  it("values are copies: a shared subtable arrives as two tables (Python passes references)", function()
    local sub = { 1 }
    local same_in_worker = corio.to_thread(function(t) return rawequal(t.a, t.b) end,
      { a = sub, b = sub })
    assert.is_false(same_in_worker)
    local back = corio.to_thread(function(t) return t end, { a = sub, b = sub })
    assert.same({ 1 }, back.a)
    assert.is_false(rawequal(back.a, back.b))
    -- and the worker's changes do not reach the caller's table
    local mine = { n = 1 }
    corio.to_thread(function(t) t.n = 2 return t end, mine)
    assert.equal(1, mine.n)
  end)

  it("cycles are refused both ways, naming the argument and the cause", function()
    local t = {}
    t.self = t
    local err = catch(corio.to_thread, function() end, 1, t)
    assert.matches("bad argument #3 to 'to_thread' %(cannot send the arguments to a worker: ", tostring(err))
    assert.matches("cyclic data", tostring(err))
    err = catch(corio.to_thread, function() local r = {} r[1] = r return 1, r end)
    assert.equal("error", err.kind)
    assert.matches("cannot send the results back", err.message)
    assert.matches("cyclic data", err.message)
  end)

  it("varargs keep nil holes and trailing nils, with tables among them too", function()
    local function count(...) return select("#", ...), ... end
    local r = pack(corio.to_thread(count, nil, 1, nil, nil))
    assert.equal(5, r.n)
    assert.same({ 4, nil, 1, nil, nil }, { r[1], r[2], r[3], r[4], r[5] })
    r = pack(corio.to_thread(count, {}, nil, nil))     -- the encoded path
    assert.equal(4, r.n)
    assert.equal(3, r[1])
    assert.same({}, r[2])
    r = pack(corio.to_thread(function() return nil, { 1 }, nil, nil end))
    assert.equal(4, r.n)
    assert.same({ 1 }, r[2])
    assert.equal(0, select("#", corio.to_thread(function() end, {})))
  end)

  it("NaN, infinities and -0.0 keep their values, plain and inside tables", function()
    local a, b, c, d, t = corio.to_thread(function(w, x, y, z) return w, x, y, z, { w, x, y, z } end,
      0 / 0, math.huge, -math.huge, -0.0)
    assert.is_true(a ~= a)
    assert.equal(math.huge, b)
    assert.equal(-math.huge, c)
    assert.equal(-math.huge, 1 / d)             -- still negative zero
    assert.is_true(t[1] ~= t[1])
    assert.equal(math.huge, t[2])
    assert.equal(-math.huge, t[3])
    assert.equal(-math.huge, 1 / t[4])
  end)

  it("numbers above 2^53 cross as the same doubles; 64-bit integer cdata exactly", function()
    local big = 2 ^ 63
    assert.equal(big, corio.to_thread(function(x) return x end, big))
    assert.equal(big, corio.to_thread(function(x) return x[1] end, { big }))
    local n = corio.to_thread(function(x) return x + 1 end, 9007199254740993LL)
    assert.equal("cdata", type(n))
    assert.is_true(n == 9007199254740994LL)
    local u = corio.to_thread(function(t) return t.u end, { u = 18446744073709551615ULL })
    assert.is_true(u == 18446744073709551615ULL)
  end)

  it("huge strings and strings with NUL bytes cross unchanged, both ways", function()
    local big = string.rep("ab\0", 8 * 1024 * 1024)   -- 24 MiB
    local n, back, t = corio.to_thread(function(s) return #s, s, { s = s } end, big)
    assert.equal(#big, n)
    assert.is_true(back == big)
    assert.is_true(t.s == big)
    assert.equal("\0\0", corio.to_thread(function(s) return s .. "\0" end, "\0"))
    -- the next small call still works (buffers are reused)
    assert.equal("ok", corio.to_thread(function(s) return s end, "ok"))
  end)

  it("metatables do not cross: the table arrives without one (documented)", function()
    local mt = { __index = function() return "default" end }
    local had_mt, v = corio.to_thread(function(t) return getmetatable(t) ~= nil, t.missing end,
      setmetatable({ x = 1 }, mt))
    assert.is_false(had_mt)
    assert.is_nil(v)
    local back = corio.to_thread(function()
      return setmetatable({ 1 }, { __index = function() return "w" end })
    end)
    assert.same({ 1 }, back)
    assert.is_nil(getmetatable(back))
  end)

  it("functions, userdata, threads and non-integer cdata are refused as arguments, by position and type", function()
    local ffi = require("ffi")
    local cases = {
      { print, "function" }, { io.stdout, "userdata" },
      { coroutine.create(print), "thread" }, { ffi.new("int[2]"), "cdata" },
    }
    for _, c in ipairs(cases) do
      local err = catch(corio.to_thread, function() end, "ok", c[1])
      assert.matches("bad argument #3 to 'to_thread' %(cannot send the arguments to a worker: "
        .. "cannot serialize '" .. c[2] .. "'", tostring(err))
      -- nested inside a table: the table's position
      err = catch(corio.to_thread, function() end, { deep = { c[1] } })
      assert.matches("bad argument #2 to 'to_thread' %(cannot send the arguments to a worker: "
        .. "cannot serialize '" .. c[2] .. "'", tostring(err))
    end
  end)

  it("a result that cannot come back is named by its position and type", function()
    local cases = {
      { "function", function() return 1, print end },
      { "userdata", function() return 1, io.stdout end },
      { "thread", function() return 1, coroutine.create(print) end },
      { "cdata", function() return 1, require("ffi").new("int[2]") end },
      { "function", function() return 1, { f = { print } } end },
    }
    for _, c in ipairs(cases) do
      local err = catch(corio.to_thread, c[2])
      assert.equal("error", err.kind)
      assert.matches("^corio%.to_thread: cannot send the results back: result #2: "
        .. "cannot serialize '" .. c[1] .. "'", err.message)
    end
    -- the first of several, and the worker works afterwards
    local err = catch(corio.to_thread, function() return print, io.stdout end)
    assert.matches("result #1: cannot serialize 'function'", err.message)
    assert.equal(2, corio.to_thread(function(x) return x + 1 end, 1))
  end)
end)

describe("thread parity: the function", function()
  it("refuses upvalues, C functions and non-functions, naming argument #1", function()
    local up = 1
    local err = catch(corio.to_thread, function() return up end)
    assert.matches("bad argument #1 to 'to_thread' %(the function has upvalues %('up'%)", tostring(err))
    err = catch(corio.to_thread, string.rep, "x", 2)
    assert.matches("bad argument #1 to 'to_thread' %(a C function cannot run in a worker%)", tostring(err))
    for _, v in ipairs({ {}, "return 1", 42, true }) do
      err = catch(corio.to_thread, v)
      assert.matches("bad argument #1 to 'to_thread' %(Lua function expected, got " .. type(v) .. "%)",
        tostring(err))
    end
    -- a callable table is not a function (asyncio would call it)
    err = catch(corio.to_thread, setmetatable({}, { __call = function() end }))
    assert.matches("Lua function expected, got table", tostring(err))
    err = catch(corio.to_thread)
    assert.matches("Lua function expected, got nil", tostring(err))
  end)

  it("a function without upvalues that reads globals sees the worker's, not the caller's", function()
    rawset(_G, "thread_parity_global", "caller's")
    local v, has_string = corio.to_thread(function()
      return rawget(_G, "thread_parity_global"), type(string.format) == "function"
    end)
    rawset(_G, "thread_parity_global", nil)
    assert.is_nil(v)
    assert.is_true(has_string)
    -- nor its environment (setfenv): only the code crosses
    assert.is_nil(corio.to_thread(setfenv(function() return x end, { x = 1 })))
  end)
end)

describe("thread parity: errors raised in the worker", function()
  it("a string error keeps the worker's message, position and traceback", function()
    local line
    local err = catch(corio.to_thread, function()
      local function inner() error("worker boom") end
      inner()
    end)
    line = debug.getinfo(1, "l").currentline - 3
    assert.equal("error", err.kind)
    assert.matches("thread_parity_spec%.lua:" .. line .. ": worker boom$", err.message)
    assert.matches("^stack traceback:", err.traceback)
    assert.matches("in function 'inner'", err.traceback)
    assert.matches("thread_parity_spec%.lua:" .. line, err.traceback)
    -- a runtime error (not error()) the same way
    err = catch(corio.to_thread, function() local x return x.y end)
    assert.matches("attempt to index local 'x' %(a nil value%)", err.message)
  end)

  it("the traceback ends with where to_thread was called (Python's and trio's show the caller too)", function()
    local function hash(s) error("bad input " .. s) end
    local function caller()
      local r = corio.to_thread(hash, "x")
      return r
    end
    local line = debug.getinfo(1, "l").currentline - 3
    local err = catch(caller)
    assert.matches("bad input x$", err.message)
    assert.matches("in function <[^\n]*thread_parity_spec%.lua:" .. (line - 2) .. ">", err.traceback)
    assert.matches("\n\t%(to_thread called at [^\n]*thread_parity_spec%.lua:" .. line .. "%)$",
      err.traceback)
    -- called through pcall, a deadline or with a result that cannot come
    -- back: the line of the call that made it
    local ok
    ok, err = pcall(corio.move_on_after, 5, corio.to_thread, hash, "y")
    line = debug.getinfo(1, "l").currentline - 1
    assert.is_false(ok)
    assert.matches("%(to_thread called at [^\n]*thread_parity_spec%.lua:" .. line .. "%)$", err.traceback)
    ok, err = pcall(corio.to_thread, function() return print end)
    line = debug.getinfo(1, "l").currentline - 1
    assert.matches("^stack traceback:\n\t%(to_thread called at [^\n]*thread_parity_spec%.lua:"
      .. line .. "%)$", err.traceback)
  end)

  it("error() with values that are not strings: the message a task's error would have", function()
    local err = catch(corio.to_thread, function() error(42) end)
    assert.matches("thread_parity_spec%.lua:%d+: 42$", err.message)   -- as plain Lua
    err = catch(corio.to_thread, function() error(42, 0) end)
    assert.equal("42", err.message)
    -- each as a task's error (and lua.c) says it; it was tostring's
    -- "nil", "true", "table: 0x..."
    local values = {
      { "nil", function() error(nil) end },
      { "boolean", function() error(true) end },
      { "table", function() error({ code = 7 }) end },
      { "userdata", function() error(newproxy()) end },
    }
    for _, c in ipairs(values) do
      err = catch(corio.to_thread, c[2])
      assert.equal("(error object is a " .. c[1] .. " value)", err.message)
      local ok, terr = pcall(corio.scope, function(s) s:spawn(c[2]) end)
      assert.is_false(ok)
      assert.equal(err.message, terr.message)
    end
    err = catch(corio.to_thread, function() error({ code = 7 }) end)
    assert.same({ code = 7 }, err.value)
    err = catch(corio.to_thread, function() error(io.stdout) end)   -- __tostring
    assert.matches("^file %(0x", err.message)
    err = catch(corio.to_thread, function()
      error(setmetatable({}, { __tostring = function() error("no") end }))
    end)
    assert.equal("(error object is a table value)", err.message)
    err = catch(corio.to_thread, function() local t = {} t.t = t error(t) end)
    assert.equal("(error object is a table value)", err.message)    -- cannot cross: the message only
    assert.is_nil(err.value)
    -- a corio error of the worker's own runtime: its kind kept in err.value
    err = catch(corio.to_thread, function()
      local c = require("corio")
      c.run(function() c.timeout(0.001, c.sleep, 1) end)
    end)
    assert.equal("error", err.kind)
    assert.equal("timeout", err.value.kind)
    assert.matches("deadline", err.message)
    -- error with level 0: no position
    err = catch(corio.to_thread, function() error("bare", 0) end)
    assert.equal("bare", err.message)
  end)
end)

describe("thread parity: what the worker state has", function()
  it("the standard libraries, the FFI and string.buffer", function()
    local r = pack(corio.to_thread(function()
      return type(io.open), type(os.time), type(require("ffi").new),
        type(require("string.buffer").encode), type(jit), type(bit.band)
    end))
    assert.same({ n = 6, "function", "function", "function", "function", "table", "function" }, r)
  end)

  it("corio in the worker runs blocking calls synchronously, a run of its own included", function()
    local a, b, c = corio.to_thread(function()
      local c = require("corio")
      c.sleep(0.01)    -- no loop here: it just sleeps (rule 11)
      local r = c.run(function()
        local g = c.gather({ function() c.sleep(0.01) return "x" end,
                             function() return "y" end })
        return g[1] .. g[2]
      end)
      -- to_thread from inside a worker runs on the worker runtime's pool
      return "slept", r, c.to_thread(function(n) return n * 2 end, 21)
    end)
    assert.same({ "slept", "xy", 42 }, { a, b, c })
  end)
end)

describe("thread parity: many calls and the pool", function()
  it("more calls than workers all finish, each with its own result", function()
    guard(function()
      local items = {}
      for i = 1, 64 do items[i] = i end
      local r = corio.map(items, function(i)
        return corio.to_thread(real_sleep, 0.005, i, "r" .. i)
      end)
      for i = 1, 64 do assert.equal(i, r[i]) end
    end)
  end)

  it("a pool of one runs calls in the order made, one at a time (trio's limiter of 1)", function()
    local out, rc = run_script("luajit", [[
      local corio = require "corio"
      local function work(i)
        local ffi = require("ffi")
        pcall(ffi.cdef, "int usleep(unsigned int);")
        ffi.C.usleep(20000)
        return i
      end
      local order = {}
      local t0 = corio.now()
      corio.run(function()
        corio.scope(function(s)
          for i = 1, 8 do
            s:spawn(function()
              local v = corio.to_thread(work, i)
              order[#order + 1] = v
            end)
          end
        end)
      end)
      print(table.concat(order, ","), corio.now() - t0 >= 8 * 0.02)
      print(pcall(corio.thread_pool_size, 4))
    ]], "UV_THREADPOOL_SIZE=1")
    assert.equal(0, rc, out)
    assert.matches("^1,2,3,4,5,6,7,8\ttrue\n", out)
    assert.matches("false\t.*the thread pool already runs %(with 1 thread%)", out)
  end)

  it("once the pool runs, thread_pool_size names the size in force, not UV_THREADPOOL_SIZE as set", function()
    -- read as libuv reads it for its own pool (file I/O), so that both
    -- pools have one size: 0, empty or not a number is 1, above 1024 (a
    -- negative number too, as libuv's unsigned count) is 1024. The message
    -- used to echo the variable as it was set, and the pool took an empty
    -- value as 4 and a negative one as 1.
    for env, want in pairs({ ["0"] = "1 thread", abc = "1 thread", ["2000"] = "1024 threads",
                             ["3"] = "3 threads", [""] = "1 thread", ["-3"] = "1024 threads" }) do
      local out, rc = run_script("luajit", [[
        local corio = require "corio"
        corio.to_thread(function() end)
        print(select(2, pcall(corio.thread_pool_size, 2)))
      ]], "UV_THREADPOOL_SIZE=" .. ("%q"):format(env))
      assert.equal(0, rc, out)
      assert.matches("the thread pool already runs %(with " .. want .. "%)", out)
    end
  end)

  it("a busy worker pool does not hold up file I/O (its own pool, unlike trio's shared limiter)", function()
    local out, rc = run_script("luajit", [[
      local corio = require "corio"
      local fs = require "corio.fs"
      corio.run(function()
        local t0 = corio.now()
        corio.scope(function(s)
          s:spawn(corio.to_thread, function()
            local ffi = require("ffi")
            pcall(ffi.cdef, "int usleep(unsigned int);")
            ffi.C.usleep(500000)
          end)
          corio.sleep(0.01)
          assert(fs.stat("/"))
          print("file I/O done while the worker runs:", corio.now() - t0 < 0.3)
        end)
      end)
    ]], "UV_THREADPOOL_SIZE=1")
    assert.equal(0, rc, out)
    assert.matches("file I/O done while the worker runs:\ttrue", out)
  end)
end)

describe("thread parity: cancellation", function()
  it("a running worker: the caller gets Cancelled at once, the worker goes on, its result dropped", function()
    local path = os.tmpname()
    os.remove(path)
    local t0 = mono()
    local ok, r = corio.move_on_after(0.05, corio.to_thread, sleep_then_write, 0.4, path, "done")
    assert.is_false(ok)
    assert.is_nil(r)
    assert.is_true(mono() - t0 < 0.3, "the caller was not woken at once")
    assert.is_nil(read_file(path))            -- still running
    guard(function()
      while read_file(path) ~= "done" do corio.sleep(0.02) end
    end)
    os.remove(path)
  end)

  it("a worker that fails after its caller was cancelled: the error is dropped with the result", function()
    local out, rc = run_script("luajit", [[
      local corio = require "corio"
      local ok, err = pcall(corio.run, function()
        print("moved on:", corio.move_on_after(0.02, corio.to_thread, function()
          local ffi = require("ffi")
          pcall(ffi.cdef, "int usleep(unsigned int);")
          ffi.C.usleep(200000)
          error("late failure")
        end))
        corio.sleep(0.4)   -- the worker has failed by now
        return "body done"
      end)
      print("run:", ok, err)
    ]])
    assert.equal(0, rc, out)
    assert.equal("moved on:\tfalse\nrun:\ttrue\tbody done\n", out)
  end)

  it("task:cancel() and a timeout end a waiting call the same way", function()
    local t0 = mono()
    local task = corio.spawn(corio.to_thread, real_sleep, 0.3)
    corio.sleep(0.02)
    task:cancel()
    local ok, err = pcall(task.join, task)
    assert.is_true(mono() - t0 < 0.25)
    -- a task cancelled by task:cancel() is not an error: join returns or
    -- raises Cancelled, but never another kind
    assert.is_true(ok or corio.is_cancelled(err), tostring(err))
    err = catch(corio.timeout, 0.02, corio.to_thread, real_sleep, 0.3)
    assert.equal("timeout", err.kind)
    assert.is_true(mono() - t0 < 0.3)
  end)

  it("a queued call cancelled before a worker took it never runs (trio: abandoned while waiting)", function()
    local path = os.tmpname()
    os.remove(path)
    local out, rc = run_script("luajit", ([[
      local corio = require "corio"
      local function hold(s)
        local ffi = require("ffi")
        pcall(ffi.cdef, "int usleep(unsigned int);")
        ffi.C.usleep(s * 1e6)
      end
      local function write(p)
        local f = assert(io.open(p, "w")) f:write("ran") f:close()
      end
      corio.run(function()
        corio.spawn(corio.to_thread, hold, 0.3)      -- the only worker
        corio.sleep(0.01)
        print("moved on:", corio.move_on_after(0.05, corio.to_thread, write, %q))
      end)
      local f = io.open(%q)
      print("ran:", f ~= nil)
    ]]):format(path, path), "UV_THREADPOOL_SIZE=1")
    os.remove(path)
    assert.equal(0, rc, out)
    assert.matches("moved on:\tfalse\nran:\tfalse\n", out)
  end)

  it("corio.run waits for a worker whose caller was cancelled (asyncio.run waits for its executor too)", function()
    local path = os.tmpname()
    os.remove(path)
    local out, rc = run_script("luajit", ([[
      local corio = require "corio"
      local function sleep_then_write(secs, path)
        local ffi = require("ffi")
        pcall(ffi.cdef, "int usleep(unsigned int);")
        ffi.C.usleep(secs * 1e6)
        local f = assert(io.open(path, "w")) f:write("done") f:close()
      end
      local t0 = corio.now()
      corio.run(function()
        print("moved on:", corio.move_on_after(0.02, corio.to_thread, sleep_then_write, 0.3, %q))
      end)
      local f = io.open(%q)
      print("written before run returned:", f ~= nil, corio.now() - t0 >= 0.25)
    ]]):format(path, path))
    os.remove(path)
    assert.equal(0, rc, out)
    assert.matches("moved on:\tfalse\nwritten before run returned:\ttrue\ttrue\n", out)
  end)
end)

describe("thread parity: outside a loop and at the edges of the process", function()
  it("outside a loop (rule 11) to_thread runs synchronously, with the same values and errors", function()
    local out, rc = run_script("luajit", [[
      local corio = require "corio"
      local a, t = corio.to_thread(function(x, y) return x + y[1], { y } end, 1, { 2 })
      print("values:", a, t[1][1])
      local ok, err = pcall(corio.to_thread, function() error("sync boom") end)
      print("error:", err.kind, err.message, err.traceback:match("^stack traceback:") ~= nil)
      local function call() local r = corio.to_thread(function() end, print) return r end
      print("refused:", select(2, pcall(call)))
      ok, err = pcall(corio.to_thread, function() return print end)
      print("result:", err.message)
    ]])
    assert.equal(0, rc, out)
    assert.matches("values:\t3\t2\n", out)
    assert.matches("error:\terror\t[^\n]*:%d+: sync boom\ttrue\n", out)
    -- a plain string with the caller's position, as inside a loop
    assert.matches("refused:\t[^\n]*:%d+: bad argument #2 to 'to_thread' %(cannot send the arguments", out)
    assert.matches("result:\tcorio.to_thread: cannot send the results back: result #1: cannot serialize 'function'", out)
  end)

  it("a worker that never returns keeps corio.run waiting through one SIGINT; a second ends the process", function()
    local path, pidfile, ready = os.tmpname(), os.tmpname(), os.tmpname()
    os.remove(ready)
    local f = assert(io.open(path, "w"))
    f:write([[
      local corio = require "corio"
      corio.run(function()
        corio.move_on_after(0.02, corio.to_thread, function()
          local ffi = require("ffi")
          pcall(ffi.cdef, "int usleep(unsigned int);")
          for _ = 1, 300 do ffi.C.usleep(100000) end   -- 30 s: "forever"
        end)
        io.stdout:write("body done\n")
        io.stdout:flush()
        assert(io.open(arg[1], "w")):close()   -- ready for the signals
      end)
      print("run returned")
    ]])
    f:close()
    local out = corio.to_thread(function(cmd)
      local p = io.popen(cmd)
      local o = p:read("*a")
      p:close()
      return o
    -- (the script runs in the foreground: a non-interactive shell starts
    -- a background job with SIGINT ignored; the signals come from a
    -- background subshell once the script is ready, the script's pid
    -- from the shell it replaces)
    end, ("(i=0; while [ ! -e %q ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; "
      .. "kill -INT $(cat %q); sleep 1; kill -0 $(cat %q) 2>/dev/null && "
      .. "echo 'alive after one SIGINT'; kill -INT $(cat %q)) & "
      .. "sh -c 'echo $$ > %q; exec env LUA_PATH=\"$0\" LUA_CPATH=\"$1\" \"$2\" \"$3\" \"$4\"' "
      .. "%q %q %q %q %q 2>&1; echo \"rc=$?\"; wait"):format(ready, pidfile, pidfile, pidfile, pidfile,
      os.getenv("CORIO_LUA_PATH") or "./lua/?.lua;./lua/?/init.lua;;",
      os.getenv("CORIO_LUA_CPATH") or "./build/lib/lua/5.1/?.so;;",
      os.getenv("LUAJIT") or "luajit", path, ready))
    os.remove(path)
    os.remove(pidfile)
    os.remove(ready)
    assert.matches("^body done\n", out)
    assert.matches("alive after one SIGINT\n", out)
    assert.not_matches("run returned", out)
    assert.matches("rc=130\n", out)
  end)

  it("os.exit in a worker ends the whole process with that status (as Python's os._exit)", function()
    local out, rc = run_script("luajit", [[
      local corio = require "corio"
      io.stdout:write("before\n")
      corio.run(function()
        corio.spawn(corio.to_thread, function() os.exit(7) end)
        corio.sleep(5)
        print("not reached")
      end)
      print("not reached either")
    ]])
    assert.equal(7, rc, out)
    assert.matches("^before\n$", out)
  end)
end)
