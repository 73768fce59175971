-- fs_spec.lua: SPEC §3 corio.fs through the public API: open modes, every
-- read format against Lua's io on the same file, lines and chunks, write,
-- seek, flush, close, with_open, the path functions, errors (path, code),
-- large files, the loop staying free while a file streams, cancellation
-- (rule 7) and collection of unclosed files. Files live in a temporary
-- directory made from os.tmpname() and removed afterwards.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local fs = require("corio.fs")

local function pack(...) return { n = select("#", ...), ... } end

local dir

local function path(name) return dir .. "/" .. name end

local io_write, io_read = helpers.io_write, helpers.io_read

-- A large file of numbered lines, made once.
local BIG_LINES = 80000
local big

local function big_file()
  if big then return big end
  big = path("big.txt")
  local f = assert(io.open(big, "wb"))
  for i = 1, BIG_LINES do
    f:write(("line %06d %s\n"):format(i, ("abcdefghij"):rep(6)))
  end
  f:close()
  return big
end

local remove_dir
setup(function() dir, remove_dir = helpers.temp_dir("corio-fs") end)

teardown(function() if remove_dir then remove_dir() end end)

describe("fs.open / read / write / close", function()
  it("round-trips data written with write and read back with read('a')", function()
    local p = path("rt.txt")
    local f = fs.open(p, "w")
    assert.equal(f, f:write("hello ", 42, " ", 1.5, "\n"))
    f:write("second line")
    assert.is_true(f:close())
    assert.equal("hello 42 1.5\nsecond line", io_read(p))
    local g = fs.open(p, "rb")
    assert.equal("hello 42 1.5\nsecond line", g:read("a"))
    assert.equal("", g:read("a"))
    assert.is_nil(g:read("l"))
    g:close()
  end)

  it("empty writes, first thing on a new file, write nothing", function()
    -- the buffer is made on first use: an empty piece must not be copied
    -- from or to it before then (the sanitizer build checks the copy)
    local p = path("empty.txt")
    local f = fs.open(p, "w")
    assert.equal(f, f:write(""))
    assert.equal(f, f:write("", ""))
    f:write("a", "")
    f:write("", "b")
    assert.is_true(f:close())
    assert.equal("ab", io_read(p))
  end)

  it("writes numbers as io does (%.14g)", function()
    local p = path("num.txt")
    local f = fs.open(p, "w")
    f:write(1 / 3, " ", 1e100, " ", -0.0, " ", 2 ^ 53)
    f:close()
    local g = assert(io.open(path("num_io.txt"), "w"))
    g:write(1 / 3, " ", 1e100, " ", -0.0, " ", 2 ^ 53)
    g:close()
    assert.equal(io_read(path("num_io.txt")), io_read(p))
  end)

  it("accepts io.open's modes and rejects others", function()
    local p = path("modes.txt")
    io_write(p, "abc\n")
    for _, m in ipairs { "r", "rb", "r+", "r+b", "w", "wb", "w+", "a", "ab", "a+", "a+b" } do
      local f = fs.open(p, m)
      assert.equal("file", fs.type(f))
      f:close()
      assert.equal("closed file", fs.type(f))
    end
    for _, m in ipairs { "x", "rw", "", "r++", "br", "w+x" } do
      local e = catch(fs.open, p, m)
      assert.matches("bad argument #2 to 'open' %(invalid mode", tostring(e))
    end
    assert.matches("bad argument #1 to 'open'", tostring(catch(fs.open, 42)))
    assert.is_nil(fs.type("not a file"))
  end)

  it("'a' appends and 'a+' reads from the start", function()
    local p = path("app.txt")
    io_write(p, "one\n")
    local f = fs.open(p, "a")
    f:write("two\n")
    f:close()
    local g = fs.open(p, "a+")
    assert.equal("one", g:read("l"))
    g:write("three\n")
    g:close()
    assert.equal("one\ntwo\nthree\n", io_read(p))
  end)

  it("'w' truncates; 'r+' reads and writes in place", function()
    local p = path("rplus.txt")
    io_write(p, "0123456789")
    local f = fs.open(p, "r+")
    assert.equal("012", f:read(3))
    f:write("abc")
    assert.equal("6789", f:read("a"))
    f:seek("set", 0)
    assert.equal("012abc6789", f:read("a"))
    f:close()
    local g = fs.open(p, "w")
    g:close()
    assert.equal("", io_read(p))
  end)

  it("reads every format exactly as Lua's io", function()
    local p = path("formats.txt")
    io_write(p, "first line\n  42  3.5e2 -7 0x10 nan?\nabc\n\n\nlast without newline")
    local seqs = {
      { "l" }, { "L" }, { "a" }, { "n" }, { 5 }, { 0 }, { 1 }, { "*l" }, { "*L" },
      { "*a" }, { "*n" }, { "n", "l" }, { "l", "l", "l" }, { 1, "l", 3 },
      { "l", "n", "n", "n", "n", "l" }, { 100 }, { "L", 0, "a" },
    }
    for _, seq in ipairs(seqs) do
      local a = assert(io.open(p, "rb"))
      local b = fs.open(p, "rb")
      for round = 1, 12 do
        local want = pack(a:read(unpack(seq)))
        local got = pack(b:read(unpack(seq)))
        assert.same(want, got, ("format %s, round %d"):format(
          table.concat((function()
            local t = {}
            for i, v in ipairs(seq) do t[i] = tostring(v) end
            return t
          end)(), ","), round))
      end
      a:close()
      b:close()
    end
  end)

  it("read('n') on malformed input takes the longest number and leaves the rest", function()
    -- Documented difference from io (glibc's fscanf consumes a few more
    -- characters of a malformed numeral, and all of them on failure).
    local cases = {
      { "1e", 1, "e" }, { "1e+", 1, "e+" }, { "0x", 0, "x" }, { "12abc", 12, "abc" },
      { "- 1e", nil, "- 1e" }, { "--1", nil, "--1" }, { "-.e1", nil, "-.e1" },
      { "  +3.5\n", 3.5, "\n" }, { "", nil, "" },
    }
    for _, c in ipairs(cases) do
      local p = path("n.txt")
      io_write(p, c[1])
      local f = fs.open(p)
      local n = f:read("n")
      assert.equal(c[2], n, ("number read from %q"):format(c[1]))
      assert.equal(c[3], f:read("a"), ("rest after %q"):format(c[1]))
      f:close()
    end
  end)

  it("read() with no format reads a line", function()
    local p = path("noformat.txt")
    io_write(p, "a\nb")
    local f = fs.open(p)
    assert.equal("a", f:read())
    assert.equal("b", f:read())
    assert.is_nil(f:read())
    f:close()
  end)

  it("rejects bad formats and bad write arguments", function()
    local p = path("bad.txt")
    io_write(p, "x")
    local f = fs.open(p, "r+")
    assert.matches("bad argument #1 to 'read' %(invalid format%)", tostring(catch(f.read, f, "x")))
    assert.matches("bad argument #2 to 'read' %(invalid format%)", tostring(catch(f.read, f, "l", {})))
    assert.matches("bad argument #2 to 'write' %(string expected, got table%)",
      tostring(catch(f.write, f, "ok", {})))
    assert.matches("bad argument #1 to 'seek' %(invalid option 'middle'%)",
      tostring(catch(f.seek, f, "middle")))
    assert.matches("bad argument #1 to 'chunks'", tostring(catch(f.chunks, f, 0)))
    f:close()
  end)

  it("seeks as io: set, cur, end", function()
    local p = path("seek.txt")
    io_write(p, "0123456789\nabc\n")
    local f = fs.open(p)
    assert.equal(0, f:seek())
    assert.equal("0123456789", f:read("l"))
    assert.equal(11, f:seek("cur"))
    assert.equal(15, f:seek("end"))
    assert.equal(3, f:seek("set", 3))
    assert.equal("34", f:read(2))
    assert.equal(7, f:seek("cur", 2))
    assert.equal("789", f:read(3))
    assert.equal(13, f:seek("end", -2))
    assert.equal("c\n", f:read("a"))
    f:close()
  end)

  it("keeps the order of data written through small buffers", function()
    local p = path("order.txt")
    local f = fs.open(p, "w", { buffer_size = 7 })
    local want = {}
    for i = 1, 2000 do
      f:write(i, i % 3 == 0 and "\n" or ",")
      want[#want + 1] = tostring(i) .. (i % 3 == 0 and "\n" or ",")
    end
    f:seek("set", 0)
    f:write("X")
    f:close()
    want[1] = "X,"
    assert.equal(table.concat(want), io_read(p))
  end)

  it("flush writes the buffer out before close", function()
    local p = path("flush.txt")
    local f = fs.open(p, "w")
    f:write("buffered")
    assert.equal("", io_read(p))
    assert.equal(f, f:flush())
    assert.equal("buffered", io_read(p))
    f:close()
  end)

  it("raises kind 'closed' on use after close", function()
    local p = path("closed.txt")
    io_write(p, "x\n")
    local f = fs.open(p)
    f:close()
    for _, call in ipairs {
      function() return f:read("l") end, function() return f:write("x") end,
      function() return f:lines()() end, function() return f:seek("set") end,
      function() return f:flush() end, function() return f:close() end,
    } do
      local e = catch(call)
      assert.equal("closed", e.kind)
      assert.equal(p, e.path)
      assert.matches("closed", e.message)
    end
  end)
end)

describe("fs lines and chunks", function()
  it("f:lines() matches io.lines, with and without a final newline", function()
    for _, data in ipairs { "a\nbb\n\nccc\n", "a\nbb\n\nccc", "", "\n", "no newline" } do
      local p = path("lines.txt")
      io_write(p, data)
      local want, got = {}, {}
      for l in io.lines(p) do want[#want + 1] = l end
      local f = fs.open(p)
      for l in f:lines() do got[#got + 1] = l end
      f:close()
      assert.same(want, got)
      local got2 = {}
      for l in fs.lines(p) do got2[#got2 + 1] = l end
      assert.same(want, got2)
    end
  end)

  it("lines('L') keeps newlines; lines with formats reads like read", function()
    local p = path("linesL.txt")
    io_write(p, "1 2\n3 x\n")
    local got = {}
    local f = fs.open(p)
    for l in f:lines("L") do got[#got + 1] = l end
    f:close()
    assert.same({ "1 2\n", "3 x\n" }, got)
    local nums = {}
    f = fs.open(p)
    for n in f:lines("n") do nums[#nums + 1] = n end
    f:close()
    assert.same({ 1, 2, 3 }, nums)
  end)

  it("handles lines longer than the buffer", function()
    local p = path("long.txt")
    local long = ("x"):rep(200000)
    io_write(p, "short\n" .. long .. "\nend")
    local got = {}
    local f = fs.open(p, "r", { buffer_size = 1024 })
    for l in f:lines() do got[#got + 1] = l end
    f:close()
    assert.equal(3, #got)
    assert.equal(long, got[2])
    assert.equal("end", got[3])
  end)

  it("f:chunks(size) yields the file in pieces of size bytes", function()
    local p = path("chunks.txt")
    local data = ("0123456789"):rep(1000) .. "tail"
    io_write(p, data)
    local f = fs.open(p, "rb")
    local parts = {}
    for c in f:chunks(3000) do parts[#parts + 1] = c end
    f:close()
    assert.equal(4, #parts)
    assert.equal(3000, #parts[1])
    assert.equal(data, table.concat(parts))
  end)

  it("fs.lines raises at once for a missing file", function()
    local e = catch(fs.lines, path("missing.txt"))
    assert.equal("ENOENT", e.code)
  end)

  it("works inside the user's coroutines (rule 13)", function()
    local p = path("co.txt")
    io_write(p, "a\nb\nc\n")
    local it = coroutine.wrap(function()
      for l in fs.lines(p) do coroutine.yield(l) end
    end)
    assert.equal("a", it())
    assert.equal("b", it())
    assert.equal("c", it())
  end)
end)

describe("fs large files", function()
  it("streams a file of several MiB by lines, as io does", function()
    local p = big_file()
    local n, sum = 0, 0
    local f = fs.open(p)
    for l in f:lines() do
      n = n + 1
      sum = sum + #l
    end
    f:close()
    local n2, sum2 = 0, 0
    for l in io.lines(p) do
      n2 = n2 + 1
      sum2 = sum2 + #l
    end
    assert.equal(BIG_LINES, n)
    assert.equal(n2, n)
    assert.equal(sum2, sum)
  end)

  it("copies a large file by lines with write, upper-cased", function()
    local p, q = big_file(), path("big_upper.txt")
    fs.with_open(q, "w", function(out)
      for l in fs.lines(p) do out:write(l:upper(), "\n") end
    end)
    assert.equal(io_read(p):upper(), io_read(q))
    fs.remove(q)
  end)

  it("reads and writes whole large files", function()
    local p, q = big_file(), path("big_copy.txt")
    local data = fs.read_file(p)
    assert.equal(io_read(p), data)
    fs.write_file(q, data)
    assert.equal(data, io_read(q))
    fs.remove(q)
  end)

  it("does not block the loop while a large file streams", function()
    local p = big_file()
    local ticks, done = 0, false
    corio.scope(function(s)
      s:spawn(function()
        while not done do
          ticks = ticks + 1
          corio.sleep(0)
        end
      end)
      s:spawn(function()
        local f = fs.open(p, "r", { buffer_size = 4096 })
        local n = 0
        for _ in f:lines() do n = n + 1 end
        f:close()
        assert.equal(BIG_LINES, n)
        done = true
      end)
    end)
    -- one refill per 4 KiB: the ticker ran between them
    assert.is_true(ticks > 100, "ticks: " .. ticks)
  end)
end)

describe("fs read-ahead", function()
  -- The number of a line of big_file().
  local function num(l) return tonumber(l:sub(6, 11)) end

  it("lines longer than the headroom and the buffer, default buffer", function()
    local p = path("ra_long.txt")
    local parts = {}
    for i = 1, 40 do
      parts[#parts + 1] = ("%d:"):format(i) .. ("y"):rep((i * 7919) % 90000)
    end
    io_write(p, table.concat(parts, "\n") .. "\n")
    local want, got = {}, {}
    for l in io.lines(p) do want[#want + 1] = l end
    local f = fs.open(p)
    for l in f:lines() do got[#got + 1] = l end
    f:close()
    assert.same(want, got)
  end)

  it("read formats across buffer swaps match io", function()
    local p = big_file()
    local f, g = fs.open(p, "r", { buffer_size = 4096 }), assert(io.open(p, "rb"))
    for i = 1, 3000 do
      local fmt = ({ "l", 37, "L", 5000, "n" })[i % 5 + 1]
      local a, b = f:read(fmt), g:read(fmt == "n" and "*n" or fmt)
      assert.equal(b, a)
    end
    assert.equal(g:read("a"), f:read("a"))
    g:close()
    f:close()
  end)

  it("seek accounts for the bytes read ahead", function()
    local p = big_file()
    local f = fs.open(p, "r", { buffer_size = 4096 })
    local first = f:read("l")
    -- the read-ahead is in flight now: the position is still the reader's
    assert.equal(#first + 1, f:seek("cur"))
    for _ = 1, 200 do f:read("l") end
    local pos = f:seek()
    local g = assert(io.open(p, "rb"))
    g:seek("set", pos)
    assert.equal(g:read("l"), f:read("l"))
    assert.equal(0, f:seek("set", 0))
    assert.equal(first, f:read("l"))
    g:close()
    f:close()
  end)

  it("close while a read-ahead is in flight waits for it, then closes", function()
    local p = big_file()
    for _ = 1, 20 do
      local f = fs.open(p)
      assert.is_string(f:read("l"))  -- the read-ahead starts here
      assert.is_true(f:close())
      assert.equal("closed file", fs.type(f))
    end
  end)

  it("a cancelled close with a read-ahead in flight still closes", function()
    local p = big_file()
    local f = fs.open(p)
    f:read("l")
    corio.scope(function(s)
      s:cancel()
      assert.is_true(corio.is_cancelled(catch(f.close, f)))
    end)
    assert.equal("closed file", fs.type(f))
    corio.sleep(0.01)  -- the read-ahead ends and the fd is closed
  end)

  it("rule 7: cancelled while waiting for a read-ahead, no line is lost", function()
    local p = big_file()
    local f = fs.open(p, "r", { buffer_size = 4096 })
    local last, cancels = 0, 0
    while last < BIG_LINES do
      corio.scope(function(s)
        local t = s:spawn(function()
          for l in f:lines() do
            local n = num(l)
            assert.equal(last + 1, n)
            last = n
          end
        end)
        s:spawn(function()
          corio.yield()
          t:cancel()
          cancels = cancels + 1
        end)
      end)
    end
    assert.equal(BIG_LINES, last)
    assert.is_true(cancels > 10)
    assert.is_nil(f:read("l"))
    f:close()
  end)

  it("a file collected with a read-ahead in flight is freed when it ends", function()
    local p = big_file()
    for _ = 1, 10 do
      local f = fs.open(p)
      f:read("l")
      f = nil
      collectgarbage()
      collectgarbage()
    end
    corio.sleep(0.02)
    local f = fs.open(p)
    assert.equal(1, num(f:read("l")))
    f:close()
  end)

  it("two tasks reading one file: no hang, at most one told EBUSY", function()
    local p = big_file()
    local f = fs.open(p, "r", { buffer_size = 4096 })
    local errs = 0
    corio.scope(function(s)
      for _ = 1, 2 do
        s:spawn(function()
          local ok, e = pcall(function() for _ in f:lines() do end end)
          if not ok then
            assert.equal("EBUSY", e.code)
            errs = errs + 1
          end
        end)
      end
    end)
    assert.is_true(errs <= 1)
    f:close()
  end)
end)

describe("fs large reads and writes", function()
  -- Reads of at least the buffer size are read whole into an aligned
  -- buffer (one request per chunk, read ahead by the chunk's size);
  -- strings at least as long as the write buffer are written straight
  -- from the string, after the buffered bytes, in the background.
  local MiB = 1048576

  -- About 5.4 MiB, every 9 bytes numbered, with an odd tail: a byte out
  -- of place shows.
  local data
  local function big_data()
    if data then return data end
    local t = {}
    for i = 1, 600000 do t[i] = ("%08d|"):format(i) end
    data = table.concat(t) .. "odd tail"
    return data
  end
  local data_path
  local function data_file()
    if data_path then return data_path end
    data_path = path("large.bin")
    io_write(data_path, big_data())
    return data_path
  end

  -- A distinct 1 MiB string for each i.
  local function chunk(i) return ("%07d\n"):format(i):rep(MiB / 8) end

  local function same(want, got, what)
    assert(want == got, ("%s: %s bytes expected, got %s (or different bytes)")
      :format(what, want and #want or "nil", got and #got or "nil"))
  end

  it("read(n) of large counts returns what io returns, to the end", function()
    local p = data_file()
    for _, n in ipairs({ 65536, 65537, MiB, 1000000, 3 * MiB + 5, 5 * MiB }) do
      local a, b = assert(io.open(p, "rb")), fs.open(p, "rb")
      local i = 0
      repeat
        i = i + 1
        local want, got = a:read(n), b:read(n)
        same(want, got, ("read(%d) #%d"):format(n, i))
      until want == nil
      assert.is_nil(b:read(n))
      a:close()
      b:close()
    end
  end)

  it("chunks(n): pieces of n bytes, a shorter last one, then the end", function()
    local p, d = data_file(), big_data()
    local f = fs.open(p, "rb")
    local parts = {}
    for c in f:chunks(MiB) do parts[#parts + 1] = c end
    f:close()
    assert.equal(math.ceil(#d / MiB), #parts)
    for i = 1, #parts - 1 do assert.equal(MiB, #parts[i]) end
    assert.equal(#d % MiB, #parts[#parts])
    same(d, table.concat(parts), "chunks")
    -- a chunk larger than the file; a file of exactly two chunks
    f = fs.open(p, "rb")
    local it = f:chunks(8 * MiB)
    same(d, it(), "one chunk")
    assert.is_nil(it())
    f:close()
    local q = path("two_chunks.bin")
    io_write(q, d:sub(1, 2 * 65536))
    f = fs.open(q, "rb")
    local n = 0
    for c in f:chunks(65536) do
      n = n + 1
      same(d:sub((n - 1) * 65536 + 1, n * 65536), c, "chunk " .. n)
    end
    f:close()
    assert.equal(2, n)
  end)

  it("mixed small and large reads match io, whatever the buffer size", function()
    local p = data_file()
    local seq = { "l", MiB, 10, "l", 200000, "L", 65536, 3, 2 * MiB, "n", 65535,
                  1, 4 * MiB + 1, "a", 10, "l" }
    for _, size in ipairs({ false, 4096, 16 }) do
      local a = assert(io.open(p, "rb"))
      local b = fs.open(p, "rb", size and { buffer_size = size } or nil)
      for i, fmt in ipairs(seq) do
        local want = a:read(fmt == "n" and "*n" or fmt)
        same(want, b:read(fmt), ("buffer %s, step %d (%s)"):format(tostring(size), i, fmt))
      end
      a:close()
      b:close()
    end
  end)

  it("large and small writes keep their order", function()
    for _, size in ipairs({ false, 4096, 16 }) do
      local q = path("order_big.bin")
      local f = fs.open(q, "wb", size and { buffer_size = size } or nil)
      local want = {}
      local function w(...)
        f:write(...)
        for i = 1, select("#", ...) do want[#want + 1] = tostring((select(i, ...))) end
      end
      w("head")
      w(chunk(1))
      w("mid", 42)
      w(chunk(2):sub(1, 200000))
      w("x", chunk(3), "y", 7, chunk(4):sub(1, 70000))
      -- small writes while a large one is in flight go after it
      for i = 1, 300 do w(("s%d;"):format(i), i % 7 == 0 and chunk(i):sub(1, 5000 + i) or "") end
      w(chunk(5))
      f:close()
      same(table.concat(want), io_read(q), "buffer " .. tostring(size))
    end
  end)

  it("large writes back to back (queued behind the one in flight) land in order", function()
    for _, mode in ipairs({ "wb", "ab" }) do
      local q = path("queued_big.bin")
      os.remove(q)
      local f = fs.open(q, mode)
      local want = {}
      for i = 1, 24 do
        local c = i % 5 == 0 and chunk(i):sub(1, 300000 + i) or chunk(i)
        want[i] = c
        f:write(c)
      end
      f:close()
      same(table.concat(want), io_read(q), mode)
      -- and when the file is collected, not closed
      f = fs.open(q, "wb")
      for i = 1, 8 do f:write(want[i]) end
      f = nil
      collectgarbage()
      collectgarbage()
      local got, n = nil, #table.concat(want, "", 1, 8)
      for _ = 1, 200 do
        got = io_read(q)
        if #got == n then break end
        corio.sleep(0.01)
      end
      same(table.concat(want, "", 1, 8), got, mode .. ", collected")
    end
  end)

  it("'+' modes: a large write lands where the reader was", function()
    local p, d = path("rplus_big.bin"), big_data()
    io_write(p, d)
    local f = fs.open(p, "r+b")
    assert.equal(d:sub(1, 10), f:read(10))
    local x = ("X"):rep(100000)
    f:write(x)
    assert.equal(100010, f:seek())
    same(d:sub(100011, 100020), f:read(10), "read after the write")
    f:seek("set", 0)
    same(d:sub(1, 10) .. x .. d:sub(100011), f:read("a"), "whole file")
    f:close()
    local g = fs.open(path("wplus_big.bin"), "w+b")
    g:write("a", chunk(1), "b")
    g:seek("set", 0)
    same("a" .. chunk(1) .. "b", g:read("a"), "w+")
    g:close()
  end)

  it("never swallows the error of a large write (/dev/full)", function()
    -- the write goes out in the background: flush raises its error
    local f = fs.open("/dev/full", "wb")
    f:write(chunk(1))
    local e = catch(f.flush, f)
    assert.equal("fs", e.kind)
    assert.equal("ENOSPC", e.code)
    assert.equal("write", e.op)
    assert.equal("/dev/full", e.path)
    f:close()
    -- close raises it
    local g = fs.open("/dev/full", "wb")
    g:write("small first", chunk(2))
    assert.equal("ENOSPC", catch(g.close, g).code)
    assert.equal("closed file", fs.type(g))
    -- the next large write may queue behind the failing one (and is
    -- then dropped); the one after waits for it and raises
    local h = fs.open("/dev/full", "wb")
    h:write(chunk(3))
    local c4, c5 = chunk(4), chunk(5)
    assert.equal("ENOSPC", catch(function() h:write(c4); h:write(c5) end).code)
    h:close()
    -- a "+" file waits for its large write
    local k = fs.open("/dev/full", "w+b")
    assert.equal("ENOSPC", catch(k.write, k, chunk(5)).code)
    k:close()
  end)

  it("rule 7: cancelled during large writes, whole writes land, in order", function()
    local q = path("cancel_big.bin")
    local f = fs.open(q, "wb")
    local done, outcome = 0, nil
    corio.scope(function(s)
      local t = s:spawn(function()
        local ok, e = pcall(function()
          for i = 1, 64 do
            f:write(chunk(i))
            done = i
          end
        end)
        outcome = helpers.outcome(ok, e)
      end)
      s:spawn(function()
        while done < 3 do corio.yield() end
        t:cancel()
      end)
    end)
    assert.equal("cancelled", outcome)
    assert.is_true(done >= 3 and done < 64, "done: " .. done)
    f:close()
    local got = io_read(q)
    assert.equal(done * MiB, #got)
    for i = 1, done do
      assert(got:sub((i - 1) * MiB + 1, i * MiB) == chunk(i), "chunk " .. i)
    end
  end)

  it("rule 7: cancelled during large reads, no byte is lost", function()
    local p, d = data_file(), big_data()
    local f = fs.open(p, "rb")
    local parts, cancels, eof = {}, 0, false
    while not eof do
      corio.scope(function(s)
        local t = s:spawn(function()
          local n = #parts % 2 == 0 and 262144 or 300001
          for c in f:chunks(n) do parts[#parts + 1] = c end
          eof = true
        end)
        s:spawn(function()
          corio.yield()
          t:cancel()
          cancels = cancels + 1
        end)
      end)
    end
    assert.is_true(cancels > 3, "cancels: " .. cancels)
    same(d, table.concat(parts), "all chunks")
    f:close()
  end)

  it("a file collected with a large write in flight writes it out", function()
    local q = path("gc_big.bin")
    do
      local f = fs.open(q, "wb")
      f:write(chunk(7))   -- in flight; only the runtime holds the string
      f:write("tail")     -- buffered behind it
      f = nil
    end
    collectgarbage()
    collectgarbage()
    local want = chunk(7) .. "tail"
    for _ = 1, 200 do
      if #io_read(q) == #want then break end
      corio.sleep(0.01)
    end
    same(want, io_read(q), "collected file")
  end)
end)

describe("fs errors", function()
  it("names the path and the errno symbol (ENOENT)", function()
    local p = path("nope/missing.txt")
    local e = catch(fs.open, p, "r")
    assert.equal("fs", e.kind)
    assert.equal("ENOENT", e.code)
    assert.equal("open", e.op)
    assert.equal(p, e.path)
    assert.is_number(e.errno)
    assert.matches("open", e.message)
    assert.matches(p, e.message, 1, true)
    assert.matches("ENOENT", tostring(e))
  end)

  it("raises EISDIR for a directory", function()
    assert.equal("EISDIR", catch(fs.open, dir, "r").code)
    assert.equal("EISDIR", catch(fs.open, dir, "w").code)
  end)

  it("raises EACCES for a file without permission", function()
    if os.getenv("USER") == "root" or io.popen("id -u"):read("*l") == "0" then
      return pending("running as root: permissions are not enforced")
    end
    local p = path("noperm.txt")
    io_write(p, "x")
    os.execute('chmod 000 "' .. p .. '"')
    local e = catch(fs.open, p, "r")
    assert.equal("EACCES", e.code)
    os.execute('chmod 644 "' .. p .. '"')
  end)

  it("never swallows a write error (/dev/full)", function()
    local f = fs.open("/dev/full", "w")
    f:write("x")
    local e = catch(f.flush, f)
    assert.equal("fs", e.kind)
    assert.equal("ENOSPC", e.code)
    assert.equal("write", e.op)
    f:close()
    -- unflushed data reaching the disk at close raises there
    local g = fs.open("/dev/full", "w")
    g:write(("y"):rep(100))
    local e2 = catch(g.close, g)
    assert.equal("ENOSPC", e2.code)
    assert.equal("closed file", fs.type(g))
    -- a full buffer is written in the background while the next one
    -- fills (write-behind); the write that has to wait for it raises
    local h = fs.open("/dev/full", "w", { buffer_size = 16 })
    local writes = 0
    local e3 = catch(function()
      for _ = 1, 4 do
        h:write(("z"):rep(64))
        writes = writes + 1
      end
    end)
    assert.equal("ENOSPC", e3.code)
    assert.equal("write", e3.op)
    assert.is_true(writes < 4)
    pcall(h.close, h)
    assert.equal("closed file", fs.type(h))
  end)

  it("a background write error is raised by flush or close", function()
    local h = fs.open("/dev/full", "w", { buffer_size = 16 })
    h:write(("z"):rep(32))  -- starts writing in the background
    local e = catch(h.flush, h)
    assert.equal("ENOSPC", e.code)
    h:close()
    local g = fs.open("/dev/full", "w", { buffer_size = 16 })
    g:write(("z"):rep(32))
    assert.equal("ENOSPC", catch(g.close, g).code)
    assert.equal("closed file", fs.type(g))
  end)

  it("raises EBADF for reading a write-only file", function()
    local f = fs.open(path("wo.txt"), "w")
    assert.equal("EBADF", catch(f.read, f, "l").code)
    f:close()
    local g = fs.open(path("wo.txt"), "r")
    assert.equal("EBADF", catch(g.write, g, "x").code)
    g:close()
  end)
end)

describe("fs paths", function()
  it("stat, exists", function()
    local p = path("st.txt")
    io_write(p, "12345")
    local st = fs.stat(p)
    assert.equal(5, st.size)
    assert.equal("file", st.type)
    assert.is_number(st.mtime)
    assert.is_true(math.abs(st.mtime - os.time()) < 100)
    assert.is_number(st.mode)
    assert.equal("directory", fs.stat(dir).type)
    assert.is_true(fs.exists(p))
    assert.is_false(fs.exists(path("nothing")))
    assert.is_false(fs.exists(p .. "/below-a-file"))
    assert.equal("ENOENT", catch(fs.stat, path("nothing")).code)
  end)

  it("mkdir, with parents; remove; rename", function()
    local d = path("a/b/c")
    assert.equal("ENOENT", catch(fs.mkdir, d).code)
    fs.mkdir(d, { parents = true })
    assert.equal("directory", fs.stat(d).type)
    fs.mkdir(d, { parents = true })  -- exists: fine
    assert.equal("EEXIST", catch(fs.mkdir, d).code)
    local f1 = d .. "/f"
    fs.write_file(f1, "data")
    fs.rename(f1, d .. "/g")
    assert.is_false(fs.exists(f1))
    assert.equal("data", fs.read_file(d .. "/g"))
    assert.equal("ENOTEMPTY", catch(fs.remove, d).code)
    fs.remove(d .. "/g")
    fs.remove(d)
    assert.is_false(fs.exists(d))
    assert.equal("ENOENT", catch(fs.remove, d).code)
    assert.equal("ENOENT", catch(fs.rename, d, d .. "x").code)
    fs.remove(path("a/b"))
    fs.remove(path("a"))
  end)

  it("scandir lists names and types", function()
    local d = path("scan")
    fs.mkdir(d)
    fs.write_file(d .. "/x.txt", "x")
    fs.mkdir(d .. "/sub")
    local seen = {}
    for name, ty in fs.scandir(d) do seen[name] = ty end
    assert.same({ ["x.txt"] = "file", sub = "directory" }, seen)
    assert.equal("ENOENT", catch(fs.scandir, d .. "/none").code)
  end)

  it("copy copies a file", function()
    local p, q = big_file(), path("copied.txt")
    fs.copy(p, q)
    assert.equal(io_read(p), io_read(q))
    fs.remove(q)
    assert.equal("ENOENT", catch(fs.copy, path("none"), q).code)
  end)

  it("copy replaces a longer file, keeps a file copied onto itself", function()
    local p, q = path("short_src.txt"), path("long_dst.txt")
    io_write(p, "short")
    io_write(q, ("long"):rep(1000))
    fs.copy(p, q)
    assert.equal("short", io_read(q))
    fs.copy(q, q)
    assert.equal("short", io_read(q))
    io_write(path("empty.txt"), "")
    fs.copy(path("empty.txt"), q)
    assert.equal("", io_read(q))
  end)

  it("copy errors name the path at fault", function()
    local e = catch(fs.copy, path("none"), path("x"))
    assert.equal(path("none"), e.path)
    io_write(path("src.txt"), "x")
    e = catch(fs.copy, path("src.txt"), path("nodir/x"))
    assert.equal("ENOENT", e.code)
    assert.equal(path("nodir/x"), e.path)
    assert.equal("EISDIR", catch(fs.copy, dir, path("y")).code)
  end)
end)

describe("fs cancellation and cleanup", function()
  it("rule 7: a timeout cancels a read of a large file at a refill", function()
    local p = big_file()
    local f = fs.open(p, "r", { buffer_size = 4096 })
    local n = 0
    local ok = corio.move_on_after(0.002, function()
      for _ in f:lines() do
        n = n + 1
        corio.sleep(0.0001)
      end
    end)
    assert.is_false(ok)
    assert.is_true(n < BIG_LINES)
    -- the file is intact: reading goes on where it stopped
    local rest = 0
    for _ in f:lines() do rest = rest + 1 end
    assert.equal(BIG_LINES, n + rest)
    f:close()
  end)

  it("rule 7: a read cancelled while its request runs gets its data", function()
    local p = big_file()
    local f = fs.open(p, "r")
    local got
    corio.scope(function(s)
      local t = s:spawn(function() got = f:read("a") end)
      s:spawn(function()
        corio.yield()
        t:cancel()
      end)
    end)
    -- the read("a") either completed or was cut at a refill; the file is
    -- usable afterwards either way
    if got then assert.equal(#io_read(p), #got) end
    f:seek("set", 0)
    assert.equal(io_read(p), f:read("a"))
    f:close()
  end)

  it("with_open closes the file when fn raises", function()
    local kept
    local e = catch(fs.with_open, path("wo_err.txt"), "w", function(f)
      kept = f
      f:write("saved")
      error("boom")
    end)
    assert.matches("boom", tostring(e))
    assert.equal("closed file", fs.type(kept))
    assert.equal("saved", io_read(path("wo_err.txt")))
  end)

  it("with_open closes the file when cancelled, writing its buffer", function()
    local kept
    -- cancelled once the write is buffered (a deadline could pass before
    -- it on a loaded machine: then the write raises and nothing is due)
    corio.scope(function(s)
      fs.with_open(path("wo_cancel.txt"), "w", function(f)
        kept = f
        f:write("before cancel")
        s:cancel()
        corio.sleep(10)
      end)
      error("not reached: the sleep is cancelled")
    end)
    assert.equal("closed file", fs.type(kept))
    assert.equal("before cancel", io_read(path("wo_cancel.txt")))
  end)

  it("with_open returns fn's results", function()
    io_write(path("wr.txt"), "abc")
    local a, b = fs.with_open(path("wr.txt"), "r", function(f) return f:read(1), 7 end)
    assert.equal("a", a)
    assert.equal(7, b)
  end)

  it("close in a cancelled task still closes, then raises Cancelled", function()
    local f = fs.open(path("cc.txt"), "w")
    corio.scope(function(s)
      s:cancel()
      local e = catch(f.close, f)
      assert.is_true(corio.is_cancelled(e))
    end)
    assert.equal("closed file", fs.type(f))
  end)

  it("rule 3: file calls are checkpoints", function()
    local p = path("cp.txt")
    io_write(p, "a\nb\n")
    local f = fs.open(p)
    corio.scope(function(s)
      s:cancel()
      assert.is_true(corio.is_cancelled(catch(f.read, f, "l")))
      assert.is_true(corio.is_cancelled(catch(f.lines(f))))
      assert.is_true(corio.is_cancelled(catch(fs.stat, p)))
    end)
    assert.equal("a", f:read("l"))
    f:close()
  end)

  it("an unclosed file is closed and flushed when collected", function()
    local p = path("gc.txt")
    do
      local f = fs.open(p, "w")
      f:write("flushed by gc")
      f = nil
    end
    collectgarbage()
    collectgarbage()
    assert.equal("flushed by gc", io_read(p))
  end)
end)
