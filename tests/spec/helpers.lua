-- helpers.lua: small assertions shared by the core specs (not a spec:
-- busted runs *_spec.lua files only).
local corio = require("corio")

local M = {}

function M.catch(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, but the call succeeded")
  return err
end

function M.new_log()
  local log = {}
  return log, function(v) log[#log + 1] = v end
end

function M.near(expected, got, tol)
  tol = tol or 0.01
  assert(math.abs(got - expected) <= tol,
    ("expected %.4f (+-%g), got %.4f"):format(expected, tol, got))
end

function M.outcome(ok, err)
  if ok then return "ok" end
  if corio.is_cancelled(err) then return "cancelled" end
  if type(err) == "table" and err.kind then return err.kind end
  return "error: " .. tostring(err)
end

return M
