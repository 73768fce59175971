-- http_download.lua: stream a large download to a file with progress.
--   corio examples/http_download.lua URL [output]
-- The body goes to disk chunk by chunk (client:stream + iter_bytes, the
-- file written with corio.fs), so memory stays bounded however large the
-- file is: while the disk is slower than the network the transfer pauses.
-- It writes to OUTPUT.part and renames it when the body is complete, so a
-- failed download never leaves a truncated file under the final name.
local corio = require "corio"
local http = require "corio.http"
local fs = require "corio.fs"

local url = arg and arg[1] or "http://127.0.0.1:18080/512m.bin"
local output = arg and arg[2] or url:match("([^/?#]+)[^/]*$") or "download.bin"

-- A client with timeouts: connect fast, and no more than 10 s without a
-- byte; no total limit, since a large file may take long.
local client = http.client { timeout = { connect = 5, read = 10 } }

local function human(n)
  if n >= 1048576 then return ("%.1f MiB"):format(n / 1048576) end
  if n >= 1024 then return ("%.1f KiB"):format(n / 1024) end
  return ("%d B"):format(n)
end

local part = output .. ".part"
local t0 = corio.now()
local got, total = 0, nil
local ok, err = pcall(client.stream, client, "GET", url, function(r)
  r:raise_for_status()
  total = tonumber(r.headers["content-length"])
  local next_report, step = 0, total and total / 10 or 1048576
  fs.with_open(part, "w", function(f)
    for chunk in r:iter_bytes() do
      f:write(chunk)
      got = got + #chunk
      if got >= next_report then
        local pct = total and ("%3d%%"):format(math.floor(got * 100 / total)) or "  ?%"
        print(("progress: %s %s of %s"):format(pct, human(got), total and human(total) or "?"))
        next_report = next_report + step
      end
    end
  end)
end)
client:close()

-- Failing with an error (not os.exit) lets the runtime close: the exit
-- status is 1 and the message goes to stderr.
if not ok then
  if fs.exists(part) then fs.remove(part) end
  error("download failed: " .. (type(err) == "table" and err.message or tostring(err)), 0)
end
if total and got ~= total then  -- cannot happen: curl checks the length
  fs.remove(part)
  error(("download failed: %d of %d bytes"):format(got, total), 0)
end
fs.rename(part, output)
local dt = corio.now() - t0
print(("done: %s to %s in %.2f s (%.1f MiB/s)"):format(human(got), output, dt,
  got / 1048576 / math.max(dt, 1e-6)))
