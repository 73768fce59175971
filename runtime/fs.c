/*
** fs.c: corio.fs's C core: buffered files and path requests on libuv's fs
** requests (the thread pool), so file I/O never blocks the loop. A file
** has one request in flight at most; the waiting task is woken by the
** completion with a deliver hook. Requests cannot be undone: the abort
** hook returns 0, the task gets the result and the cancel surfaces at its
** next checkpoint (SPEC rule 7). Line splitting and formats live in
** bindings/fs.c; the Lua surface in lua/corio/fs.lua.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* copy_file_range */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <unistd.h>

#include "fs.h"

/* ---- errors ------------------------------------------------------- */

void corio__fs_push_error(lua_State *L, const char *op, const char *path,
                          int code) {
  const char *name = uv_err_name(code);
  /* an empty path is shown as "" (it read "stat : ENOENT") */
  lua_pushfstring(L, "%s %s: %s (%s)", op,
                  path == NULL ? "?" : path[0] == 0 ? "\"\"" : path, name,
                  uv_strerror(code));
  corio__push_error(L, "fs", lua_tostring(L, -1));
  lua_remove(L, -2);
  lua_pushstring(L, op);
  lua_setfield(L, -2, "op");
  if (path != NULL) {
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
  }
  lua_pushstring(L, name);
  lua_setfield(L, -2, "code");
  lua_pushinteger(L, -code);
  lua_setfield(L, -2, "errno");
}

int corio__fs_abort(corio_rt *rt, corio_task *t) {
  (void)rt;
  (void)t;
  return 0;
}

/* ---- files -------------------------------------------------------- */

corio_file *corio__fs_file_new(corio_rt *rt, const char *path, int mode,
                               size_t bufsize) {
  corio_file *f = calloc(1, sizeof(*f));
  if (f == NULL) return NULL;
  f->path = strdup(path);
  if (f->path == NULL) {
    free(f);
    return NULL;
  }
  f->rt = rt;
  f->fd = -1;
  f->mode = mode;
  f->rdef = f->wdef = bufsize ? bufsize : CORIO_FS_BUFSIZE;
  return f;
}

/* ---- exit ---------------------------------------------------------
** Lua's os.exit(code) ends the process with exit(): no finaliser runs,
** but C's stdio writes out the buffers of io's files. A corio file's
** buffer would be lost silently where io's survives; so writable files
** are listed here and an atexit handler writes out what each one still
** buffers. Only the files of the thread calling exit() (others may be
** using theirs), and only those with no request in flight (a write
** running on the pool, whose order could not be kept): for those, and
** for a write that fails, one line on stderr names the path and the
** bytes lost, as for a file the collector closes. */
static pthread_mutex_t xlock = PTHREAD_MUTEX_INITIALIZER;
static corio_file *xfiles;
static int xhooked;

static void exit_flush(void) {
  corio_file *f;
  uv_thread_t self = uv_thread_self();
  pthread_mutex_lock(&xlock);
  for (f = xfiles; f != NULL; f = f->xnext) {
    if (f->fd < 0 || f->woff >= f->wlen ||
        !uv_thread_equal(&f->owner, &self))
      continue;
    if (f->op != CORIO_FOP_NONE) {
      fprintf(stderr, "corio: %s: %lu buffered bytes were lost at exit (a "
              "write was in flight); close files before os.exit\n",
              f->path, (unsigned long)(f->wlen - f->woff));
      continue;
    }
    while (f->woff < f->wlen) {
      ssize_t k = write(f->fd, f->wbuf + f->woff, f->wlen - f->woff);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) {
        fprintf(stderr, "corio: %s: %lu buffered bytes were lost at exit "
                "(%s)\n", f->path, (unsigned long)(f->wlen - f->woff),
                k < 0 ? strerror(errno) : "nothing written");
        break;
      }
      f->woff += (size_t)k;
    }
    f->wlen = f->woff = 0;
  }
  pthread_mutex_unlock(&xlock);
}

static void exit_list(corio_file *f) {
  pthread_mutex_lock(&xlock);
  if (!xhooked) xhooked = atexit(exit_flush) == 0 ? 1 : -1;
  f->owner = uv_thread_self();
  f->xprev = NULL;
  f->xnext = xfiles;
  if (xfiles != NULL) xfiles->xprev = f;
  xfiles = f;
  f->listed = 1;
  pthread_mutex_unlock(&xlock);
}

static void exit_unlist(corio_file *f) {
  if (!f->listed) return;
  pthread_mutex_lock(&xlock);
  if (f->xprev != NULL) f->xprev->xnext = f->xnext;
  else xfiles = f->xnext;
  if (f->xnext != NULL) f->xnext->xprev = f->xprev;
  f->listed = 0;
  pthread_mutex_unlock(&xlock);
}

static void file_free(corio_file *f) {
  exit_unlist(f);
  if (f->qinit) uv_mutex_destroy(&f->qlock);
  free(f->abuf);
  free(f->bbuf);
  free(f->rbuf);
  free(f->wbuf);
  free(f->path);
  free(f);
}

/* Write what is buffered and close, synchronously: for finalisers. */
static void file_close_sync(corio_file *f) {
  uv_fs_t req;
  while (f->fd >= 0 && f->woff < f->wlen) {
    uv_buf_t b = uv_buf_init(f->wbuf + f->woff,
                             (unsigned)(f->wlen - f->woff));
    int r = uv_fs_write(NULL, &req, f->fd, &b, 1, -1, NULL);
    uv_fs_req_cleanup(&req);
    if (r <= 0) {
      /* Nobody is left to raise to (the file was collected unclosed):
      ** say so rather than lose the bytes silently, as Python prints
      ** "Exception ignored" for a file whose finaliser failed. */
      fprintf(stderr, "corio: %s: %lu buffered bytes were lost when the "
              "file was closed by the garbage collector (%s); close "
              "files to see such errors\n", f->path,
              (unsigned long)(f->wlen - f->woff),
              r < 0 ? uv_strerror(r) : "nothing written");
      break;
    }
    f->woff += (size_t)r;
  }
  f->wlen = f->woff = 0;
  if (f->fd >= 0) {
    uv_fs_close(NULL, &req, f->fd, NULL);
    uv_fs_req_cleanup(&req);
    f->fd = -1;
  }
}

void corio__fs_file_gc(corio_file *f) {
  if (f->op != CORIO_FOP_NONE) {
    f->orphan = 1;
    return;
  }
  file_close_sync(f);
  file_free(f);
}

/* The values a deliver hook hands to the suspended task are made on the
** runtime's state and moved over: an allocation on the suspended thread
** could run a __gc finaliser there, and one that raises (even inside its
** own pcall) wrecks that thread's stack. */
static void deliver_file(corio_task *t) {
  corio_file *f = t->wait_obj;
  lua_State *L = f->rt->L;
  t->wait_obj = NULL;
  if (f->err < 0) {
    lua_pushboolean(L, 0);
    corio__fs_push_error(L, f->errop, f->path, f->err);
    f->err = 0;
    lua_xmove(L, t->co, 2);
  } else {
    lua_pushboolean(t->co, 1);
  }
}

static int submit_write(corio_file *f);
static int submit_ahead(corio_file *f);

/* The request of f completed (or a chain step failed to submit). */
static void file_done(corio_file *f) {
  corio_rt *rt = f->rt;
  corio_task *t = f->t;
  int op = f->op;
  f->op = CORIO_FOP_NONE;
  f->t = NULL;
  rt->nexternal--;
  if (f->drop_close) {
    f->drop_close = 0;
    f->wlen = f->woff = 0;
    file_close_sync(f);
  }
  if (f->orphan) {
    file_close_sync(f);
    file_free(f);
    return;
  }
  /* A read the task waited for: read the next bytes ahead while it
  ** consumes these (a failed submit just means no read-ahead). */
  if (op == CORIO_FOP_READ && f->err == 0) submit_ahead(f);
  if (t != NULL) {
    t->abort = NULL;
    corio__ready(rt, t, deliver_file);
  }
}

static void set_err(corio_file *f, const char *op, int r) {
  if (f->err == 0) {
    f->err = r;
    f->errop = op;
  }
}

static void file_cb(uv_fs_t *req) {
  corio_file *f = req->data;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  switch (f->op) {
  case CORIO_FOP_READ:
    if (r < 0) set_err(f, "read", (int)r);
    else if (r == 0) f->eof = 1;
    else f->rlen += (size_t)r;
    break;
  case CORIO_FOP_WRITE:
  case CORIO_FOP_CLOSE_WRITE:
    if (r < 0) {
      set_err(f, "write", (int)r);
      f->wlen = f->woff = 0;  /* reported once, not written again */
    } else {
      f->woff += (size_t)r;
      if (f->woff < f->wlen) {
        /* a short write (pipes): go on with the rest */
        int e = submit_write(f);
        if (e == 0) return;
        set_err(f, "write", e);
        f->wlen = f->woff = 0;
      } else {
        f->wlen = f->woff = 0;
      }
    }
    if (f->op == CORIO_FOP_CLOSE_WRITE) {
      int fd = f->fd, e;
      f->op = CORIO_FOP_CLOSE;
      f->fd = -1;
      e = uv_fs_close(f->rt->loop, &f->req, fd, file_cb);
      if (e == 0) return;
      set_err(f, "close", e);
    }
    break;
  case CORIO_FOP_CLOSE:
    if (r < 0) set_err(f, "close", (int)r);
    break;
  case CORIO_FOP_AHEAD:
    if (r < 0) f->aerr = (int)r;
    else if (r == 0) f->aeof = 1;
    else f->alen = (size_t)r;
    f->aready = 1;
    break;
  }
  file_done(f);
}

/* A write-behind on the thread pool: bseg's bytes in pieces of at most
** CORIO_FS_WPIECE, each one write(2), going on after short writes. The
** loop thread leaves bseg, nseg and fd alone until behind_done. */
static void behind_work(uv_work_t *w) {
  corio_file *f = w->data;
  unsigned i;
  f->wres = 0;
again:
  for (i = 0; i < f->nseg; i++) {
    const char *p = f->bseg[i].base;
    size_t left = f->bseg[i].len;
    while (left > 0) {
      ssize_t k = write(f->fd, p, left < CORIO_FS_WPIECE ? left
                                                          : CORIO_FS_WPIECE);
      if (k < 0) {
        if (errno == EINTR) continue;
        f->wres = -errno;
        /* a queued string is not written after an error */
        uv_mutex_lock(&f->qlock);
        f->brun = 0;
        uv_mutex_unlock(&f->qlock);
        return;
      }
      p += k;
      left -= (size_t)k;
    }
  }
  uv_mutex_lock(&f->qlock);
  if (f->brun && f->qref > 0) {
    /* the string queued meanwhile: the written one is released by the
    ** loop thread (the next queue, or behind_done) */
    f->dref = f->bref;
    f->bref = f->qref;
    f->bseg[0] = uv_buf_init((char *)f->qs, (unsigned)f->qn);
    f->nseg = 1;
    f->qref = 0;
    uv_mutex_unlock(&f->qlock);
    goto again;
  }
  f->brun = 0;
  uv_mutex_unlock(&f->qlock);
}

static void behind_done(uv_work_t *w, int status) {
  corio_file *f = w->data;
  int r = status < 0 ? status : f->wres;
  if (r < 0) set_err(f, "write", r);
  f->nseg = 0;
  /* the strings written straight from may be collected now; so may one
  ** still queued after an error (its bytes are dropped: the error is
  ** raised by the next write, flush or close) */
  if (f->bref > 0) corio__unref(f->rt, f->rt->L, f->bref);
  if (f->dref > 0) corio__unref(f->rt, f->rt->L, f->dref);
  if (f->qref > 0) corio__unref(f->rt, f->rt->L, f->qref);
  f->bref = f->dref = f->qref = 0;
  file_done(f);
}

static int submit_write(corio_file *f) {
  uv_buf_t b = uv_buf_init(f->wbuf + f->woff, (unsigned)(f->wlen - f->woff));
  return uv_fs_write(f->rt->loop, &f->req, f->fd, &b, 1, -1, file_cb);
}


/* A read buffer: CORIO_FS_ALIGN-aligned (see fs.h). */
static char *rbuf_alloc(size_t n) {
  void *p;
  if (posix_memalign(&p, CORIO_FS_ALIGN, n) != 0) return NULL;
  return p;
}

/* Clamp a read size to [rdef, MAXREQ]. */
static size_t read_size(const corio_file *f, size_t n) {
  if (n < f->rdef) n = f->rdef;
  if (n > CORIO_FS_MAXREQ) n = CORIO_FS_MAXREQ;
  return n;
}

static void start(corio_file *f, corio_task *t, int op) {
  f->op = op;
  f->t = t;
  f->req.data = f;
  f->rt->nexternal++;
}

/* Grow the write buffer to hold need bytes. */
static int grow(char **buf, size_t *cap, size_t need) {
  size_t n = *cap ? *cap : 4096;
  char *p;
  while (n < need) n *= 2;
  if (n == *cap) return 0;
  p = realloc(*buf, n);
  if (p == NULL) return UV_ENOMEM;
  *buf = p;
  *cap = n;
  return 0;
}

/* Start the read-ahead into abuf, if the file reads only and none is
** pending. 0, or a negative UV_E* (nothing was started). */
static int submit_ahead(corio_file *f) {
  size_t room;
  uv_buf_t b;
  int r;
  if (f->mode != CORIO_FS_READ || f->fd < 0 || f->closed || f->eof ||
      f->noahead ||
      f->aready || f->op != CORIO_FOP_NONE)
    return 0;
  /* As much as the last read that had to wait asked for (a chunk), so
  ** that chunks stay in step with the reads; rdef for lines. */
  room = read_size(f, f->asize);
  if (f->acap < CORIO_FS_HEADROOM + room) {
    char *p = rbuf_alloc(CORIO_FS_HEADROOM + room);
    if (p == NULL) return UV_ENOMEM;
    free(f->abuf);
    f->abuf = p;
    f->acap = CORIO_FS_HEADROOM + room;
  }
  b = uv_buf_init(f->abuf + CORIO_FS_HEADROOM, (unsigned)room);
  f->alen = 0;
  f->aeof = f->aerr = 0;
  start(f, NULL, CORIO_FOP_AHEAD);
  r = uv_fs_read(f->rt->loop, &f->req, f->fd, &b, 1, -1, file_cb);
  if (r != 0) {
    f->op = CORIO_FOP_NONE;
    f->rt->nexternal--;
  }
  return r;
}

void corio__fs_drop_ahead(corio_file *f) {
  f->aready = f->aeof = f->aerr = 0;
  f->alen = 0;
}

int corio__fs_take_ahead(corio_file *f) {
  size_t tail = f->rlen - f->rpos;
  int r;
  f->aready = 0;
  if (f->aerr < 0) {
    r = f->aerr;
    f->aerr = 0;
    return r;
  }
  if (f->aeof) {
    f->aeof = 0;
    f->eof = 1;
    return 0;
  }
  if (tail <= CORIO_FS_HEADROOM) {
    /* the tail goes in front of the new bytes; the buffers swap */
    char *p = f->abuf;
    size_t cap = f->acap;
    if (tail > 0)
      memcpy(p + CORIO_FS_HEADROOM - tail, f->rbuf + f->rpos, tail);
    f->abuf = f->rbuf;
    f->acap = f->rcap;
    f->rbuf = p;
    f->rcap = cap;
    f->rpos = CORIO_FS_HEADROOM - tail;
    f->rlen = CORIO_FS_HEADROOM + f->alen;
  } else {
    /* a long line: append the new bytes to it */
    if (tail + f->alen > f->rcap) {
      size_t cap = f->rcap * 2 > tail + f->alen ? f->rcap * 2
                                                 : tail + f->alen;
      char *p = rbuf_alloc(cap);
      if (p == NULL) return UV_ENOMEM;  /* the read-ahead's bytes are lost */
      memcpy(p, f->rbuf + f->rpos, tail);
      free(f->rbuf);
      f->rbuf = p;
      f->rcap = cap;
    } else if (f->rpos > 0) {
      memmove(f->rbuf, f->rbuf + f->rpos, tail);
    }
    f->rpos = 0;
    memcpy(f->rbuf + tail, f->abuf + CORIO_FS_HEADROOM, f->alen);
    f->rlen = tail + f->alen;
  }
  f->alen = 0;
  submit_ahead(f);
  return 0;
}

int corio__fs_fill(corio_file *f, corio_task *t) {
  size_t avail = f->rlen - f->rpos;
  /* Read what the waiting read still needs (at least rdef), so that a
  ** chunk comes from one read; the unread tail (a partial line) is kept
  ** in front, placed so that the read lands aligned. */
  size_t room = read_size(f, f->want > avail ? f->want - avail : 0);
  size_t at = (CORIO_FS_ALIGN - avail % CORIO_FS_ALIGN) % CORIO_FS_ALIGN;
  uv_buf_t b;
  int r;
  if (f->rbuf == NULL || f->rcap < at + avail + room) {
    /* read-only: room for a read-ahead's headroom when it becomes abuf */
    size_t n = at + avail + room +
               (f->mode == CORIO_FS_READ ? CORIO_FS_HEADROOM : 0);
    char *p = rbuf_alloc(n);
    if (p == NULL) return UV_ENOMEM;
    if (avail > 0) memcpy(p + at, f->rbuf + f->rpos, avail);
    free(f->rbuf);
    f->rbuf = p;
    f->rcap = n;
  } else if (f->rpos != at) {
    memmove(f->rbuf + at, f->rbuf + f->rpos, avail);
  }
  f->rpos = at;
  f->rlen = at + avail;
  b = uv_buf_init(f->rbuf + f->rlen, (unsigned)room);
  start(f, t, CORIO_FOP_READ);
  r = uv_fs_read(f->rt->loop, &f->req, f->fd, &b, 1, -1, file_cb);
  if (r != 0) {
    f->op = CORIO_FOP_NONE;
    f->t = NULL;
    f->rt->nexternal--;
  }
  return r;
}

int corio__fs_append(corio_file *f, const char *s, size_t n) {
  if (f->wlen + n > f->wcap) {
    int r;
    if (f->woff > 0) {
      memmove(f->wbuf, f->wbuf + f->woff, f->wlen - f->woff);
      f->wlen -= f->woff;
      f->woff = 0;
    }
    if (f->wlen + n > f->wcap &&
        (r = grow(&f->wbuf, &f->wcap, f->wlen + n < f->wdef
                                          ? f->wdef : f->wlen + n)) != 0)
      return r;
  }
  if (n != 0) memcpy(f->wbuf + f->wlen, s, n);  /* no buffer yet: NULL */
  f->wlen += n;
  return 0;
}

int corio__fs_flush(corio_file *f, corio_task *t) {
  int r;
  start(f, t, CORIO_FOP_WRITE);
  r = submit_write(f);
  if (r != 0) {
    f->op = CORIO_FOP_NONE;
    f->t = NULL;
    f->rt->nexternal--;
  }
  return r;
}

/* The buffered bytes become bseg[0] (wbuf and bbuf swap). */
static void swap_out(corio_file *f) {
  char *p = f->bbuf;
  size_t cap = f->bcap;
  f->bbuf = f->wbuf;
  f->bcap = f->wcap;
  f->bseg[0] = uv_buf_init(f->bbuf + f->woff, (unsigned)(f->wlen - f->woff));
  f->nseg = 1;
  f->wbuf = p;
  f->wcap = cap;
  f->wlen = f->woff = 0;
}

static int submit_behind(corio_file *f) {
  int r;
  if (!f->qinit) {
    if (uv_mutex_init(&f->qlock) != 0) {
      f->nseg = 0;
      f->bref = 0;
      return UV_ENOMEM;
    }
    f->qinit = 1;
  }
  f->brun = 1;  /* no pool thread runs yet: no lock needed */
  start(f, NULL, CORIO_FOP_BEHIND);
  f->work.data = f;
  r = uv_queue_work(f->rt->loop, &f->work, behind_work, behind_done);
  if (r != 0) {
    f->op = CORIO_FOP_NONE;
    f->rt->nexternal--;
    f->nseg = 0;
    f->bref = 0;
  }
  return r;
}

int corio__fs_behind(corio_file *f) {
  swap_out(f);
  return submit_behind(f);
}

int corio__fs_direct(corio_file *f, const char *s, size_t n, int ref) {
  f->nseg = 0;
  if (f->woff < f->wlen) swap_out(f);
  f->bseg[f->nseg++] = uv_buf_init((char *)s, (unsigned)n);
  f->bref = ref;
  return submit_behind(f);
}

int corio__fs_queue(corio_file *f, const char *s, size_t n, int ref,
                    int *done) {
  int ok = 0;
  *done = 0;
  if (f->op != CORIO_FOP_BEHIND || (f->mode & CORIO_FS_READ) ||
      f->woff < f->wlen || f->closed || f->drop_close || f->orphan)
    return 0;
  uv_mutex_lock(&f->qlock);
  if (f->brun && f->qref == 0) {
    f->qs = s;
    f->qn = n;
    f->qref = ref;
    *done = f->dref;
    f->dref = 0;
    ok = 1;
  }
  uv_mutex_unlock(&f->qlock);
  return ok;
}

int corio__fs_close(corio_file *f, corio_task *t) {
  int r, fd = f->fd;
  f->closed = 1;
  corio__fs_drop_ahead(f);
  if (f->woff < f->wlen) {
    start(f, t, CORIO_FOP_CLOSE_WRITE);
    r = submit_write(f);
    if (r == 0) return 0;
    /* cannot even submit: report it, still close */
    f->rt->nexternal--;
    set_err(f, "write", r);
    f->wlen = f->woff = 0;
  }
  start(f, t, CORIO_FOP_CLOSE);
  f->fd = -1;
  r = uv_fs_close(f->rt->loop, &f->req, fd, file_cb);
  if (r != 0) {
    f->op = CORIO_FOP_NONE;
    f->t = NULL;
    f->rt->nexternal--;
  }
  return r;
}

static void close_now_cb(uv_fs_t *req) {
  corio_rt *rt = req->data;
  rt->nexternal--;
  uv_fs_req_cleanup(req);
  free(req);
}

void corio__fs_close_now(corio_file *f) {
  uv_fs_t *req;
  f->closed = 1;
  f->wlen = f->woff = 0;
  f->rlen = f->rpos = 0;
  corio__fs_drop_ahead(f);
  if (f->fd < 0) return;
  if (f->op != CORIO_FOP_NONE) {
    /* a write-behind or read-ahead runs on the fd: close when it ends;
    ** a string queued behind it is dropped (released by behind_done) */
    if (f->op == CORIO_FOP_BEHIND) {
      uv_mutex_lock(&f->qlock);
      f->brun = 0;
      uv_mutex_unlock(&f->qlock);
    }
    f->drop_close = 1;
    return;
  }
  req = malloc(sizeof(*req));
  if (req != NULL) {
    req->data = f->rt;
    if (uv_fs_close(f->rt->loop, req, f->fd, close_now_cb) == 0) {
      f->rt->nexternal++;
      f->fd = -1;
      return;
    }
    free(req);
  }
  file_close_sync(f);
}

/* ---- path requests ------------------------------------------------ */

typedef struct corio_fsop {
  uv_fs_t req;          /* copy: only req.result is used */
  uv_work_t work;       /* copy runs as thread-pool work */
  int err_dst;          /* copy: the error is the destination's */
  corio_rt *rt;
  corio_task *t;
  int op;
  int mode;             /* open: CORIO_FS_* */
  size_t bufsize;       /* open: buffer size */
  char *path, *path2;
  struct corio_file *newfile; /* open: the file made, until its userdata
                                 holds it (deliver_op) */
} corio_fsop;

/* The op an error names: the function called (fs.remove's rmdir of a
** directory, too, is "remove"), but for stat's {follow = false}, which
** says "lstat" so that a message about a link tells which was asked. */
static const char *const OPNAMES[] = {"open", "stat", "lstat", "mkdir",
                                      "remove", "remove", "rename",
                                      "scandir", "copy"};

static void fsop_free(corio_fsop *o) {
  uv_fs_req_cleanup(&o->req);
  free(o->path);
  free(o->path2);
  free(o);
}

static const char *type_name(uv_dirent_type_t t) {
  switch (t) {
  case UV_DIRENT_FILE: return "file";
  case UV_DIRENT_DIR: return "directory";
  case UV_DIRENT_LINK: return "link";
  case UV_DIRENT_FIFO: return "fifo";
  case UV_DIRENT_SOCKET: return "socket";
  case UV_DIRENT_CHAR: return "char";
  case UV_DIRENT_BLOCK: return "block";
  default: return "unknown";
  }
}

static const char *stat_type(uint64_t m) {
  switch (m & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "directory";
  case S_IFLNK: return "link";
  case S_IFIFO: return "fifo";
  case S_IFSOCK: return "socket";
  case S_IFCHR: return "char";
  case S_IFBLK: return "block";
  default: return "unknown";
  }
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static double ts(uv_timespec_t t) {
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void push_stat(lua_State *L, const uv_stat_t *s) {
  lua_createtable(L, 0, 14);
  set_num(L, "size", (double)s->st_size);
  set_num(L, "mode", (double)(s->st_mode & 07777));
  lua_pushstring(L, stat_type(s->st_mode));
  lua_setfield(L, -2, "type");
  set_num(L, "mtime", ts(s->st_mtim));
  set_num(L, "atime", ts(s->st_atim));
  set_num(L, "ctime", ts(s->st_ctim));
  set_num(L, "uid", (double)s->st_uid);
  set_num(L, "gid", (double)s->st_gid);
  set_num(L, "nlink", (double)s->st_nlink);
  set_num(L, "ino", (double)s->st_ino);
  set_num(L, "dev", (double)s->st_dev);
  set_num(L, "blksize", (double)s->st_blksize);
  set_num(L, "blocks", (double)s->st_blocks);
}

/* In corio__pcall: [] -> (true, results...) or (false, err) of op o. */
static void deliver_op_p(corio_rt *rt, lua_State *L, void *ud) {
  corio_fsop *o = (corio_fsop *)ud;
  ssize_t r = o->req.result;
  (void)rt;
  if (r < 0) {
    lua_pushboolean(L, 0);
    if (o->op == CORIO_FS_RENAME) {
      /* either path may be at fault (a missing directory of the
      ** destination): the message names both, as Python's does */
      lua_pushfstring(L, "%s -> %s", o->path, o->path2);
      corio__fs_push_error(L, "rename", lua_tostring(L, -1), (int)r);
      lua_remove(L, -2);
      lua_pushstring(L, o->path);
      lua_setfield(L, -2, "path");
      lua_pushstring(L, o->path2);
      lua_setfield(L, -2, "dst");
    } else {
      corio__fs_push_error(L, OPNAMES[o->op],
                           o->err_dst ? o->path2 : o->path, (int)r);
    }
    return;
  }
  lua_pushboolean(L, 1);
  switch (o->op) {
  case CORIO_FS_OPEN: {
    corio_file *f = corio__fs_file_new(o->rt, o->path, o->mode, o->bufsize);
    uv_fs_t sreq;
    int isdir = 0, regular = 0;
    if (uv_fs_fstat(NULL, &sreq, (uv_file)r, NULL) == 0) {
      isdir = S_ISDIR(sreq.statbuf.st_mode);
      regular = S_ISREG(sreq.statbuf.st_mode) || S_ISBLK(sreq.statbuf.st_mode);
    }
    uv_fs_req_cleanup(&sreq);
    if (f == NULL || isdir) {
      /* A directory opens for reading on Linux; refuse it here, as
      ** Python's open() does, rather than fail at the first read. */
      uv_fs_close(NULL, &sreq, (uv_file)r, NULL);
      uv_fs_req_cleanup(&sreq);
      if (f != NULL) file_free(f);   /* (before what may raise) */
      lua_pop(L, 1);
      lua_pushboolean(L, 0);
      corio__fs_push_error(L, "open", o->path,
                           f == NULL ? UV_ENOMEM : UV_EISDIR);
      break;
    }
    f->fd = (uv_file)r;
    o->newfile = f;
    /* A FIFO, pipe, socket or terminal may never deliver more: a read
    ** ahead there would hold a pool thread in read(2) with no task asking
    ** for it, and close (which waits for it) would hang after the reader
    ** took the one line it wanted. Read only when asked. */
    f->noahead = !regular;
    if (f->mode & CORIO_FS_WRITE) exit_list(f);
    /* "a": the position starts at the end, as stdio and Python put it
    ** (seek("cur") reports the size); "a+" reads from the start. lseek
    ** does no I/O. */
    if (o->mode == (CORIO_FS_WRITE | CORIO_FS_APPEND))
      (void)lseek(f->fd, 0, SEEK_END);
    corio__fs_push_file(L, f);
    o->newfile = NULL;   /* the userdata holds it */
    break;
  }
  case CORIO_FS_STAT:
  case CORIO_FS_LSTAT:
    push_stat(L, &o->req.statbuf);
    break;
  case CORIO_FS_SCANDIR: {
    uv_dirent_t ent;
    int i = 0;
    lua_newtable(L);
    while (uv_fs_scandir_next(&o->req, &ent) == 0) {
      lua_pushstring(L, ent.name);
      lua_rawseti(L, -2, ++i);
      lua_pushstring(L, type_name(ent.type));
      lua_rawseti(L, -2, ++i);
    }
    break;
  }
  default:
    break;
  }
}

/* The results are made on the runtime's state (not t->co: see
** deliver_file), in a protected call (this runs in the scheduler):
** without memory for them, the call fails with LuaJIT's "not enough
** memory", and a file it opened is closed. */
static void deliver_op(corio_task *t) {
  corio_fsop *o = t->wait_obj;
  corio_rt *rt = o->rt;
  lua_State *L = rt->L;
  int base = lua_gettop(L);
  t->wait_obj = NULL;
  o->newfile = NULL;
  if (corio__pcall(rt, L, 0, LUA_MULTRET, deliver_op_p, o) != 0) {
    if (o->newfile != NULL) {
      uv_fs_t sreq;
      uv_fs_close(NULL, &sreq, o->newfile->fd, NULL);
      uv_fs_req_cleanup(&sreq);
      file_free(o->newfile);
    }
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
  }
  fsop_free(o);
  lua_xmove(L, t->co, lua_gettop(L) - base);
}

static void op_cb(uv_fs_t *req) {
  corio_fsop *o = req->data;
  o->rt->nexternal--;
  o->t->abort = NULL;
  corio__ready(o->rt, o->t, deliver_op);
}

/* fs.copy on the thread pool. Not uv_fs_copyfile: it truncates even a
** new destination with ftruncate, and ext4 then flushes the whole file on
** close (auto_da_alloc), which halves the copy's speed. As cp: a new file
** is created, an existing one is truncated only if it has data; the bytes
** move by copy_file_range (in the kernel), else read/write. */
static int copy_file(corio_fsop *o) {
  struct stat si, so;
  int in, out, r = 0;
  off_t done = 0;
  in = open(o->path, O_RDONLY | O_CLOEXEC);
  if (in < 0) return -errno;
  if (fstat(in, &si) != 0) r = -errno;
  else if (S_ISDIR(si.st_mode)) r = UV_EISDIR;
  if (r != 0) {
    close(in);
    return r;
  }
  o->err_dst = 1;
  /* a new copy: the source's permission bits less the umask, as cp;
  ** never its set-user-ID, set-group-ID or sticky bit (cp drops them
  ** without -p: a setuid program copied by root must not become a
  ** setuid program of root's) */
  out = open(o->path2, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
             si.st_mode & 0777);
  if (out < 0 && errno == EEXIST) {
    out = open(o->path2, O_WRONLY | O_CLOEXEC);
    if (out >= 0) {
      if (fstat(out, &so) != 0) r = -errno;
      else if (so.st_dev == si.st_dev && so.st_ino == si.st_ino) r = 1;
      else if (so.st_size > 0 && ftruncate(out, 0) != 0) r = -errno;
    }
  }
  if (out < 0) {
    r = -errno;
    close(in);
    return r;
  }
  if (r != 0) { /* an error, or the same file: nothing to do */
    close(in);
    close(out);
    return r < 0 ? r : 0;
  }
  for (;;) {
    ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)1 << 30, 0);
    if (n > 0) {
      done += n;
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    if (done == 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                      errno == EOPNOTSUPP || errno == EPERM)) {
      /* no in-kernel copy here: read and write */
      char *buf = malloc(1 << 20);
      if (buf == NULL) {
        r = UV_ENOMEM;
        break;
      }
      for (;;) {
        ssize_t k = read(in, buf, 1 << 20), w = 0;
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
          r = -errno;
          o->err_dst = 0;
          break;
        }
        if (k == 0) break;
        while (w < k) {
          ssize_t m = write(out, buf + w, (size_t)(k - w));
          if (m < 0 && errno == EINTR) continue;
          if (m < 0) break;
          w += m;
        }
        if (w < k) {
          r = -errno;
          break;
        }
      }
      free(buf);
      break;
    }
    r = -errno;
    break;
  }
  close(in);
  if (close(out) != 0 && r == 0) r = -errno;
  if (r == 0) o->err_dst = 0;
  return r;
}

static void copy_work(uv_work_t *w) {
  corio_fsop *o = w->data;
  o->req.result = copy_file(o);
}

static void copy_done(uv_work_t *w, int status) {
  corio_fsop *o = w->data;
  if (status < 0) o->req.result = status;
  op_cb(&o->req);
}

static int open_flags(int mode) {
  int fl = O_CLOEXEC;
  if ((mode & CORIO_FS_READ) && (mode & CORIO_FS_WRITE)) fl |= O_RDWR;
  else if (mode & CORIO_FS_WRITE) fl |= O_WRONLY;
  else fl |= O_RDONLY;
  return fl;
}

int corio__fs_op(corio_rt *rt, corio_task *t, int op, const char *path,
                 const char *path2, int arg, int mode, size_t bufsize,
                 void **obj) {
  corio_fsop *o = calloc(1, sizeof(*o));
  uv_loop_t *loop = rt->loop;
  int r;
  if (o == NULL) return UV_ENOMEM;
  corio__pool_used();   /* every file use starts here: the pool now runs */
  o->path = strdup(path);
  if (path2 != NULL) o->path2 = strdup(path2);
  if (o->path == NULL || (path2 != NULL && o->path2 == NULL)) {
    free(o->path);
    free(o->path2);
    free(o);
    return UV_ENOMEM;
  }
  o->rt = rt;
  o->t = t;
  o->op = op;
  o->mode = mode;
  o->bufsize = bufsize;
  o->req.data = o;
  switch (op) {
  case CORIO_FS_OPEN:
    r = uv_fs_open(loop, &o->req, path, open_flags(mode) | arg, 0666, op_cb);
    break;
  case CORIO_FS_STAT: r = uv_fs_stat(loop, &o->req, path, op_cb); break;
  case CORIO_FS_LSTAT: r = uv_fs_lstat(loop, &o->req, path, op_cb); break;
  case CORIO_FS_MKDIR:
    r = uv_fs_mkdir(loop, &o->req, path, arg, op_cb);
    break;
  case CORIO_FS_UNLINK: r = uv_fs_unlink(loop, &o->req, path, op_cb); break;
  case CORIO_FS_RMDIR: r = uv_fs_rmdir(loop, &o->req, path, op_cb); break;
  case CORIO_FS_RENAME:
    r = uv_fs_rename(loop, &o->req, path, path2, op_cb);
    break;
  case CORIO_FS_SCANDIR:
    r = uv_fs_scandir(loop, &o->req, path, 0, op_cb);
    break;
  case CORIO_FS_COPY:
    o->work.data = o;
    r = uv_queue_work(loop, &o->work, copy_work, copy_done);
    break;
  default:
    r = UV_EINVAL;
  }
  if (r != 0) {
    free(o->path);
    free(o->path2);
    free(o);
    return r;
  }
  rt->nexternal++;
  *obj = o;
  return 0;
}

/* The metatable "corio.File" is registered by bindings/fs.c. */
void corio__fs_push_file(lua_State *L, corio_file *f) {
  corio_file_ud *u = (corio_file_ud *)lua_newuserdata(L, sizeof(*u));
  u->magic = CORIO_MAGIC_FILE;
  u->f = f;
  luaL_getmetatable(L, "corio.File");
  lua_setmetatable(L, -2);
}
