/*
** repl.c: the interactive prompt of the corio program (`corio` on a
** terminal). Each entry runs as its own root task, so corio.sleep or an
** HTTP call works at the prompt; `= expr` and bare expressions print
** their values as luajit's REPL does. Ctrl-C cancels the running entry
** (its cleanup runs), not the REPL; Ctrl-D exits. Line editing and
** history come from libedit when it was found at build time.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <luajit.h>

#include "../runtime/corio.h"

void corio__report_more(lua_State *L, const char *prefix);  /* cli.c */

#ifdef CORIO_HAVE_LIBEDIT
#include <editline/readline.h>
#else
static char *readline(const char *prompt) {
  char buf[4096];
  size_t n;
  fputs(prompt, stdout);
  fflush(stdout);
  if (fgets(buf, sizeof(buf), stdin) == NULL) return NULL;
  n = strlen(buf);
  if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
  return strdup(buf);
}
static void add_history(const char *line) { (void)line; }
#endif

/* Is the load error on top of L an unfinished chunk (more lines due)? */
static int incomplete(lua_State *L) {
  size_t n;
  const char *msg = lua_tolstring(L, -1, &n);
  static const char eof[] = "'<eof>'";
  return msg != NULL && n >= sizeof(eof) - 1 &&
         strcmp(msg + n - (sizeof(eof) - 1), eof) == 0;
}

/* Compile the entry: as an expression first (so `1 + 1` prints), then as
** statements. Returns 0 with the chunk pushed, 1 if more lines are
** needed, -1 with the error message pushed. */
static int compile(lua_State *L, const char *src) {
  const char *code = src[0] == '=' ? src + 1 : src;
  lua_pushfstring(L, "return %s", code);
  if (luaL_loadbuffer(L, lua_tostring(L, -1), lua_objlen(L, -1),
                      "=stdin") == 0) {
    lua_remove(L, -2);
    return 0;
  }
  if (src[0] == '=' && incomplete(L)) {
    /* `= expr` cut at a line end: more lines, as luajit's prompt */
    lua_pop(L, 2);
    return 1;
  }
  lua_pop(L, 2);
  if (src[0] == '=') code = src;  /* not an expression after all */
  if (luaL_loadbuffer(L, code, strlen(code), "=stdin") == 0) return 0;
  if (incomplete(L)) {
    lua_pop(L, 1);
    return 1;
  }
  return -1;
}

static void print_results(lua_State *L, int base) {
  int n = lua_gettop(L) - base, i;
  if (n <= 0) return;
  for (i = 1; i <= n; i++) {
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, base + i);
    if (lua_pcall(L, 1, 1, 0) != 0) lua_pushliteral(L, "?");
    fputs(lua_tostring(L, -1) ? lua_tostring(L, -1) : "?", stdout);
    fputs(i < n ? "\t" : "\n", stdout);
    lua_pop(L, 1);
  }
  fflush(stdout);
}

int corio__repl(corio_rt *rt) {
  lua_State *L = corio_lua(rt);
  luaL_Buffer b;
  char *line;
  int pending = 0;

  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "corio: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_setglobal(L, "corio");
  printf("corio %s (%s) -- each entry runs as a task; `corio` is loaded; "
         "Ctrl-D exits\n", CORIO_VERSION, LUAJIT_VERSION);
  /* At the prompt Ctrl-C does nothing; while an entry runs it cancels it
  ** (the runtime's own SIGINT watcher). */
  signal(SIGINT, SIG_IGN);
  for (;;) {
    int base, r;
    line = readline(pending ? ">> " : "> ");
    if (line == NULL) break;
    if (line[0] != 0) add_history(line);
    if (!pending) {
      lua_settop(L, 0);
      luaL_buffinit(L, &b);
    } else {
      luaL_addchar(&b, '\n');
    }
    luaL_addstring(&b, line);
    free(line);
    luaL_pushresult(&b);
    r = compile(L, lua_tostring(L, -1));
    if (r == 1) {            /* keep the text: reopen the buffer with it */
      const char *text = lua_tostring(L, -1);
      lua_settop(L, 0);
      luaL_buffinit(L, &b);
      luaL_addstring(&b, text);
      pending = 1;
      continue;
    }
    pending = 0;
    if (r < 0) {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      lua_settop(L, 0);
      continue;
    }
    lua_remove(L, -2);       /* the source text */
    base = lua_gettop(L) - 1;
    r = corio_run_function(rt, 0, LUA_MULTRET);
    if (r == 0) print_results(L, base);
    else if (r == CORIO_EINTR_RUN) fprintf(stderr, "interrupted\n");
    else {
      fprintf(stderr, "%s\n", corio_errmsg(rt));
      corio__report_more(L, "");
    }
    signal(SIGINT, SIG_IGN);
    lua_settop(L, 0);
  }
  putchar('\n');
  return 0;
}
