/*
** cli.c: the corio program. `corio script.lua [args]` runs the chunk as
** the root task; `corio -e 'code'`; `corio test [busted args]` runs busted
** specs inside the runtime (lua/corio/busted.lua); `corio --version`.
** With no script, stdin is run as a script. Errors print their traceback
** on stderr and exit 1; SIGINT cancels the root task and exits 130.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>

#include "../runtime/corio.h"

#ifndef CORIO_BUILD_LUA_DIR
#define CORIO_BUILD_LUA_DIR ""
#endif
#ifndef CORIO_BUILD_CMOD_DIR
#define CORIO_BUILD_CMOD_DIR ""
#endif

static void usage(FILE *f) {
  fprintf(f,
          "usage: corio [options] [script [args]]\n"
          "       corio test [busted options] [spec files or dirs]\n"
          "options:\n"
          "  -e code     run code as the root task (also -ecode)\n"
          "  --debug     report task steps that block the loop (also "
          "CORIO_DEBUG=1)\n"
          "  --version   print the version and exit\n"
          "  -h, --help  this text\n"
          "  --          end of options: the next argument is the script\n"
          "With no script: a REPL on a terminal (each entry runs as a "
          "task),\nelse the program is read from standard input.\n");
}

/* A standard descriptor the caller closed (`corio x.lua >&-`) would be
** taken by the first descriptor the runtime opens (libuv's epoll, its
** wakeup eventfd), and libuv aborts when it closes a descriptor <= 2
** (an assertion in uv__close). Put /dev/null there first, as many
** programs do: print then writes nowhere and succeeds, as under luajit. */
static void open_std_fds(void) {
  int fd;
  for (fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      int nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
      if (nfd >= 0 && nfd != fd) {
        dup2(nfd, fd);
        close(nfd);
      }
    }
  }
}

static int file_exists(const char *p) { return access(p, R_OK) == 0; }

int corio__repl(corio_rt *rt);

/* SIGUSR1 while no run is going (the REPL's prompt, loading a script):
** the runtime's own handler is installed only during a run, and the
** default action would end the program (SPEC §8: it goes on). */
static void on_sigusr1_idle(int signum) {
  static const char msg[] = "corio: no task is running\n";
  ssize_t w = write(2, msg, sizeof(msg) - 1);
  (void)signum;
  (void)w;
}

/* Find corio's Lua modules: next to an installed binary
** (<prefix>/share/lua/5.1), else in the source tree it was built from. */
static void add_module_paths(corio_rt *rt) {
  char exe[PATH_MAX], buf[PATH_MAX * 2 + 64], cbuf[PATH_MAX + 64];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    char *slash;
    exe[n] = 0;
    slash = strrchr(exe, '/');
    if (slash != NULL) {
      *slash = 0;
      snprintf(buf, sizeof(buf), "%s/../share/lua/5.1/corio/init.lua", exe);
      if (file_exists(buf)) {
        snprintf(buf, sizeof(buf),
                 "%s/../share/lua/5.1/?.lua;%s/../share/lua/5.1/?/init.lua",
                 exe, exe);
        snprintf(cbuf, sizeof(cbuf), "%s/../lib/lua/5.1/?.so", exe);
        corio_add_paths(rt, buf, cbuf);
        return;
      }
    }
  }
  snprintf(buf, sizeof(buf), "%s/?.lua;%s/?/init.lua", CORIO_BUILD_LUA_DIR,
           CORIO_BUILD_LUA_DIR);
  snprintf(cbuf, sizeof(cbuf), "%s/?.so", CORIO_BUILD_CMOD_DIR);
  corio_add_paths(rt, buf, cbuf);
}

/* arg table as luajit makes it: arg[0] the script, arg[1..] its args,
** negative indices the interpreter and options; with no script (script
** == argc), arg[0] is nil and everything is negative. */
static void set_arg(lua_State *L, char **argv, int argc, int script) {
  int i;
  lua_createtable(L, argc - script - 1 > 0 ? argc - script - 1 : 0,
                  script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* After the message of a failed run (which holds the first error's
** traceback and only the messages of the others), the tracebacks of the
** other errors of a multi-error on top of L: every failing task's, as
** SPEC §5 asks ("its traceback(s)"). Used by the REPL too. */
void corio__report_more(lua_State *L, const char *prefix) {
  int n, i, top = lua_gettop(L);
  if (top == 0 || !lua_istable(L, -1) || !lua_getmetatable(L, -1)) return;
  lua_pop(L, 1);
  lua_getfield(L, top, "errors");
  n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
  for (i = 2; i <= n; i++) {
    const char *tb = NULL;
    lua_rawgeti(L, top + 1, i);
    if (lua_istable(L, -1)) {   /* a corio error: its message, its own trace */
      lua_getfield(L, -1, "traceback");
      tb = lua_isstring(L, -1) && lua_objlen(L, -1) > 0 ? lua_tostring(L, -1)
                                                        : NULL;
      lua_getfield(L, -2, "message");
      if (!lua_isstring(L, -1)) lua_pop(L, 1);
    }
    if (!lua_isstring(L, -1)) {
      lua_getglobal(L, "tostring");
      lua_pushvalue(L, top + 2);
      if (lua_pcall(L, 1, 1, 0) != 0 || !lua_isstring(L, -1)) {
        lua_settop(L, top + 1);
        continue;
      }
    }
    fprintf(stderr, "%serror %d of %d: %s%s%s\n", prefix, i, n,
            lua_tostring(L, -1), tb ? "\n" : "", tb ? tb : "");
    lua_settop(L, top + 1);
  }
  lua_settop(L, top);
}

/* Print the error left on the stack by a failed run and pick the exit
** status: 130 after SIGINT, else 1. */
static int report(corio_rt *rt, int r) {
  if (r == CORIO_EINTR_RUN) {
    fprintf(stderr, "corio: interrupted\n");
    return 130;
  }
  fprintf(stderr, "corio: %s\n", corio_errmsg(rt));
  corio__report_more(corio_lua(rt), "corio: ");
  return 1;
}

static int run_test(corio_rt *rt, int argc, char **argv, int first) {
  lua_State *L = corio_lua(rt);
  int status, i;
  set_arg(L, argv, argc, first - 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio.busted");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "corio test: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_getfield(L, -1, "run");
  lua_newtable(L);
  for (i = first; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - first + 1);
  }
  if (lua_pcall(L, 1, 1, 0) != 0) {
    lua_getglobal(L, "tostring");
    lua_insert(L, -2);
    lua_pcall(L, 1, 1, 0);
    fprintf(stderr, "corio test: %s\n", lua_tostring(L, -1));
    return 1;
  }
  status = (int)lua_tointeger(L, -1);
  return status;
}

int main(int argc, char **argv) {
  corio_options opts;
  corio_rt *rt;
  lua_State *L;
  int i, r, status = 0, script = 0, dashdash = 0;
  const char *code = NULL;

  open_std_fds();
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-v") == 0) {
      printf("corio %s (%s)\n", CORIO_VERSION, LUAJIT_VERSION);
      return 0;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--debug") == 0) {
      setenv("CORIO_DEBUG", "1", 1);
    } else if (strcmp(argv[i], "-e") == 0) {
      if (i + 1 >= argc) {
        usage(stderr);
        return 2;
      }
      code = argv[++i];
    } else if (strncmp(argv[i], "-e", 2) == 0) {
      code = argv[i] + 2;   /* -ecode, as lua and luajit take it */
    } else if (strcmp(argv[i], "--") == 0) {
      script = i + 1 < argc ? i + 1 : 0;
      dashdash = 1;   /* what follows is a script, even one named test */
      break;
    } else if (argv[i][0] == '-' && argv[i][1] != 0) {
      fprintf(stderr, "corio: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    } else {
      script = i;
      break;
    }
  }

  {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigusr1_idle;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
  }
  memset(&opts, 0, sizeof(opts));
  opts.handle_signals = 1;
  rt = corio_new(&opts);
  if (rt == NULL) {
    fprintf(stderr, "corio: cannot create the runtime\n");
    return 1;
  }
  L = corio_lua(rt);
  add_module_paths(rt);
  if (getenv("CORIO_GC_STRESS") != NULL && *getenv("CORIO_GC_STRESS") != '0') {
    /* Collect all the time, so that a value C forgot to pin is freed (and
    ** the sanitizer sees the use after free) now rather than later. */
    lua_gc(L, LUA_GCSETPAUSE, 0);
    lua_gc(L, LUA_GCSETSTEPMUL, 1000);
  }

  if (script && !dashdash && strcmp(argv[script], "test") == 0 &&
      code == NULL) {
    status = run_test(rt, argc, argv, script + 1);
    corio_free(rt);
    return status;
  }

  corio_set_cli(rt, 1);
  if (code != NULL) {
    /* as luajit: each -e code runs in order (a run each), and sees the
    ** script's arg table (`corio -e code script args`: code runs, then
    ** the script) */
    int end = script ? script : argc;
    set_arg(L, argv, argc, end);
    /* as at the REPL, a one-liner finds `corio` loaded as a global */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "corio");
    if (lua_pcall(L, 1, 1, 0) != 0) {
      fprintf(stderr, "corio: %s\n", lua_tostring(L, -1));
      corio_free(rt);
      return 1;
    }
    lua_setglobal(L, "corio");
    for (i = 1; i < end && status == 0; i++) {
      const char *c;
      if (strcmp(argv[i], "-e") == 0) c = argv[++i];
      else if (strncmp(argv[i], "-e", 2) == 0) c = argv[i] + 2;
      else continue;
      r = corio_run_string(rt, c, "=(command line)");
      if (r != 0) status = report(rt, r);
      lua_settop(L, 0);
    }
    if (status != 0 || !script) {
      corio_free(rt);
      return status;
    }
  }
  if (script) {
    set_arg(L, argv, argc, script);
    /* "-" is standard input, as for luajit */
    if (luaL_loadfile(L, strcmp(argv[script], "-") == 0 ? NULL
                                                        : argv[script]) != 0) {
      fprintf(stderr, "corio: %s\n", lua_tostring(L, -1));
      corio_free(rt);
      return 1;
    }
  } else if (code == NULL && isatty(0)) {
    set_arg(L, argv, argc, argc);   /* no script: no arg[0] */
    status = corio__repl(rt);
    corio_free(rt);
    return status;
  } else if (code == NULL) {
    set_arg(L, argv, argc, argc);   /* no script: no arg[0], as luajit */
    if (luaL_loadfile(L, NULL) != 0) {  /* stdin */
      fprintf(stderr, "corio: %s\n", lua_tostring(L, -1));
      corio_free(rt);
      return 1;
    }
  }
  {
    int nargs = 0;
    if (script) {
      for (i = script + 1; i < argc; i++, nargs++)
        lua_pushstring(L, argv[i]);
    }
    r = corio_run_function(rt, nargs, 0);
    if (r != 0) status = report(rt, r);
  }
  corio_free(rt);
  return status;
}
