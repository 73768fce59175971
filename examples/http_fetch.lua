-- http_fetch.lua: the everyday patterns of an async HTTP program.
--   corio examples/http_fetch.lua [base_url [path]]
-- Fetch one resource, fetch many in parallel with gather, and fetch a
-- list with bounded concurrency (corio.map{limit}), with timeouts.
local corio = require "corio"
local http = require "corio.http"

local base = arg and arg[1] or "http://127.0.0.1:18080"
local path = arg and arg[2] or "/1k.bin"
local client = http.client { base_url = base, timeout = { connect = 2, read = 5, total = 30 } }

-- one
local r = client:get(path)
print("one:", r.status, #r:text(), r.http_version, ("%.1f ms"):format(r.elapsed * 1000))

-- many in parallel
local bodies = corio.gather {
  function() return #client:get(path):raise_for_status():text() end,
  function() return #client:get(path):raise_for_status():text() end,
  function() return #client:get(path):raise_for_status():text() end,
}
print("gather:", table.concat(bodies, " "))

-- bounded concurrency: 100 URLs, at most 8 at a time
local paths = {}
for i = 1, 100 do paths[i] = path .. "?i=" .. i end
local sizes = corio.map(paths, function(p) return #client:get(p):text() end, { limit = 8 })
print("map:", #sizes, "responses; pool:", client:stats().opened, "connections opened")

client:close()
