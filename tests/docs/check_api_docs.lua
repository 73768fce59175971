-- check_api_docs.lua: fails when a public name of corio is undocumented.
-- It loads the Lua modules (corio, corio.testing, corio.busted, and
-- corio.fs / corio.http when they load), lists their public fields, the
-- methods of corio's object types (from require("corio.core").methods),
-- and the functions, types and macros declared in runtime/corio.h, then
-- looks for each name in docs/api.md and docs/c-api.md, in a heading or
-- in an inline `code span` (fenced examples do not count). A method
-- counts when written with its type's name or its usual variable, as
-- `Task:join` or `task:join(...)`.
-- Run from anywhere: luajit tests/docs/check_api_docs.lua, or through the
-- corio program. Exit 1 (listing the missing names) when one is missing.
-- A module whose Lua file exists but is not committed yet (work in
-- progress in a shared tree) is reported as a warning only.

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = here .. "/../.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/lib/lua/5.1/?.so;" .. package.cpath

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The documented spans: headings and inline code outside fenced blocks.
local spans = {}
for _, doc in ipairs { "docs/api.md", "docs/c-api.md" } do
  local ok, text = pcall(read, root .. "/" .. doc)
  if not ok then
    io.stderr:write("check_api_docs: cannot read " .. doc .. "\n")
    text = ""
  end
  local fenced = false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*```") or line:match("^%s*~~~") then
      fenced = not fenced
    elseif not fenced then
      if line:match("^#+%s") then spans[#spans + 1] = line end
      for code in line:gmatch("`([^`]+)`") do spans[#spans + 1] = code end
    end
  end
end

local function plain(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- Is one of the spellings written as a whole name in some span?
local function documented(spellings)
  for _, name in ipairs(spellings) do
    local pat = "%f[%w_]" .. plain(name) .. "%f[^%w_]"
    for _, s in ipairs(spans) do
      if s:find(pat) then return true end
    end
  end
  return false
end

local function sh(cmd)
  local p = io.popen(cmd)
  if not p then return "" end
  local out = p:read("*a") or ""
  p:close()
  return out
end

-- Is the file committed? Outside a git work tree (a tarball), yes.
local in_git = sh("cd '" .. root .. "' && git rev-parse --is-inside-work-tree 2>/dev/null")
  :match("true") ~= nil
local function committed(rel)
  if not in_git then return true end
  return sh("cd '" .. root .. "' && git ls-files -- '" .. rel .. "' 2>/dev/null") ~= ""
end

local checks = {}   -- {label, spellings, strict}
local function add(label, spellings, strict)
  checks[#checks + 1] = { label = label, spellings = spellings, strict = strict }
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" then ks[#ks + 1] = k end
  end
  table.sort(ks)
  return ks
end

-- Lua modules: module name, prefixes that may name it, file.
local modules = {
  { "corio", { "corio." }, "lua/corio/init.lua" },
  { "corio.testing", { "corio.testing.", "testing." }, "lua/corio/testing.lua" },
  { "corio.busted", { "corio.busted.", "busted." }, "lua/corio/busted.lua" },
  { "corio.fs", { "corio.fs.", "fs." }, "lua/corio/fs.lua", optional = true },
  { "corio.http", { "corio.http.", "http." }, "lua/corio/http.lua", optional = true },
}

-- Object types: where their methods are, and how docs may name them.
local objects = {
  { "corio.Task", { "Task", "task" } },
  { "corio.Scope", { "Scope", "scope" } },
  { "corio.Semaphore", { "Semaphore", "sem" } },
  { "corio.Lock", { "Lock", "lock" } },
  { "corio.Event", { "Event", "event" } },
  { "corio.Channel", { "Channel", "ch" } },
}
-- Types that are Lua tables of methods in a module (fs.File, http.Client...)
local module_types = {
  ["corio.fs"] = { { "File", { "File", "f" } } },
  ["corio.http"] = { { "Client", { "Client", "client" } }, { "Response", { "Response", "r" } } },
}

local function add_methods(tname, methods, names, strict)
  for _, m in ipairs(sorted_keys(methods)) do
    if type(methods[m]) == "function" then
      local sp = {}
      for _, n in ipairs(names) do sp[#sp + 1] = n .. ":" .. m end
      add(tname .. ":" .. m, sp, strict)
    end
  end
end

local loaded_ok = true
for _, mod in ipairs(modules) do
  local name, prefixes, file = mod[1], mod[2], mod[3]
  local f = io.open(root .. "/" .. file, "rb")
  if f then f:close() end
  if f or not mod.optional then
    local ok, M = pcall(require, name)
    if not ok then
      if mod.optional then
        print(("warning: %s does not load: %s"):format(name, tostring(M)))
      else
        print(("FAIL - %s does not load: %s"):format(name, tostring(M)))
        loaded_ok = false
      end
    else
      local strict = not mod.optional or committed(file)
      if not strict then
        print(("warning: %s is not committed yet; its names are only reported"):format(file))
      end
      for _, k in ipairs(sorted_keys(M)) do
        local v = M[k]
        -- functions, error classes, version; method tables are below
        if not (type(v) == "table" and module_types[name]) then
          local sp = {}
          for _, p in ipairs(prefixes) do sp[#sp + 1] = p .. k end
          add(name .. "." .. k, sp, strict)
        end
      end
      for _, ty in ipairs(module_types[name] or {}) do
        local methods = M[ty[1]]
        if type(methods) == "table" then
          add_methods(name .. "." .. ty[1], methods, ty[2], strict)
        end
      end
    end
  end
end

do
  local core = require "corio.core"
  for _, o in ipairs(objects) do
    local methods = core.methods(o[1])
    if type(methods) ~= "table" then
      print("FAIL - no methods table for " .. o[1])
      loaded_ok = false
    else
      add_methods(o[1], methods, o[2], true)
    end
  end
end

-- runtime/corio.h: functions, types, macros (comments stripped first, so
-- the usage example in a comment is not taken for a declaration).
do
  local h = read(root .. "/runtime/corio.h")
  h = h:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " ")
  local seen = {}
  local function c_name(n)
    if not seen[n] then
      seen[n] = true
      add(n, { n }, true)
    end
  end
  for n in h:gmatch("(corio_[%w_]+)%s*%(") do c_name(n) end
  for n in h:gmatch("%(%s*%*%s*(corio_[%w_]+)%s*%)") do c_name(n) end
  for n in h:gmatch("typedef[^;{}]-(corio_[%w_]+)%s*;") do c_name(n) end
  for n in h:gmatch("}%s*(corio_[%w_]+)%s*;") do c_name(n) end
  for n in h:gmatch("#define%s+(CORIO_[%w_]+)") do
    if n ~= "CORIO_H" then c_name(n) end
  end
end

local passed, failed, warned = 0, 0, 0
local missing = {}
for _, c in ipairs(checks) do
  if documented(c.spellings) then
    passed = passed + 1
  elseif c.strict then
    failed = failed + 1
    missing[#missing + 1] = c
    print(("FAIL - undocumented: %s (write `%s` in a heading or code span)")
      :format(c.label, c.spellings[1]))
  else
    warned = warned + 1
    print(("warning - undocumented (not committed yet): %s"):format(c.label))
  end
end
if not loaded_ok then failed = failed + 1 end
print(("docs: %d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
