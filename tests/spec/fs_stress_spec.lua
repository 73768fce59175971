-- fs_stress_spec.lua: randomized runs of tasks doing random file work
-- (writes of every size, reads by every format, lines, chunks, seeks,
-- flushes) against an in-memory model of each file, while other tasks
-- working on their own files are cancelled or time out at random points:
--   * every task that is left alone sees exactly what the model says;
--   * cancelled work never corrupts another task's file;
--   * afterwards no file descriptor is left open and no task is left.
-- Seeds are fixed; STRESS_SEEDS=n runs n more.

local corio = require("corio")
local fs = require("corio.fs")
local helpers = require("tests.spec.helpers")
local lcg = helpers.lcg

local dir

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute('mkdir -p "' .. dir .. '"') == 0 or true)
end)

teardown(function()
  if dir then os.execute('rm -rf "' .. dir .. '"') end
end)

-- One task's work on its own file, checked against a model string.
local function worker(rand, path, steps)
  local model = ""
  local f = fs.open(path, "w+", { buffer_size = ({ 512, 4096, 65536 })[rand(3)] })
  local pos = 0
  local function check_read(got, want, what)
    assert(got == want, ("%s at %d: got %d bytes, want %d"):format(
      what, pos, got and #got or -1, want and #want or -1))
  end
  for _ = 1, steps do
    local op = rand(7)
    if op <= 2 then   -- write at pos
      local n = ({ 1, 10, 100, 5000, 70000 })[rand(5)]
      local data = string.char(64 + rand(26)):rep(n) .. "\n"
      f:write(data)
      model = model:sub(1, pos) .. data .. model:sub(pos + #data + 1)
      pos = pos + #data
    elseif op == 3 then   -- read n bytes
      local n = rand(9000)
      local want = model:sub(pos + 1, pos + n)
      if want == "" then want = nil end
      check_read(f:read(n), want, "read(n)")
      pos = math.min(#model, pos + n)
    elseif op == 4 then   -- read a line
      local want = model:sub(pos + 1):match("^([^\n]*)\n?")
      local got = f:read("l")
      if pos >= #model then want = nil end
      check_read(got, want, "read('l')")
      if got then pos = pos + #got + (model:sub(pos + #got + 1, pos + #got + 1) == "\n" and 1 or 0) end
    elseif op == 5 then   -- seek
      local to = rand(#model + 1) - 1
      assert(f:seek("set", to) == to)
      pos = to
    elseif op == 6 then
      f:flush()
    else                  -- the rest, read whole
      check_read(f:read("a"), model:sub(pos + 1), "read('a')")
      pos = #model
    end
  end
  f:close()
  assert(fs.read_file(path) == model, "the file differs from the model")
end

local function run_seed(seed)
  local rand = lcg(seed)
  local fds = helpers.open_fds()
  local victims, cut = {}, 0
  corio.scope(function(s)
    for i = 1, 6 do
      local r = lcg(seed * 100 + i)
      s:spawn(worker, r, dir .. "/ok" .. i, 40)
    end
    for i = 1, 6 do
      local r = lcg(seed * 1000 + i)
      victims[i] = s:spawn(function()
        -- the same work, cut short by a deadline or a cancel
        corio.defer(function() cut = cut + 1 end)
        if corio.move_on_after(rand(5) * 0.002, worker, r, dir .. "/cut" .. i, 40) then
          cut = cut - 1   -- finished in time
        end
      end)
    end
    s:spawn(function()
      for _ = 1, 3 do
        for _ = 1, rand(10) do corio.yield() end
        victims[rand(#victims)]:cancel()
      end
    end)
  end)
  assert(cut > 0, "seed " .. seed .. ": no work was cut short")
  if os.getenv("STRESS_VERBOSE") then print(("seed %d: %d of 6 cut short"):format(seed, cut)) end
  -- files of cut-short work are closed when collected
  helpers.assert_fds_back(fds)
end

describe("randomized file work under deadlines and cancels", function()
  for _, seed in ipairs(helpers.stress_seeds { 1, 2, 3, 4 }) do
    it("seed " .. seed .. ": every file left alone matches its model, nothing leaks",
      function()
        helpers.no_tasks_left(run_seed, seed)
      end)
  end
end)
