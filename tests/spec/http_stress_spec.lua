-- http_stress_spec.lua: randomized runs of many tasks sharing one client
-- against tests/http/server.py: plain, slow, dripping, reset, garbage,
-- streamed and never-answered responses, under random deadlines, task
-- cancels and streams left half-read. Any interleaving must end with:
--   * every request either answered correctly or failed with an error of
--     a documented kind (never a crash, a hang or a wrong body);
--   * no transfer left in flight and the client still working;
--   * connections bounded by max_connections.
-- Seeds are fixed; STRESS_SEEDS=n runs n more.

local corio = require("corio")
local http = require("corio.http")
local helpers = require("tests.spec.helpers")
local base, stop_server

-- SPEC §2's kinds, and Cancelled (a task cancel)
local KINDS = { timeout = true, connect = true, tls = true, network = true,
  protocol = true, status = true, closed = true, redirect = true,
  cancelled = true }

setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

local function run_seed(seed)
  local rand = helpers.lcg(seed)
  local MAXC = 6
  local c = http.client { base_url = base, limits = { max_connections = MAXC },
    timeout = { connect = 2, read = 0.3, pool = 2 } }
  local answered, failed = 0, 0
  local function outcome(ok, err)
    if ok then
      answered = answered + 1
    else
      failed = failed + 1
      assert(corio.is_error(err), "not a corio error: " .. tostring(err))
      assert(KINDS[err.kind], "undocumented kind " .. tostring(err.kind) .. ": " .. tostring(err))
      -- a broken connection is reported with the socket's own error
      assert(not tostring(err.message):find("select/poll", 1, true), tostring(err))
    end
  end
  local reqs = {
    function()
      local r = c:get("/ok")
      assert(r.status == 200 and r:text() == "hello", "wrong /ok answer")
    end,
    function()
      local n = rand(5000)
      local r = c:get("/bytes/" .. n)
      assert(#r:text() == n, "wrong body length")
    end,
    function() c:get("/slow-body?d=0.05") end,
    function() c:get("/drip?n=3&d=0.02") end,
    function() c:get("/reset") end,
    function() c:get("/garbage") end,
    function() c:get("/never", { timeout = 0.05 }) end,
    function() c:get("/status/503"):raise_for_status() end,
    function()   -- a stream read partly, then left
      c:stream("GET", "/stream?n=20&size=2000", function(r)
        local i = 0
        for _ in r:iter_bytes() do
          i = i + 1
          if i == rand(5) then break end
        end
      end)
    end,
    function()   -- a body and its echo
      local body = ("b"):rep(rand(70000))
      local r = c:post("/echo", { body = body, headers = { ["X-N"] = "1" } })
      local e = r:json()
      assert(e.body == body and e.method == "POST", "wrong echo")
    end,
    function()   -- JSON, params, a redirect chain followed
      local r = c:put("/echo", { json = { a = 1 }, params = { q = "x y" } })
      assert(r:json().args.q[1] == "x y", "wrong params")
      r = c:get("/redirect/3", { follow_redirects = true })
      assert(r.status == 200 and r:text() == "landed", "redirects not followed")
    end,
    function()   -- decoded gzip
      local r = c:get("/gzip?n=300")
      assert(#r:text() == tonumber(r.headers["X-Plain-Length"]), "gzip not decoded")
    end,
    function() c:get("/big-headers") end,
    function() c:get("/truncated-chunked") end,
    function() c:get("/slow-headers?d=" .. (rand(2) == 1 and "0.05" or "0.5")) end,
    function()   -- a slow stream, often cut by a deadline while a read waits
      c:stream("GET", "/drip?n=6&d=0.01", function(r)
        local n = 0
        for chunk in r:iter_bytes() do n = n + #chunk end
        assert(n == 6, "wrong drip length")
      end)
    end,
    function()   -- a stream read fully, by lines
      c:stream("GET", "/lines", function(r)
        local n = 0
        for _ in r:iter_lines() do n = n + 1 end
        assert(n == 4, "wrong line count")
      end)
    end,
  }
  local workers = {}
  corio.timeout(20, function()
    corio.scope(function(s)
      for w = 1, 12 do
        workers[w] = s:spawn(function()
          for _ = 1, 8 do
            local f = reqs[rand(#reqs)]
            if rand(4) == 1 then
              outcome(pcall(corio.timeout, rand(3) * 0.01, f))
            else
              outcome(pcall(f))
            end
          end
        end)
      end
      s:spawn(function()
        for _ = 1, 4 do
          corio.sleep(rand(5) * 0.01)
          workers[rand(#workers)]:cancel()
        end
      end)
    end)
  end)
  assert(answered > 0 and failed > 0,
    ("seed %d exercised little: %d answered, %d failed"):format(seed, answered, failed))
  local st = c:stats()
  assert.equal(0, st.in_flight, "transfers left in flight")
  assert(st.idle <= MAXC, "more idle connections than max_connections")
  local r = corio.timeout(2, c.get, c, "/ok")
  assert.equal("hello", r:text())
  c:close()
end

describe("randomized HTTP requests under deadlines and cancels", function()
  for _, seed in ipairs(helpers.stress_seeds { 1, 2, 3 }) do
    it("seed " .. seed .. " ends with every request accounted for and the client usable",
      function()
        helpers.no_tasks_left(run_seed, seed)
      end)
  end
end)
