-- docs_audit_spec.lua: behaviour the documentation (README.md, docs/*.md)
-- promises, found wrong or untested by the documentation audit.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local http = require("corio.http")

describe("corio.http invalid-argument errors", function()
  -- SPEC §2 and the README: "Every error names the method and URL",
  -- kind "invalid" included, when the URL is known.
  local c
  before_each(function() c = http.client { base_url = "http://127.0.0.1:9" } end)
  after_each(function() c:close() end)

  local function names_request(method, url, fn, what)
    local err = catch(fn)
    assert.equal("invalid", err.kind, tostring(err))
    assert.equal(method, err.method, tostring(err))
    assert.equal(url, err.url, tostring(err))
    assert.truthy(err.message:find(method .. " " .. url .. ": ", 1, true), err.message)
    assert.truthy(err.message:find(what, 1, true), err.message)
  end

  it("name the method and URL of a request with bad options", function()
    local u = "http://127.0.0.1:9/ok"
    names_request("GET", u, function() return c:get("/ok", { bogus = 1 }) end, "unknown option 'bogus'")
    names_request("GET", u, function() return c:get("/ok", { timeout = -1 }) end, "timeout")
    names_request("POST", u, function() return c:post("/ok", { json = print }) end, "json")
    names_request("HEAD", u, function() return c:head("/ok", { body = "x" }) end, "HEAD")
    names_request("GET", u, function() return c:get("/ok", { params = { a = print } }) end, "params")
    names_request("PUT", u, function() return c:put("/ok", { headers = { ["X-A"] = "a\r\nB: 1" } }) end, "X-A")
    names_request("PATCH", u, function() return c:request("patch", "/ok", { max_redirects = -1 }) end,
      "max_redirects")
    names_request("GET", u, function() return c:stream("GET", "/ok", "opts") end, "opts")
  end)

  it("a later argument error without a request names none", function()
    catch(function() return c:get("/ok", { bogus = 1 }) end)
    local err = catch(function() return http.client { nope = true } end)
    assert.equal("invalid", err.kind)
    assert.is_nil(err.method)
    assert.is_nil(err.message:find("http://", 1, true), err.message)
  end)

  it("the client still works after one", function()
    local t = http.client { transport = function() return { status = 200, body = "hi" } end }
    catch(function() return t:get("http://x/", { bogus = 1 }) end)
    assert.equal("hi", t:get("http://x/"):text())
    t:close()
  end)
end)

describe("corio.fs options", function()
  -- as corio.http (and Python's keyword arguments), a misspelt option is
  -- an error, not silently ignored: {parent = true} would otherwise fail
  -- later with ENOENT, {buffersize = n} use the default buffer
  local fs = require("corio.fs")
  local dir
  before_each(function() dir = helpers.temp_dir("docs_audit") end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("fs.open rejects an unknown option, naming it", function()
    local err = catch(fs.open, dir .. "/x", "w", { buffersize = 16 })
    assert.equal("bad argument #3 to 'open' (unknown option 'buffersize')", err)
    assert.is_false(fs.exists(dir .. "/x"))
  end)

  it("fs.mkdir rejects an unknown option, naming it", function()
    local err = catch(fs.mkdir, dir .. "/a/b", { parent = true })
    assert.equal("bad argument #2 to 'mkdir' (unknown option 'parent')", err)
  end)

  it("fs.stat rejects an unknown option, naming it", function()
    local err = catch(fs.stat, dir, { follows = false })
    assert.equal("bad argument #2 to 'stat' (unknown option 'follows')", err)
  end)

  it("an unknown option or a non-table to gather, map and fs is named at the caller's line", function()
    -- one check serves corio.gather and corio.fs (corio._check_opts)
    local line
    local function at(f, ...)
      local args = { n = select("#", ...), ... }
      local ok, err = pcall(function()
        line = debug.getinfo(1, "l").currentline; f(unpack(args, 1, args.n))
      end)
      assert.is_false(ok)
      return (err:gsub("^.-docs_audit_spec%.lua:" .. line .. ": ", "caller: "))
    end
    assert.same({
      "caller: bad argument #2 to 'gather' (unknown option 'return_error')",
      "caller: bad argument #3 to 'map' (table expected, got string)",
      "caller: bad argument #3 to 'open' (unknown option 'bufsize')",
      "caller: bad argument #2 to 'stat' (table expected, got boolean)",
      "caller: bad argument #2 to 'mkdir' (unknown option 'parent')",
    }, {
      at(corio.gather, {}, { return_error = true }),
      at(corio.map, {}, function() end, "limit"),
      at(fs.open, dir .. "/x", "w", { bufsize = 1 }),
      at(fs.stat, dir, false),
      at(fs.mkdir, dir .. "/a", { parent = true }),
    })
  end)

  it("the documented options still work", function()
    fs.mkdir(dir .. "/a/b", { parents = true, mode = tonumber("755", 8) })
    local f = fs.open(dir .. "/a/b/f", "w", { buffer_size = 16 })
    f:write(string.rep("x", 100))
    f:close()
    assert.equal(100, fs.stat(dir .. "/a/b/f", { follow = false }).size)
  end)
end)
