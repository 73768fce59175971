-- W4 http-stream on corio: stream a 512 MiB file from local nginx through
-- client:stream + iter_bytes, counting bytes (no full buffering).
local corio = require "corio"
local http = require "corio.http"

local URL = os.getenv("BENCH_URL") or "http://127.0.0.1:18080/512m.bin"
local EXPECT = tonumber(os.getenv("BENCH_BYTES") or 536870912)

corio.run(function()
  local client = http.client {}
  local n, status = 0, nil
  local t0 = corio.now()
  client:stream("GET", URL, function(r)
    status = r.status
    for chunk in r:iter_bytes() do n = n + #chunk end
  end)
  local dt = corio.now() - t0
  client:close()
  if status ~= 200 or n ~= EXPECT then
    io.stderr:write(("FAIL status=%s bytes=%d\n"):format(tostring(status), n)); os.exit(1)
  end
  print(string.format("RESULT w4-http-stream corio mib_per_s=%.0f wall_s=%.4f bytes=%d", n / 1048576 / dt, dt, n))
end)
