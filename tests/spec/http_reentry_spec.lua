-- http_reentry_spec.lua: a __gc finaliser that calls back into a client
-- while one of its HTTP/1 stream reads is inside libcurl (the write
-- callback makes each chunk a Lua string, and an allocation there can
-- run finalisers). libcurl forbids calls into a multi from its own
-- callbacks, so what such a finaliser asks of the client must wait until
-- curl returned (closing a stream, the client, cancelling a request) or
-- be refused with a clear error (starting a request, reading a stream:
-- both would have to wait, which a finaliser cannot). Against
-- tests/http/server.py.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local http = require("corio.http")
local c_read = require("corio.core").http.read

local base, stop_server

-- a request that must end within secs (a hang fails the test)
local within = corio.timeout

-- A few requests at once: each takes a transfer of the client's pool,
-- so one left broken would show.
local function still_works(c)
  local function get() local r = c:get("/ok"); return r.status .. " " .. r:text() end
  local res = within(10, corio.gather, { get, get, get, get })
  assert.same({ "200 hello", "200 hello", "200 hello", "200 hello" }, res)
end

setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

local N = 150000
local WANT
do
  local t = {}
  for i = 0, N - 1 do t[#t + 1] = i .. "\n" end
  WANT = table.concat(t)
end

-- Whether the running finaliser was called while curl's write callback
-- made a chunk of a stream read (the protected call made from read's C
-- function; level 1 is the finaliser).
local function inside_curl()
  local f2 = debug.getinfo(3, "fS")
  local f3 = debug.getinfo(4, "f")
  return f2 and f3 and f2.what == "C" and f2.func ~= c_read and f3.func == c_read
end

-- Read stream r to its end (or its first error) with the collector
-- running a whole cycle every few allocations and garbage about whose
-- finaliser calls op() once, the first time it runs inside curl (see
-- inside_curl); elsewhere it leaves garbage like itself. Returns the
-- chunks read, the read's error (nil if none), and whether op ran and
-- what it returned (its pcall).
local function read_with(r, op, times)
  local parts, done, res = {}, false, nil
  local elsewhere, left = 0, times or 1
  local function arm()
    local p = newproxy(true)
    getmetatable(p).__gc = function()
      if done then return end
      if inside_curl() then
        left = left - 1
        done = left == 0
        res = { pcall(op) }
        if not done then arm() end
        return
      end
      elsewhere = elsewhere + 1
      if elsewhere < 5000 then arm() end
    end
  end
  local it = r:iter_bytes()
  -- no compiled code: LuaJIT defers the finalisers due in a trace
  local pause = collectgarbage("setpause", 0)
  local mul = collectgarbage("setstepmul", 100000)
  collectgarbage("restart")
  jit.off()
  jit.flush()
  arm()
  local ok, err = pcall(function()
    while true do
      local chunk = it()
      if chunk == nil then break end
      parts[#parts + 1] = chunk
      if done then
        -- the collector back to normal once op ran
        collectgarbage("setpause", pause)
        collectgarbage("setstepmul", mul)
      end
    end
  end)
  done = true
  jit.on()
  collectgarbage("setpause", pause)
  collectgarbage("setstepmul", mul)
  return table.concat(parts), (not ok) and err or nil, res
end

describe("corio.http a finaliser that calls into the client during a stream read", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  local function big() return within(10, c.stream, c, "GET", "/numbers?n=" .. N) end

  it("closing another stream of the client takes effect after curl returned", function()
    local other = within(5, c.stream, c, "GET", "/numbers?n=" .. N)
    local r = big()
    local body, err, res = within(60, read_with, r, function() other:close() end)
    assert.is_table(res, "the finaliser did not run inside curl")
    assert.is_true(res[1], tostring(res[2]))
    assert.is_nil(err)
    assert.is_true(body == WANT, "the body's bytes differ")
    local e = catch(other.read, other)
    assert.equal("closed", e.kind)
    assert.equal(0, c:stats().in_flight)
    still_works(c)
    local r2 = big()
    assert.is_true(within(30, r2.read, r2) == WANT)
  end)

  it("closing the stream being read: the read returns what it got, then kind closed", function()
    local r = big()
    local body, err, res = within(60, read_with, r, function() r:close() end)
    assert.is_table(res, "the finaliser did not run inside curl")
    assert.is_true(res[1], tostring(res[2]))
    assert.is_table(err, "the read went on after close()")
    assert.equal("closed", err.kind)
    assert.is_true(#body < #WANT and WANT:sub(1, #body) == body, "the bytes read differ")
    assert.equal(0, c:stats().in_flight)
    still_works(c)
    local r2 = big()
    assert.is_true(within(30, r2.read, r2) == WANT)
  end)

  it("client:close(): the stream ends with kind closed; the client is closed", function()
    local r = big()
    local body, err, res = within(60, read_with, r, function() c:close() end)
    assert.is_table(res, "the finaliser did not run inside curl")
    assert.is_true(res[1], tostring(res[2]))
    assert.is_table(err, "the read went on after client:close()")
    assert.equal("closed", err.kind)
    assert.is_true(#body < #WANT and WANT:sub(1, #body) == body, "the bytes read differ")
    assert.equal("closed", catch(within, 5, c.get, c, "/ok").kind)
    c:close()
    local c2 = http.client { base_url = base }
    still_works(c2)
    c2:close()
  end)

  it("starting a request is refused with a clear error; the read loses nothing", function()
    local r = big()
    local body, err, res = within(60, read_with, r, function() return c:get("/ok") end)
    assert.is_table(res, "the finaliser did not run inside curl")
    assert.is_false(res[1])
    assert.equal("invalid", res[2].kind)
    assert.matches("finaliser", res[2].message)
    assert.matches("GET " .. base .. "/ok", res[2].message, 1, true)
    assert.is_nil(err)
    assert.is_true(body == WANT, "the body's bytes differ")
    assert.equal(0, c:stats().in_flight)
    still_works(c)
  end)

  it("reading another stream of the client is refused; that stream reads on afterwards", function()
    local other = within(5, c.stream, c, "GET", "/numbers?n=" .. N)
    local r = big()
    local body, err, res = within(60, read_with, r, function() return other:read() end)
    assert.is_table(res, "the finaliser did not run inside curl")
    assert.is_false(res[1])
    assert.equal("invalid", res[2].kind)
    assert.matches("finaliser", res[2].message)
    assert.is_nil(err)
    assert.is_true(body == WANT, "the body's bytes differ")
    assert.is_true(within(30, other.read, other) == WANT)
    still_works(c)
  end)

  it("cancelling a task that waits for a response of the client", function()
    local t = corio.spawn(function() return c:get("/slow-headers?d=0.5") end)
    corio.sleep(0.05)   -- its request is in flight
    local r = big()
    local body, err, res = within(60, read_with, r, function() t:cancel() end)
    assert.is_table(res, "the finaliser did not run inside curl")
    assert.is_true(res[1], tostring(res[2]))
    assert.is_nil(err)
    assert.is_true(body == WANT, "the body's bytes differ")
    local ok, e = pcall(within, 5, t.join, t)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(e), tostring(e))
    assert.equal(0, c:stats().in_flight)
    still_works(c)
  end)

  it("a stream of the client collected meanwhile is let go after curl returned", function()
    local weak = setmetatable({}, { __mode = "v" })
    weak[1] = within(5, c.stream, c, "GET", "/numbers?n=" .. N)
    local r = big()
    local body, err, res = within(60, read_with, r, function() collectgarbage() end)
    assert.is_table(res, "the finaliser did not run inside curl")
    assert.is_nil(err)
    assert.is_true(body == WANT, "the body's bytes differ")
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
    assert.equal(0, c:stats().in_flight)
    still_works(c)
  end)

  -- Many finalisers inside curl, each doing one of the above at random
  -- to the client's other streams and requests.
  it("many at random: every byte of every stream read to its end arrives", function()
    local rand = helpers.lcg(7)
    for _ = 1, 3 do
      local others, waiters, weak = {}, {}, setmetatable({}, { __mode = "v" })
      for i = 1, 4 do others[i] = within(5, c.stream, c, "GET", "/numbers?n=" .. N) end
      for i = 1, 3 do
        waiters[i] = corio.spawn(function() return c:get("/slow-headers?d=0.3").status end)
      end
      corio.sleep(0.05)
      local closed, refused = {}, 0
      local ops = {
        function() local i = rand(4); closed[i] = true; others[i]:close() end,
        function() waiters[rand(3)]:cancel() end,
        function()
          local i = rand(4)
          if others[i] then closed[i] = true; weak[i] = others[i]; others[i] = false end
        end,
        function()
          local ok, e = pcall(c.get, c, "/ok")
          assert(not ok and e.kind == "invalid", "a request from a finaliser")
          refused = refused + 1
        end,
        function()
          local i = rand(4)
          if others[i] and not closed[i] then
            local ok, e = pcall(others[i].read, others[i])
            assert(not ok and e.kind == "invalid", "a read from a finaliser")
            refused = refused + 1
          end
        end,
      }
      local r = big()
      local body, err, res = within(60, read_with, r, function() ops[rand(#ops)]() end, 12)
      assert.is_nil(err)
      assert.is_table(res, "no finaliser ran inside curl")
      assert.is_true(res[1], tostring(res[2]))
      assert.is_true(body == WANT, "the body's bytes differ")
      for i = 1, 4 do
        local o = others[i]
        if o and closed[i] then
          assert.equal("closed", catch(o.read, o).kind)
        elseif o then
          assert.is_true(within(30, o.read, o) == WANT, "stream " .. i)
        end
      end
      for i = 1, 3 do
        local ok, v = pcall(within, 5, waiters[i].join, waiters[i])
        assert.is_true((ok and v == 200) or (not ok and corio.is_cancelled(v)), tostring(v))
      end
      others = nil
      collectgarbage()
      collectgarbage()
      assert.equal(0, c:stats().in_flight)
      still_works(c)
    end
  end)
end)
