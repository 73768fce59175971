/*
** fs.c (bindings): the C half of corio.fs. Blocking calls (open, fill,
** flush, close, path requests) return `true, ...` or `false, err` and are
** wrapped by lua/corio/fs.lua, which raises. The read formats and line
** splitting work on the file's C buffer and never block: they return the
** value, or NEED_FILL / NEED_FLUSH for the wrapper to run the blocking
** step and ask again, so a line costs one C call and one lua_pushlstring,
** and the task goes back to the loop once per buffer refill.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bindings.h"
#include "../runtime/fs.h"

static char need_fill, need_flush, need_big;
#define NEED_FILL ((void *)&need_fill)
#define NEED_FLUSH ((void *)&need_flush)
#define NEED_BIG ((void *)&need_big)

/* A string at least as long as the write buffer is written straight from
** the Lua string (wbig) rather than copied into the buffer. */
#define IS_BIG(f, n) ((n) >= (f)->wdef)

/* ---- helpers ------------------------------------------------------ */

/* What a userdata points to once its __gc ran: a closed file. A finaliser
** of another object collected in the same cycle may still reach the File
** (resurrected with it) and call its methods, which then raise "closed";
** the FFI fast paths take the userdata, not the freed file, for this. */
static corio_file dead_file = {.fd = -1, .closed = 1,
                               .path = (char *)"(collected)"};

static corio_file *check_file(lua_State *L, int idx, const char *fname) {
  corio_file_ud *u = corio__toobj(L, idx, sizeof(*u), CORIO_MAGIC_FILE);
  if (u == NULL)
    corio__argerror(L, 2, 1, fname,
                    lua_pushfstring(L, "corio.File expected, got %s",
                                    luaL_typename(L, idx)));
  return u->f;
}

/* [-0, +2] false, err of kind "closed" */
static int push_closed(lua_State *L, corio_file *f, const char *op) {
  lua_pushboolean(L, 0);
  lua_pushfstring(L, "%s %s: the file is closed", op, f->path);
  corio__push_error(L, "closed", lua_tostring(L, -1));
  lua_remove(L, -2);
  lua_pushstring(L, f->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, op);
  lua_setfield(L, -2, "op");
  return 2;
}

static int push_fail(lua_State *L, const char *op, const char *path,
                     int code) {
  lua_pushboolean(L, 0);
  corio__fs_push_error(L, op, path, code);
  return 2;
}

/* A request other than a write-behind or a read-ahead is in flight:
** another task's. */
#define FG_BUSY(f)                                                  \
  ((f)->op != CORIO_FOP_NONE && (f)->op != CORIO_FOP_BEHIND &&      \
   (f)->op != CORIO_FOP_AHEAD)

/* Another task's request is in flight on this file. */
static int push_busy(lua_State *L, corio_file *f, const char *op) {
  return push_fail(L, op, f->path, UV_EBUSY);
}

/* Submit-or-fail tail of a blocking file call: suspend t on f. */
static int file_wait(corio_rt *rt, lua_State *L, corio_task *t,
                     corio_file *f, int r, const char *op,
                     const char *what) {
  if (r != 0) return push_fail(L, op, f->path, r);
  return corio__suspend(rt, L, t, corio__fs_abort, what, f);
}

/* Wait for the background request in flight (a write-behind or a
** read-ahead, which no task waits for otherwise): the task is woken with
** true (or false and a write-behind's error) and asks again. Another
** task already waiting on it makes the file busy. */
static int wait_bg(corio_rt *rt, lua_State *L, corio_task *t,
                   corio_file *f, const char *op, const char *what) {
  if (f->t != NULL) return push_busy(L, f, op);
  if (!corio__can_suspend(rt, L))
    corio__cannot_suspend(L, what);
  f->t = t;
  return corio__suspend(rt, L, t, corio__fs_abort, what, f);
}

/* A request cannot be withdrawn once submitted (the abort hook returns
** 0), so refuse to suspend before submitting if the task cannot yield. */
static void check_yieldable(corio_rt *rt, lua_State *L, const char *what) {
  if (!corio__can_suspend(rt, L))
    corio__cannot_suspend(L, what);
}

/* A checkpoint on the fast path of a blocking call (rule 3): pushes
** `false, Cancelled` and returns 2 if the running task is cancelled. */
static int cancelled(lua_State *L, corio_rt *rt) {
  corio_task *t = rt->current;
  if (t == NULL) return 0;
  corio__checkpoint(rt, t);
  if (!t->cur->eff) return 0;
  lua_pushboolean(L, 0);
  corio__push_cancelled(L, L, "the task's scope is cancelled");
  return 2;
}

/* ---- open --------------------------------------------------------- */

/* A path argument i of fname: a string without NUL bytes. The kernel
** reads a path up to its first NUL, so "a.txt\0.bak" would open (or,
** with "w", truncate) "a.txt" while errors named the whole string;
** Python refuses such paths ("embedded null byte") and so does corio. */
static void check_path_arg(lua_State *L, int level, int i,
                           const char *fname) {
  size_t n;
  const char *s;
  if (lua_type(L, i) != LUA_TSTRING)
    corio__argerror(L, level, i, fname,
                    lua_pushfstring(L, "string expected, got %s",
                                    luaL_typename(L, i)));
  s = lua_tolstring(L, i, &n);
  if (strlen(s) != n)
    corio__argerror(L, level, i, fname, "path contains a NUL byte");
}

/* Check the path (1) and mode (2) of an open named fname, raising at the
** caller `level` frames up; the mode as CORIO_FS_* and open flags. Modes
** as LuaJIT's io.open takes them: r, w or a, then + and b in any order
** ("r+b", "rb+"). */
static void parse_open(lua_State *L, int level, const char *fname,
                       int *pfmode, int *pflags) {
  const char *mode, *m;
  size_t len = 1;
  int fmode = 0, flags = 0, plus = 0;
  check_path_arg(L, level, 1, fname);
  if (lua_isnoneornil(L, 2)) {
    mode = "r";
  } else if (lua_type(L, 2) != LUA_TSTRING) {
    corio__argerror(L, level, 2, fname,
                    lua_pushfstring(L, "string expected, got %s",
                                    luaL_typename(L, 2)));
    return;
  } else {
    mode = lua_tolstring(L, 2, &len);
  }
  /* "a\0b" was read up to the NUL and opened the file for appending */
  if (strlen(mode) != len) {
    corio__argerror(L, level, 2, fname, "mode contains a NUL byte");
    return;
  }
  m = mode;
  switch (*m) {
  case 'r': fmode = CORIO_FS_READ; break;
  case 'w': fmode = CORIO_FS_WRITE; flags = O_CREAT | O_TRUNC; break;
  case 'a':
    fmode = CORIO_FS_WRITE | CORIO_FS_APPEND;
    flags = O_CREAT | O_APPEND;
    break;
  default: m = NULL;
  }
  if (m != NULL) {
    for (m++; *m == 'b' || (*m == '+' && !plus); m++)
      if (*m == '+') plus = 1;
    if (plus) fmode |= CORIO_FS_READ | CORIO_FS_WRITE;
    if (*m != '\0') m = NULL;
  }
  if (m == NULL)
    corio__argerror(L, level, 2, fname,
                    lua_pushfstring(L, "invalid mode '%s'", mode));
  *pfmode = fmode;
  *pflags = flags;
}

/* check_open(path, mode, fname): the checks of open, for the wrappers
** that open a file later (with_open, read_file, ...), so that a bad
** argument is reported at their caller's line, under their name. */
static int l_check_open(lua_State *L) {
  int fmode, flags;
  const char *fname = luaL_optstring(L, 3, "open");
  parse_open(L, 2, fname, &fmode, &flags);
  return 0;
}

/* open(path, mode, bufsize) -> true, file | false, err */
static int l_open(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t;
  const char *path;
  int fmode = 0, flags = 0, n, r;
  size_t bufsize = 0;
  void *obj;
  parse_open(L, 2, "open", &fmode, &flags);
  path = lua_tostring(L, 1);
  if (!lua_isnoneornil(L, 3)) {
    /* a number, not a string that reads as one ("1" was taken) */
    double b = lua_type(L, 3) == LUA_TNUMBER ? lua_tonumber(L, 3) : 0;
    if (!(b >= 1 && b <= (double)(1 << 30)))
      return corio__argerror(L, 2, 3, "open",
                             lua_pushfstring(L, "buffer_size must be a "
                                             "number in [1, 2^30], got %s",
                                             lua_type(L, 3) == LUA_TNUMBER
                                                 ? lua_tostring(L, 3)
                                                 : luaL_typename(L, 3)));
    bufsize = (size_t)b;
  }
  n = corio__enter(L, rt, &t, "open");
  if (n != CORIO_GO) return n;
  check_yieldable(rt, L, "corio.fs.open");
  r = corio__fs_op(rt, t, CORIO_FS_OPEN, path, NULL, flags, fmode, bufsize,
                   &obj);
  if (r != 0) return push_fail(L, "open", path, r);
  return corio__suspend(rt, L, t, corio__fs_abort, "fs.open", obj);
}

/* ---- reading ------------------------------------------------------ */

/* line(f) -> line | nothing: the fast path of lines() and read("l"): a
** whole line in the buffer, no request in flight, no write buffered,
** the task not cancelled. Anything else goes to the wrapper's slow path. */
static int l_line(lua_State *L) {
  corio_file_ud *u = corio__toobj(L, 1, sizeof(*u), CORIO_MAGIC_FILE);
  corio_task *t = RT(L)->current;
  corio_file *f;
  if (u == NULL) return 0;
  f = u->f;
  if (f->rpos < f->rlen && !FG_BUSY(f) && f->wlen == 0) {
    const char *p = f->rbuf + f->rpos;
    const char *nl = memchr(p, '\n', f->rlen - f->rpos);
    if (nl != NULL) {
      if (t != NULL) {
        if (t->cur->eff) return 0;
        corio__checkpoint(f->rt, t);
      }
      lua_pushlstring(L, p, (size_t)(nl - p) + lua_toboolean(L, 2));
      f->rpos += (size_t)(nl - p) + 1;
      return 1;
    }
  }
  return 0;
}

/* The same fast paths as plain C functions for LuaJIT's FFI, which a
** trace calls inline: a lua_CFunction call ends the trace and stitches a
** new one, which costs more than the rest of a line's work. They only
** read and write the buffer; anything else (refill, closed file, cancel)
** returns 0/-1 and the wrapper takes the slow path with the Lua API. */

/* A whole line at *p, *n bytes (with the newline if keep): 1, or 0. */
int corio__fs_ffi_line(corio_file_ud *u, const char **p, size_t *n,
                       int keep) {
  corio_file *f = u->f;
  corio_task *t;
  const char *s, *nl;
  if (f->rpos >= f->rlen || FG_BUSY(f) || f->wlen != 0) return 0;
  s = f->rbuf + f->rpos;
  nl = memchr(s, '\n', f->rlen - f->rpos);
  if (nl == NULL) return 0;
  if ((t = f->rt->current) != NULL) {
    if (t->cur->eff) return 0;
    corio__checkpoint(f->rt, t);
  }
  *p = s;
  *n = (size_t)(nl - s) + (keep != 0);
  f->rpos += (size_t)(nl - s) + 1;
  return 1;
}

/* Append n bytes: 0, 1 (appended; the buffer is full, flush it), or -1
** (nothing done: take the slow path, which reports why). */
int corio__fs_ffi_put(corio_file_ud *u, const char *s, size_t n) {
  corio_file *f = u->f;
  corio_task *t;
  if (f->closed || !(f->mode & CORIO_FS_WRITE) || f->rlen != 0 ||
      FG_BUSY(f) || f->wlen + n > f->wcap || IS_BIG(f, n))
    return -1;
  if ((t = f->rt->current) != NULL) {
    if (t->cur->eff) return -1;
    corio__checkpoint(f->rt, t);
  }
  if (n != 0) memcpy(f->wbuf + f->wlen, s, n);  /* no buffer yet: wbuf NULL */
  f->wlen += n;
  return f->wlen - f->woff >= f->wdef;
}

/* Append a then b (f:write(line, "\n")) in one call: as ffi_put. */
int corio__fs_ffi_put2(corio_file_ud *u, const char *a, size_t na,
                       const char *b, size_t nb) {
  corio_file *f = u->f;
  corio_task *t;
  char *w;
  if (f->closed || !(f->mode & CORIO_FS_WRITE) || f->rlen != 0 ||
      FG_BUSY(f) || f->wlen + na + nb > f->wcap || IS_BIG(f, na + nb))
    return -1;  /* (both together as long as the buffer: the slow path) */
  if ((t = f->rt->current) != NULL) {
    if (t->cur->eff) return -1;
    corio__checkpoint(f->rt, t);
  }
  w = f->wbuf + f->wlen;
  if (na != 0) memcpy(w, a, na);   /* no buffer yet: wbuf NULL */
  if (nb == 1) w[na] = *b;
  else if (nb != 0) memcpy(w + na, b, nb);
  f->wlen += na + nb;
  return f->wlen - f->woff >= f->wdef;
}

/* ptr(file) -> lightuserdata: the userdata's block, for the FFI calls
** (it lives as long as the File table that holds both). */
static int l_ptr(lua_State *L) {
  check_file(L, 1, "ptr");
  lua_pushlightuserdata(L, lua_touserdata(L, 1));
  return 1;
}

static int is_num_char(int c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || c == '.' || c == '+' || c == '-';
}

/* "n": skip white space, then take the longest prefix strtod accepts
** (fscanf's "%lf", as LuaJIT's io reads numbers) of the run of numeral
** characters, however long it is: a run cut at 200 characters read
** 1 followed by 230 zeros, or 230 zeros and a 1, as another number. */
static int read_number(lua_State *L, corio_file *f) {
  char tmp[201], *s = tmp;
  size_t i, n;
  char *end;
  double d;
  while (f->rpos < f->rlen &&
         strchr(" \t\n\v\f\r", f->rbuf[f->rpos]) != NULL &&
         f->rbuf[f->rpos] != '\0')
    f->rpos++;
  if (f->rpos == f->rlen && !f->eof) return -1;
  for (i = f->rpos; i < f->rlen; i++)
    if (!is_num_char((unsigned char)f->rbuf[i])) break;
  if (i == f->rlen && !f->eof) return -1;  /* the run may go on */
  n = i - f->rpos;
  if (n >= sizeof(tmp) && (s = malloc(n + 1)) == NULL)
    return luaL_error(L, "not enough memory");
  memcpy(s, f->rbuf + f->rpos, n);
  s[n] = '\0';
  d = strtod(s, &end);
  n = (size_t)(end - s);
  if (s != tmp) free(s);
  if (n == 0) {
    lua_pushnil(L);
    return 1;
  }
  f->rpos += n;
  lua_pushnumber(L, d);
  return 1;
}

/* Take needs more bytes: say how many for the fill (a count, or twice
** what is buffered: a long line or "a" doubles its reads) and size the
** read-ahead that follows (the count: chunks stay one read each). */
static void want_more(corio_file *f, int fmt, size_t count) {
  size_t avail = f->rlen - f->rpos;
  if (fmt == 'c') {
    f->want = count;
    f->asize = count;
    /* chunks of this size are mapped afresh by LuaJIT's allocator */
    if (count >= CORIO_FS_BIGSTR) corio__big_blocks(f->rt);
  } else {
    f->want = 2 * avail;
    f->asize = avail;
  }
}

/* Take one format from the buffer: 1 (value pushed; nil means fail) or
** -1 (more bytes are needed). */
static int take(lua_State *L, corio_file *f, int fmt, size_t count) {
  size_t avail = f->rlen - f->rpos;
  const char *p = f->rbuf + f->rpos;
  switch (fmt) {
  case 'l':
  case 'L': {
    const char *nl = avail ? memchr(p, '\n', avail) : NULL;
    if (nl != NULL) {
      size_t k = (size_t)(nl - p);
      lua_pushlstring(L, p, k + (fmt == 'L'));
      f->rpos += k + 1;
      return 1;
    }
    if (!f->eof) return -1;
    if (avail == 0) lua_pushnil(L);
    else lua_pushlstring(L, p, avail);
    f->rpos = f->rlen;
    return 1;
  }
  case 'a':
    if (!f->eof) return -1;
    lua_pushlstring(L, p, avail);
    f->rpos = f->rlen;
    if (f->rcap > 4 * f->rdef) {
      /* give back the memory of a large read("a") */
      free(f->rbuf);
      f->rbuf = NULL;
      f->rcap = f->rpos = f->rlen = 0;
    }
    return 1;
  case 'n':
    return read_number(L, f);
  default: /* count */
    if (avail >= count && (count > 0 || avail > 0)) {
      /* Big chunks: the collector catches up with what they allocated
      ** first, so the ones already written are freed and their blocks
      ** reused. Left to itself it steps once per allocation and lets
      ** ~50 MiB of dead chunks pile up, each new one faulted in afresh
      ** (W5 copy: 13,800 page faults against 1,500, 15-20 % slower). */
      lua_pushlstring(L, p, count);
      f->rpos += count;
      return 1;
    }
    if (!f->eof) return -1;
    if (avail == 0) lua_pushnil(L);
    else {
      lua_pushlstring(L, p, avail);
      f->rpos = f->rlen;
    }
    return 1;
  }
}

/* read1(f, fmt, argn [, filled]) -> value (nil: fail) | NEED_FILL |
** NEED_FLUSH | false, err */
static int l_read1(lua_State *L) {
  corio_file *f = check_file(L, 1, "read");
  int fmt, n, argn = (int)lua_tointeger(L, 3);
  size_t count = 0;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    double c = lua_tonumber(L, 2);
    if (!(c >= 0))
      return corio__argerror(L, 2, argn, "read", "invalid format");
    fmt = 'c';
    count = c > (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)c;
  } else {
    const char *s = lua_tostring(L, 2);
    if (s != NULL && *s == '*') s++;
    if (s == NULL || (*s != 'a' && *s != 'l' && *s != 'L' && *s != 'n'))
      return corio__argerror(L, 2, argn, "read", "invalid format");
    fmt = *s;
  }
  if (f->closed) return push_closed(L, f, "read");
  if (!(f->mode & CORIO_FS_READ))
    return push_fail(L, "read", f->path, UV_EBADF);
  if (FG_BUSY(f)) return push_busy(L, f, "read");
  /* a checkpoint, but not right after a fill of this read (argument 4):
  ** see fs.lua read1 */
  if (!lua_toboolean(L, 4) && (n = cancelled(L, RT(L))) != 0) return n;
  if (f->wlen > 0 || f->op == CORIO_FOP_BEHIND) {
    /* "+" modes: what was written goes out before reading */
    lua_pushlightuserdata(L, NEED_FLUSH);
    return 1;
  }
  if (take(L, f, fmt, count) < 0) {
    want_more(f, fmt, count);
    lua_pushlightuserdata(L, NEED_FILL);
  } else if (f->eof && f->rpos == f->rlen) {
    /* The end of file was reported (nil, or the bytes before it): the
    ** next read asks the kernel again, as Lua's io (clearerr) and Python
    ** do, so a file that grew meanwhile (a log being followed) is read
    ** on instead of answering nil for ever. Costs one read(2) at most. */
    f->eof = 0;
  }
  return 1;
}

/* fill(f) -> true | false, err: read more into the buffer (a checkpoint).
** A read-ahead in flight is waited for (true: ask again); a completed one
** becomes the buffer at once. */
static int l_fill(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_file *f = check_file(L, 1, "read");
  corio_task *t;
  int n;
  if (f->closed) return push_closed(L, f, "read");
  if (FG_BUSY(f)) return push_busy(L, f, "read");
  n = corio__enter(L, rt, &t, "read");
  if (n != CORIO_GO) return n;
  if (f->op == CORIO_FOP_AHEAD || f->op == CORIO_FOP_BEHIND)
    return wait_bg(rt, L, t, f, "read", "fs read");
  if (f->aready) {
    int r = corio__fs_take_ahead(f);
    if (r != 0) return push_fail(L, "read", f->path, r);
    lua_pushboolean(L, 1);
    return corio__fast(rt, L, t, 1);
  }
  check_yieldable(rt, L, "corio.fs read");
  return file_wait(rt, L, t, f, corio__fs_fill(f, t), "read", "fs read");
}

/* ---- writing ------------------------------------------------------ */

/* A write after reads in "+" modes: put the kernel position back where
** the reader is and drop the read buffer, as stdio does. */
static void drop_read_buffer(corio_file *f) {
  if (f->rpos < f->rlen && f->fd >= 0)
    lseek(f->fd, -(off_t)(f->rlen - f->rpos), SEEK_CUR);
  f->rpos = f->rlen = 0;
  f->eof = 0;
}

/* write(f, ...) -> true | NEED_FLUSH | false, err. Every value is
** buffered; NEED_FLUSH asks the wrapper to flush (the buffer is full). */
static int l_write(lua_State *L) {
  corio_file *f = check_file(L, 1, "write");
  int i, top = lua_gettop(L);
  for (i = 2; i <= top; i++) {
    int ty = lua_type(L, i);
    if (ty != LUA_TSTRING && ty != LUA_TNUMBER)
      return corio__argerror(L, 2, i - 1, "write",
                             lua_pushfstring(L, "string expected, got %s",
                                             luaL_typename(L, i)));
  }
  if (f->closed) return push_closed(L, f, "write");
  if (!(f->mode & CORIO_FS_WRITE))
    return push_fail(L, "write", f->path, UV_EBADF);
  if (FG_BUSY(f)) return push_busy(L, f, "write");
  if ((i = cancelled(L, RT(L))) != 0) return i;
  if (f->rlen > 0) drop_read_buffer(f);
  for (i = 2; i <= top; i++) {
    size_t n;
    const char *s;
    int r;
    if (lua_type(L, i) == LUA_TNUMBER) {
      /* as io and tostring write it (LuaJIT's own "%.14g"): C's
      ** snprintf wrote the NaN of 0/0 as "-nan", and io writes "nan" */
      s = lua_tolstring(L, i, &n);
    } else {
      s = lua_tolstring(L, i, &n);
      if (IS_BIG(f, n)) {
        /* the values before it are buffered; the wrapper writes this
        ** one with wbig and the rest with write again */
        lua_pushlightuserdata(L, NEED_BIG);
        lua_pushinteger(L, i - 1);
        return 2;
      }
    }
    if ((r = corio__fs_append(f, s, n)) != 0)
      return push_fail(L, "write", f->path, r);
  }
  if (f->wlen - f->woff >= f->wdef) lua_pushlightuserdata(L, NEED_FLUSH);
  else lua_pushboolean(L, 1);
  return 1;
}

static int wait_behind(corio_rt *rt, lua_State *L, corio_task *t,
                       corio_file *f) {
  return wait_bg(rt, L, t, f, "write", "fs write");
}

/* The error of a write-behind nobody waited for: raised now. */
static int take_err(lua_State *L, corio_file *f) {
  int e = f->err;
  const char *op = f->errop;
  f->err = 0;
  return push_fail(L, op, f->path, e);
}

/* push(f) -> true, 1 | true (waited: ask again) | false, err: the write
** buffer is full: a write-only file starts writing it in the background
** and goes on filling the other buffer; others write it out now. */
static int l_push(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_file *f = check_file(L, 1, "write");
  corio_task *t;
  int n, r;
  if (f->closed) return push_closed(L, f, "write");
  if (FG_BUSY(f)) return push_busy(L, f, "write");
  n = corio__enter(L, rt, &t, "write");
  if (n != CORIO_GO) return n;
  if (f->op == CORIO_FOP_BEHIND) return wait_behind(rt, L, t, f);
  if (f->err < 0) return take_err(L, f);
  if (f->woff == f->wlen) {
    lua_pushboolean(L, 1);
    lua_pushinteger(L, 1);
    return corio__fast(rt, L, t, 2);
  }
  if (f->mode & CORIO_FS_READ) {
    check_yieldable(rt, L, "corio.fs write");
    return file_wait(rt, L, t, f, corio__fs_flush(f, t), "write",
                     "fs write");
  }
  if ((r = corio__fs_behind(f)) != 0)
    return push_fail(L, "write", f->path, r);
  lua_pushboolean(L, 1);
  lua_pushinteger(L, 1);
  return corio__fast(rt, L, t, 2);
}

/* wbig(f, s) -> true, 1 (being written in the background) | true, 2
** (the same; a "+" file: flush to wait for it) | true (waited for the
** write in flight: ask again) | false, err. A checkpoint. The buffered
** bytes and then s go out in one request, straight from s, which is
** pinned until it ends. */
static int l_wbig(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_file *f = check_file(L, 1, "write");
  corio_task *t;
  size_t len;
  const char *s = lua_tolstring(L, 2, &len);
  int n, r, ref;
  if (s == NULL || lua_type(L, 2) != LUA_TSTRING)
    return corio__argerror(L, 2, 1, "write",
                           lua_pushfstring(L, "string expected, got %s",
                                           luaL_typename(L, 2)));
  if (f->closed) return push_closed(L, f, "write");
  if (!(f->mode & CORIO_FS_WRITE))
    return push_fail(L, "write", f->path, UV_EBADF);
  if (FG_BUSY(f)) return push_busy(L, f, "write");
  n = corio__enter(L, rt, &t, "write");
  if (n != CORIO_GO) return n;
  if (f->op == CORIO_FOP_BEHIND) {
    /* queue s behind the write in flight if it may, else wait for it */
    int done;
    if (f->t != NULL || (f->mode & CORIO_FS_READ) || f->woff < f->wlen ||
        f->err < 0)
      return wait_bg(rt, L, t, f, "write", "fs write");
    lua_settop(L, 2);
    ref = corio__ref(rt, L);
    if (!corio__fs_queue(f, s, len, ref, &done)) {
      corio__unref(rt, L, ref);
      return wait_bg(rt, L, t, f, "write", "fs write");
    }
    if (done > 0) corio__unref(rt, L, done);
  } else {
    if (f->err < 0) return take_err(L, f);
    if (f->rlen > 0) drop_read_buffer(f);
    lua_settop(L, 2);
    ref = corio__ref(rt, L);
    if ((r = corio__fs_direct(f, s, len, ref)) != 0) {
      corio__unref(rt, L, ref);
      return push_fail(L, "write", f->path, r);
    }
  }
  /* A big string handed to the write is usually dead once written (a
  ** copy loop's chunk): the collector does the work of its size now.
  ** Left to pace itself it steps once per allocation, ~50 dead 1 MiB
  ** chunks pile up before a cycle ends, and each new one is fresh memory
  ** faulted in page by page (W5 copy: 13,800 faults, against 1,250). */
  if (len >= CORIO_FS_BIGSTR) lua_gc(L, LUA_GCSTEP, (int)(len >> 10));
  lua_pushboolean(L, 1);
  lua_pushinteger(L, f->mode & CORIO_FS_READ ? 2 : 1);
  return corio__fast(rt, L, t, 2);
}

/* flush(f) -> true, 1 | true (progress: ask again) | false, err (a
** checkpoint) */
static int l_flush(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_file *f = check_file(L, 1, "flush");
  corio_task *t;
  int n;
  if (f->closed) return push_closed(L, f, "flush");
  if (FG_BUSY(f)) return push_busy(L, f, "flush");
  n = corio__enter(L, rt, &t, "flush");
  if (n != CORIO_GO) return n;
  if (f->op == CORIO_FOP_BEHIND) return wait_behind(rt, L, t, f);
  if (f->err < 0) return take_err(L, f);
  if (f->woff == f->wlen) {
    f->wlen = f->woff = 0;
    lua_pushboolean(L, 1);
    lua_pushinteger(L, 1);
    return corio__fast(rt, L, t, 2);
  }
  check_yieldable(rt, L, "corio.fs flush");
  return file_wait(rt, L, t, f, corio__fs_flush(f, t), "write", "fs write");
}

/* ---- seek and close ----------------------------------------------- */

/* seek(f, whence, offset) -> pos | NEED_FLUSH | false, err. lseek does
** no I/O, so it runs on the loop thread. */
static int l_seek(lua_State *L) {
  corio_file *f = check_file(L, 1, "seek");
  const char *w;
  double off = 0;
  off_t k, pos;
  int whence;
  if (lua_isnoneornil(L, 2)) w = "cur";
  else if (lua_type(L, 2) == LUA_TSTRING) w = lua_tostring(L, 2);
  else
    return corio__argerror(L, 2, 1, "seek",
                           lua_pushfstring(L, "string expected, got %s",
                                           luaL_typename(L, 2)));
  if (strcmp(w, "set") == 0) whence = SEEK_SET;
  else if (strcmp(w, "cur") == 0) whence = SEEK_CUR;
  else if (strcmp(w, "end") == 0) whence = SEEK_END;
  else
    return corio__argerror(L, 2, 1, "seek",
                           lua_pushfstring(L, "invalid option '%s'", w));
  if (!lua_isnoneornil(L, 3)) {
    if (lua_type(L, 3) != LUA_TNUMBER)
      return corio__argerror(L, 2, 2, "seek",
                             lua_pushfstring(L, "number expected, got %s",
                                             luaL_typename(L, 3)));
    off = lua_tonumber(L, 3);
    /* converted to off_t below: NaN, infinities and values out of its
    ** range were undefined casts (seen as EINVAL from lseek) */
    if (!(off > -9.2233720368547758e18 && off < 9.2233720368547758e18))
      return corio__argerror(L, 2, 2, "seek",
                             lua_pushfstring(L, "offset out of range, got %s",
                                             lua_tostring(L, 3)));
  }
  if (f->closed) return push_closed(L, f, "seek");
  if (FG_BUSY(f)) return push_busy(L, f, "seek");
  if (f->wlen > f->woff || f->op == CORIO_FOP_BEHIND || f->err < 0) {
    lua_pushlightuserdata(L, NEED_FLUSH);
    return 1;
  }
  if (f->op == CORIO_FOP_AHEAD) {
    /* the kernel position moves until it ends: wait for it (fill) */
    lua_pushlightuserdata(L, NEED_FILL);
    return 1;
  }
  k = lseek(f->fd, 0, SEEK_CUR);
  if (k < 0) return push_fail(L, "seek", f->path, -errno);
  pos = k - (off_t)(f->rlen - f->rpos) - (off_t)f->alen;
  if (whence == SEEK_CUR && off == 0) {
    lua_pushnumber(L, (double)pos);
    return 1;
  }
  if (whence == SEEK_CUR) {
    /* pos + off could overflow off_t (undefined): lseek's EINVAL */
    off_t to;
    if (__builtin_add_overflow(pos, (off_t)off, &to))
      return push_fail(L, "seek", f->path, UV_EINVAL);
    k = lseek(f->fd, to, SEEK_SET);
  } else {
    k = lseek(f->fd, (off_t)off, whence);
  }
  if (k < 0) return push_fail(L, "seek", f->path, -errno);
  f->rpos = f->rlen = 0;
  f->eof = 0;
  corio__fs_drop_ahead(f);
  lua_pushnumber(L, (double)k);
  return 1;
}

/* close(f) -> true | false, err: write what is buffered, then close. A
** cancelled task still closes the file (dropping unwritten data) and gets
** Cancelled, as trio's aclose does. */
static int l_close(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_file *f = check_file(L, 1, "close");
  corio_task *t;
  int n;
  if (f->closed) return push_closed(L, f, "close");
  if (FG_BUSY(f)) return push_busy(L, f, "close");
  n = corio__enter(L, rt, &t, "close");
  if (n != CORIO_GO) {
    if (lua_touserdata(L, -1) != CORIO_NOLOOP) corio__fs_close_now(f);
    return n;
  }
  if (f->op == CORIO_FOP_BEHIND) return wait_behind(rt, L, t, f);
  if (f->op == CORIO_FOP_AHEAD)
    return wait_bg(rt, L, t, f, "close", "fs close");
  check_yieldable(rt, L, "corio.fs close");
  f->rpos = f->rlen = 0;
  return file_wait(rt, L, t, f, corio__fs_close(f, t), "close", "fs close");
}

static int l_file_gc(lua_State *L) {
  corio_file_ud *u = corio__toobj(L, 1, sizeof(*u), CORIO_MAGIC_FILE);
  if (u != NULL && u->f != &dead_file) {
    corio__fs_file_gc(u->f);
    u->f = &dead_file;
  }
  return 0;
}

static int l_file_tostring(lua_State *L) {
  corio_file *f = check_file(L, 1, "tostring");
  lua_pushfstring(L, "corio.File(%s%s)", f->path,
                  f->closed ? ", closed" : "");
  return 1;
}

/* state(f) -> "file" | "closed file" (io.type's answer) */
static int l_state(lua_State *L) {
  corio_file_ud *u = corio__toobj(L, 1, sizeof(*u), CORIO_MAGIC_FILE);
  if (u == NULL) return 0;
  lua_pushstring(L, u->f->closed ? "closed file" : "file");
  return 1;
}

/* closed(f, op) -> the "closed" error of op on f (f:lines raises it when
** called, as io does, not at the iterator's first call) */
static int l_closed(lua_State *L) {
  corio_file *f = check_file(L, 1, "lines");
  push_closed(L, f, luaL_checkstring(L, 2));
  return 1;
}

/* regular(f) -> whether f is a regular file or a block device (its size
** is its length: corio.http sends it as a body's Content-Length) */
static int l_regular(lua_State *L) {
  corio_file_ud *u = corio__toobj(L, 1, sizeof(*u), CORIO_MAGIC_FILE);
  lua_pushboolean(L, u != NULL && !u->f->noahead);
  return 1;
}

/* ---- path requests ------------------------------------------------ */

static int path_op(lua_State *L, int op, const char *fname, int npaths,
                   int arg) {
  corio_rt *rt = RT(L);
  corio_task *t;
  const char *p1, *p2 = NULL;
  void *obj;
  int n, r, i;
  for (i = 1; i <= npaths; i++) check_path_arg(L, 2, i, fname);
  p1 = lua_tostring(L, 1);
  if (npaths > 1) p2 = lua_tostring(L, 2);
  n = corio__enter(L, rt, &t, fname);
  if (n != CORIO_GO) return n;
  check_yieldable(rt, L, fname);
  r = corio__fs_op(rt, t, op, p1, p2, arg, 0, 0, &obj);
  if (r != 0) return push_fail(L, fname, p1, r);
  return corio__suspend(rt, L, t, corio__fs_abort, fname, obj);
}

static int l_stat(lua_State *L) {
  return path_op(L, lua_toboolean(L, 2) ? CORIO_FS_LSTAT : CORIO_FS_STAT,
                 "stat", 1, 0);
}
static int l_mkdir(lua_State *L) {
  int mode = lua_isnumber(L, 2) ? (int)lua_tointeger(L, 2) : 0777;
  return path_op(L, CORIO_FS_MKDIR, "mkdir", 1, mode);
}
static int l_unlink(lua_State *L) {
  return path_op(L, CORIO_FS_UNLINK, "remove", 1, 0);
}
static int l_rmdir(lua_State *L) {
  return path_op(L, CORIO_FS_RMDIR, "remove", 1, 0);
}
static int l_rename(lua_State *L) {
  return path_op(L, CORIO_FS_RENAME, "rename", 2, 0);
}
static int l_scandir(lua_State *L) {
  return path_op(L, CORIO_FS_SCANDIR, "scandir", 1, 0);
}
static int l_copy(lua_State *L) {
  return path_op(L, CORIO_FS_COPY, "copy", 2, 0);
}

int luaopen_corio_fs(lua_State *L) {
  static const corio_reg fns[] = {
      {"open", l_open},       {"line", l_line},   {"read1", l_read1},
      {"check_open", l_check_open},
      {"fill", l_fill},       {"write", l_write}, {"flush", l_flush}, {"push", l_push},
      {"wbig", l_wbig},
      {"seek", l_seek},       {"close", l_close}, {"state", l_state},
      {"regular", l_regular}, {"closed", l_closed},
      {"stat", l_stat},       {"mkdir", l_mkdir}, {"unlink", l_unlink},
      {"rmdir", l_rmdir},     {"rename", l_rename},   {"ptr", l_ptr},
      {"scandir", l_scandir}, {"copy", l_copy},   {NULL, NULL}};
  corio_rt *rt = corio__rt(L);
  lua_newtable(L);
  corio__register(L, rt, -1, fns);
  lua_pushlightuserdata(L, NEED_FILL);
  lua_setfield(L, -2, "NEED_FILL");
  lua_pushlightuserdata(L, NEED_FLUSH);
  lua_setfield(L, -2, "NEED_FLUSH");
  lua_pushlightuserdata(L, NEED_BIG);
  lua_setfield(L, -2, "NEED_BIG");
  lua_pushlightuserdata(L, (void *)corio__fs_ffi_line);
  lua_setfield(L, -2, "ffi_line");
  lua_pushlightuserdata(L, (void *)corio__fs_ffi_put);
  lua_setfield(L, -2, "ffi_put");
  lua_pushlightuserdata(L, (void *)corio__fs_ffi_put2);
  lua_setfield(L, -2, "ffi_put2");
  if (luaL_newmetatable(L, "corio.File")) {
    lua_pushcfunction(L, l_file_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushlightuserdata(L, rt);
    lua_pushcclosure(L, l_file_tostring, 1);
    lua_setfield(L, -2, "__tostring");
    lua_newtable(L);
    lua_setfield(L, -2, "methods");
  }
  lua_setfield(L, -2, "File");  /* the metatable, for fs.lua */
  return 1;
}
