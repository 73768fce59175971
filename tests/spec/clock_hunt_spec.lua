-- clock_hunt_spec.lua: defects found in what sleeps and deadlines count
-- from (runtime/rt.c corio__base, docs/semantics.md). Each test checks a
-- lower bound on a clock corio does not read, or on corio.now() read
-- before the sleep, so a loaded machine can only make it pass more
-- easily; before its fix each one failed.

local corio = require("corio")
local testing = require("corio.testing")
local helpers = require("tests.spec.helpers")

local mono, hold = helpers.mono, helpers.hold

describe("clock hunt", function()
  it("a task spawned under autojump that starts on the real clock sleeps its whole time", function()
    -- The virtual clock stood still through the real 0.3 s: the task's
    -- spawn was stamped with it, and counted from there on the real
    -- clock its start looked 0.3 s late, so its 0.2 s sleep ended at once.
    local took
    corio.scope(function(s)
      testing.autojump(function()
        testing.sleep_real(0.3)
        s:spawn(function()
          local t0 = mono()
          corio.sleep(0.2)
          took = mono() - t0
        end)
      end)  -- the virtual clock is off before the task starts
    end)
    assert.is_true(took >= 0.2, "slept " .. took)
  end)

  it("and one spawned on the real clock that starts under autojump sleeps virtual time only", function()
    -- (the virtual clock has no discount: 5 s from the call, exactly)
    local log, t0 = {}, nil
    corio.scope(function(s)
      s:spawn(function()
        corio.sleep(5)
        log[#log + 1] = corio.now() - t0
      end)
      hold(0.05)  -- the spawn is 0.05 s old when the task starts
      testing.autojump(function()
        t0 = corio.now()
        corio.sleep(10)
      end)
    end)
    assert.equal(1, #log)
    assert.is_true(math.abs(log[1] - 5) < 1e-6, tostring(log[1]))
  end)

  it("a sleep of a task spawned after its spawner read corio.now() ends d after that read", function()
    -- busted's own watcher (or any spawn) begins a burst; the body then
    -- reads t0 and spawns: that spawn joined the burst, and its sleep was
    -- counted from the burst's start, before t0.
    local took
    corio.scope(function(s)
      s:spawn(function() end)  -- a burst begins
      hold(0.03)               -- less than the 50 ms gap that ends it
      local t0 = corio.now()
      s:spawn(function()
        corio.sleep(0.05)
        took = corio.now() - t0
      end)
    end)
    assert.is_true(took >= 0.05, "slept " .. took .. " after t0")
  end)

  it("and so does a deadline", function()
    local took
    corio.scope(function(s)
      s:spawn(function() end)
      hold(0.03)
      local t0 = corio.now()
      s:spawn(function()
        assert.is_false(corio.move_on_after(0.05, corio.sleep, 10))
        took = corio.now() - t0
      end)
    end)
    assert.is_true(took >= 0.05, "moved on " .. took .. " after t0")
  end)
end)

describe("clock hunt: HTTP timeouts", function()
  local http = require("corio.http")
  local helpers = require("tests.spec.helpers")
  local base, stop, c
  require("corio.busted").timeout(30)  -- each test holds the loop 1.2 s

  setup(function()
    base, stop = helpers.http_server()
    c = http.client({ base_url = base })
  end)

  teardown(function()
    c:close()
    stop()
  end)

  it("a request's total timeout counts from the call, not from the loop's last look at the clock", function()
    c:get("/ok")
    -- the task computes for 1.2 s in one run: the loop's cached time
    -- (uv_now) stays where it was, and a total of 1 s counted from it had
    -- passed before the request began
    hold(1.2)
    local r = c:get("/slow-headers?d=0.05", { timeout = { total = 1 } })
    assert.equal(200, r.status)
  end)

  it("a read timeout is not taken by a loop another task held while the server answered", function()
    c:get("/ok")
    local status
    corio.scope(function(s)
      s:spawn(function()
        -- answered 0.1 s after the request, well inside the 1 s read
        -- timeout; the timer ran before the poll that would have seen it
        status = c:get("/slow-headers?d=0.1", { timeout = { read = 1 } }).status
      end)
      s:spawn(function()
        corio.sleep(0.05)
        hold(1.2)
      end)
    end)
    assert.equal(200, status)
  end)

  it("a write timeout is not taken by a loop another task held while the server read", function()
    -- 16 MiB to a server that reads 1 MiB every 50 ms (~0.8 s in all):
    -- no gap near the 1 s write timeout, but another task holds the loop
    -- 1.2 s in the middle; the timer ran before the poll that would have
    -- found the socket writable again
    local body = string.rep("x", 16 * 1048576)
    local status, text
    corio.scope(function(s)
      s:spawn(function()
        local r = c:post("/slow-read?n=1048576&d=0.05", { body = body,
          timeout = { write = 1, read = 5 } })
        status, text = r.status, r:text()
      end)
      s:spawn(function()
        corio.sleep(0.2)
        hold(1.2)
      end)
    end)
    assert.equal(200, status)
    assert.equal(tostring(#body), text)
  end)

  it("a slow consumer of a stream is not a slow server", function()
    -- 5 bytes, 0.3 s, 5 bytes: no gap near the 1 s read timeout; the
    -- reader computes for 1.2 s after the first chunk (twice: the second
    -- stream, on the connection the first one left, was timed out)
    for _ = 1, 2 do
      local n = 0
      c:stream("GET", "/slow-body?d=0.3", { timeout = { read = 1 } }, function(r)
        for chunk in r:iter_bytes() do
          if n == 0 then hold(1.2) end
          n = n + #chunk
        end
      end)
      assert.equal(10, n)
    end
  end)
end)
