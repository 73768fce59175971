-- W1/W7 "task handle" ceiling: what SPEC's Task object alone costs a
-- scheduler that has none. corio.spawn returns a Task (join, cancel,
-- status, name), so each corio task has a userdata that the pure-LuaJIT
-- floor and the luajit-luv peer (a coroutine and a small table) do not.
-- This runs one of those programs unchanged, with one zeroed userdata of
-- HANDLE bytes made per task and kept to the end (as W1 keeps its Tasks):
-- per coroutine.create for the floor, per Group:spawn for luajit-luv.
--   gcc -O2 -shared -fPIC $(pkg-config --cflags luajit) \
--     -o /tmp/task_handle.so bench/ceilings/task-handle.c
--   LUA_CPATH='/tmp/?.so;;' HANDLE=16 luajit bench/ceilings/task-handle.lua \
--     ../shared/bench/peers/w1-spawn/luajit-luv.lua
-- HANDLE=0 makes no userdata but keeps the wrapper (the baseline to
-- compare with: the wrapper's own call is then in both). Prints the
-- program's RESULT line.
local prog = assert(arg[1], "usage: task-handle.lua peer-program.lua")
local n = tonumber(os.getenv("HANDLE") or 144)
local handle = require "task_handle"
local kept, nkept = {}, 0

if prog:find("luajit%-luv") then
  local dir = prog:match("^(.*)/[^/]*$") or "."
  package.path = dir .. "/../../lib/?.lua;" .. package.path
  local S = require "luvsched"   -- the peer's own require gets this one
  local Group = getmetatable(S.group())
  local spawn = Group.spawn
  Group.spawn = function(self, fn, i)
    if n > 0 then nkept = nkept + 1; kept[nkept] = handle(n) end
    return spawn(self, fn, i)
  end
else
  local create = coroutine.create
  coroutine.create = function(f)
    if n > 0 then nkept = nkept + 1; kept[nkept] = handle(n) end
    return create(f)
  end
end
arg[0] = prog
dofile(prog)
