-- corio.http: an httpx-like HTTP client on libcurl's multi interface,
-- driven by corio's libuv loop (runtime/http.c). This module checks the
-- arguments (kind "invalid" errors, before anything is sent), builds URLs
-- (base_url, params), headers and bodies, follows redirects, and makes
-- the response objects; the transfers themselves, the pool and the
-- timeouts are in C. A request blocks only its own task; outside a
-- running loop it runs to completion synchronously (SPEC rule 11).
local core = require "corio.core"
local corio = require "corio"

local c = core.http
local c_request, c_read, c_new_stream = c.request, c.read, c.stream
local c_clock = c.clock
local c_feed, c_close_stream = c.feed, c.close_stream
local NOLOOP = core.NOLOOP
local new_error = core.error
local type, error, pairs, ipairs, tostring, tonumber = type, error, pairs, ipairs, tostring, tonumber
local setmetatable, rawget, rawset, select = setmetatable, rawget, rawset, select
local concat, sort = table.concat, table.sort
local byte, fmt, find, sub = string.byte, string.format, string.find, string.sub

core.register_own(debug.getinfo(1, "S").source)

-- init.lua's handler of scope bodies and its re-raise (see body_handler
-- there): the stream form's fn keeps the traceback of where it raised
local reraise, body_handler
do
  local r = debug.getregistry()["corio.reraise"]
  reraise, body_handler = r.reraise, r.handler
end

local M = {}
M.version = corio.version

local cjson_mod
local function cjson()
  if not cjson_mod then cjson_mod = require "cjson" end
  return cjson_mod
end

-- errors ------------------------------------------------------------------

-- A method or URL as shown in a message: control bytes (a NUL, a CR) as
-- \ddd, as %q shows them; a raw NUL cut the message where C printed it
-- (an uncaught error showed "GET http://a/" and nothing of the reason).
local function shown(s)
  s = tostring(s)
  if not s:find("[%z\1-\31\127]") then return s end
  return (s:gsub("[%z\1-\31\127]", function(ch) return fmt("\\%d", byte(ch)) end))
end

-- A URL as messages show it: a password in it reads "[secure]" (as
-- httpx's URL repr has it), so that errors can be logged; err.url keeps
-- the URL as given.
local function shown_url(u)
  u = tostring(u)
  local pre, auth, rest = u:match("^(%a[%w+.-]*://)([^/?#]*)(.*)$")
  local ui, host = (auth or ""):match("^(.*)@(.-)$")
  local user = ui and ui:match("^([^:]*):")
  if user then u = pre .. user .. ":[secure]@" .. host .. rest end
  return shown(u)
end

local function http_error(kind, method, url, msg, fields)
  local e = new_error(kind, fmt("%s %s: %s", shown(method), shown_url(url), msg), fields)
  e.method, e.url = method, url
  e.traceback = debug.traceback("", 3):gsub("^\n", "")
  return e
end

-- An error from C names neither method nor URL: add them.
local function decorate(e, method, url)
  if type(e) == "table" and e.kind and e.url == nil then
    e.message = fmt("%s %s: %s", shown(method), shown_url(url), tostring(e.message))
    e.method, e.url = method, url
  end
  return e
end

-- The request whose options send() is checking: set on entry and cleared
-- before its first exchange (nothing yields in between) or by invalid(),
-- so an argument error names the method and URL as SPEC §2 asks.
local req_method, req_url

local function invalid(fname, n, what, msg)
  local e = new_error("invalid", fmt("bad argument #%d to '%s' (%s%s)", n, fname,
    what and (what .. ": ") or "", msg))
  if req_method then
    e.message = fmt("%s %s: %s", shown(req_method), shown_url(req_url), e.message)
    e.method, e.url = req_method, req_url
    req_method, req_url = nil, nil
  end
  error(e, 3)
end

-- URLs --------------------------------------------------------------------

-- A number as a string without losing digits: LuaJIT's tostring keeps 14
-- significant digits (123456789012345 -> "1.2345678901234e+14").
-- Integers are written out; other numbers take up to 17 digits when 14
-- do not give the same number back.
local function num_str(v)
  if v % 1 == 0 and v > -2 ^ 63 and v < 2 ^ 63 then return fmt("%d", v) end
  local s = tostring(v)
  if v == v and tonumber(s) ~= v then s = fmt("%.17g", v) end
  return s
end

local function str_of(v)
  if type(v) == "number" then return num_str(v) end
  return tostring(v)
end

local function urlencode(s)
  return (str_of(s):gsub("[^%w%-%._~]", function(ch)
    return fmt("%%%02X", byte(ch))
  end))
end

local SCALAR = { string = true, number = true, boolean = true }

-- The public one checks its argument: urlencode(nil) gave "nil", a
-- table its address.
function M.urlencode(s)
  if not SCALAR[type(s)] then
    invalid("urlencode", 1, nil, "string, number or boolean expected, got " .. type(s))
  end
  return urlencode(s)
end

-- params and form: keys strings or numbers; values strings, numbers,
-- booleans (tostring-ed) or arrays of them (the key repeats). Anything
-- else is kind "invalid" naming what (argument an of fname).
local function encode_pairs(fname, an, what, t)
  local keys, vals = {}, {}
  for k, v in pairs(t) do
    local tk = type(k)
    if tk ~= "string" and tk ~= "number" then
      invalid(fname, an, what, "key string or number expected, got " .. tk)
    end
    local tv = type(v)
    if tv == "table" then
      local n = 0
      for _ in pairs(v) do n = n + 1 end
      for i = 1, n do
        if not SCALAR[type(v[i])] then
          invalid(fname, an, what, fmt("value of '%s': array of strings, numbers or booleans "
            .. "expected, got a table with %s at [%d]", tostring(k), type(v[i]), i))
        end
      end
    elseif not SCALAR[tv] then
      invalid(fname, an, what, fmt("value of '%s': string, number, boolean or array "
        .. "expected, got %s", tostring(k), tv))
    end
    k = str_of(k)
    keys[#keys + 1] = k
    vals[k] = v
  end
  sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = vals[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do out[#out + 1] = urlencode(k) .. "=" .. urlencode(x) end
    else
      out[#out + 1] = urlencode(k) .. "=" .. urlencode(v)
    end
  end
  return concat(out, "&")
end

-- Remove "." and ".." segments (RFC 3986 5.2.4) from a path that starts
-- with "/". Empty segments stay ("a//b" is not "a/b"); a path that ends
-- with "." or ".." ends with "/".
local function remove_dots(path)
  local out, n = {}, 0
  local dir = false  -- the last segment was "." or ".."
  local i, last = 2, #path + 1
  while i <= last do
    local j = find(path, "/", i, true) or last
    local seg = sub(path, i, j - 1)
    i = j + 1
    dir = seg == "." or seg == ".."
    if seg == ".." then
      if n > 0 then out[n] = nil; n = n - 1 end
    elseif seg ~= "." then
      n = n + 1
      out[n] = seg
    end
  end
  if dir and n > 0 then n = n + 1; out[n] = "" end
  return "/" .. concat(out, "/", 1, n)
end

-- A query in base_url goes with every request made against it (an API
-- key), as httpx keeps it: its pairs come first, less those whose name
-- the request's own query has (which wins), then the request's query.
local function merge_query(bquery, rquery)
  if bquery == "" then return rquery end
  if rquery == "" then return "?" .. bquery end
  local names, out = {}, {}
  for pair in (sub(rquery, 2) .. "&"):gmatch("([^&]*)&") do
    names[pair:match("^[^=]*")] = true
  end
  for pair in (bquery .. "&"):gmatch("([^&]*)&") do
    if pair ~= "" and not names[pair:match("^[^=]*")] then out[#out + 1] = pair end
  end
  if #out == 0 then return rquery end
  return "?" .. concat(out, "&") .. (rquery ~= "?" and "&" .. sub(rquery, 2) or "")
end

-- Join a relative URL to base_url keeping the base path ("/x" and "x" both
-- append to it, as httpx does) and its query (merge_query).
local function join(base, rel)
  local origin, bpath, bquery = base:match("^(%a[%w+.-]*://[^/?#]*)([^?#]*)%??([^#]*)")
  if not origin then return nil end
  if bpath == "" or bpath:sub(-1) ~= "/" then bpath = bpath .. "/" end
  local rpath, rquery, frag = rel:match("^([^?#]*)(%??[^#]*)(.*)$")
  local rest = merge_query(bquery, rquery) .. frag
  rpath = rpath:gsub("^/", "")
  if rpath == "" and rel:match("^/?$") then
    return origin .. (bpath == "/" and "/" or bpath:sub(1, -2)) .. rest
  end
  return origin .. remove_dots(bpath .. rpath) .. rest
end
M._join = join

-- A Location against the URL it came from (RFC 3986 5.2).
local function resolve(base, ref)
  if ref:match("^%a[%w+.-]*:") then return ref end
  local scheme, auth, bpath, bquery = base:match("^(%a[%w+.-]*:)(//[^/?#]*)([^?#]*)(%??[^#]*)")
  if not scheme then return ref end
  if ref:sub(1, 2) == "//" then return scheme .. ref end
  local rpath, rquery, frag = ref:match("^([^?#]*)(%??[^#]*)(.*)$")
  local path
  if rpath == "" then
    path = bpath ~= "" and bpath or "/"
    if rquery == "" then rquery = bquery end
  elseif rpath:sub(1, 1) == "/" then
    path = remove_dots(rpath)
  else
    path = remove_dots((bpath:match("^(.*/)") or "/") .. rpath)
  end
  return scheme .. auth .. path .. rquery .. frag
end

-- Whether an absolute URL has a host ("http:///x", "http://u@:80/" have
-- none).
local function has_host(url)
  local auth = url:match("^%a[%w+.-]*://([^/?#]*)")
  return auth ~= nil and auth:gsub("^.*@", ""):gsub(":%d*$", "") ~= ""
end

local function origin_of(url)
  local scheme, auth = url:match("^(%a[%w+.-]*)://([^/?#]*)")
  if not scheme then return url end
  auth = auth:gsub("^.*@", ""):lower()
  scheme = scheme:lower()
  if not auth:find(":%d+$") then auth = auth .. (scheme == "https" and ":443" or ":80") end
  return scheme .. "://" .. auth
end

-- JSON bodies ---------------------------------------------------------------

-- cjson 2.1 writes numbers with 14 significant digits (it allows no
-- more), so {id = 123456789012345} would go out as 1.2345678901234e+14.
-- Numbers that 14 digits do not give back are encoded as placeholder
-- strings, put back afterwards written by num_str.
-- Each table is searched once (seen): a table met again (shared, or a
-- cycle, which cjson then refuses) was searched down every path before,
-- exponentially many in {a = t, b = t}.
-- cjson 2.1 writes every empty table as {}: http.empty_array stands for
-- [] and goes through the same placeholders.
local EMPTY_ARRAY = setmetatable({}, {
  __newindex = function() error("corio.http.empty_array is read-only", 2) end,
  __metatable = "corio.http.empty_array",
})
M.empty_array = EMPTY_ARRAY

local huge = math.huge
local function find_lossy(t, depth, out, seen)
  seen[t] = true
  for k, x in pairs(t) do
    local tx = type(x)
    if x == EMPTY_ARRAY then
      out[#out + 1] = { t, k, x }
    elseif tx == "number" then
      if not (x % 1 == 0 and x > -1e14 and x < 1e14) and x == x and x ~= huge
        and x ~= -huge and tonumber(fmt("%.14g", x)) ~= x then
        out[#out + 1] = { t, k, x }
      end
    elseif tx == "table" and depth < 1000 and not seen[x] then  -- deeper: cjson raises
      find_lossy(x, depth + 1, out, seen)
    end
  end
end

local function json_encode(v)
  local enc = cjson().encode
  if v == EMPTY_ARRAY then return "[]" end
  if type(v) ~= "table" then
    if type(v) == "number" and v == v and v ~= huge and v ~= -huge then return num_str(v) end
    return enc(v)
  end
  local lossy = {}
  find_lossy(v, 1, lossy, {})
  if #lossy == 0 then return enc(v) end
  local tag = "corio-num-" .. tostring(lossy):match("(%x+)$") .. "-"
  for i, e in ipairs(lossy) do e[1][e[2]] = tag .. i end
  local ok, s = pcall(enc, v)
  for i = #lossy, 1, -1 do local e = lossy[i]; e[1][e[2]] = e[3] end
  if not ok then error(s, 0) end
  return (s:gsub('"' .. tag:gsub("%-", "%%-") .. '(%d+)"', function(i)
    local x = lossy[tonumber(i)][3]
    return x == EMPTY_ARRAY and "[]" or num_str(x)
  end))
end

-- headers -------------------------------------------------------------------

-- Case-insensitive header tables: keys are stored lower-case; lookups of
-- any case find them.
local Headers = {
  __index = function(t, k)
    if type(k) == "string" then return rawget(t, k:lower()) end
  end,
  __newindex = function(t, k, v)
    rawset(t, type(k) == "string" and k:lower() or k, v)
  end,
}
local function headers_of(list)
  local h = setmetatable({}, Headers)
  for i = 1, #list, 2 do
    local k, v = list[i], list[i + 1]
    local old = rawget(h, k)
    rawset(h, k, old and (old .. ", " .. v) or v)
  end
  return h
end

-- Parse curl's raw header block: the status line, then "Name: value".
local function parse_head(raw)
  local list, reason = {}, nil
  for line in raw:gmatch("([^\r\n]*)\r?\n") do
    if reason == nil then
      reason = line:match("^HTTP/%S+%s+%d+%s*(.*)$") or ""
    else
      local k, v = line:match("^([^:%s]+)%s*:%s*(.-)%s*$")
      if k then
        list[#list + 1] = k:lower()
        list[#list + 1] = v
      end
    end
  end
  return list, reason or ""
end

local function check_value(fname, an, name, value)
  local tv = type(value)
  if tv ~= "string" and tv ~= "number" then
    invalid(fname, an, "headers", fmt("header %s: string, number or array of them expected, "
      .. "got %s", name, tv))
  end
  value = str_of(value)
  if value:find("[\r\n%z]") then
    invalid(fname, an, "headers", fmt("header %s: value contains CR, LF or NUL", name))
  end
  -- RFC 9110 5.5: no other control byte (a tab is white space), and no
  -- white space around the value, which is not part of it (curl would
  -- send it as given)
  local ctl = value:find("[\1-\8\11-\31\127]")
  if ctl then
    invalid(fname, an, "headers", fmt("header %s: value contains the control byte \\%d",
      name, value:byte(ctl)))
  end
  if value:find("^[ \t]") or value:find("[ \t]$") then
    value = value:match("^[ \t]*(.-)[ \t]*$")
  end
  return value
end

-- A header's value: a string or number, or an array of them for a header
-- sent once per element (httpx takes a list of pairs for that), kept as
-- an array of strings.
local function check_header(fname, an, name, value)
  if type(name) ~= "string" or not name:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
    invalid(fname, an, "headers", "invalid header name " .. fmt("%q", tostring(name)))
  end
  if type(value) ~= "table" then return check_value(fname, an, name, value) end
  local n, out = 0, {}
  for _ in pairs(value) do n = n + 1 end
  if n == 0 then invalid(fname, an, "headers", fmt("header %s: an empty array", name)) end
  for i = 1, n do
    if value[i] == nil then
      invalid(fname, an, "headers", fmt("header %s: array expected, [%d] is nil", name, i))
    end
    out[i] = check_value(fname, an, name, value[i])
  end
  return out
end

-- Merge default and request headers (request wins, case-insensitive) into
-- an ordered list of {lower name, Name, value}.
local function merge_headers(fname, an, defaults, extra)
  local out, index = {}, {}
  local function put(k, v)
    local lk = k:lower()
    local i = index[lk]
    if i then out[i][2], out[i][3] = k, v
    else
      out[#out + 1] = { lk, k, v }
      index[lk] = #out
    end
  end
  if defaults then for _, e in ipairs(defaults) do put(e[2], e[3]) end end
  if extra then
    if type(extra) ~= "table" then invalid(fname, an, "headers", "table expected, got " .. type(extra)) end
    local keys = {}
    for k in pairs(extra) do keys[#keys + 1] = k end
    sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do put(k, check_header(fname, an, k, extra[k])) end
  end
  return out, index
end

-- Content-Length and Transfer-Encoding frame the body: given by the
-- caller, curl sends them as they are, with the whole body. One that the
-- body contradicts made the server wait for bytes that never came (a read
-- timeout) or, shorter than the body, take the rest of it for the next
-- request on the kept connection, whose caller then got the answer to
-- that garbage. As httpx (h11) does, such a request is refused before
-- anything is sent: a Content-Length must be the body's length (0
-- without one), a Transfer-Encoding "chunked" with a body (curl then
-- sends it chunked), and not both.
local function check_framing(fname, an, list, index, body)
  local cl, te = index["content-length"], index["transfer-encoding"]
  if te then
    local v = list[te][3]
    if cl then
      invalid(fname, an, "headers", "give Content-Length or Transfer-Encoding, not both")
    end
    if type(v) ~= "string" or not v:lower():match("^%s*chunked%s*$") or body == nil then
      invalid(fname, an, "headers", "Transfer-Encoding: only \"chunked\", and only with a body "
        .. "(json, body or form), goes out as given")
    end
  elseif cl then
    local v = list[cl][3]
    if type(body) == "function" then
      -- a streamed body: its length is checked as it goes out (upload)
      if type(v) ~= "string" or not v:match("^%s*%d+%s*$") then
        invalid(fname, an, "headers", fmt("Content-Length %s is not a length in bytes",
          type(v) == "string" and fmt("%q", v) or "given more than once"))
      end
      return tonumber(v)
    end
    local n = body and #body or 0
    if type(v) ~= "string" or not v:match("^%s*%d+%s*$") or tonumber(v) ~= n then
      invalid(fname, an, "headers", fmt("Content-Length %s does not match the body (%d bytes)",
        type(v) == "string" and fmt("%q", v) or "given more than once", n))
    end
  end
end

-- curl's header lines: "Name: value"; "Name;" sends an empty value
-- ("Name:", also with nothing but white space after it, would remove the
-- header: a value of white space only goes out empty); false: "Name:",
-- curl sends none of its own. With a body, "Expect:": no "Expect:
-- 100-continue".
local function header_line(name, v)
  return v == false and name .. ":" or not find(v, "%S") and name .. ";" or name .. ": " .. v
end

local function header_lines(list, has_body)
  local lines = {}
  for _, e in ipairs(list) do
    local v = e[3]
    if type(v) == "table" then  -- a repeated header: a line each
      for _, x in ipairs(v) do lines[#lines + 1] = header_line(e[2], x) end
    else
      lines[#lines + 1] = header_line(e[2], v)
    end
  end
  if has_body then lines[#lines + 1] = "Expect:" end
  return lines
end

-- timeouts ------------------------------------------------------------------

local PHASES = { connect = 1, read = 2, write = 3, pool = 4, total = 5 }

local function check_secs(fname, an, what, v)
  if type(v) ~= "number" or v ~= v or v < 0 then
    -- a string "1" reads as a number in the message: name its type
    invalid(fname, an, what, "non-negative number expected, got "
      .. (type(v) == "number" and tostring(v) or type(v)))
  end
  return v
end

-- {connect, read, write, pool, total} from a number, a table or false,
-- over base.
local function norm_timeout(fname, an, t, base)
  if t == nil then return base end
  -- 0 is false's equal (no limit at all, total included), as documented;
  -- another number keeps base's total
  if t == false or t == 0 then return { 0, 0, 0, 0, 0 } end
  if type(t) == "number" then
    check_secs(fname, an, "timeout", t)
    return { t, t, t, t, base and base[5] or 0 }
  end
  if type(t) ~= "table" then
    invalid(fname, an, "timeout", "number or table expected, got " .. type(t))
  end
  local out = { 0, 0, 0, 0, 0 }
  if base then for i = 1, 5 do out[i] = base[i] end end
  for k, v in pairs(t) do
    local i = PHASES[k]
    if not i then invalid(fname, an, "timeout", "unknown phase '" .. tostring(k) .. "'") end
    out[i] = v == false and 0 or check_secs(fname, an, "timeout." .. k, v)
  end
  return out
end

local function check_max_redirects(fname, an, v)
  if type(v) ~= "number" or not (v >= 0) or (v ~= math.huge and v % 1 ~= 0) then
    invalid(fname, an, "max_redirects", "non-negative integer expected, got " .. tostring(v))
  end
  return v
end

-- responses -----------------------------------------------------------------

local VERSIONS = { [1] = "HTTP/1.0", [2] = "HTTP/1.1", [3] = "HTTP/2", [30] = "HTTP/3" }

local Response = {}
local response_mt = {}
response_mt.__index = function(r, k)
  if k == "headers" or k == "reason_phrase" then
    local list, reason = parse_head(rawget(r, "_raw") or "")
    local h = headers_of(list)
    rawset(r, "_list", list)
    rawset(r, "headers", h)
    rawset(r, "reason_phrase", reason)
    return rawget(r, k)
  end
  return Response[k]
end
response_mt.__tostring = function(r)
  return fmt("<Response [%d %s]>", r.status, r.url)
end
M.Response = Response

function Response.get_all(r, name)
  if type(name) ~= "string" then
    invalid("get_all", 1, "name", "string expected, got " .. type(name))
  end
  local _ = r.headers
  local out, lk = {}, name:lower()
  local list = rawget(r, "_list")
  for i = 1, #list, 2 do
    if list[i] == lk then out[#out + 1] = list[i + 1] end
  end
  return out
end

local function stream_closed(r)
  return http_error("closed", r.request_method, r.url,
    rawget(r, "_consumed") and "the stream's body was already consumed" or "the stream is closed")
end

-- text() and json() of a stream that iter_bytes or iter_lines read from:
-- they would see only the rest of the body; httpx raises StreamConsumed.
local function partly_consumed(r)
  return http_error("closed", r.request_method, r.url,
    "the stream's body was partly consumed (by iter_bytes or iter_lines): "
    .. "text() and json() need all of it (read() gives the rest)")
end

function Response.text(r)
  local body = rawget(r, "_body")
  if body == nil and rawget(r, "_stream") then
    if rawget(r, "_partial") then
      error(rawget(r, "_closed") and stream_closed(r) or partly_consumed(r), 0)
    end
    body = r:read()
  end
  return body or ""
end
Response.read = nil  -- set below with streams

function Response.json(r)
  local body = r:text()
  -- a UTF-8 byte order mark, which some servers put first, is skipped
  -- (httpx's json() does; cjson calls it an invalid token)
  if byte(body, 1) == 0xEF and sub(body, 1, 3) == "\239\187\191" then body = sub(body, 4) end
  local ok, v = pcall(cjson().decode, body)
  if not ok then
    error(http_error("protocol", r.request_method or "GET", r.url,
      "the response body is not valid JSON (" .. tostring(v) .. ")"), 2)
  end
  return v
end

function Response.raise_for_status(r)
  local s = r.status
  if s >= 200 and s < 300 then return r end
  local e = http_error("status", r.request_method or "GET", r.url,
    (fmt("status %d %s", s, r.reason_phrase or ""):gsub("%s+$", "")))
  e.response, e.status = r, s
  error(e, 2)
end

function Response.is_success(r) return r.status >= 200 and r.status < 300 end

local function new_response(method, url, status, raw, body, ver, elapsed, redirect)
  return setmetatable({
    status = status, url = url, http_version = VERSIONS[ver] or "HTTP/1.1",
    elapsed = elapsed, request_method = method, _raw = raw, _body = body,
    _redirect = redirect,
  }, response_mt)
end

-- streams -------------------------------------------------------------------

-- A read may give several chunks at once (HTTP/1 streams hand over what
-- curl read in one go): the first is returned, the rest wait in r._q.
local function queue(r, ok, chunk, ...)
  if select("#", ...) > 0 then
    rawset(r, "_q", { ... })
    rawset(r, "_qi", 1)
  end
  return ok, chunk
end

-- A stream's elapsed runs until it is closed (its body read to the end, an
-- error, or close()), as httpx's does: r._t0 is when its request started,
-- on c.clock().
local function stop_clock(r)
  local t0 = rawget(r, "_t0")
  if t0 then
    rawset(r, "elapsed", c_clock() - t0)
    rawset(r, "_t0", nil)
  end
end

-- The next chunk of a transport's body iterator: strings (a number, as
-- a whole body may be one, as its tostring), no empty ones (httpx hands
-- out none), anything else kind "protocol" as a reply of another shape.
-- Each empty one skipped is a fast-path checkpoint (rule 15): an iterator
-- that gives "" until another task acts lets that task run, and a cancel
-- or deadline ends the wait, rather than the loop spinning for ever.
local c_checkpoint_fast = core.checkpoint_fast
local c_checkpoint = core.checkpoint

-- Rule 3 for a stream read that needs no read of its own (a chunk queued
-- by the read before, bytes an iter_lines loop held, a line split from a
-- chunk already read): Cancelled on entry in a cancelled scope, before
-- anything is taken, as a read that waits raises it (bindings/http.c
-- l_read) and as fs's buffered reads do. Not counted against the budget:
-- what it hands out is bounded by what that one read got.
local ffi_ok, ffi = pcall(require, "ffi")
local ffi_check = ffi_ok and ffi.cast("int (*)(void *)", core.ffi_check) or nil
local rt_ptr = ffi_ok and ffi.cast("void *", core.rt) or nil
local function read_check(r)
  -- the common case (not cancelled, no deadline near) through the FFI
  -- (bindings/core.c ffi_check), else the C function, which raises
  if ffi_check ~= nil and ffi_check(rt_ptr) ~= 0 then return end
  local ok, e = c_checkpoint()
  if not ok and e ~= NOLOOP then error(decorate(e, r.request_method, r.url), 0) end
end

local function transport_chunk(r, iter)
  local chunk = iter()
  while chunk == "" do
    local ok, e = c_checkpoint_fast()
    if not ok and e ~= NOLOOP then error(e, 0) end
    chunk = iter()
  end
  local t = type(chunk)
  if t == "string" then return chunk end
  if chunk == nil then
    rawset(r, "_closed", true)
    rawset(r, "_consumed", true)
    return nil
  end
  if t == "number" then return tostring(chunk) end
  error(http_error("protocol", r.request_method, r.url,
    "the transport's body iterator gave a " .. t .. " (a string or nil expected)"), 0)
end

local read_chunk
read_chunk = function(r)
  local q = rawget(r, "_q")
  if q then
    read_check(r)
    local i = rawget(r, "_qi")
    local chunk = q[i]
    if q[i + 1] == nil then rawset(r, "_q", nil) else rawset(r, "_qi", i + 1) end
    if rawget(r, "_closed") then error(stream_closed(r), 3) end
    return chunk
  end
  local box = rawget(r, "_stream")
  if box == nil or rawget(r, "_closed") then error(stream_closed(r), 3) end
  if rawget(r, "_iter") then  -- a transport's body iterator
    -- a checkpoint on entry that counts against the budget, as a read of
    -- a stream over the network is (bindings/http.c l_read): Cancelled
    -- in a cancelled scope before the iterator is asked (no chunk is
    -- taken), and a loop over a body the mock makes at once lets the
    -- other tasks and the deadlines run
    local ok, e = c_checkpoint_fast()
    if not ok and e ~= NOLOOP then error(decorate(e, r.request_method, r.url), 0) end
    return transport_chunk(r, r._iter)
  end
  local ok, chunk = queue(r, c_read(box))
  if not ok then
    if chunk == NOLOOP then return corio.run(read_chunk, r) end
    -- kind "invalid": another task is reading it; that read goes on.
    -- kind "cancelled": the read alone is undone (runtime/http.c keeps
    -- the transfer and its bytes, rule 7), so the stream stays open and
    -- a later read goes on where this one stopped; closing it here made
    -- a move_on_after around a read end the stream for good.
    local kind = chunk.kind
    if kind ~= "invalid" and kind ~= "cancelled" then
      c.close_stream(box)
      rawset(r, "_closed", true)
      stop_clock(r)
    end
    error(decorate(chunk, r.request_method, r.url), 0)
  end
  if chunk == nil then
    c.close_stream(box)  -- the transfer is complete: its connection goes back
    rawset(r, "_closed", true)
    rawset(r, "_consumed", true)
    stop_clock(r)
  end
  return chunk
end

-- The chunks of a body that was read (a whole response's, or a stream's
-- that read() read to its end), as httpx iterates a read response's
-- content: each call of iter_bytes or iter_lines goes over it again.
local function body_chunks(body)
  return function()
    local b = body
    body = ""
    if b ~= "" then return b end
  end
end

-- A stream keeps on r what a reader took from it but did not hand out
-- (Lua has no generator close, so a loop that was left cannot give it
-- back, and a cancelled read() must lose nothing): r._held, bytes that
-- come before the next chunk, and r._skip_lf, set when the last line
-- handed out ended with a CR at a chunk's end, so that an LF starting
-- the next bytes is part of that line end. next_held gives one chunk
-- with both applied.
local next_held
next_held = function(r)
  local chunk = rawget(r, "_held")
  if chunk ~= nil then
    read_check(r)
    rawset(r, "_held", nil)
  else
    chunk = read_chunk(r)
  end
  if chunk ~= nil and chunk ~= "" and rawget(r, "_skip_lf") then
    rawset(r, "_skip_lf", nil)
    if byte(chunk, 1) == 10 then
      chunk = sub(chunk, 2)
      if chunk == "" then return next_held(r) end
    end
  end
  return chunk
end

-- LuaJIT compiles a loop over an iterator closure specialised to that
-- very closure, and the trace keeps it as a constant: the stream it holds
-- stayed alive after the loop was left and the stream dropped, until
-- the trace was flushed (the pool's collection could not take its
-- connection back). LuaJIT specialises to the prototype instead once
-- the prototype made 3 closures: poly() makes them when the module
-- loads, for every iterator that holds a stream (and fs.lua does so for
-- files).
local function poly(maker, ...)
  for _ = 1, 3 do maker(...) end
end
local function chunk_iter(r) return function() return read_chunk(r) end end
local function held_iter(r) return function() return next_held(r) end end
poly(chunk_iter)
poly(held_iter)

-- The bytes of a stream from where its readers got to: first what an
-- iter_lines loop that was left still holds (its iterator is emptied, so
-- that nothing is handed out twice). The plain iterator, with no held
-- bytes, is the one of every stream read only by iter_bytes (W4).
local function stream_bytes(r)
  local take = rawget(r, "_lines_take")
  if take then
    rawset(r, "_lines", nil)
    rawset(r, "_lines_take", nil)
    local held, skip_lf = take()
    if held ~= "" then
      rawset(r, "_held", held .. (rawget(r, "_held") or ""))
    elseif skip_lf then
      rawset(r, "_skip_lf", true)
    end
  end
  if rawget(r, "_held") or rawget(r, "_skip_lf") then return held_iter(r) end
  return chunk_iter(r)
end

function Response.iter_bytes(r)
  if rawget(r, "_stream") == nil then return body_chunks(rawget(r, "_body") or "") end
  local body = rawget(r, "_body")
  if body then return body_chunks(body) end
  if rawget(r, "_closed") then error(stream_closed(r), 2) end
  rawset(r, "_partial", true)  -- text() and json() cannot have all of it
  return stream_bytes(r)
end

-- Lines end at "\n", "\r\n" or a lone "\r", as httpx's line decoder
-- splits them. Each chunk is searched once for "\n" and once for "\r"
-- (each search resumes only once its hit is passed); a line split over
-- many chunks is kept as its pieces and joined once, when its end comes.
-- A chunk that ends with "\r" ends a line; if the next chunk starts with
-- "\n", that "\n" belongs to the same line end.
-- check, when given, runs before a line split from a chunk an earlier
-- call read is handed out (a stream's read_check: rule 3). The first line
-- of a chunk this call read is not checked again: the read was this
-- call's checkpoint, and a read that completed returns its result even
-- if a cancel came meanwhile (rule 7; the next call raises). That keeps
-- take()'s i >= 1 too: a check raising at i = 0 left the chunk split
-- and nothing handed out, and take() then failed on rest_at[0].
-- Returns the iterator and take(), which empties it and returns the
-- bytes it holds but did not hand out (the lines split from the current
-- chunk and a line not ended yet, as they came) and whether an LF that
-- comes next still belongs to the last line end handed out.
local function line_iter(next_chunk, check)
  local parts, np = {}, 0      -- the pieces of a line not ended yet
  local pending, i, n, done = {}, 0, 0, false
  local after_cr = false       -- the last chunk ended with "\r"
  local cur, rest_at = nil, {} -- pending's chunk; where the bytes after pending[k] start in it
  local busy = false           -- `it` waits for a chunk (in some task)
  local function it()
    while true do
      if i < n then
        if check and i > 0 then check() end   -- a stream's: read_check
        i = i + 1
        local line = pending[i]
        pending[i] = nil
        return line
      end
      if done then return nil end
      i, n = 0, 0
      busy = true
      local ok, chunk = pcall(next_chunk)
      busy = false
      if not ok then error(chunk, 0) end
      if chunk == nil then
        done = true
        if np > 0 then
          n, pending[1] = 1, concat(parts, "", 1, np)
          parts, np = {}, 0
          cur, rest_at[1] = "", 1
        end
      elseif chunk ~= "" then
        local pos, len = 1, #chunk
        if after_cr then
          after_cr = false
          if byte(chunk, 1) == 10 then pos = 2 end
        end
        cur = chunk
        local nl = find(chunk, "\n", pos, true)
        local cr = find(chunk, "\r", pos, true)
        while nl or cr do
          local e, nxt
          if cr and (not nl or cr < nl) then
            e = cr
            if cr == len then
              nxt, after_cr = cr + 1, true
            elseif nl == cr + 1 then
              nxt = cr + 2
            else
              nxt = cr + 1
            end
          else
            e, nxt = nl, nl + 1
          end
          local line = sub(chunk, pos, e - 1)
          if np > 0 then
            parts[np + 1] = line
            line = concat(parts, "", 1, np + 1)
            parts, np = {}, 0
          end
          n = n + 1
          pending[n], rest_at[n] = line, nxt
          pos = nxt
          if nl and nl < pos then nl = find(chunk, "\n", pos, true) end
          if cr and cr < pos then cr = find(chunk, "\r", pos, true) end
        end
        if pos <= len then
          np = np + 1
          parts[np] = pos == 1 and chunk or sub(chunk, pos)
        end
      end
    end
  end
  local function take()
    -- another task waits in `it` for a chunk: the read that called take
    -- is refused (kind "invalid"); the waiting one keeps what it holds
    if busy then return "", false end
    local held, skip_lf
    if i < n then
      -- i >= 1: `it` hands out pending[1] as soon as it split a chunk;
      -- the rest of cur holds the later lines and the unended one
      held, skip_lf = sub(cur, rest_at[i]), false
    else
      held, skip_lf = concat(parts, "", 1, np), after_cr
    end
    parts, np, pending, i, n, after_cr, cur, rest_at = {}, 0, {}, 0, 0, false, nil, {}
    return held, skip_lf
  end
  return it, take
end
poly(line_iter, function() end)
-- a stream's check for the lines line_iter splits from a chunk already
-- read (made 3 times at load, as the iterators above, since it holds r)
local function line_check(r) return function() read_check(r) end end
poly(line_check)

-- A stream's iter_lines state lives on the response: a loop that broke
-- out and a later iter_lines loop go on with the same iterator, and
-- iter_bytes or read() after it start with the bytes it still holds.
function Response.iter_lines(r)
  if rawget(r, "_stream") == nil then
    return (line_iter(body_chunks(rawget(r, "_body") or "")))
  end
  local body = rawget(r, "_body")
  if body then return (line_iter(body_chunks(body))) end
  if rawget(r, "_closed") then error(stream_closed(r), 2) end
  local it = rawget(r, "_lines")
  if it then return it end
  rawset(r, "_partial", true)  -- text() and json() cannot have all of it
  local take
  it, take = line_iter(held_iter(r), line_check(r))
  rawset(r, "_lines", it)
  rawset(r, "_lines_take", take)
  return it
end

-- The rest of a stream's body as one string (all of it if nothing read
-- from it before, and then kept for text() and json()). A read that fails
-- or is cancelled keeps what it got for the next read.
function Response.read(r)
  local body = rawget(r, "_body")
  if body then return body end
  if rawget(r, "_stream") == nil then return "" end
  if rawget(r, "_closed") then error(stream_closed(r), 2) end
  local whole = not rawget(r, "_partial")
  local it = stream_bytes(r)
  local parts, np = {}, 0
  local ok, e = pcall(function()
    for chunk in it do np = np + 1; parts[np] = chunk end
  end)
  if not ok then
    if np > 0 then rawset(r, "_held", concat(parts, "", 1, np) .. (rawget(r, "_held") or "")) end
    error(e, 0)
  end
  body = concat(parts, "", 1, np)
  if whole then rawset(r, "_body", body) end
  return body
end

function Response.close(r)
  local box = rawget(r, "_stream")
  if box and not rawget(r, "_closed") then
    rawset(r, "_closed", true)
    -- what readers held goes too: an iter_lines iterator kept from before
    -- would still hand out the lines it had split (reading after close()
    -- raises kind "closed")
    local take = rawget(r, "_lines_take")
    if take then take() end
    rawset(r, "_held", nil)
    rawset(r, "_skip_lf", nil)
    if not rawget(r, "_iter") then
      c.close_stream(box)
      stop_clock(r)
    end
  end
end

-- For tests: bytes the C side holds for this stream, and whether the
-- transfer is paused.
function Response._buffered(r)
  local box = rawget(r, "_stream")
  if not box or rawget(r, "_iter") then return 0, false end
  return c.buffered(box)
end

-- Every method checks that it was called on a response (r.text() or
-- resp.json(other) for r:text()), with an error that says so.
for name, fn in pairs(Response) do
  if type(fn) == "function" then
    Response[name] = function(r, ...)
      if getmetatable(r) ~= response_mt then
        error(new_error("invalid", fmt("bad self to '%s' (corio.http response expected, "
          .. "got %s; call it as r:%s(...))", name, type(r), name)), 2)
      end
      return fn(r, ...)
    end
  end
end

-- the client ---------------------------------------------------------------

local Client = {}
Client.__index = Client
M.Client = Client

local CLIENT_OPTS = {
  base_url = true, headers = true, timeout = true, limits = true, http2 = true,
  follow_redirects = true, max_redirects = true, verify = true, transport = true,
  ca_bundle = true, decompress = true,
}
local LIMIT_OPTS = { max_connections = true, max_keepalive = true, keepalive_expiry = true }
local REQUEST_OPTS = {
  params = true, headers = true, json = true, body = true, form = true,
  timeout = true, follow_redirects = true, max_redirects = true,
}
local DEFAULT_TIMEOUT = { 5, 5, 5, 5, 0 }
local DEFAULT_HEADERS = {
  { "user-agent", "User-Agent", "corio/" .. corio.version },
  -- bodies come back decoded (runtime/http.c sets CURLOPT_ACCEPT_ENCODING)
  { "accept-encoding", "Accept-Encoding", "gzip, deflate" },
}
local RAW_HEADERS = { DEFAULT_HEADERS[1] }  -- decompress = false

function M.client(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then invalid("client", 1, nil, "table expected, got " .. type(opts)) end
  for k in pairs(opts) do
    if not CLIENT_OPTS[k] then invalid("client", 1, nil, "unknown option '" .. tostring(k) .. "'") end
  end
  local self = setmetatable({}, Client)
  if opts.base_url ~= nil then
    -- the scheme is case-insensitive (RFC 3986), as in a request's URL
    if type(opts.base_url) ~= "string" or not opts.base_url:lower():match("^https?://") then
      invalid("client", 1, "base_url", "an http or https URL expected, got " .. tostring(opts.base_url))
    end
    if not has_host(opts.base_url) then
      invalid("client", 1, "base_url", "URL without a host: " .. fmt("%q", opts.base_url))
    end
    -- refused here, not blamed on the url of every request made with it
    if opts.base_url:find("[%s%z]") then
      invalid("client", 1, "base_url", "URL contains whitespace or a NUL byte: "
        .. fmt("%q", opts.base_url))
    end
    self.base_url = opts.base_url
  end
  -- The default User-Agent is a header line like the others (not curl's
  -- CURLOPT_USERAGENT, which costs an allocation and a format per request).
  local decompress = opts.decompress
  if decompress ~= nil and type(decompress) ~= "boolean" then
    invalid("client", 1, "decompress", "boolean expected, got " .. type(decompress))
  end
  local index
  self._headers, index = merge_headers("client", 1, decompress == false and RAW_HEADERS
    or DEFAULT_HEADERS, opts.headers)
  -- they frame each request's own body (check_framing)
  if index["content-length"] or index["transfer-encoding"] then
    invalid("client", 1, "headers", "Content-Length and Transfer-Encoding belong to each "
      .. "request's body, not to the client")
  end
  self._timeout = norm_timeout("client", 1, opts.timeout, DEFAULT_TIMEOUT)
  self.follow_redirects = opts.follow_redirects and true or false
  self.max_redirects = opts.max_redirects == nil and 20
    or check_max_redirects("client", 1, opts.max_redirects)
  local limits = opts.limits or {}
  if type(limits) ~= "table" then invalid("client", 1, "limits", "table expected") end
  for k, v in pairs(limits) do
    if not LIMIT_OPTS[k] then invalid("client", 1, "limits", "unknown option '" .. tostring(k) .. "'") end
    local min = k == "max_connections" and 1 or 0
    if type(v) ~= "number" or v ~= v or v < min or (k ~= "keepalive_expiry" and v % 1 ~= 0) then
      invalid("client", 1, "limits." .. k, (k == "keepalive_expiry" and "non-negative number"
        or min == 1 and "positive integer" or "non-negative integer") .. " expected, got " .. tostring(v))
    end
  end
  local verify, ca = opts.verify, opts.ca_bundle
  if type(verify) == "string" then ca, verify = verify, true end
  if verify == nil then verify = true end
  if ca ~= nil and type(ca) ~= "string" then invalid("client", 1, "ca_bundle", "path string expected") end
  -- curl would read the path up to the NUL: another file
  if ca ~= nil and ca:find("%z") then
    invalid("client", 1, type(opts.verify) == "string" and "verify" or "ca_bundle",
      "path contains a NUL byte")
  end
  if opts.transport ~= nil then
    if type(opts.transport) ~= "function" then
      invalid("client", 1, "transport", "function expected, got " .. type(opts.transport))
    end
    self._transport = opts.transport
  else
    self._c = c.client(limits.max_connections or 100, limits.max_keepalive or 20,
      limits.keepalive_expiry or 5, verify and true or false, ca, opts.http2 and true or false,
      header_lines(self._headers), decompress ~= false)
  end
  return self
end

-- request(method, url, opts) and stream(method, url, opts): url is
-- argument #2, opts #3; #1 and #2 for the others.
local URL_ARG = { request = 2, stream = 2 }

local function check_url_slow(self, fname, url, method)
  local an = URL_ARG[fname] or 1
  if type(url) ~= "string" then
    invalid(fname, an, "url", "string expected, got " .. type(url))
  end
  -- an error about the URL names the method and URL, as every error
  -- does (invalid() clears these; so does the end of this check)
  req_method, req_url = method, url
  local scheme = url:match("^(%a[%w+.-]*)://")
  if not scheme then
    if not self.base_url then
      invalid(fname, an, "url", "URL without scheme: " .. fmt("%q", url))
    end
    url = join(self.base_url, url)
  else
    scheme = scheme:lower()
    if scheme ~= "http" and scheme ~= "https" then
      invalid(fname, an, "url", "unsupported scheme '" .. scheme .. "'")
    end
    -- curl took "echo" in "http:///echo" for the host
    if not has_host(url) then invalid(fname, an, "url", "URL without a host") end
  end
  if url:find("[%s%z]") then
    invalid(fname, an, "url", "URL contains whitespace or a NUL byte: " .. fmt("%q", url))
  end
  req_method, req_url = nil, nil
  if url:find("[\128-\255]") then  -- as httpx: path, query and fragment percent-encoded
    local origin, rest = url:match("^(%a[%w+.-]*://[^/?#]*)(.*)$")
    url = origin .. rest:gsub("[\128-\255]", function(ch) return fmt("%%%02X", byte(ch)) end)
  end
  return url
end

-- The last URL a client checked and what it became: a client that asks
-- for the same URL again and again (a poller, a benchmark) skips the
-- pattern matching.
local function check_url(self, fname, url, method)
  if url == self._url_in and url ~= nil and self.base_url == self._url_base then
    return self._url_out
  end
  local out = check_url_slow(self, fname, url, method)
  self._url_in, self._url_out, self._url_base = url, out, self.base_url
  return out
end

local REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
-- Headers a redirect drops: to another origin; turned into a GET.
local ORIGIN_HEADERS = { authorization = true, cookie = true, host = true }
local BODY_HEADERS = { ["content-type"] = true, ["content-length"] = true,
  ["transfer-encoding"] = true }

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c3 = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c3 or 0)
    local q = { 18, 12, 6, 0 }
    for j = 1, 4 do
      local d = math.floor(n / 2 ^ q[j]) % 64 + 1
      out[#out + 1] = (j == 3 and not b or j == 4 and not c3) and "=" or sub(B64, d, d)
    end
  end
  return concat(out)
end

-- The Basic auth curl makes of a user:pass@ in the URL (percent-decoded;
-- "user@" is "user:"), for a transport, which sees no curl.
local function url_auth(url)
  local ui = url:match("^%a[%w+.-]*://([^/?#]*)@")
  if not ui then return nil end
  if not find(ui, ":", 1, true) then ui = ui .. ":" end
  ui = ui:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)
  return "Basic " .. base64(ui)
end

-- One exchange through the transport function. It is a checkpoint as a
-- request over the network is (rule 3): Cancelled on entry in a cancelled
-- scope, naming the request, before the transport is called; and one that
-- counts against the task's budget (rule 15), since a transport that
-- answers at once completes like a fast path: a loop of such requests
-- (a program under test) lets the other tasks and the deadlines run.
local function via_transport(self, method, url, hlist, body, stream)
  local ok, e = c_checkpoint_fast()
  if not ok and e ~= NOLOOP then error(decorate(e, method, url), 0) end
  local h = setmetatable({}, Headers)
  for _, e in ipairs(hlist) do
    local v = e[3]
    if type(v) == "table" then v = concat(v, ", ") end
    if v ~= false then rawset(h, e[1], v) end
  end
  -- a user:pass@ in the URL is Basic auth (SPEC §2) here too, as httpx's
  -- MockTransport sees it, unless the caller set Authorization
  if rawget(h, "authorization") == nil then rawset(h, "authorization", url_auth(url)) end
  local resp = self._transport({ method = method, url = url, headers = h, body = body })
  local bad
  if type(resp) ~= "table" then
    bad = type(resp)
  elseif resp.status ~= nil and (type(resp.status) ~= "number" or resp.status % 1 ~= 0) then
    bad = "a status that is no integer: " .. tostring(resp.status)
  elseif resp.headers ~= nil and type(resp.headers) ~= "table" then
    bad = "headers of type " .. type(resp.headers)
  elseif resp.body ~= nil and type(resp.body) ~= "string" and type(resp.body) ~= "function"
    and type(resp.body) ~= "number" then
    bad = "a body of type " .. type(resp.body)
  else
    for k in pairs(resp.headers or {}) do
      if type(k) ~= "string" then bad = "a header name of type " .. type(k) end
    end
  end
  if bad then
    error(http_error("protocol", method, url, "the transport returned " .. bad), 0)
  end
  local list = {}
  for k, v in pairs(resp.headers or {}) do
    if type(v) == "table" then
      for _, x in ipairs(v) do list[#list + 1] = k:lower(); list[#list + 1] = tostring(x) end
    else
      list[#list + 1] = k:lower(); list[#list + 1] = tostring(v)
    end
  end
  local r = setmetatable({
    status = resp.status or 200, url = url, http_version = resp.http_version or "HTTP/1.1",
    elapsed = 0, request_method = method, _list = list, headers = headers_of(list),
    reason_phrase = resp.reason or "",
  }, response_mt)
  local b = resp.body
  local loc = r.headers.location
  if loc then r._redirect = resolve(url, loc) end
  if type(b) == "function" then
    if stream then
      r._stream, r._iter = true, b
    else
      local parts = {}
      while true do
        local chunk = transport_chunk(r, b)
        if chunk == nil then break end
        parts[#parts + 1] = chunk
      end
      r._closed, r._consumed = nil, nil  -- (set by transport_chunk)
      r._body = concat(parts)
    end
  else
    b = b == nil and "" or tostring(b)
    if stream then
      local done = false
      r._stream, r._iter = true, function()
        if done or b == "" then return nil end
        done = true
        return b
      end
    else
      r._body = b
    end
  end
  return r
end

local function exchange(self, method, url, hlist, lines, body, to, stream)
  if self._closed then error(http_error("closed", method, url, "the client was closed"), 0) end
  if self._transport then return via_transport(self, method, url, hlist, body, stream) end
  local box = stream and c_new_stream() or nil
  local ok, status, raw, rbody, ver, elapsed, redirect =
    c_request(self._c, method, url, lines, body, to[1], to[2], to[3], to[4], to[5], box)
  if not ok then
    if status == NOLOOP then
      return corio.run(exchange, self, method, url, hlist, lines, body, to, stream)
    end
    error(decorate(status, method, url), 0)
  end
  local r = new_response(method, url, status, raw, rbody, ver, elapsed, redirect)
  if box then
    r._stream = box
    r._t0 = c_clock() - elapsed
  end
  return r
end

-- streamed request bodies (uploads) ------------------------------------------

-- The size of the chunks read from a corio.fs file given as a body.
local UP_CHUNK = 64 * 1024

-- The next chunk of a body iterator: a non-empty string, or nil at the end.
-- An empty chunk is skipped after a checkpoint (corio.yield): an iterator
-- that polls a source and gives "" while it has nothing spun here without
-- one, so no deadline could fire and no other task ran.
local function up_next(method, url, iter)
  while true do
    local chunk = iter()
    if chunk == nil then return nil end
    if type(chunk) ~= "string" then
      error(http_error("invalid", method, url, "the body iterator gave a " .. type(chunk)
        .. " (a string, or nil at the end, expected)"), 0)
    end
    if chunk ~= "" then return chunk end
    corio.yield()
  end
end

local function up_short(method, url, sent, len)
  error(http_error("invalid", method, url, fmt("the body ended after %d bytes, short of its "
    .. "Content-Length %d", sent, len)), 0)
end

local function up_long(method, url, sent, len)
  error(http_error("invalid", method, url, fmt("the body ran past its Content-Length %d (%d "
    .. "bytes or more)", len, sent)), 0)
end

-- Pull the next chunk; len: the Content-Length, or nil. Returns the chunk
-- (nil: the end), whether it is the last, and the bytes pulled so far. A
-- body that ends short of len or runs past it is refused before curl
-- sees the bytes that make it so (a short one would leave the server
-- waiting for the rest; curl asks for nothing beyond len, so the
-- iterator is asked once more to see that it ends there).
local function up_pull(method, url, iter, len, sent)
  local chunk = up_next(method, url, iter)
  if chunk == nil then
    if len and sent < len then up_short(method, url, sent, len) end
    return nil, true, sent
  end
  sent = sent + #chunk
  if len and sent >= len then
    if sent > len then up_long(method, url, sent, len) end
    local more = up_next(method, url, iter)
    if more ~= nil then up_long(method, url, sent + #more, len) end
    return chunk, true, sent
  end
  return chunk, false, sent
end

-- The task that sent the request feeds its body: C answers "more" when
-- curl has sent what it had, and the next chunk is pulled here, outside
-- curl's callbacks (the iterator may block).
local function up_loop(self, method, url, lines, iter, len, to, stream, box)
  local chunk, eof, sent = up_pull(method, url, iter, len, 0)
  local ok, status, raw, rbody, ver, elapsed, redirect =
    c_request(self._c, method, url, lines, chunk, to[1], to[2], to[3], to[4], to[5], box,
      len or -1, stream, eof)
  while ok == "more" do
    chunk, eof, sent = up_pull(method, url, iter, len, sent)
    ok, status, raw, rbody, ver, elapsed, redirect = c_feed(box, chunk, eof)
  end
  if not ok then error(decorate(status, method, url), 0) end
  return status, raw, rbody, ver, elapsed, redirect
end

-- Whatever ends the upload (its iterator raised, the task was cancelled
-- while the iterator blocked, the transfer failed), the transfer is let go
-- of at once, and the error goes on unchanged.
local function up_finish(method, url, box, stream, ok, status, raw, rbody, ver, elapsed, redirect)
  if not ok then
    c_close_stream(box)
    reraise(status)
  end
  local r = new_response(method, url, status, raw, rbody, ver, elapsed, redirect)
  if stream then
    r._stream = box
    r._t0 = c_clock() - elapsed
  end
  return r
end

local function upload(self, method, url, hlist, lines, iter, len, to, stream)
  if self._closed then error(http_error("closed", method, url, "the client was closed"), 0) end
  -- a transport sees the iterator itself as req.body
  if self._transport then return via_transport(self, method, url, hlist, iter, stream) end
  if corio.current() == nil then  -- outside a running loop: as if in corio.run
    return corio.run(upload, self, method, url, hlist, lines, iter, len, to, stream)
  end
  local box = c_new_stream()
  return up_finish(method, url, box, stream,
    xpcall(up_loop, body_handler, self, method, url, lines, iter, len, to, stream, box))
end

-- A corio.fs file's chunks, from its position to its end. (Made here:
-- a closure made in send() would make each of its returns close
-- upvalues, which LuaJIT cannot compile; W3 ran ~3k instructions a
-- request slower.)
local function file_chunks(f)
  return function() return f:read(UP_CHUNK) end
end

-- What is left of a corio.fs file from its position, or nil if it cannot
-- be known (not seekable, or not a regular file: /dev/zero seeks, to 0,
-- and was sent with Content-Length 0, then refused as running past it).
local function file_left(f)
  if not require("corio.fs")._regular(f) then return nil end
  local ok, size = pcall(function()
    local pos = f:seek("cur")
    local size = f:seek("end")
    f:seek("set", pos)
    return size - pos
  end)
  return ok and size or nil
end

-- A hop after a redirect, under what is left of the total timeout
-- (to[5]): its timeout error names the total set, not what was left.
local function later_hop(self, method, url, hlist, lines, body, uplen, to, stream, up, total)
  local ok, r
  if up then
    ok, r = pcall(upload, self, method, url, hlist, lines, body, uplen, to, stream)
  else
    ok, r = pcall(exchange, self, method, url, hlist, lines, body, to, stream)
  end
  if ok then return r end
  if type(r) == "table" and r.kind == "timeout" and r.phase == "total" and type(r.message) == "string" then
    r.message = r.message:gsub("total timeout %(.-%) expired",
      fmt("total timeout (%g s) expired", total):gsub("%%", "%%%%"), 1)
  end
  error(r, 0)
end

-- Send a request and follow redirects if asked to.
local function send(self, fname, method, url, opts)
  local an = URL_ARG[fname] and 3 or 2  -- opts' argument number
  local to, follow, maxr = self._timeout, self.follow_redirects, self.max_redirects
  local hlist, lines, body, ctype, extra = self._headers, nil, nil, nil, nil
  local stream = fname == "stream"
  local up, uplen, upfile  -- a streamed body: its Content-Length, its file
  req_method, req_url = method, url
  if opts ~= nil then
    if type(opts) ~= "table" then invalid(fname, an, "opts", "table expected, got " .. type(opts)) end
    for k in pairs(opts) do
      if not REQUEST_OPTS[k] then invalid(fname, an, nil, "unknown option '" .. tostring(k) .. "'") end
    end
    if opts.params ~= nil then
      if type(opts.params) ~= "table" then invalid(fname, an, "params", "table expected") end
      local q = encode_pairs(fname, an, "params", opts.params)
      if q ~= "" then
        local base, frag = url:match("^([^#]*)(.*)$")
        local last = sub(base, -1)
        url = base .. (find(base, "?", 1, true) and ((last == "?" or last == "&") and "" or "&") or "?")
          .. q .. frag
      end
    end
    local nb = (opts.json ~= nil and 1 or 0) + (opts.body ~= nil and 1 or 0) + (opts.form ~= nil and 1 or 0)
    if nb > 1 then invalid(fname, an, nil, "give only one of json, body and form") end
    -- libcurl sends no body with a HEAD (it was dropped without a word)
    if nb > 0 and method == "HEAD" then
      invalid(fname, an, nil, "a HEAD request cannot send a body (json, body or form)")
    end
    if opts.json ~= nil then
      local ok, s = pcall(json_encode, opts.json)
      if not ok then invalid(fname, an, "json", tostring(s)) end
      body, ctype = s, "application/json"
    elseif opts.form ~= nil then
      if type(opts.form) ~= "table" then invalid(fname, an, "form", "table expected") end
      body, ctype = encode_pairs(fname, an, "form", opts.form), "application/x-www-form-urlencoded"
    elseif opts.body ~= nil then
      local b = opts.body
      local tb = type(b)
      if tb == "string" then
        body = b
      elseif tb == "function" then
        body, up = b, true
      elseif getmetatable(b) == "corio.File" then
        if require("corio.fs").type(b) ~= "file" then
          invalid(fname, an, "body", "the corio.fs file is closed")
        end
        body, up, upfile = file_chunks(b), true, b
      else
        invalid(fname, an, "body", "string, function (an iterator of chunks) or open corio.fs "
          .. "file expected, got " .. tb)
      end
    end
    extra = opts.headers
    to = norm_timeout(fname, an, opts.timeout, to)
    if opts.follow_redirects ~= nil then follow = opts.follow_redirects and true or false end
    if opts.max_redirects ~= nil then maxr = check_max_redirects(fname, an, opts.max_redirects) end
  end
  -- Without a body these send "Content-Length: 0", as httpx does (a POST
  -- without one would make curl read its body from stdin).
  if body == nil and (method == "POST" or method == "PUT" or method == "PATCH") then body = "" end
  if extra ~= nil or body ~= nil then
    local index
    hlist, index = merge_headers(fname, an, self._headers, extra)
    if extra ~= nil then uplen = check_framing(fname, an, hlist, index, body) end
    if up and upfile and index["content-length"] == nil and index["transfer-encoding"] == nil then
      upfile = true  -- its length is sent as Content-Length (below)
    else
      upfile = nil
    end
    if body ~= nil and not index["content-type"] then
      -- false: curl sends no Content-Type (not its form default)
      hlist[#hlist + 1] = { "content-type", "Content-Type", ctype or false }
    end
  end
  if hlist ~= self._headers or body ~= nil then lines = header_lines(hlist, body ~= nil) end
  req_method, req_url = nil, nil
  if upfile then
    -- a file's length is known, as httpx finds it (curl sends it)
    uplen = file_left(opts.body)
  end
  local hops, spent, total = 0, 0, nil
  while true do
    local r
    if total then
      r = later_hop(self, method, url, hlist, lines, body, uplen, to, stream, up, total)
    elseif up then
      r = upload(self, method, url, hlist, lines, body, uplen, to, stream)
    else
      r = exchange(self, method, url, hlist, lines, body, to, stream)
    end
    local target = rawget(r, "_redirect")
    if not follow or not target or not REDIRECTS[r.status] then return r end
    if stream then r:close() end
    hops = hops + 1
    if hops > maxr then
      error(http_error("redirect", method, url, fmt("too many redirects (more than %d)", maxr)), 0)
    end
    local scheme = target:match("^(%a[%w+.-]*):")
    if not scheme or (scheme:lower() ~= "http" and scheme:lower() ~= "https") then
      error(http_error("redirect", method, url, "redirect to an unsupported URL: " .. shown_url(target)), 0)
    end
    -- "https://:443/": curl, or a transport, would get a URL without a
    -- host (request URLs without one are refused as kind "invalid")
    if not has_host(target) then
      error(http_error("redirect", method, url, "redirect to a URL without a host: " .. shown_url(target)), 0)
    end
    -- a Location without a fragment inherits the request's (RFC 9110
    -- 10.2.2, as httpx does); curl sends no fragment, r.url keeps it
    if not find(target, "#", 1, true) then
      local frag = url:match("#.*$")
      if frag then target = target .. frag end
    end
    local s = r.status
    local changed = false
    if (s == 301 or s == 302 or s == 303) and method ~= "GET" and method ~= "HEAD" then
      method, body, changed, up = "GET", nil, true, nil
    end
    if up then
      error(http_error("redirect", method, url, fmt("cannot follow the %d redirect to %s: the "
        .. "request body (a function or file) was consumed as it was sent and cannot be "
        .. "replayed; send it to the new URL yourself", s, shown_url(target))), 0)
    end
    -- Another origin gets no Authorization and no Cookie (as curl's own
    -- redirects and httpx), and its own Host; a GET no body's headers.
    local drop_auth = origin_of(target) ~= origin_of(url)
    -- Basic auth from a user:pass@ in the URL stays within the origin,
    -- as an Authorization header does: a Location that names the origin
    -- without credentials (absolute Locations are common) lost them.
    if not drop_auth and not target:match("^%a[%w+.-]*://[^/?#]*@") then
      -- (no closure here: a local captured in this loop makes its
      -- `return r` close an upvalue, which LuaJIT cannot compile, and W3
      -- ran ~6k instructions a request slower)
      local ui = url:match("^%a[%w+.-]*://([^/?#]*@)")
      if ui then
        local pre = target:match("^%a[%w+.-]*://")
        target = pre .. ui .. sub(target, #pre + 1)
      end
    end
    if changed or drop_auth then
      local nl = {}
      for _, e in ipairs(hlist) do
        if not (drop_auth and ORIGIN_HEADERS[e[1]]) and not (changed and BODY_HEADERS[e[1]]) then
          nl[#nl + 1] = e
        end
      end
      hlist = nl
      lines = header_lines(hlist, body ~= nil)
    end
    url = target
    -- total bounds the whole call, as curl's own redirects count it: the
    -- next hop gets what the ones before left (at least 1 ms, so that it
    -- fails as a timeout naming its URL)
    if to[5] > 0 then
      spent = spent + (r.elapsed or 0)
      local left = (total or to[5]) - spent
      total = total or to[5]
      to = { to[1], to[2], to[3], to[4], left > 0.001 and left or 0.001 }
    end
  end
end

-- A method called on something else (client.get(url) for client:get(url)).
local function check_self(self, fname)
  if getmetatable(self) ~= Client then
    error(new_error("invalid", fmt("bad self to '%s' (corio.http client expected, "
      .. "got %s; call it as client:%s(...))", fname, type(self), fname)), 3)
  end
end

local function method_fn(method)
  local fname = method:lower()
  return function(self, url, opts)
    check_self(self, fname)
    return send(self, fname, method, check_url(self, fname, url, method), opts)
  end
end

Client.get = method_fn("GET")
Client.post = method_fn("POST")
Client.put = method_fn("PUT")
Client.patch = method_fn("PATCH")
Client.delete = method_fn("DELETE")
Client.head = method_fn("HEAD")
Client.options = method_fn("OPTIONS")

-- Any RFC 9110 token (M-SEARCH, VERSION-CONTROL), as httpx sends;
-- not only letters.
local function check_method(fname, method)
  if type(method) ~= "string" or not method:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
    invalid(fname, 1, "method", "an HTTP method name expected, got " .. shown(method))
  end
  return method:upper()
end

function Client.request(self, method, url, opts)
  check_self(self, "request")
  method = check_method("request", method)
  return send(self, "request", method, check_url(self, "request", url, method), opts)
end

-- stream(method, url [, opts] [, fn]): returns once the headers arrived;
-- with fn, calls fn(r) and closes r however fn ends.
function Client.stream(self, method, url, opts, fn)
  check_self(self, "stream")
  if type(opts) == "function" and fn == nil then opts, fn = nil, opts end
  method = check_method("stream", method)
  if fn ~= nil and type(fn) ~= "function" and not (getmetatable(fn) and getmetatable(fn).__call) then
    invalid("stream", 4, "fn", "function expected, got " .. type(fn))
  end
  local r = send(self, "stream", method, check_url(self, "stream", url, method), opts)
  if fn == nil then return r end
  local function finish(ok, ...)
    r:close()
    if not ok then reraise((...)) end
    return ...
  end
  -- xpcall with the scope bodies' handler: an error of fn keeps the
  -- traceback of where fn raised it (rule 9), not of this re-raise
  return finish(xpcall(fn, body_handler, r))
end

function Client.close(self)
  check_self(self, "close")
  if self._closed then return end
  self._closed = true
  if self._c then c.close(self._c) end
end

-- The largest buffer in C that held a streamed request body's chunk
-- (for tests: an upload holds about one chunk, whatever its size).
function Client._upload_peak(self)
  return self._c and c.up_peak(self._c) or 0
end

function Client.stats(self)
  check_self(self, "stats")
  if not self._c then return { opened = 0, reused = 0, idle = 0, in_flight = 0 } end
  local opened, reused, idle, in_flight = c.stats(self._c)
  return { opened = opened, reused = reused, idle = idle, in_flight = in_flight }
end

-- module level: a shared default client ----------------------------------

local default
local function default_client()
  if default == nil or default._closed then default = M.client() end
  return default
end

for _, name in ipairs { "get", "post", "put", "patch", "delete", "head", "options" } do
  local m = Client[name]
  M[name] = function(url, opts) return m(default_client(), url, opts) end
end
function M.request(method, url, opts) return Client.request(default_client(), method, url, opts) end
function M.stream(method, url, opts, fn) return Client.stream(default_client(), method, url, opts, fn) end

return M
