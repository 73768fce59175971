-- run_doc_blocks.lua: runs the ```lua blocks of README.md and docs/*.md
-- that are marked runnable and checks what they print, so the examples in
-- the documentation cannot silently go wrong.
--
-- Usage: corio tests/docs/run_doc_blocks.lua path/to/corio [repo root]
--
-- A block is runnable when the line before its ```lua fence is
--   <!-- run [fragment] [test] [output] [file=NAME] [rc=N] -->
--   fragment  the block is a piece of a program: a prelude that loads
--             corio, corio.fs and corio.testing and defines the stand-ins
--             the docs use (fetch, urls, url, work, ...) goes before it
--   test      run with `corio test FILE` (a busted spec) instead of `corio FILE`
--   output    the next plain ``` block after it is its expected stdout
--             (lines starting with "$ " are the command and are skipped;
--             "0.102413 seconds" matches any duration)
--   file=NAME the name the block is saved under (default example.lua,
--             example_spec.lua with test); NAME may hold a directory
--   rc=N      the expected exit code (default 0)
-- Each block runs in a fresh temporary directory holding data.txt,
-- access.log and log.txt. Besides `output`, every `--> text` comment in
-- the block must appear in its stdout (text cut at " (", ", " or "...",
-- whitespace runs compared as one space). No network is needed.
-- Exit 1 when a block fails (or a marker is not followed by a lua block).

local corio_bin = assert(arg[1], "usage: run_doc_blocks.lua path/to/corio [repo root]")
local root = arg[2] or ((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../..")
-- the blocks run in their own directories: make the binary's path absolute
if corio_bin:sub(1, 1) ~= "/" then corio_bin = assert(os.getenv("PWD")) .. "/" .. corio_bin end

local PRELUDE = [[
local corio = require "corio"
local fs = require "corio.fs"
local testing = require "corio.testing"
local function fetch(x) corio.sleep(0.01) return "body of " .. tostring(x) end
local function work() end
local function cleanup() end
local function read_delta() return 5 end
local function producer() end
local function step() error("step failed") end
local function log() end
local urls, url = { "u1", "u2", "u3" }, "u1"
local mirrors, mirror1, mirror2, cached = { "m1", "m2" }, "m1", "m2", "cached"
local conn = { send_goodbye = function() end }
local path = "out.bin"
local fns = { function() return 1 end, function() error("boom") end }
local balance, count, blob = 0, 0, "hello"
local sem = corio.semaphore(1)
local out = { write = function() end }
]]
-- keep the block's own line numbers: the prelude is one line
PRELUDE = PRELUDE:gsub("\n", " ")

local function read(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function lines_of(s)
  local t = {}
  for l in (s .. "\n"):gmatch("(.-)\r?\n") do t[#t + 1] = l end
  return t
end

local function squash(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

-- Parse a markdown file into the marked blocks.
local function blocks_of(path)
  local ls = lines_of(read(path))
  local found, bad = {}, {}
  local i = 1
  while i <= #ls do
    local attrs = ls[i]:match("^<!%-%- run(.-)%-%->%s*$")
    if attrs then
      local b = { doc = path, line = i + 1, attrs = {}, code = {} }
      for w in attrs:gmatch("%S+") do
        local k, v = w:match("^([%w_]+)=(.*)$")
        if k then b.attrs[k] = v else b.attrs[w] = true end
      end
      if not (ls[i + 1] or ""):match("^```lua%s*$") then
        bad[#bad + 1] = ("%s:%d: a run marker not followed by a ```lua block"):format(path, i)
        i = i + 1
      else
        local j = i + 2
        while ls[j] and not ls[j]:match("^```%s*$") do
          b.code[#b.code + 1] = ls[j]
          j = j + 1
        end
        i = j + 1
        if b.attrs.output then
          while ls[i] and not ls[i]:match("^```") do i = i + 1 end
          if not (ls[i] and ls[i]:match("^```%s*$")) then
            bad[#bad + 1] = ("%s:%d: 'output' but no plain ``` block follows"):format(path, b.line)
          else
            local want = {}
            i = i + 1
            while ls[i] and not ls[i]:match("^```%s*$") do
              if not ls[i]:match("^%$ ") then want[#want + 1] = ls[i] end
              i = i + 1
            end
            b.output = want
            i = i + 1
          end
        end
        found[#found + 1] = b
      end
    else
      i = i + 1
    end
  end
  return found, bad
end

local function norm_line(l)
  return (l:gsub("%d+%.%d+ seconds", "N seconds"):gsub("%s+$", ""))
end

local passes, fails = 0, 0
local function report(ok, name, why, got)
  if ok then
    passes = passes + 1
    print("ok - " .. name)
  else
    fails = fails + 1
    print("FAIL - " .. name .. ": " .. why)
    if got then print((("\n" .. got):gsub("\n", "\n    "))) end
  end
end

local function run_block(b)
  local doc = b.doc:sub(1, #root + 1) == root .. "/" and b.doc:sub(#root + 2) or b.doc
  local name = ("%s:%d"):format(doc, b.line)
  local dir = io.popen("mktemp -d"):read("*l")
  local file = b.attrs.file or (b.attrs.test and "example_spec.lua" or "example.lua")
  local sub = file:match("^(.*)/[^/]*$")
  if sub then os.execute("mkdir -p " .. sh_quote(dir .. "/" .. sub)) end
  write(dir .. "/data.txt", "first line\nsecond line\n")
  write(dir .. "/access.log", "GET /\nGET /x\n")
  write(dir .. "/log.txt", "one\ntwo\n")
  local code = table.concat(b.code, "\n") .. "\n"
  if b.attrs.fragment then code = PRELUDE .. code end
  write(dir .. "/" .. file, code)
  local cmd = ("cd %s && timeout -k 2 60 %s %s%s </dev/null >out 2>err; echo $? >rc"):format(
    sh_quote(dir), sh_quote(corio_bin), b.attrs.test and "test " or "", sh_quote(file))
  os.execute(cmd)
  local rc = tonumber(read(dir .. "/rc"))
  local out, err = read(dir .. "/out"), read(dir .. "/err")
  os.execute("rm -rf " .. sh_quote(dir))
  local want_rc = tonumber(b.attrs.rc or 0)
  if rc ~= want_rc then
    return report(false, name, ("exit code %s, expected %d"):format(tostring(rc), want_rc),
      out .. "\n-- stderr:\n" .. err)
  end
  if b.output then
    local got = lines_of((out:gsub("\n$", "")))
    local same = #got == #b.output
    for k = 1, math.max(#got, #b.output) do
      if norm_line(got[k] or "") ~= norm_line(b.output[k] or "") then same = false end
    end
    if not same then
      return report(false, name, "stdout differs from the documented output:\n    "
        .. table.concat(b.output, "\n    ") .. "\n  got:", out)
    end
  end
  local flat = " " .. squash(out) .. " "
  for _, l in ipairs(b.code) do
    local want = l:match("%-%->%s*(.-)%s*$")
    if want then
      want = want:gsub("%.%.%..*$", ""):gsub(" %(.*$", ""):gsub(", .*$", "")
      want = squash(want)
      if want ~= "" and not flat:find(want, 1, true) then
        return report(false, name, ("stdout lacks '%s' (the block's '--> %s')"):format(want,
          l:match("%-%->%s*(.-)%s*$")), out)
      end
    end
  end
  report(true, name)
end

local docs = { root .. "/README.md" }
local ls = io.popen("ls " .. sh_quote(root) .. "/docs/*.md")
for p in ls:lines() do docs[#docs + 1] = p end
ls:close()
local total = 0
for _, doc in ipairs(docs) do
  local found, bad = blocks_of(doc)
  for _, msg in ipairs(bad) do report(false, msg, "bad marker") end
  for _, b in ipairs(found) do
    total = total + 1
    run_block(b)
  end
end
if total == 0 then report(false, "doc blocks", "no block is marked <!-- run -->") end
print(("doc_blocks: %d passed, %d failed"):format(passes, fails))
os.exit(fails == 0 and 0 or 1)
