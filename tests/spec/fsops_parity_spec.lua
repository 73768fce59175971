-- fsops_parity_spec.lua: corio.fs's path operations (fs.stat, exists,
-- mkdir, remove, rename, scandir, copy, read_file, write_file, lines,
-- with_open: SPEC §3) case by case against what Python's os, shutil and
-- pathlib, luv's uv.fs_* and POSIX (coreutils) do on the same cases.
-- File-object reads and writes are io_parity_spec's. Where corio differs
-- on purpose, docs/api.md ("corio.fs", "Differences in the path
-- operations") says so, and the case here checks what corio does.
-- The CI runs as root: no case relies on a file mode to make a call fail.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local fs = require("corio.fs")

local dir, remove_dir
setup(function() dir, remove_dir = helpers.temp_dir("corio-fsops") end)
teardown(function() remove_dir() end)

local n = 0
-- A fresh path under the test directory.
local function fresh(tag)
  n = n + 1
  return ("%s/%s-%d"):format(dir, tag, n)
end

local io_write, io_read = helpers.io_write, helpers.io_read

-- A shell command (on a worker thread): its output, asserting it ran.
local function sh(cmd)
  return helpers.shell(cmd .. " 2>&1")
end

local function umask()
  return tonumber(sh("umask"):match("%d+"), 8)
end

-- An fs error: kind, op, path, code, errno, and a message naming them.
local function assert_fs_error(e, op, p, code, errno)
  assert.equal("table", type(e), tostring(e))
  assert.equal("fs", e.kind)
  assert.equal(op, e.op)
  assert.equal(p, e.path)
  assert.equal(code, e.code)
  assert.equal(errno, e.errno)
  local m = tostring(e.message)
  assert.equal(1, m:find(op .. " " .. p, 1, true), m)
  assert.truthy(m:find(": " .. code .. " (", 1, true), m)
end

local ENOENT, EEXIST, ENOTDIR, EISDIR, EINVAL, ENOTEMPTY, EXDEV =
  2, 17, 20, 21, 22, 39, 18

describe("fsops parity: stat", function()
  it("returns the fields of stat(2), as numbers, matching coreutils' stat", function()
    local p = fresh("st")
    io_write(p, "12345")
    assert(os.execute("chmod 0640 " .. p) == 0)
    local st = fs.stat(p)
    for _, k in ipairs({ "size", "mode", "mtime", "atime", "ctime", "uid", "gid",
                         "ino", "dev", "nlink", "blksize", "blocks" }) do
      assert.equal("number", type(st[k]), k)
    end
    assert.equal("file", st.type)
    -- the same numbers as POSIX's stat (coreutils)
    local size, ino, nlink, uid, gid, mode, mtime, blocks = sh("stat -c '%s %i %h %u %g %a %Y %b' " .. p)
      :match("^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)")
    assert.equal(tonumber(size), st.size)
    assert.equal(tonumber(ino), st.ino)
    assert.equal(tonumber(nlink), st.nlink)
    assert.equal(tonumber(uid), st.uid)
    assert.equal(tonumber(gid), st.gid)
    assert.equal(tonumber(blocks), st.blocks)
    -- mode: the permission bits only (Python's stat.S_IMODE(st_mode);
    -- luv's and Python's st_mode keep the file type bits: docs)
    assert.equal(tonumber(mode, 8), st.mode)
    assert.equal(tonumber("640", 8), st.mode)
    -- times in seconds with the fraction (Python's st_mtime)
    assert.equal(tonumber(mtime), math.floor(st.mtime))
    assert.is_true(st.atime > 0 and st.ctime > 0)
  end)

  it("a directory: type 'directory', nlink >= 2", function()
    local d = fresh("sd")
    fs.mkdir(d)
    local st = fs.stat(d)
    assert.equal("directory", st.type)
    assert.is_true(st.nlink >= 2)
  end)

  it("follows a symbolic link; {follow = false} stats the link itself (lstat)", function()
    local d, l = fresh("target"), fresh("link")
    fs.mkdir(d)
    assert(os.execute(("ln -s %s %s"):format(d, l)) == 0)
    assert.equal("directory", fs.stat(l).type)
    assert.equal("directory", fs.stat(l, { follow = true }).type)
    local ls = fs.stat(l, { follow = false })
    assert.equal("link", ls.type)
    assert.equal(#d, ls.size)   -- a link's size is its target's length
    assert.are_not.equal(fs.stat(d).ino, ls.ino)
  end)

  it("a dangling link: stat raises ENOENT naming the link, lstat describes it", function()
    local l = fresh("dangling")
    assert(os.execute(("ln -s %s %s"):format(dir .. "/nowhere", l)) == 0)
    assert_fs_error(catch(fs.stat, l), "stat", l, "ENOENT", ENOENT)
    assert.equal("link", fs.stat(l, { follow = false }).type)
    -- an lstat error says lstat (which call failed)
    assert_fs_error(catch(fs.stat, l .. "x", { follow = false }), "lstat", l .. "x", "ENOENT", ENOENT)
  end)

  it("a FIFO: type 'fifo', without opening it (no reader needed)", function()
    local f = fresh("fifo")
    assert(os.execute("mkfifo " .. f) == 0)
    assert.equal("fifo", fs.stat(f).type)
    assert.is_true(fs.exists(f))
  end)

  it("a Unix socket: type 'socket' in stat and scandir; copy and read_file raise ENXIO (open(2))", function()
    local d = fresh("sockd")
    fs.mkdir(d)
    local so = d .. "/s"
    sh(("/usr/bin/python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(%q)'"):format(so))
    assert.equal("socket", fs.stat(so).type)
    local got = {}
    for name, t in fs.scandir(d) do got[name] = t end
    assert.same({ s = "socket" }, got)
    assert_fs_error(catch(fs.copy, so, so .. "2"), "copy", so, "ENXIO", 6)
    assert_fs_error(catch(fs.read_file, so), "open", so, "ENXIO", 6)
  end)

  it("a missing path and a path below a file: ENOENT, ENOTDIR", function()
    local p = fresh("file")
    io_write(p, "x")
    assert_fs_error(catch(fs.stat, p .. "-none"), "stat", p .. "-none", "ENOENT", ENOENT)
    assert_fs_error(catch(fs.stat, p .. "/below"), "stat", p .. "/below", "ENOTDIR", ENOTDIR)
    -- the empty path: ENOENT, as stat("") in C and os.stat("") in Python
    local e = catch(fs.stat, "")
    assert.equal("ENOENT", e.code)
    assert.equal("", e.path)
    -- the message shows the empty path, rather than "stat : ENOENT"
    assert.matches('stat "": ENOENT', e.message, 1, true)
  end)

  it("sizes past 4 GiB are exact (a sparse file); times keep their fraction", function()
    local p = fresh("sparse")
    assert(os.execute("truncate -s 5G " .. p) == 0)
    local st = fs.stat(p)
    assert.equal(5 * 2 ^ 30, st.size)
    assert.is_true(st.blocks < 1024)
    assert(os.execute("touch -m -d '2001-01-01 00:00:00.5 UTC' " .. p) == 0)
    assert.equal(978307200.5, fs.stat(p).mtime)
    fs.remove(p)
  end)

  it("files that stat says are empty but are not (/proc) are read whole; /dev/null is empty", function()
    local status = fs.read_file("/proc/self/status")
    assert.equal(0, fs.stat("/proc/self/status").size)
    assert.truthy(status:find("\nPid:%s+%d+\n"))
    assert.equal("", fs.read_file("/dev/null"))
    fs.write_file("/dev/null", "x")
    assert.equal("char", fs.stat("/dev/null").type)
  end)
end)

describe("fsops parity: exists", function()
  it("true for a file, a directory, a link to one; false for missing and below a file", function()
    local p = fresh("ex")
    io_write(p, "x")
    assert.is_true(fs.exists(p))
    assert.is_true(fs.exists(dir))
    assert.is_false(fs.exists(p .. "-none"))
    assert.is_false(fs.exists(p .. "/below"))    -- ENOTDIR, as os.path.exists
    assert.is_false(fs.exists(""))               -- as os.path.exists("")
  end)

  it("false on a dangling symbolic link (it follows links, as os.path.exists)", function()
    local l = fresh("dang")
    assert(os.execute(("ln -s %s %s"):format(dir .. "/nowhere", l)) == 0)
    assert.is_false(fs.exists(l))
    -- the link itself is there
    assert.equal("link", fs.stat(l, { follow = false }).type)
  end)

  it("false on a symbolic link loop (ELOOP), as os.path.exists and pathlib", function()
    local a, b = fresh("loopa"), fresh("loopb")
    assert(os.execute(("ln -s %s %s && ln -s %s %s"):format(b, a, a, b)) == 0)
    assert.equal("ELOOP", catch(fs.stat, a).code)
    assert.is_false(fs.exists(a))
  end)

  it("other errors raise, as pathlib's exists does (ENAMETOOLONG; os.path.exists says False)", function()
    local long = dir .. "/" .. ("x"):rep(300)
    assert_fs_error(catch(fs.exists, long), "stat", long, "ENAMETOOLONG", 36)
  end)
end)

describe("fsops parity: mkdir", function()
  it("plain: EEXIST on a directory or a file, ENOENT for a missing parent", function()
    local d = fresh("md")
    fs.mkdir(d)
    assert.equal("directory", fs.stat(d).type)
    assert_fs_error(catch(fs.mkdir, d), "mkdir", d, "EEXIST", EEXIST)
    local p = fresh("mf")
    io_write(p, "x")
    assert_fs_error(catch(fs.mkdir, p), "mkdir", p, "EEXIST", EEXIST)
    assert_fs_error(catch(fs.mkdir, d .. "/a/b"), "mkdir", d .. "/a/b", "ENOENT", ENOENT)
  end)

  it("parents: makes missing ones, accepts an existing directory (mkdir -p, os.makedirs exist_ok)", function()
    local d = fresh("mp")
    fs.mkdir(d .. "/a/b/c", { parents = true })
    assert.equal("directory", fs.stat(d .. "/a/b/c").type)
    fs.mkdir(d .. "/a/b/c", { parents = true })
    fs.mkdir(d .. "/a", { parents = true })
    -- a link to a directory is a directory (makedirs checks isdir, which follows)
    assert(os.execute(("ln -s %s %s"):format(d .. "/a", d .. "/la")) == 0)
    fs.mkdir(d .. "/la", { parents = true })
    fs.mkdir(d .. "/la/b/new", { parents = true })
    assert.is_true(fs.exists(d .. "/a/b/new"))
  end)

  it("parents: an existing file or dangling link raises EEXIST; a file as a component ENOTDIR", function()
    local d = fresh("mpf")
    fs.mkdir(d)
    io_write(d .. "/f", "x")
    assert_fs_error(catch(fs.mkdir, d .. "/f", { parents = true }), "mkdir", d .. "/f", "EEXIST", EEXIST)
    assert_fs_error(catch(fs.mkdir, d .. "/f/x", { parents = true }), "mkdir", d .. "/f/x", "ENOTDIR", ENOTDIR)
    assert_fs_error(catch(fs.mkdir, d .. "/f/x/y", { parents = true }), "mkdir", d .. "/f/x/y", "ENOTDIR", ENOTDIR)
    assert.equal("x", io_read(d .. "/f"))
    assert(os.execute(("ln -s %s %s"):format(d .. "/nowhere", d .. "/dang")) == 0)
    assert_fs_error(catch(fs.mkdir, d .. "/dang", { parents = true }), "mkdir", d .. "/dang", "EEXIST", EEXIST)
    assert.is_false(fs.exists(d .. "/nowhere"))
  end)

  it("parents: a trailing slash, '//' and '.' components, as mkdir -p", function()
    local d = fresh("mps")
    fs.mkdir(d .. "/a/b/", { parents = true })
    fs.mkdir(d .. "//c//d//", { parents = true })
    fs.mkdir(d .. "/e/./f", { parents = true })
    local names = {}
    for name in fs.scandir(d) do names[#names + 1] = name end
    assert.same({ "a", "c", "e" }, names)
    assert.equal("directory", fs.stat(d .. "/a/b").type)
    assert.equal("directory", fs.stat(d .. "/c/d").type)
    assert.equal("directory", fs.stat(d .. "/e/f").type)
    fs.mkdir(d .. "/a/b/", { parents = true })   -- exists, with the slash
    -- without parents a trailing slash is fine too (mkdir(2) takes it)
    fs.mkdir(d .. "/g/")
    assert.equal("directory", fs.stat(d .. "/g").type)
  end)

  it("opts.mode is the mode of the last directory only; parents get the default (mkdir -p -m, os.makedirs)", function()
    local d = fresh("mm")
    fs.mkdir(d)
    fs.mkdir(d .. "/plain")
    local default = fs.stat(d .. "/plain").mode
    assert.equal(tonumber("777", 8) - umask(), default)
    fs.mkdir(d .. "/p/q/r", { parents = true, mode = tonumber("700", 8) })
    assert.equal(tonumber("700", 8), fs.stat(d .. "/p/q/r").mode)
    assert.equal(default, fs.stat(d .. "/p").mode)
    assert.equal(default, fs.stat(d .. "/p/q").mode)
    -- a mode without the owner's write bit on a parent would stop the
    -- next mkdir for anyone but root: it is not given to the parents
    fs.mkdir(d .. "/s/t", { parents = true, mode = tonumber("555", 8) })
    assert.equal(default, fs.stat(d .. "/s").mode)
    assert.equal(tonumber("555", 8), fs.stat(d .. "/s/t").mode)
  end)

  it("parents: many tasks making the same deep path at once all succeed", function()
    local d = fresh("mrace")
    corio.scope(function(s)
      for _ = 1, 30 do
        s:spawn(function() fs.mkdir(d .. "/a/b/c/d/e", { parents = true }) end)
      end
    end)
    assert.equal("directory", fs.stat(d .. "/a/b/c/d/e").type)
  end)

  it("parents: a task cancelled while mkdir of an existing directory runs gets Cancelled, not EEXIST", function()
    local d = fresh("mc")
    fs.mkdir(d)
    local t, after
    local ok, err = pcall(corio.scope, function(s)
      t = s:spawn(function()
        fs.mkdir(d, { parents = true })
        after = true
      end)
      corio.yield()     -- t is waiting for its mkdir on the thread pool
      t:cancel()
    end)
    assert(ok, err)
    assert.is_nil(after)
    assert.equal("cancelled", t:status())
    assert.is_true(corio.is_cancelled(catch(t.join, t)))
  end)
end)

describe("fsops parity: remove", function()
  it("a file; an empty directory (os.remove removes both, as C's remove(3))", function()
    local p, d = fresh("rf"), fresh("rd")
    io_write(p, "x")
    fs.mkdir(d)
    fs.remove(p)
    fs.remove(d)
    assert.is_false(fs.exists(p))
    assert.is_false(fs.exists(d))
    assert_fs_error(catch(fs.remove, p), "remove", p, "ENOENT", ENOENT)
  end)

  it("a non-empty directory: ENOTEMPTY, the op named 'remove', nothing removed", function()
    local d = fresh("rne")
    fs.mkdir(d)
    io_write(d .. "/x", "x")
    assert_fs_error(catch(fs.remove, d), "remove", d, "ENOTEMPTY", ENOTEMPTY)
    assert.equal("x", io_read(d .. "/x"))
  end)

  it("a symbolic link to a directory removes the link, never the directory (unlink)", function()
    local d, l = fresh("rtd"), fresh("rl")
    fs.mkdir(d)
    io_write(d .. "/keep", "k")
    assert(os.execute(("ln -s %s %s"):format(d, l)) == 0)
    fs.remove(l)
    assert.is_nil(select(2, pcall(fs.stat, l, { follow = false })).size)
    assert.is_false(fs.exists(l))
    assert.equal("k", io_read(d .. "/keep"))
    -- an empty target: still only the link
    local e, l2 = fresh("rte"), fresh("rl2")
    fs.mkdir(e)
    assert(os.execute(("ln -s %s %s"):format(e, l2)) == 0)
    fs.remove(l2)
    assert.equal("directory", fs.stat(e).type)
    -- "link/" names the directory through the link: refused (ENOTDIR,
    -- as rmdir(2) says), the directory stays
    local l3 = fresh("rl3")
    assert(os.execute(("ln -s %s %s"):format(e, l3)) == 0)
    assert.equal("ENOTDIR", catch(fs.remove, l3 .. "/").code)
    assert.equal("directory", fs.stat(e).type)
    assert.equal("link", fs.stat(l3, { follow = false }).type)
  end)

  it("a dangling link and a FIFO are removed as files", function()
    local l, f = fresh("rdl"), fresh("rfifo")
    assert(os.execute(("ln -s %s %s && mkfifo %s"):format(dir .. "/nowhere", l, f)) == 0)
    fs.remove(l)
    fs.remove(f)
    assert.is_false(pcall(fs.stat, l, { follow = false }))
    assert.is_false(fs.exists(f))
  end)

  it("a path below a file: ENOTDIR", function()
    local p = fresh("rbf")
    io_write(p, "x")
    assert_fs_error(catch(fs.remove, p .. "/x"), "remove", p .. "/x", "ENOTDIR", ENOTDIR)
  end)
end)

describe("fsops parity: rename", function()
  -- rename errors name both paths: path is the source, dst the destination
  local function assert_rename_error(e, src, dst, code, errno)
    assert.equal("fs", e.kind)
    assert.equal("rename", e.op)
    assert.equal(src, e.path)
    assert.equal(dst, e.dst)
    assert.equal(code, e.code)
    assert.equal(errno, e.errno)
    assert.equal(1, tostring(e.message):find(("rename %s -> %s: %s"):format(src, dst, code), 1, true))
  end

  it("onto an existing file replaces it atomically (POSIX, os.rename / os.replace)", function()
    local a, b = fresh("ra"), fresh("rb")
    io_write(a, "new")
    io_write(b, "old")
    local ino = fs.stat(a).ino
    fs.rename(a, b)
    assert.is_false(fs.exists(a))
    assert.equal("new", io_read(b))
    assert.equal(ino, fs.stat(b).ino)
  end)

  it("a directory onto an empty directory replaces it; onto a non-empty one: ENOTEMPTY", function()
    local a, b, c = fresh("rda"), fresh("rdb"), fresh("rdc")
    fs.mkdir(a)
    io_write(a .. "/x", "x")
    fs.mkdir(b)
    fs.rename(a, b)
    assert.equal("x", io_read(b .. "/x"))
    fs.mkdir(c)
    assert_rename_error(catch(fs.rename, c, b), c, b, "ENOTEMPTY", ENOTEMPTY)
  end)

  it("a file onto a directory: EISDIR; a directory onto a file: ENOTDIR", function()
    local f, d = fresh("rff"), fresh("rfd")
    io_write(f, "f")
    fs.mkdir(d)
    assert_rename_error(catch(fs.rename, f, d), f, d, "EISDIR", EISDIR)
    assert_rename_error(catch(fs.rename, d, f), d, f, "ENOTDIR", ENOTDIR)
    assert.equal("f", io_read(f))
    assert.equal("directory", fs.stat(d).type)
  end)

  it("a directory into itself: EINVAL; onto itself: nothing happens", function()
    local d = fresh("rself")
    fs.mkdir(d)
    assert_rename_error(catch(fs.rename, d, d .. "/sub"), d, d .. "/sub", "EINVAL", EINVAL)
    fs.rename(d, d)
    assert.equal("directory", fs.stat(d).type)
    local f = fresh("rselff")
    io_write(f, "same")
    fs.rename(f, f)
    assert.equal("same", io_read(f))
  end)

  it("a symbolic link is renamed itself, its target stays", function()
    local t, l, m = fresh("rlt"), fresh("rll"), fresh("rlm")
    io_write(t, "t")
    assert(os.execute(("ln -s %s %s"):format(t, l)) == 0)
    fs.rename(l, m)
    assert.equal("link", fs.stat(m, { follow = false }).type)
    assert.equal("t", io_read(t))
    assert.is_false(pcall(fs.stat, l, { follow = false }))
  end)

  it("a missing source or destination directory: ENOENT, both paths named", function()
    local f = fresh("rmiss")
    assert_rename_error(catch(fs.rename, f, f .. "2"), f, f .. "2", "ENOENT", ENOENT)
    io_write(f, "x")
    assert_rename_error(catch(fs.rename, f, f .. "-nodir/y"), f, f .. "-nodir/y", "ENOENT", ENOENT)
  end)

  it("across file systems: EXDEV, as os.rename (shutil.move would copy)", function()
    local shm = "/dev/shm"
    local ok, st = pcall(fs.stat, shm)
    if not ok or st.type ~= "directory" or st.dev == fs.stat(dir).dev then
      pending("no second file system at /dev/shm")
      return
    end
    local f = fresh("xdev")
    io_write(f, "x")
    local dst = ("%s/corio-fsops-%d"):format(shm, os.time())
    local e = catch(fs.rename, f, dst)
    if e.code == "EACCES" or e.code == "EROFS" then
      pending("/dev/shm is not writable here")
      return
    end
    assert_rename_error(e, f, dst, "EXDEV", EXDEV)
    assert.equal("x", io_read(f))
    -- fs.copy works across them
    fs.copy(f, dst)
    assert.equal("x", io_read(dst))
    fs.remove(dst)
  end)
end)

describe("fsops parity: scandir", function()
  it("a missing directory: ENOENT; a file: ENOTDIR; both raised when called", function()
    local p = fresh("sf")
    io_write(p, "x")
    assert_fs_error(catch(fs.scandir, p .. "-none"), "scandir", p .. "-none", "ENOENT", ENOENT)
    assert_fs_error(catch(fs.scandir, p), "scandir", p, "ENOTDIR", ENOTDIR)
  end)

  it("an empty directory: an iterator that ends at once, and stays ended", function()
    local d = fresh("se")
    fs.mkdir(d)
    local it = fs.scandir(d)
    assert.is_nil(it())
    assert.is_nil(it())
  end)

  it("entry types without following links; no '.' or '..'; names in byte order", function()
    local d = fresh("st")
    fs.mkdir(d)
    io_write(d .. "/zeta", "z")
    fs.mkdir(d .. "/Beta")
    assert(os.execute(("cd %s && ln -s Beta alpha && ln -s nowhere _dang && mkfifo 10"):format(d)) == 0)
    local got = {}
    for name, t in fs.scandir(d) do got[#got + 1] = name .. ":" .. t end
    -- libuv sorts the names (strcmp); os.scandir gives the kernel's order
    assert.same({ "10:fifo", "Beta:directory", "_dang:link", "alpha:link", "zeta:file" }, got)
  end)

  it("a link to a directory lists the directory", function()
    local d, l = fresh("sld"), fresh("sll")
    fs.mkdir(d)
    io_write(d .. "/in", "x")
    assert(os.execute(("ln -s %s %s"):format(d, l)) == 0)
    local got = {}
    for name in fs.scandir(l) do got[#got + 1] = name end
    assert.same({ "in" }, got)
  end)

  it("names are bytes: a newline, a space, a byte that is not UTF-8 come back as made", function()
    local d = fresh("sodd")
    fs.mkdir(d)
    local names = { " sp ", "a\nb", "\255\254" }
    for i, name in ipairs(names) do fs.write_file(d .. "/" .. name, tostring(i)) end
    local got = {}
    for name, t in fs.scandir(d) do
      got[#got + 1] = name
      assert.equal("file", t)
    end
    assert.same(names, got)
    for i, name in ipairs(names) do assert.equal(tostring(i), fs.read_file(d .. "/" .. name)) end
  end)

  it("an iterator left early holds no descriptor, before or after a collection", function()
    local d = fresh("sfd")
    fs.mkdir(d)
    for i = 1, 50 do io_write(("%s/f%02d"):format(d, i), "x") end
    local before = helpers.open_fds()
    local its = {}
    for i = 1, 20 do
      for name in fs.scandir(d) do
        assert.equal("f01", name)
        break
      end
      its[i] = fs.scandir(d)
      its[i]()
      assert.equal(before, helpers.open_fds())
    end
    its = nil
    collectgarbage()
    collectgarbage()
    assert.equal(before, helpers.open_fds())
    -- and a listing is taken when scandir is called: later changes do
    -- not show (os.scandir may or may not see them)
    local it = fs.scandir(d)
    io_write(d .. "/later", "x")
    local k = 0
    for name in it do
      k = k + 1
      assert.are_not.equal("later", name)
    end
    assert.equal(50, k)
  end)
end)

describe("fsops parity: copy", function()
  it("onto itself, by name, through a link or a hard link: the source is kept whole", function()
    local p = fresh("cs")
    local data = ("0123456789"):rep(10000)
    io_write(p, data)
    fs.copy(p, p)
    assert.equal(data, io_read(p))
    local l, h = fresh("csl"), fresh("csh")
    assert(os.execute(("ln -s %s %s && ln %s %s"):format(p, l, p, h)) == 0)
    fs.copy(p, l)
    fs.copy(l, p)
    fs.copy(p, h)
    fs.copy(h, p)
    assert.equal(data, io_read(p))
  end)

  it("a directory as the source: EISDIR naming it; as the destination: EISDIR naming it", function()
    local d, f = fresh("cd"), fresh("cf")
    fs.mkdir(d)
    io_write(f, "x")
    assert_fs_error(catch(fs.copy, d, f), "copy", d, "EISDIR", EISDIR)
    assert.equal("x", io_read(f))
    -- shutil.copyfile raises IsADirectoryError too (shutil.copy and cp
    -- would copy into the directory: corio does not, docs)
    assert_fs_error(catch(fs.copy, f, d), "copy", d, "EISDIR", EISDIR)
    assert.is_false(fs.exists(d .. "/" .. f:match("[^/]+$")))
  end)

  it("a missing source or destination directory: ENOENT naming the path at fault", function()
    local f = fresh("cm")
    assert_fs_error(catch(fs.copy, f, f .. "2"), "copy", f, "ENOENT", ENOENT)
    assert.is_false(fs.exists(f .. "2"))
    io_write(f, "x")
    assert_fs_error(catch(fs.copy, f, f .. "-nodir/y"), "copy", f .. "-nodir/y", "ENOENT", ENOENT)
    assert_fs_error(catch(fs.copy, f, f .. "/below"), "copy", f .. "/below", "ENOTDIR", ENOTDIR)
  end)

  it("a dangling link as the destination: ENOENT, nothing written through it (as cp)", function()
    local f, l = fresh("cdl"), fresh("cdll")
    io_write(f, "x")
    assert(os.execute(("ln -s %s %s"):format(f .. "-target", l)) == 0)
    assert_fs_error(catch(fs.copy, f, l), "copy", l, "ENOENT", ENOENT)
    assert.is_false(fs.exists(f .. "-target"))
  end)

  it("mode: a new copy gets the source's permission bits less the umask; an existing one keeps its own (cp)", function()
    local src, new, old = fresh("cms"), fresh("cmn"), fresh("cmo")
    io_write(src, "abc")
    assert(os.execute("chmod 0751 " .. src) == 0)
    fs.copy(src, new)
    assert.equal(tonumber("751", 8) - bit.band(tonumber("751", 8), umask()), fs.stat(new).mode)
    io_write(old, "a longer old content")
    assert(os.execute("chmod 0604 " .. old) == 0)
    fs.copy(src, old)
    assert.equal("abc", io_read(old))
    assert.equal(tonumber("604", 8), fs.stat(old).mode)
    -- never the set-user-ID, set-group-ID or sticky bit (cp without -p)
    local suid = fresh("cmsuid")
    io_write(suid, "#!/bin/sh\n")
    assert(os.execute("chmod 6755 " .. suid) == 0)
    assert.equal(tonumber("6755", 8), fs.stat(suid).mode)
    fs.copy(suid, suid .. "-copy")
    assert.equal(tonumber("755", 8) - bit.band(tonumber("755", 8), umask()), fs.stat(suid .. "-copy").mode)
    assert(os.execute("chmod 1777 " .. suid) == 0)
    fs.copy(suid, suid .. "-copy2")
    assert.equal(tonumber("777", 8) - umask(), fs.stat(suid .. "-copy2").mode)
    -- times are not copied (cp without -p, shutil.copy; not copy2)
    assert(os.execute("touch -m -d 2001-01-01 " .. src) == 0)
    local s = fs.stat(src).mtime
    fs.copy(src, old)
    assert.is_true(fs.stat(old).mtime > s + 86400 * 365)
  end)

  it("copies a link's target (follows it), as shutil.copyfile", function()
    local f, l, c = fresh("cft"), fresh("cfl"), fresh("cfc")
    io_write(f, "target")
    assert(os.execute(("ln -s %s %s"):format(f, l)) == 0)
    fs.copy(l, c)
    assert.equal("file", fs.stat(c, { follow = false }).type)
    assert.equal("target", io_read(c))
  end)

  it("an empty file and a large one, byte for byte", function()
    local e, e2 = fresh("ce"), fresh("ce2")
    io_write(e, "")
    io_write(e2, "not empty")
    fs.copy(e, e2)
    assert.equal("", io_read(e2))
    local big, big2 = fresh("cb"), fresh("cb2")
    local chunk = {}
    for i = 1, 4096 do chunk[i] = string.char(i % 256) end
    chunk = table.concat(chunk)
    io_write(big, chunk:rep(2048) .. "tail")   -- 8 MiB + 4
    fs.copy(big, big2)
    assert.equal(io_read(big), io_read(big2))
  end)

  it("a write error (ENOSPC on /dev/full) raises naming the destination; /dev/null takes a copy", function()
    if not fs.exists("/dev/full") then
      pending("no /dev/full here")
      return
    end
    local f = fresh("cfull")
    io_write(f, ("x"):rep(100000))
    assert_fs_error(catch(fs.copy, f, "/dev/full"), "copy", "/dev/full", "ENOSPC", 28)
    assert_fs_error(catch(fs.write_file, "/dev/full", "x"), "write", "/dev/full", "ENOSPC", 28)
    fs.copy(f, "/dev/null")
    assert.equal("char", fs.stat("/dev/null").type)
  end)

  it("a /proc file (stat says 0 bytes) is copied whole, as cp and shutil.copyfile copy it", function()
    local c = fresh("cproc")
    fs.copy("/proc/self/mounts", c)
    local got = io_read(c)
    assert.is_true(#got > 0)
    assert.truthy(got:find(" / ", 1, true))
  end)

  it("rule 7: a task cancelled during a large copy waits for the whole copy; Cancelled at its next checkpoint", function()
    local src, dst = fresh("ccs"), fresh("ccd")
    fs.with_open(src, "wb", function(f)
      local mb = ("x"):rep(1024 * 1024 - 1) .. "\n"
      for _ = 1, 32 do f:write(mb) end
    end)
    local returned
    local t = corio.spawn(function()
      fs.copy(src, dst)
      returned = fs.stat(dst).size   -- not reached: the stat is a checkpoint
    end)
    corio.yield()   -- t is in its copy
    t:cancel()
    assert.is_true(corio.is_cancelled(catch(t.join, t)))
    assert.is_nil(returned)
    assert.equal(32 * 1024 * 1024, fs.stat(dst).size)
    assert.equal(io_read(src), io_read(dst))
    -- and without a checkpoint after it, the copy's task ends returning
    local t2 = corio.spawn(function()
      fs.copy(src, dst .. "2")
      return "copied"
    end)
    corio.yield()
    t2:cancel()
    -- the copy's result is returned (rule 7): with no checkpoint after
    -- it, the task ends "done" with its value, as a trio task does
    assert.equal("copied", t2:join())
    assert.equal("done", t2:status())
    assert.equal(32 * 1024 * 1024, fs.stat(dst .. "2").size)
  end)
end)

describe("fsops parity: read_file, write_file, lines, with_open", function()
  it("empty and large files round-trip byte for byte (binary: no newline translation)", function()
    local p = fresh("rw")
    fs.write_file(p, "")
    assert.equal(0, fs.stat(p).size)
    assert.equal("", fs.read_file(p))
    local parts = {}
    for i = 0, 255 do parts[#parts + 1] = string.char(i) end
    local data = table.concat(parts):rep(40000) .. "\r\n\0end"   -- ~10 MB
    fs.write_file(p, data)
    assert.equal(#data, fs.stat(p).size)
    assert.equal(data, fs.read_file(p))
    assert.equal(data, io_read(p))
    fs.write_file(p, 12.5)   -- a number, as io writes it
    assert.equal("12.5", fs.read_file(p))
  end)

  it("write_file truncates in place: a new file gets 0666 less the umask, an existing one keeps its mode and inode (not atomic)", function()
    local p = fresh("wm")
    fs.write_file(p, "first, longer")
    assert.equal(tonumber("666", 8) - bit.band(tonumber("666", 8), umask()), fs.stat(p).mode)
    assert(os.execute("chmod 0600 " .. p) == 0)
    local h = fresh("wmh")
    assert(os.execute(("ln %s %s"):format(p, h)) == 0)
    local ino = fs.stat(p).ino
    fs.write_file(p, "second")
    assert.equal(tonumber("600", 8), fs.stat(p).mode)
    assert.equal(ino, fs.stat(p).ino)
    -- the same file: a hard link sees the new contents (Python's
    -- write_text does the same; an atomic replace would not)
    assert.equal("second", io_read(h))
  end)

  it("write_file through a link writes its target; onto a directory raises EISDIR", function()
    local t, l, d = fresh("wt"), fresh("wl"), fresh("wd")
    io_write(t, "old")
    assert(os.execute(("ln -s %s %s"):format(t, l)) == 0)
    fs.write_file(l, "new")
    assert.equal("new", io_read(t))
    assert.equal("link", fs.stat(l, { follow = false }).type)
    fs.mkdir(d)
    assert_fs_error(catch(fs.write_file, d, "x"), "open", d, "EISDIR", EISDIR)
    assert_fs_error(catch(fs.read_file, d), "open", d, "EISDIR", EISDIR)
  end)

  it("rule 7: write_file cancelled while its open runs still writes the data (never leaves the file truncated)", function()
    local p = fresh("wc")
    io_write(p, "old contents")
    local data = ("n"):rep(1024 * 1024)
    local returned
    local t = corio.spawn(function()
      fs.write_file(p, data)
      returned = true
      corio.yield()
    end)
    corio.yield()   -- t waits for its open (which truncated the file)
    t:cancel()
    assert.is_true(corio.is_cancelled(catch(t.join, t)))
    assert.is_true(returned)
    assert.equal(data, io_read(p))
    -- cancelled before it starts: the file is untouched
    local e = helpers.catch_cancelled(fs.write_file, p, "other")
    assert.is_true(corio.is_cancelled(e))
    assert.equal(data, io_read(p))
  end)

  it("read_file and lines on a missing file: ENOENT naming the path (the open failed)", function()
    local p = fresh("missing")
    assert_fs_error(catch(fs.read_file, p), "open", p, "ENOENT", ENOENT)
    -- fs.lines raises when called, as io.lines does
    assert_fs_error(catch(fs.lines, p), "open", p, "ENOENT", ENOENT)
    assert_fs_error(catch(fs.lines, p .. "/x"), "open", p .. "/x", "ENOENT", ENOENT)
    assert_fs_error(catch(fs.with_open, p, "r", function() end), "open", p, "ENOENT", ENOENT)
    local f = fresh("lf")
    io_write(f, "x")
    assert_fs_error(catch(fs.lines, f .. "/x"), "open", f .. "/x", "ENOTDIR", ENOTDIR)
    assert_fs_error(catch(fs.lines, dir), "open", dir, "EISDIR", EISDIR)
  end)

  it("lines of an empty file ends at once and closes it; a last line without newline is kept", function()
    local p = fresh("le")
    io_write(p, "")
    local fds = helpers.open_fds()
    local it = fs.lines(p)
    assert.is_nil(it())
    assert.equal(fds, helpers.open_fds())
    io_write(p, "a\n\nb")
    local got = {}
    for l in fs.lines(p) do got[#got + 1] = l end
    assert.same({ "a", "", "b" }, got)
  end)
end)

describe("fsops parity: bad arguments", function()
  local ops = {
    { "stat", fs.stat, 1 }, { "exists", fs.exists, 1 }, { "mkdir", fs.mkdir, 1 },
    { "remove", fs.remove, 1 }, { "scandir", fs.scandir, 1 }, { "read_file", fs.read_file, 1 },
    { "lines", fs.lines, 1 }, { "rename", fs.rename, 2 }, { "copy", fs.copy, 2 },
    { "write_file", function(p) return fs.write_file(p, "x") end, 1 },
    { "with_open", function(p) return fs.with_open(p, "r", function() end) end, 1 },
  }

  it("a nil, number, boolean or table path raises naming the function and argument (no fd or number coercion)", function()
    for _, op in ipairs(ops) do
      local name, fn, npaths = op[1], op[2], op[3]
      for _, bad in ipairs({ { nil, "nil" }, { 3, "number" }, { true, "boolean" }, { {}, "table" } }) do
        local e = catch(fn, bad[1])
        assert.equal(("bad argument #1 to '%s' (string expected, got %s)"):format(name, bad[2]),
          tostring(e):match("bad argument.*"), name)
        if npaths == 2 then
          e = catch(fn, dir, bad[1])
          assert.equal(("bad argument #2 to '%s' (string expected, got %s)"):format(name, bad[2]),
            tostring(e):match("bad argument.*"), name)
        end
      end
    end
  end)

  it("the error points at the caller's line, for each function", function()
    for _, op in ipairs(ops) do
      local name, fn = op[1], op[2]
      local e = catch(function() local x = fn(nil); return x end)
      assert.truthy(tostring(e):match("fsops_parity_spec%.lua:%d+: bad argument #1 to '" .. name .. "'"),
        tostring(e))
    end
  end)

  it("a path with a NUL byte raises (Python: 'embedded null byte'), never acts on the part before it", function()
    local p = fresh("nul")
    io_write(p, "keep")
    local d = fresh("nuld")
    for _, op in ipairs(ops) do
      local name, fn, npaths = op[1], op[2], op[3]
      local e = catch(fn, p .. "\0.bak", npaths == 2 and p or nil)
      assert.equal(("bad argument #1 to '%s' (path contains a NUL byte)"):format(name),
        tostring(e):match("bad argument.*"), name)
      if npaths == 2 then
        e = catch(fn, p, d .. "\0x")
        assert.equal(("bad argument #2 to '%s' (path contains a NUL byte)"):format(name),
          tostring(e):match("bad argument.*"), name)
      end
    end
    assert.equal("keep", io_read(p))
    assert.is_false(fs.exists(d))
    assert.same("bad argument #1 to 'mkdir' (path contains a NUL byte)",
      tostring(catch(fs.mkdir, d .. "\0x", { parents = true })):match("bad argument.*"))
    assert.is_false(fs.exists(d))
  end)

  it("options: unknown names, a non-table, a mode that is not a number raise naming the function", function()
    assert.equal("bad argument #2 to 'stat' (unknown option 'folow')",
      tostring(catch(fs.stat, dir, { folow = false })):match("bad argument.*"))
    assert.equal("bad argument #2 to 'mkdir' (unknown option 'parent')",
      tostring(catch(fs.mkdir, fresh("o"), { parent = true })):match("bad argument.*"))
    assert.equal("bad argument #2 to 'mkdir' (table expected, got boolean)",
      tostring(catch(fs.mkdir, fresh("o"), true)):match("bad argument.*"))
    assert.truthy(tostring(catch(fs.mkdir, fresh("o"), { mode = "755" }))
      :find("bad argument #2 to 'mkdir' (opts.mode", 1, true))
    assert.equal("bad argument #2 to 'write_file' (string expected, got table)",
      tostring(catch(fs.write_file, fresh("o"), {})):match("bad argument.*"))
  end)
end)

describe("fsops parity: cancellation and outside a loop", function()
  it("rule 13: the path operations work inside the user's own coroutines", function()
    local d = fresh("co")
    fs.mkdir(d)
    io_write(d .. "/f", "abc")
    local it = coroutine.wrap(function()
      for name in fs.scandir(d) do coroutine.yield(name, fs.stat(d .. "/" .. name).size) end
      fs.mkdir(d .. "/x/y", { parents = true })
      fs.copy(d .. "/f", d .. "/x/y/g")
      coroutine.yield("copied", fs.read_file(d .. "/x/y/g"))
    end)
    assert.same({ "f", 3 }, { it() })
    assert.same({ "copied", "abc" }, { it() })
  end)

  it("rule 3: each operation checks for cancellation on entry, and does nothing then", function()
    local p, d = fresh("cx"), fresh("cxd")
    io_write(p, "x")
    local calls = {
      function() return fs.stat(p) end,
      function() return fs.exists(p) end,
      function() return fs.mkdir(d) end,
      function() return fs.mkdir(d .. "/a/b", { parents = true }) end,
      function() return fs.remove(p) end,
      function() return fs.rename(p, p .. "2") end,
      function() return fs.copy(p, p .. "3") end,
      function() return fs.scandir(dir) end,
      function() return fs.read_file(p) end,
      function() return fs.write_file(p, "changed") end,
      function() return fs.lines(p) end,
      function() return fs.with_open(p, "w", function() end) end,
    }
    for i, fn in ipairs(calls) do
      assert.is_true(corio.is_cancelled(helpers.catch_cancelled(fn)), "call " .. i)
    end
    assert.equal("x", io_read(p))
    assert.is_false(fs.exists(d))
    assert.is_false(fs.exists(p .. "2"))
    assert.is_false(fs.exists(p .. "3"))
  end)

  it("rule 7: a cancel while stat, rename or mkdir runs: the result is returned, Cancelled comes at the next checkpoint", function()
    local p = fresh("c7")
    io_write(p, "x")
    local got = {}
    local t = corio.spawn(function()
      got.size = fs.stat(p).size
      corio.yield()
    end)
    corio.yield()
    t:cancel()
    assert.is_true(corio.is_cancelled(catch(t.join, t)))
    assert.equal(1, got.size)
    t = corio.spawn(function()
      fs.rename(p, p .. "-moved")
      got.renamed = true
      corio.yield()
    end)
    corio.yield()
    t:cancel()
    assert.is_true(corio.is_cancelled(catch(t.join, t)))
    assert.is_true(got.renamed)
    assert.equal("x", io_read(p .. "-moved"))
    t = corio.spawn(function()
      fs.mkdir(p .. "-dir")
      got.made = true
      corio.yield()
    end)
    corio.yield()
    t:cancel()
    assert.is_true(corio.is_cancelled(catch(t.join, t)))
    assert.is_true(got.made)
    assert.equal("directory", fs.stat(p .. "-dir").type)
  end)

  it("rule 11: outside a loop (stock luajit) every operation runs synchronously, errors alike", function()
    local src = os.getenv("CORIO_SOURCE_DIR") or "."
    local d = fresh("sync")
    local script = fresh("sync") .. ".lua"
    io_write(script, ([[
      local fs = require "corio.fs"
      local D = %q
      local out = {}
      local function put(v) out[#out + 1] = tostring(v) end
      fs.mkdir(D .. "/a/b", { parents = true })
      fs.write_file(D .. "/a/f", "one\ntwo\n")
      fs.copy(D .. "/a/f", D .. "/a/g")
      fs.rename(D .. "/a/g", D .. "/a/h")
      for name, t in fs.scandir(D .. "/a") do put(name .. ":" .. t) end
      for l in fs.lines(D .. "/a/h") do put(l) end
      put(fs.stat(D .. "/a/h").size)
      put(fs.exists(D .. "/a/g"))
      put(#fs.read_file(D .. "/a/f"))
      put(fs.with_open(D .. "/a/f", "r", function(f) return f:read("l") end))
      fs.remove(D .. "/a/h")
      fs.remove(D .. "/a/b")
      local ok, e = pcall(fs.remove, D .. "/a")
      put(e.op .. " " .. e.code)
      ok, e = pcall(fs.stat, D .. "/none")
      put(e.op .. " " .. e.code)
      ok, e = pcall(fs.stat, 1)
      put(tostring(e):match("bad argument.*"))
      io.write(table.concat(out, ","))
    ]]):format(d))
    local cmd = ("LUA_PATH=%q LUA_CPATH=%q %s %s 2>&1"):format(
      os.getenv("CORIO_LUA_PATH") or (src .. "/lua/?.lua;" .. src .. "/lua/?/init.lua;;"),
      os.getenv("CORIO_LUA_CPATH") or (src .. "/build/lib/lua/5.1/?.so;;"),
      os.getenv("LUAJIT") or "luajit", script)
    assert.equal("b:directory,f:file,h:file,one,two,8,false,8,one,remove ENOTEMPTY,stat ENOENT,"
      .. "bad argument #1 to 'stat' (string expected, got number)", sh(cmd))
  end)
end)
