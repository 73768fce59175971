-- thread_spec.lua: corio.to_thread beyond the basics in core_spec.lua:
-- how values cross (plain values straight, tables encoded), what is
-- refused before anything runs, worker errors and their tracebacks, many
-- calls at once, and the worker pool's reuse of states and requests.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch

local function pack(...)
  return { n = select("#", ...), ... }
end

describe("corio.to_thread values", function()
  it("passes nil, booleans, numbers and strings both ways, holes kept", function()
    local r = pack(corio.to_thread(function(...)
      return select("#", ...), ...
    end, nil, false, true, 1.5, -7, 2 ^ 53, math.huge, "a\0b", "", nil))
    assert.equal(11, r.n)
    assert.equal(10, r[1])
    assert.is_nil(r[2])
    assert.is_false(r[3])
    assert.is_true(r[4])
    assert.equal(1.5, r[5])
    assert.equal(-7, r[6])
    assert.equal(2 ^ 53, r[7])
    assert.equal(math.huge, r[8])
    assert.equal("a\0b", r[9])
    assert.equal("", r[10])
    assert.is_nil(r[11])
  end)

  it("passes NaN and no values at all", function()
    local x = corio.to_thread(function(v) return v end, 0 / 0)
    assert.is_true(x ~= x)
    assert.equal(0, select("#", corio.to_thread(function() end)))
    assert.equal(1, corio.to_thread(function(...) return select("#", ...) end, nil))
  end)

  it("mixes tables with plain values, both ways", function()
    local a, b, c, d = corio.to_thread(function(s, t, n)
      return n, { s = s, t = t }, nil, "last"
    end, "str", { 1, { 2, x = "y" } }, 3)
    assert.equal(3, a)
    assert.same({ s = "str", t = { 1, { 2, x = "y" } } }, b)
    assert.is_nil(c)
    assert.equal("last", d)
  end)

  it("passes long strings", function()
    local big = string.rep("0123456789", 100000)
    local n, back = corio.to_thread(function(s) return #s, s:reverse() end, big)
    assert.equal(#big, n)
    assert.equal(big:reverse(), back)
    -- and the next small call still works (requests are reused)
    assert.equal("ok", corio.to_thread(function(s) return s end, "ok"))
  end)

  it("passes many values", function()
    local args = {}
    for i = 1, 300 do args[i] = i end
    local r = pack(corio.to_thread(function(...) return ... end, unpack(args)))
    assert.equal(300, r.n)
    for i = 1, 300 do assert.equal(i, r[i]) end
  end)
end)

describe("corio.to_thread refusals", function()
  it("refuses arguments that cannot cross, naming why", function()
    local err = catch(corio.to_thread, function(f) return f end, print)
    assert.matches("bad argument #2 to 'to_thread'", tostring(err))
    assert.matches("cannot send the arguments", tostring(err))
    err = catch(corio.to_thread, function(t) return t end, { f = print })
    assert.matches("cannot send the arguments", tostring(err))
  end)

  it("refuses cyclic data", function()
    local t = {}
    t.self = t
    local err = catch(corio.to_thread, function(x) return x end, t)
    assert.matches("cannot send the arguments", tostring(err))
    assert.matches("cyclic data", tostring(err))
    err = catch(corio.to_thread, function()
      local r = {}
      r.r = r
      return r
    end)
    assert.matches("cannot send the results back: .*cyclic data", tostring(err))
  end)

  it("refuses before anything runs", function()
    -- the worker would sleep: the refusal comes at once
    local t0 = corio.now()
    catch(corio.to_thread, function(_, ms)
      local t = os.clock()
      while os.clock() - t < ms do end
    end, coroutine.create(print), 1)
    assert.is_true(corio.now() - t0 < 0.5)
  end)

  it("points the error at the caller", function()
    local err = catch(function()
      local r = corio.to_thread(function() end, print)
      return r
    end)
    assert.matches("thread_spec.lua:%d+: bad argument #2 to 'to_thread'", tostring(err))
    err = catch(function()
      local r = corio.to_thread(42)
      return r
    end)
    assert.matches("thread_spec.lua:%d+: bad argument #1 to 'to_thread' " ..
      "%(Lua function expected, got number%)", tostring(err))
  end)

  it("refuses C functions and functions with upvalues", function()
    local err = catch(corio.to_thread, print)
    assert.matches("a C function cannot run in a worker", tostring(err))
    local up = 1
    err = catch(corio.to_thread, function() return up end)
    assert.matches("upvalues %('up'%)", tostring(err))
  end)

  it("refuses other userdata", function()
    local err = catch(corio.to_thread, io.stdout)
    assert.matches("Lua function expected, got userdata", tostring(err))
  end)

  it("a cancelled scope's call raises Cancelled and runs nothing", function()
    local ran = false
    corio.scope(function(s)
      s:cancel()
      local ok, err = pcall(corio.to_thread, function() return 1 end)
      ran = ok
      assert.is_true(corio.is_cancelled(err))
    end)
    assert.is_false(ran)
  end)

  it("says when the results cannot come back", function()
    local err = catch(corio.to_thread, function() return print end)
    assert.matches("cannot send the results back", tostring(err))
    -- the worker is fine afterwards
    assert.equal(2, corio.to_thread(function(x) return x + 1 end, 1))
  end)
end)

describe("corio.to_thread errors", function()
  it("carries the worker's traceback", function()
    local err = catch(corio.to_thread, function()
      local function deep() error("deep boom") end
      deep()
    end)
    assert.equal("error", err.kind)
    assert.matches("deep boom", err.message)
    assert.matches("stack traceback", err.traceback)
    assert.matches("deep", err.traceback)
  end)

  it("describes an error value that is not a string", function()
    -- as a task's error says it (thread_parity_spec has the rest)
    local err = catch(corio.to_thread, function() error({ code = 1 }) end)
    assert.matches("%(error object is a table value%)", tostring(err))
    err = catch(corio.to_thread, function()
      error(setmetatable({}, { __tostring = function() return "custom" end }))
    end)
    assert.matches("custom", tostring(err))
  end)

  it("hands back a table raised as err.value, when it can cross", function()
    local err = catch(corio.to_thread, function()
      error({ code = 42, detail = { "a", "b" } })
    end)
    assert.equal("error", err.kind)
    assert.same({ code = 42, detail = { "a", "b" } }, err.value)
    assert.matches("stack traceback", err.traceback)
    -- one that cannot cross (a function inside): the message alone
    err = catch(corio.to_thread, function() error({ f = print }) end)
    assert.is_nil(err.value)
    assert.equal("(error object is a table value)", err.message)
    -- a string error has no value; the worker goes on working
    err = catch(corio.to_thread, function() error("plain", 0) end)
    assert.is_nil(err.value)
    assert.equal("plain", err.message)
    assert.equal(3, corio.to_thread(function(a) return a + 1 end, 2))
  end)

  it("a function sent again after an error runs again", function()
    local function f(x)
      if x then error("no") end
      return "yes"
    end
    catch(corio.to_thread, f, true)
    assert.equal("yes", corio.to_thread(f, false))
  end)
end)

describe("corio.to_thread concurrency", function()
  it("runs many calls at once, each result to its caller", function()
    local items = {}
    for i = 1, 500 do items[i] = i end
    local r = corio.map(items, function(i)
      local a, b = corio.to_thread(function(x) return x * 2, "n" .. x end, i)
      assert.equal("n" .. i, b)
      return a
    end, { limit = 64 })
    for i = 1, 500 do assert.equal(i * 2, r[i]) end
  end)

  it("runs different functions side by side", function()
    local r = corio.gather({
      function() return corio.to_thread(function() return "a" end) end,
      function() return corio.to_thread(function(x) return x .. "b" end, "b") end,
      function() return corio.to_thread(function() return { "c" } end) end,
    })
    assert.equal("a", r[1])
    assert.equal("bb", r[2])
    assert.same({ "c" }, r[3])
  end)

  it("cancelled calls leave the pool working", function()
    for _ = 1, 5 do
      corio.move_on_after(0.001, function()
        corio.to_thread(function()
          local t = os.clock()
          while os.clock() - t < 0.02 do end
        end)
      end)
    end
    assert.equal(7, corio.to_thread(function(a, b) return a + b end, 3, 4))
  end)
end)
