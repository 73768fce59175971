-- W3 http-small on corio: N GETs of a 1 KiB file from local nginx, C in
-- flight (C tasks sharing one pooled keep-alive client), status and length
-- checked. Same knobs and RESULT line as the peers.
local corio = require "corio"
local http = require "corio.http"

local N = tonumber(os.getenv("BENCH_N") or 20000)
local C = tonumber(os.getenv("BENCH_C") or 64)
local URL = os.getenv("BENCH_URL") or "http://127.0.0.1:18080/1k.bin"

corio.run(function()
  local client = http.client { limits = { max_connections = C, max_keepalive = C } }
  local ok, next_i = 0, 0
  local t0 = corio.now()
  corio.scope(function(s)
    for _ = 1, C do
      s:spawn(function()
        while next_i < N do
          next_i = next_i + 1
          local r = client:get(URL)
          if r.status == 200 and #r:text() == 1024 then ok = ok + 1 end
        end
      end)
    end
  end)
  local dt = corio.now() - t0
  client:close()
  if ok ~= N then io.stderr:write(("FAIL ok=%d/%d\n"):format(ok, N)); os.exit(1) end
  print(string.format("RESULT w3-http-small corio req_per_s=%.0f wall_s=%.4f n=%d c=%d", N / dt, dt, N, C))
end)
