-- channel_spec.lua: SPEC §1 corio.channel: rendezvous and buffered sends,
-- close and draining, iter, try_send/try_recv, FIFO hand-off (rule 8) and
-- cancelled senders and receivers (rule 7). Cancellation checks on entry
-- are in scope_spec.lua (rule 3); bad arguments in errors_spec.lua.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch, new_log = helpers.catch, helpers.new_log
local testing = require("corio.testing")

local function index_of(list, v)
  for i, x in ipairs(list) do if x == v then return i end end
  return nil
end

local drain = helpers.drain

describe("corio.channel", function()
  it("is unbuffered by default: send waits for a receiver", function()
    local log, add = new_log()
    local ch = corio.channel()
    assert.is_false(ch:try_send(1)) -- nobody receives
    corio.scope(function(s)
      s:spawn(function()
        add("send start")
        ch:send("v")
        add("send done")
      end)
      s:spawn(function()
        corio.sleep(0.01)
        add("recv start")
        add(ch:recv())
      end)
    end)
    assert.equal(1, index_of(log, "send start"))
    assert.equal(2, index_of(log, "recv start"))
    assert.is_true(index_of(log, "send done") > 2)
    assert.is_not_nil(index_of(log, "v"))
  end)

  it("recv waits for a sender", function()
    local log, add = new_log()
    local ch = corio.channel(0)
    corio.scope(function(s)
      s:spawn(function() add(ch:recv()) end)
      corio.sleep(0.01)
      add("sending")
      ch:send(42)
    end)
    assert.same({ "sending", 42 }, log)
  end)

  it("buffers up to capacity, FIFO", function()
    local ch = corio.channel(3)
    ch:send(1)
    ch:send(2)
    assert.is_true(ch:try_send(3))
    assert.is_false(ch:try_send(4)) -- full
    assert.equal(1, ch:recv())
    assert.same({ true, 2 }, { ch:try_recv() })
    assert.equal(3, ch:recv())
    local ok, v = ch:try_recv()
    assert.is_false(ok)
    assert.is_nil(v)
  end)

  it("send blocks while the buffer is full", function()
    local log, add = new_log()
    local ch = corio.channel(1)
    corio.scope(function(s)
      s:spawn(function()
        ch:send("a")
        add("sent a")
        ch:send("b")
        add("sent b")
      end)
      corio.sleep(0.01)
      add("recv " .. ch:recv())
      add("recv " .. ch:recv())
    end)
    assert.equal(1, index_of(log, "sent a"))
    assert.equal(2, index_of(log, "recv a"))
    assert.is_not_nil(index_of(log, "sent b"))
    assert.is_not_nil(index_of(log, "recv b"))
  end)

  it("passes tables by reference and false as a value", function()
    local ch = corio.channel(3)
    local t = {}
    ch:send(t)
    ch:send(false)
    assert.is_true(rawequal(t, ch:recv()))
    local v, extra = ch:recv()
    assert.equal(false, v)
    assert.is_nil(extra)
  end)

  it("try_recv takes a value from a blocked sender", function()
    local ch = corio.channel(0)
    local sent = false
    corio.scope(function(s)
      s:spawn(function() ch:send(5); sent = true end)
      corio.yield()
      assert.same({ true, 5 }, { ch:try_recv() })
    end)
    assert.is_true(sent)
  end)

  it("try_send hands a value to a blocked receiver", function()
    local ch = corio.channel(0)
    local got
    corio.scope(function(s)
      s:spawn(function() got = ch:recv() end)
      corio.yield()
      assert.is_true(ch:try_send("x"))
    end)
    assert.equal("x", got)
  end)

  it("send(nil) raises", function()
    local ch = corio.channel(1)
    local err = catch(ch.send, ch, nil)
    assert.is_not_nil(err)
    assert.is_false((ch:try_recv())) -- nothing was queued
  end)

  describe("close", function()
    it("recv drains buffered values first, then returns nil, 'closed'",
      function()
        local ch = corio.channel(3)
        ch:send(1)
        ch:send(2)
        ch:close()
        assert.equal(1, ch:recv())
        assert.same({ true, 2 }, { ch:try_recv() })
        local v, why = ch:recv()
        assert.is_nil(v)
        assert.equal("closed", why)
        v, why = ch:recv() -- and again
        assert.is_nil(v)
        assert.equal("closed", why)
      end)

    it("try_recv returns false, 'closed' once closed and drained", function()
      local ch = corio.channel(1)
      ch:send("last")
      ch:close()
      assert.same({ true, "last" }, { ch:try_recv() })
      local ok, why = ch:try_recv()
      assert.equal(false, ok)
      assert.equal("closed", why)
    end)

    it("wakes blocked receivers with nil, 'closed'", function()
      local log, add = new_log()
      local ch = corio.channel(0)
      corio.scope(function(s)
        for i = 1, 2 do
          s:spawn(function()
            local v, why = ch:recv()
            add(i .. ":" .. tostring(v) .. ":" .. tostring(why))
          end)
        end
        corio.sleep(0.01)
        ch:close()
      end)
      assert.same({ "1:nil:closed", "2:nil:closed" }, log)
    end)

    it("send and try_send raise kind 'closed' after close", function()
      local ch = corio.channel(2)
      ch:close()
      local err = catch(ch.send, ch, 1)
      assert.equal("closed", err.kind)
      local err2 = catch(ch.try_send, ch, 1)
      assert.equal("closed", err2.kind)
      assert.same({ false, "closed" }, { ch:try_recv() })
    end)

    it("senders blocked at close get the 'closed' error and deliver nothing",
      function()
        local kinds = {}
        local ch = corio.channel(1)
        ch:send("buffered")
        corio.scope(function(s)
          for i = 1, 2 do
            s:spawn(function()
              local ok, err = pcall(ch.send, ch, "blocked " .. i)
              kinds[i] = ok and "sent" or err.kind
            end)
          end
          corio.sleep(0.01)
          ch:close()
        end)
        assert.same({ "closed", "closed" }, kinds)
        assert.equal("buffered", ch:recv())
        local v, why = ch:recv()
        assert.is_nil(v)
        assert.equal("closed", why)
      end)
  end)

  describe("iter", function()
    it("yields every value until the channel is closed and drained",
      function()
        local ch = corio.channel(2)
        local got = {}
        corio.scope(function(s)
          s:spawn(function()
            for _, v in ipairs({ 1, false, "three", 4 }) do ch:send(v) end
            ch:close()
          end)
          for v in ch:iter() do got[#got + 1] = v end
        end)
        assert.same({ 1, false, "three", 4 }, got)
      end)
  end)

  describe("rule 8: FIFO", function()
    it("rule 8: blocked receivers get values in arrival order", function()
      local got = {}
      local ch = corio.channel(0)
      corio.scope(function(s)
        for i = 1, 4 do
          s:spawn(function() got[i] = ch:recv() end)
          corio.yield()
        end
        for v = 1, 4 do ch:send("v" .. v) end
      end)
      assert.same({ "v1", "v2", "v3", "v4" }, got)
    end)

    it("rule 8: blocked senders deliver in arrival order, after the buffer",
      function()
        local ch = corio.channel(2)
        ch:send(1)
        ch:send(2)
        local got = {}
        corio.scope(function(s)
          for v = 3, 5 do
            s:spawn(function() ch:send(v) end)
            corio.yield()
          end
          for _ = 1, 5 do got[#got + 1] = ch:recv() end
        end)
        assert.same({ 1, 2, 3, 4, 5 }, got)
      end)

    it("rule 8: a value sent to a waiting receiver is handed to it directly",
      function()
        local ch = corio.channel(1)
        local got
        corio.scope(function(s)
          s:spawn(function() got = ch:recv() end)
          corio.yield() -- the receiver is blocked
          assert.is_true(ch:try_send("x"))
          -- the value belongs to the waiting receiver: nothing to steal
          assert.is_false((ch:try_recv()))
        end)
        assert.equal("x", got)
      end)
  end)

  describe("rule 7: cancellation", function()
    it("rule 7: a cancelled recv loses nothing", function()
      testing.autojump(function()
        local ch = corio.channel(0)
        assert.is_false(corio.move_on_after(1, function() ch:recv() end))
        -- the cancelled receiver left the queue: nobody takes a value now
        assert.is_false(ch:try_send("x"))
        local got
        corio.scope(function(s)
          s:spawn(function() got = ch:recv() end)
          corio.yield()
          ch:send("y")
        end)
        assert.equal("y", got)

        local buffered = corio.channel(2)
        assert.is_false(corio.move_on_after(1, function() buffered:recv() end))
        buffered:send("kept")
        assert.same({ "kept" }, drain(buffered))
      end)
    end)

    it("rule 7: a cancelled receiver in the middle of the queue is skipped",
      function()
        local got = {}
        local ch = corio.channel(0)
        corio.scope(function(s)
          local tasks = {}
          for i = 1, 3 do
            tasks[i] = s:spawn(function() got[i] = ch:recv() end)
            corio.yield()
          end
          tasks[2]:cancel()
          ch:send("a")
          ch:send("b")
        end)
        assert.equal("a", got[1])
        assert.is_nil(got[2])
        assert.equal("b", got[3])
      end)

    it("rule 7: a cancelled send delivers nothing", function()
      testing.autojump(function()
        local ch = corio.channel(0)
        assert.is_false(corio.move_on_after(1, function() ch:send("lost") end))
        assert.is_false((ch:try_recv()))
        local got
        corio.scope(function(s)
          s:spawn(function() ch:send("kept") end)
          got = ch:recv()
        end)
        assert.equal("kept", got)
      end)
    end)

    it("rule 7: a cancelled sender in the middle of the queue is skipped",
      function()
        local ch = corio.channel(0)
        local got = {}
        corio.scope(function(s)
          local tasks = {}
          for i = 1, 3 do
            tasks[i] = s:spawn(function() ch:send(i) end)
            corio.yield()
          end
          tasks[2]:cancel()
          got[1] = ch:recv()
          got[2] = ch:recv()
          assert.is_false((ch:try_recv()))
        end)
        assert.same({ 1, 3 }, got)
      end)
  end)
end)
