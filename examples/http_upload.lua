-- http_upload.lua: upload a large file with progress, without reading it
-- into memory.
--   corio examples/http_upload.lua URL FILE [METHOD]
-- The body is an iterator function: corio.http calls it for each next
-- chunk once libcurl has sent the last one, in this task and outside
-- libcurl, so it may block on a file read. The file is read in 256 KiB
-- chunks with corio.fs; its size goes out as Content-Length (without one
-- the body would be sent chunked). Memory stays at about one chunk,
-- whatever the size of the file.
local corio = require "corio"
local http = require "corio.http"
local fs = require "corio.fs"

local url = arg and arg[1] or "http://127.0.0.1:8080/upload"
local path = arg and arg[2] or error("usage: corio examples/http_upload.lua URL FILE [METHOD]", 0)
local method = arg and arg[3] or "PUT"

-- connect fast; no more than 10 s without sending a byte (write) or,
-- once the body is sent, without an answer (read)
local client = http.client { timeout = { connect = 5, write = 10, read = 10 } }

local function human(n)
  if n >= 1048576 then return ("%.1f MiB"):format(n / 1048576) end
  if n >= 1024 then return ("%.1f KiB"):format(n / 1024) end
  return ("%d B"):format(n)
end

local total = fs.stat(path).size
local sent, next_report = 0, 0
local t0 = corio.now()

local ok, r = pcall(fs.with_open, path, "rb", function(f)
  local function chunks()
    local chunk = f:read(256 * 1024)
    if chunk == nil then return nil end
    sent = sent + #chunk
    if sent >= next_report or sent == total then
      print(("progress: %3d%% %s of %s"):format(total > 0 and math.floor(sent * 100 / total) or 100,
        human(sent), human(total)))
      next_report = next_report + math.max(total / 10, 1)
    end
    return chunk
  end
  return client:request(method, url, {
    body = chunks,
    headers = { ["Content-Length"] = total, ["Content-Type"] = "application/octet-stream" },
  })
end)
client:close()

if not ok then
  error("upload failed: " .. (type(r) == "table" and r.message or tostring(r)), 0)
end
local dt = corio.now() - t0
print(("done: %s sent in %.2f s (%.1f MiB/s), the server answered %d"):format(human(sent), dt,
  sent / 1048576 / math.max(dt, 1e-6), r.status))
print(r:text())
if not r:is_success() then os.exit(1) end
