-- hunt_sync_spec.lua: regressions found by a bug hunt through the
-- synchronisation and concurrency helpers (semaphore, lock, event,
-- channel, gather, map, first, to_thread). Each test failed before the fix
-- committed with it, unless it says it guards behaviour that was right.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch

describe("semaphore:with and lock:with given a non-function", function()
  it("raise a bad argument error naming 'with', and take no permit", function()
    local s = corio.semaphore(1)
    local err = catch(s.with, s, 42)
    assert.matches("bad argument #1 to 'with' %(function expected, got number%)", tostring(err))
    assert.equal(1, s.available)
    local l = corio.lock()
    err = catch(l.with, l, nil)
    assert.matches("bad argument #1 to 'with' %(function expected, got nil%)", tostring(err))
    assert.is_false(l:locked())
  end)
end)

