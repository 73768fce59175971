-- testing_parity_spec.lua: corio.testing checked against the facts of
-- trio.testing (MockClock autojump, wait_all_tasks_blocked,
-- assert_checkpoints). Where corio differs on purpose, docs/api.md says so;
-- these tests pin what it does.
local corio = require("corio")
local testing = require("corio.testing")
local mono = require("tests.spec.helpers").mono

describe("parity: wait_all_tasks_blocked", function()
  it("two tasks calling it at once both return (each counts the other as blocked)",
    function()
      local done = 0
      local a = corio.spawn(function()
        testing.wait_all_tasks_blocked(); done = done + 1
      end)
      local b = corio.spawn(function()
        testing.wait_all_tasks_blocked(); done = done + 1
      end)
      corio.timeout(2, function() a:join(); b:join() end)
      assert.are.equal(2, done)
    end)

  it("a task sleeping on a timer counts as blocked: no wait for the timer",
    function()
      local woke = false
      local t = corio.spawn(function() corio.sleep(0.5); woke = true end)
      local t0 = corio.now()
      testing.wait_all_tasks_blocked()
      assert.is_true(corio.now() - t0 < 0.25)
      assert.is_false(woke)
      t:cancel()
    end)

  it("a task waiting for a to_thread worker counts as blocked (as in trio)",
    function()
      local ran = false
      local t = corio.spawn(function()
        corio.to_thread(function()
          local ffi = require("ffi")
          pcall(ffi.cdef, "int usleep(unsigned int);")
          ffi.C.usleep(300000)
        end)
        ran = true
      end)
      testing.wait_all_tasks_blocked()
      assert.is_false(ran)
      t:join()
      assert.is_true(ran)
    end)

  it("under autojump it returns before the clock jumps (trio: it takes "
    .. "priority over the autojump)", function()
      testing.autojump(function()
        local t0 = corio.now()
        local woke
        corio.spawn(function() corio.sleep(10); woke = corio.now() - t0 end)
        testing.wait_all_tasks_blocked()
        assert.are.equal(0, corio.now() - t0)
        assert.is_nil(woke)
        corio.sleep(20)
        assert.is_true(math.abs(woke - 10) < 1e-6)
      end)
    end)

  it("takes no cushion: an argument is refused, not silently ignored",
    function()
      local ok, e = pcall(testing.wait_all_tasks_blocked, 0.1)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'wait_all_tasks_blocked'", e, 1, true)
      assert.matches("cushion", e, 1, true)
    end)
end)

describe("parity: deadlines on the virtual clock", function()
  it("fire in the order of their deadlines, each at its virtual time",
    function()
      local log = testing.autojump(function()
        local log, t0 = {}, corio.now()
        local function at(name)
          log[#log + 1] = ("%s@%g"):format(name,
            math.floor((corio.now() - t0) * 1000 + 0.5) / 1000)
        end
        corio.scope(function(s)
          s:spawn(function()
            corio.move_on_after(3, corio.sleep, 100); at("move_on_after 3")
          end)
          s:spawn(function()
            pcall(corio.timeout, 1, corio.sleep, 100); at("timeout 1")
          end)
          s:spawn(function() corio.sleep(2); at("sleep 2") end)
          s:spawn(function()
            -- the outer, earlier deadline wins over the inner one
            corio.move_on_after(2.5, corio.timeout, 10, corio.sleep, 100)
            at("move_on_after 2.5 around timeout 10")
          end)
        end)
        return log
      end)
      assert.are.same({ "timeout 1@1", "sleep 2@2",
        "move_on_after 2.5 around timeout 10@2.5", "move_on_after 3@3" }, log)
    end)
end)

describe("parity: autojump nested and around deadlines", function()
  it("nested in one task: the clock stays virtual until the outer ends, "
    .. "also after the inner one raised", function()
      local inner, outer, after_error = testing.autojump(function()
        local t0 = corio.now()
        local inner = testing.autojump(function()
          corio.sleep(100); return corio.now() - t0
        end)
        corio.sleep(50)
        local outer = corio.now() - t0
        pcall(testing.autojump, function() error("inner", 0) end)
        local t1 = corio.now()
        corio.sleep(1000)
        return inner, outer, corio.now() - t1
      end)
      assert.is_true(math.abs(inner - 100) < 1e-6)
      assert.is_true(math.abs(outer - 150) < 1e-6)
      assert.is_true(math.abs(after_error - 1000) < 1e-6)
    end)

  it("a deadline armed before autojump began runs on the virtual clock "
    .. "inside it", function()
      local t0, r0 = corio.now(), mono()
      local ok, e = pcall(corio.timeout, 1, testing.autojump, function()
        corio.sleep(3600)
      end)
      assert.is_false(ok)
      assert.is_true(corio.is_error(e, "timeout"))
      assert.is_true(math.abs(corio.now() - t0 - 1) < 0.5)
      assert.is_true(mono() - r0 < 0.5)      -- it jumped, no real wait
    end)
end)

describe("parity: autojump beside real work", function()
  -- trio's autojump_threshold=0 would jump while a task waits on real
  -- work; corio documents that the clock does not (docs/api.md).
  it("file operations run before a sleeper's timer: no jump past them",
    function()
      local fs = require("corio.fs")
      local path = os.tmpname()
      local log = testing.autojump(function()
        local log = {}
        corio.scope(function(s)
          s:spawn(function() corio.sleep(2); log[#log + 1] = "sleeper" end)
          s:spawn(function()
            for i = 1, 20 do
              fs.write_file(path, ("x"):rep(i))
              assert.are.equal(i, #fs.read_file(path))
            end
            log[#log + 1] = "files"
          end)
        end)
        return log
      end)
      os.remove(path)
      assert.are.same({ "files", "sleeper" }, log)
    end)
end)

describe("parity: assert_checkpoints on fast paths", function()
  -- trio: acquire with a free permit and a buffered send/receive still
  -- checkpoint; the *_nowait forms do not.
  local function checkpoints(fn)
    return (pcall(testing.assert_checkpoints, fn))
  end

  it("semaphore and lock acquire with a free permit are checkpoints", function()
    local sem, lock = corio.semaphore(1), corio.lock()
    assert.is_true(checkpoints(function() sem:acquire() end))
    sem:release()
    assert.is_true(checkpoints(function() lock:acquire() end))
    lock:release()
  end)

  it("channel send/recv that need not wait are checkpoints, try_* are not",
    function()
      local ch = corio.channel(1)
      assert.is_false(checkpoints(function() assert(ch:try_send(1)) end))
      assert.is_false(checkpoints(function() assert(ch:try_recv()) end))
      assert.is_true(checkpoints(function() ch:send(1) end))
      assert.is_true(checkpoints(function() ch:recv() end))
    end)

  it("yield, sleep(0) and waiting on a set event are checkpoints", function()
    local ev = corio.event(); ev:set()
    assert.is_true(checkpoints(corio.yield))
    assert.is_true(checkpoints(function() corio.sleep(0) end))
    assert.is_true(checkpoints(function() ev:wait() end))
  end)

  it("spawn, now, an empty scope and an empty autojump are not", function()
    assert.is_false(checkpoints(function() corio.spawn(function() end) end))
    assert.is_false(checkpoints(corio.now))
    assert.is_false(checkpoints(function() corio.scope(function() end) end))
    assert.is_false(checkpoints(function()
      testing.autojump(function() end)
    end))
  end)

  it("fn's own error comes through unchanged", function()
    local ok, e = pcall(testing.assert_checkpoints, function()
      error("mine", 0)
    end)
    assert.is_false(ok)
    assert.are.equal("mine", e)
  end)

  it("there is no assert_no_checkpoints (docs: differences from trio)",
    function()
      assert.is_nil(testing.assert_no_checkpoints)
    end)
end)
