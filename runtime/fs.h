/*
** fs.h: the file object and fs requests of runtime/fs.c, shared with
** bindings/fs.c. Internal, like internal.h.
*/
#ifndef CORIO_FS_H
#define CORIO_FS_H

#include "internal.h"

#define CORIO_MAGIC_FILE 0x7a46494c
#define CORIO_FS_BUFSIZE 65536      /* default read and write buffer */
#define CORIO_FS_MAXREQ (4 << 20)   /* largest single read request */
/* Room kept in front of a read-ahead buffer: the unread tail (a partial
** line) of the buffer being consumed is copied there when they swap. */
#define CORIO_FS_HEADROOM 16384
/* Read buffers start on this boundary (and reads land on it): the
** kernel copies page-cache bytes to a destination misaligned by 16 bytes
** at a third of the speed (measured: 1.4 against 5-7 GiB/s). */
#define CORIO_FS_ALIGN 64
/* Chunks from this size on make the state allocate big blocks with
** malloc (corio__big_blocks, api.c). */
#define CORIO_FS_BIGSTR (128 << 10)
/* Writes in the background go out in write(2)s of at most this: a 1 MiB
** write into new page cache after the machine idled a few seconds ran at
** a quarter of the speed of 256 KiB ones (large folios; measured). */
#define CORIO_FS_WPIECE (256 << 10)

enum { /* corio_file->mode */
  CORIO_FS_READ = 1, CORIO_FS_WRITE = 2, CORIO_FS_APPEND = 4
};

enum { /* what a file's request is doing */
  CORIO_FOP_NONE, CORIO_FOP_READ, CORIO_FOP_WRITE, CORIO_FOP_CLOSE_WRITE,
  CORIO_FOP_CLOSE,
  CORIO_FOP_BEHIND,     /* write-behind of bseg; no task waits unless t */
  CORIO_FOP_AHEAD       /* read-ahead into abuf; no task waits unless t */
};

/* A buffered file. The Lua userdata holds a pointer to it (as luv does):
** the request may still run on the thread pool when Lua drops the
** userdata, so only the request's completion may free it then. Reads and
** writes go through the kernel's file position (offset -1), as stdio
** does, so pipes and character devices work; one request at a time. */
typedef struct corio_file {
  uv_fs_t req;          /* the request in flight while op != NONE */
  corio_rt *rt;
  corio_task *t;        /* task waiting for req, or NULL */
  char *path;           /* for error messages (malloc'd) */
  uv_file fd;           /* -1 once closed */
  int mode;             /* CORIO_FS_* */
  int op;               /* CORIO_FOP_* in flight */
  int err;              /* first error of the request in flight, or 0 */
  const char *errop;    /* the operation that failed ("read", "write") */
  int orphan;           /* the userdata was collected while op != NONE */
  int eof;              /* a read returned 0; cleared by seek and write */
  int closed;           /* close() was called: methods raise "closed" */
  char *rbuf;           /* unread bytes are rbuf[rpos, rlen) */
  size_t rcap, rpos, rlen, rdef;
  size_t want;          /* bytes the read that asked for a fill needs */
  size_t asize;         /* size of the next read-ahead (0: rdef) */
  char *wbuf;           /* bytes not yet written: wbuf[woff, wlen) */
  size_t wcap, wlen, woff, wdef;
  /* Write-behind (write-only files): a full write buffer is swapped
  ** with bbuf and written in the background while the task fills the
  ** other; its error is raised by the next write that must wait, flush
  ** or close. A string at least as long as the buffer is written
  ** straight from the Lua string (after the buffered bytes, in the same
  ** request): bref pins it in the runtime's refs until the write ends,
  ** even if the file is collected meanwhile. */
  char *bbuf;           /* the buffer swapped out of wbuf */
  size_t bcap;
  uv_work_t work;       /* the write-behind runs as thread-pool work */
  ssize_t wres;         /* its result: 0 or a negative errno */
  uv_buf_t bseg[2];     /* what it writes: bbuf's bytes, then a string */
  unsigned nseg;
  int bref;             /* corio__ref of the string in bseg, or 0 */
  /* One more string may queue behind the write-behind in flight (a
  ** write-only file with nothing buffered): the pool thread goes on with
  ** it without a round trip through the loop. Under qlock: */
  uv_mutex_t qlock;
  int qinit;            /* qlock was initialised */
  int brun;             /* the pool thread still takes queued strings */
  const char *qs;       /* the queued string, qn bytes, pinned by qref */
  size_t qn;
  int qref;             /* 0: nothing queued */
  int dref;             /* ref of a string written (the worker went on) */
  int drop_close;       /* closed while a request ran: close when it ends */
  /* Read-ahead (read-only files): while lines are taken from rbuf, the
  ** next bytes are read into abuf[HEADROOM, ...) in the background; the
  ** next fill swaps the buffers (the unread tail goes into the headroom)
  ** without waiting. The file owns the request: close waits for it, a
  ** collected file is freed when it completes. Its error is kept in aerr
  ** and raised by the fill that needs those bytes. */
  char *abuf;
  size_t acap, alen;    /* alen bytes at abuf + HEADROOM */
  int aready;           /* the read-ahead completed: alen/aeof/aerr valid */
  int aeof;             /* it read 0 bytes */
  int aerr;             /* it failed: a negative UV_E* */
  int noahead;          /* not a regular file (FIFO, tty...): no read-ahead */
  /* Files open for writing are on a process-wide list, so that a process
  ** ending with exit() (os.exit) writes their buffers out, as C's stdio
  ** flushes its streams at exit (runtime/fs.c, exit_flush). */
  struct corio_file *xprev, *xnext;
  uv_thread_t owner;    /* the thread of the file's loop */
  int listed;
} corio_file;

typedef struct corio_file_ud {
  uint32_t magic;       /* CORIO_MAGIC_FILE */
  corio_file *f;
} corio_file_ud;

/* Operations of corio__fs_op (path requests). */
enum {
  CORIO_FS_OPEN, CORIO_FS_STAT, CORIO_FS_LSTAT, CORIO_FS_MKDIR,
  CORIO_FS_UNLINK, CORIO_FS_RMDIR, CORIO_FS_RENAME, CORIO_FS_SCANDIR,
  CORIO_FS_COPY
};

corio_file *corio__fs_file_new(corio_rt *rt, const char *path, int mode,
                               size_t bufsize);
/* The userdata was collected: close now if idle, else when the request
** completes. Synchronous on the loop thread (a finaliser cannot wait). */
void corio__fs_file_gc(corio_file *f);
/* Submit a request on f for task t (which then suspends with
** corio__fs_abort). 0, or a negative UV_E* (nothing was submitted). */
int corio__fs_fill(corio_file *f, corio_task *t);
/* A completed read-ahead (f->aready) becomes the read buffer and the
** next one starts; no task waits. 0, or its negative UV_E* error. */
int corio__fs_take_ahead(corio_file *f);
/* Forget a completed read-ahead (seek, close). */
void corio__fs_drop_ahead(corio_file *f);
int corio__fs_flush(corio_file *f, corio_task *t);
/* Start writing the full write buffer in the background (no task waits).
** Only when f->op is NONE and the file is write-only. */
int corio__fs_behind(corio_file *f);
/* Write the buffered bytes, then s[0, n), in the background (no task
** waits), straight from s: ref is the corio__ref that keeps s alive, and
** is released when the write ends (on failure here, the caller still
** owns it). Only when f->op is NONE. 0 or a negative UV_E*. */
int corio__fs_direct(corio_file *f, const char *s, size_t n, int ref);
/* While a write-behind runs (f->op BEHIND): queue s[0, n) (pinned by ref)
** behind it, on a write-only file with nothing buffered. 1 if queued, and
** *done is then 0 or the ref of a string already written, for the caller
** to release; 0 if not (the caller waits and still owns ref). */
int corio__fs_queue(corio_file *f, const char *s, size_t n, int ref,
                    int *done);
int corio__fs_close(corio_file *f, corio_task *t);
/* Close without waiting (a cancelled close): unwritten data is dropped. */
void corio__fs_close_now(corio_file *f);
/* Append n bytes to f's write buffer. 0 or UV_ENOMEM. */
int corio__fs_append(corio_file *f, const char *s, size_t n);
/* The abort hook of every fs suspension: a submitted request cannot be
** undone, so it returns 0 (SPEC rule 7). */
int corio__fs_abort(corio_rt *rt, corio_task *t);
/* Start a path request; path2 for rename/copy, arg for mkdir's mode or
** open's flags. On success *obj is what the task waits on. */
int corio__fs_op(corio_rt *rt, corio_task *t, int op, const char *path,
                 const char *path2, int arg, int mode, size_t bufsize,
                 void **obj);
/* [-0, +1] an fs error: kind "fs", op, path, code, errno, message. */
void corio__fs_push_error(lua_State *L, const char *op, const char *path,
                          int code);
/* [-0, +1] push a new file userdata for f (metatable "corio.File"). */
void corio__fs_push_file(lua_State *L, corio_file *f);

/* bindings/fs.c: the fast paths for LuaJIT's FFI (see there). */
int corio__fs_ffi_line(corio_file_ud *u, const char **p, size_t *n,
                       int keep);
int corio__fs_ffi_put(corio_file_ud *u, const char *s, size_t n);
int corio__fs_ffi_put2(corio_file_ud *u, const char *a, size_t na,
                       const char *b, size_t nb);

#endif
