-- badargs_spec.lua: every public function and method, called with values
-- of every type (nil, booleans, odd numbers, strings, tables, functions,
-- threads, userdata) in one, two and three arguments, returns or raises a
-- readable error within a deadline: no crash, no hang, and the loop is
-- healthy afterwards. The sanitizer build runs this too, so an invalid
-- read or undefined behaviour on any of these paths fails it.

local corio = require("corio")
local fs = require("corio.fs")
local http = require("corio.http")
local testing = require("corio.testing")

local dir = os.tmpname()
os.remove(dir)
assert(os.execute('mkdir -p "' .. dir .. '"') == 0 or true)

local values = {
  n = 20,
  nil, false, true, 0, -1, 1.5, 0 / 0, 1 / 0, -1 / 0, -0.0, 2 ^ 53,
  "", dir .. "/x", "/nonexistent/dir/file", ("a"):rep(5000),
  {}, { 1, 2 }, function() end, coroutine.create(function() end), io.stdout,
}

-- Call f(...) under a short deadline; return true if it raised. An error
-- must be a string or a corio error object whose text says something.
local function call(name, f, ...)
  local ok, err = pcall(corio.timeout, 0.01, f, ...)
  if ok then return false end
  local text = tostring(err)
  assert(type(err) == "string" or corio.is_error(err),
    name .. " raised a " .. type(err) .. ": " .. text)
  assert(#text > 0, name .. " raised an empty error")
  -- an error from inside corio's own code, not one that names the problem
  if not name:find("%._") then   -- (functions starting with _ are internal)
    assert(not text:find("attempt to ", 1, true), name .. " leaked an internal error: " .. text)
  end
  return true
end

local function each_args(fn)
  for i = 1, values.n do
    fn(values[i])
    for j = 1, values.n, 3 do fn(values[i], values[j]) end
    fn(values[i], values[i], values[i])
  end
end

teardown(function() os.execute('rm -rf "' .. dir .. '"') end)

describe("bad arguments to every public function", function()
  local modules = { corio = corio, fs = fs, http = http, testing = testing }
  -- corio.run and the loop drivers are checked in errors_spec/core_spec
  local skip = { run = true, _checkpoint = true }

  for mname, m in pairs(modules) do
    it(mname .. ": every function returns or raises, within a deadline", function()
      local before = #corio.tasks()
      local raised = 0
      local names = {}
      for k, f in pairs(m) do
        if type(f) == "function" and not skip[k] then names[#names + 1] = k end
      end
      table.sort(names)
      assert.is_true(#names > 0)
      for _, k in ipairs(names) do
        each_args(function(...)
          if call(mname .. "." .. k, m[k], ...) then raised = raised + 1 end
        end)
      end
      assert.is_true(raised > 0, "no call raised: the values are not bad")
      -- the loop is healthy: a sleep works and nothing was left running
      corio.sleep(0.001)
      assert.equal(before, #corio.tasks(), "tasks left running by bad calls")
    end)
  end

  it("methods of sync objects, with bad arguments and a bad self", function()
    local makers = {
      semaphore = function() return corio.semaphore(1) end,
      lock = corio.lock,
      event = corio.event,
      channel = function() return corio.channel(1) end,
      rendezvous = function() return corio.channel(0) end,
    }
    local before = #corio.tasks()
    local methods = { "acquire", "release", "try_acquire", "set", "wait",
      "is_set", "send", "recv", "try_send", "try_recv", "close", "iter" }
    for oname, make in pairs(makers) do
      local o = make()
      for _, k in ipairs(methods) do
        local ok, f = pcall(function() return o[k] end)
        if ok and type(f) == "function" then
          for i = 1, values.n do
            local fresh = make()
            call(oname .. ":" .. k, f, fresh, values[i])
            call(oname .. ":" .. k .. " (bad self)", f, values[i])
          end
        end
      end
    end
    corio.sleep(0.001)
    assert.equal(before, #corio.tasks(), "tasks left running by bad calls")
  end)

  it("methods of HTTP clients, tasks and scopes, with bad arguments and a bad self",
    function()
      local before = #corio.tasks()
      local client = http.client {}
      for _, k in ipairs { "get", "post", "put", "patch", "delete", "head",
        "request", "stream", "stats", "close" } do
        local f = client[k]
        assert.is_function(f, k)
        each_args(function(...)
          -- no call may reach the network: every URL here is invalid
          call("client:" .. k .. " (bad self)", f, ...)
          if k ~= "close" then call("client:" .. k, f, client, ...) end
        end)
      end
      assert.is_table(client:stats())
      client:close()
      local task = corio.spawn(function() corio.sleep(10) end)
      corio.scope(function(scope)
        for _, obj in ipairs { task, scope } do
          for _, k in ipairs { "join", "cancel", "status", "spawn" } do
            local ok, f = pcall(function() return obj[k] end)
            if ok and type(f) == "function" then
              for i = 1, values.n do
                call(k .. " (bad self)", f, values[i])
              end
            end
          end
        end
        scope:cancel()
      end)
      task:cancel()
      corio.sleep(0.001)
      assert.equal(before, #corio.tasks(), "tasks left running by bad calls")
    end)

  it("methods of files, new and used, with bad arguments and a bad self", function()
    local before = #corio.tasks()
    local p = dir .. "/file.txt"
    local methods = { "read", "lines", "chunks", "write", "flush", "seek", "close" }
    for _, mode in ipairs { "r", "w", "a+" } do
      for _, k in ipairs(methods) do
        for i = 1, values.n do
          fs.write_file(p, "line 1\nline 2\n")
          local f = fs.open(p, mode)
          call("file:" .. k, f[k], f, values[i])
          call("file:" .. k, f[k], f, values[i], values[i])
          call("file:" .. k .. " (bad self)", f[k], values[i])
          -- used after a bad call: still a file that reads, writes, closes
          -- (unless the call was a close, which may have closed it)
          if k ~= "close" then
            if mode ~= "w" then
              f:seek("set", 0)
              assert.equal("line 1", f:read("l"))
            end
            if mode ~= "r" then f:write("") end
            f:close()
          end
          call("file:" .. k .. " (closed)", f[k], f, values[i])
        end
      end
    end
    corio.sleep(0.001)
    assert.equal(before, #corio.tasks(), "tasks left running by bad calls")
  end)
end)
