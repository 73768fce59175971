-- http_pool_hunt_spec.lua: corio.http's connection pool when many
-- responses come back while the loop is busy (keep_trim in
-- runtime/http.c shuts the idle connections beyond max_keepalive),
-- against tests/http/server.py. The loop is held by a CPU loop while the
-- answers arrive, so that curl ends several transfers in one call.

local corio = require("corio")
local http = require("corio.http")
local helpers = require("tests.spec.helpers")

local base, stop_server

local function within(secs, fn, ...) return corio.timeout(secs, fn, ...) end

-- c:stats() has the counts in want (only those named are checked)
local function stats_are(c, want)
  local s = c:stats()
  for k, v in pairs(want) do assert.equal(v, s[k], "stats()." .. k) end
end

-- Runs fns together (corio.gather) while the loop is held past their
-- answers; returns their results.
local function busy_gather(fns)
  local res
  corio.scope(function(s)
    s:spawn(function() res = within(10, corio.gather, fns) end)
    corio.sleep(0.02)
    local t = os.clock() + 0.4
    while os.clock() < t do end  -- holds the loop past the answers
  end)
  return res
end

-- n functions that each GET path and return the status
local function gets(c, n, path)
  local fns = {}
  for i = 1, n do fns[i] = function() return c:get(path).status end end
  return fns
end

setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

describe("corio.http pool, responses back while the loop is busy", function()
  it("requests queued on max_connections take the connections handed back, none shut under them",
    function()
      -- two answers arrive together while two requests wait for a
      -- connection: both connections go to those two, none is idle
      local c = http.client { base_url = base,
        limits = { max_connections = 2, max_keepalive = 1 } }
      local st = busy_gather(gets(c, 4, "/slow-headers?d=0.1"))
      for i = 1, 4 do assert.equal(200, st[i]) end
      stats_are(c, { opened = 2, reused = 2, idle = 1, in_flight = 0 })
      helpers.http_still_works(c, 2)
      c:close()
    end)

  it("max_keepalive holds when the requests waiting for those connections give up first",
    function()
      -- two answers arrive together while two requests wait for a
      -- connection; those two reach their pool timeout before curl hands
      -- them the connections: both connections are idle then
      local c = http.client { base_url = base,
        limits = { max_connections = 2, max_keepalive = 1 } }
      local errs = {}
      corio.scope(function(s)
        for i = 1, 2 do
          s:spawn(function()
            assert.equal(200, within(10, c.get, c, "/slow-headers?d=0.3").status)
          end)
        end
        corio.sleep(0.02)  -- the two hold both connections
        for i = 1, 2 do
          s:spawn(function()
            errs[i] = helpers.catch(within, 10, c.get, c, "/ok", { timeout = { pool = 0.5 } })
          end)
        end
        corio.sleep(0.02)  -- the two wait for a connection
        -- holds the loop past the answers and the pool timeouts
        local t = os.clock() + 0.9
        while os.clock() < t do end
      end)
      for i = 1, 2 do
        assert.equal("timeout", errs[i].kind, tostring(errs[i]))
        assert.equal("pool", errs[i].phase)
      end
      stats_are(c, { opened = 2, idle = 1, in_flight = 0 })
      helpers.http_still_works(c, 2)
      stats_are(c, { opened = 2, reused = 1, idle = 1, in_flight = 0 })
      c:close()
    end)
end)
