/*
** channel.c: channels for Lua. A ring buffer of `cap` values lives in the
** userdata's environment table (slots 1..cap); a blocked sender keeps its
** value in an anchor ref until a receiver takes it. A receiver arriving at
** an empty channel with a blocked sender (capacity 0) takes the value
** straight from it; a sender finding a blocked receiver hands the value
** over directly. A cancelled sender delivers nothing; a cancelled receiver
** loses nothing (rule 7): values move only into tasks that are woken.
*/
#include <string.h>

#include "bindings.h"

static corio_channel *check_ch(lua_State *L) {
  return CORIO_CHECK(L, 1, corio_channel, CORIO_MAGIC_CHANNEL,
                     "corio.Channel");
}

static int l_ch_new(lua_State *L) {
  corio_channel *c;
  double cap = 0;
  if (!lua_isnoneornil(L, 1)) {
    if (lua_type(L, 1) != LUA_TNUMBER)
      return corio__argerror(L, 1, 1, "channel",
                             lua_pushfstring(L, "number expected, got %s",
                                             luaL_typename(L, 1)));
    cap = lua_tonumber(L, 1);
    /* range first: casting a double out of range is undefined. A finite
    ** capacity of UINT32_MAX or more would be taken for math.huge (the
    ** unbounded channel's sentinel): 2^32 - 1 made an unbounded channel. */
    if (cap == HUGE_VAL) cap = (double)UINT32_MAX;
    else if (!(cap >= 0) || cap >= (double)UINT32_MAX || cap != floor(cap))
      return corio__argerror(L, 1, 1, "channel",
                             lua_pushfstring(L, "capacity must be a "
                                             "non-negative integer below "
                                             "2^32 - 1 or math.huge, got %s",
                                             lua_tostring(L, 1)));
  }
  c = (corio_channel *)lua_newuserdata(L, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->magic = CORIO_MAGIC_CHANNEL;
  c->rt = RT(L);
  c->cap = (uint32_t)cap;
  corio_list_init(&c->recvq);
  corio_list_init(&c->sendq);
  luaL_getmetatable(L, "corio.Channel");
  lua_setmetatable(L, -2);
  lua_createtable(L, c->cap < 64 ? (int)c->cap : 64, 0);
  lua_setfenv(L, -2);
  return 1;
}

/* [-0, +1] push the closed error */
static void push_closed(lua_State *L, const char *what) {
  corio__push_error(L, "closed", what);
}

/* Buffer ops on the env table at index b. */
static void buf_push(lua_State *L, corio_channel *c, int b, int v) {
  uint32_t i = (uint32_t)(((uint64_t)c->head + c->n) % c->cap);
  lua_pushvalue(L, v);
  /* slot i + 1 as an int, computed unsigned: past 2^31 - 1 (an unbounded
  ** channel after 2^31 values) (int)i + 1 overflowed; the conversion
  ** wraps, the same way here and in buf_pop */
  lua_rawseti(L, b, (int)(i + 1));
  c->n++;
}

static void buf_pop(lua_State *L, corio_channel *c, int b) {
  lua_rawgeti(L, b, (int)(c->head + 1));
  lua_pushnil(L);
  lua_rawseti(L, b, (int)(c->head + 1));
  c->head = c->head + 1 == c->cap ? 0 : c->head + 1;
  c->n--;
}

/* A blocked sender keeps its value on its own suspended thread (it
** yielded it, see corio__suspend_keep): the value needs no ref, and
** whoever wakes the sender clears it. */

/* Take the value of the oldest blocked sender (pushed on L) and wake it. */
static int take_sender(corio_rt *rt, lua_State *L, corio_channel *c) {
  corio_task *s = corio__wq_shift(&c->sendq);
  if (s == NULL) return 0;
  lua_pushvalue(s->co, 1);
  lua_xmove(s->co, L, 1);
  lua_settop(s->co, 0);
  corio__ready(rt, s, corio__deliver_true);
  return 1;
}

static int abort_send(corio_rt *rt, corio_task *t) {
  (void)rt;
  corio_list_remove(&t->u.wait);
  if (t->state == CORIO_ST_BLOCKED) lua_settop(t->co, 0);  /* undelivered */
  return 1;
}

/* Deliver the value at index 2 without blocking: to the oldest waiting
** receiver, else into the buffer. Returns 0 if the channel is full. */
static int offer(corio_rt *rt, lua_State *L, corio_channel *c) {
  corio_task *r = corio__wq_shift(&c->recvq);
  if (r != NULL) {
    lua_pushboolean(r->co, 1);
    lua_pushvalue(L, 2);
    lua_xmove(L, r->co, 1);
    corio__ready(rt, r, NULL);
    return 1;
  }
  if (c->n < c->cap) {
    lua_getfenv(L, 1);
    buf_push(L, c, lua_gettop(L), 2);
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

/* send(ch, v) -> true | false, err */
static int l_ch_send(lua_State *L) {
  corio_channel *c = check_ch(L);
  corio_rt *rt = c->rt;
  corio_task *t;
  int n;
  if (lua_isnoneornil(L, 2))
    return corio__argerror(L, 2, 1, "send", "nil cannot be sent on a "
                           "channel (a receiver could not tell it from the "
                           "end of the channel)");
  n = corio__enter(L, rt, &t, "send");
  if (n != CORIO_GO) return n;
  if (c->closed) {
    lua_pushboolean(L, 0);
    push_closed(L, "channel:send(): the channel is closed");
    return 2;
  }
  if (!offer(rt, L, c)) {
    corio_list_push(&c->sendq, &t->u.wait);
    lua_pushvalue(L, 2);
    return corio__suspend_keep(rt, L, t, abort_send, "channel send", c, 1);
  }
  lua_pushboolean(L, 1);
  return corio__fast(rt, L, t, 1);
}

/* recv(ch) -> true, v | true, nil, "closed" | false, err */
static int l_ch_recv(lua_State *L) {
  corio_channel *c = check_ch(L);
  corio_rt *rt = c->rt;
  corio_task *t;
  int n;
  n = corio__enter(L, rt, &t, "recv");
  if (n != CORIO_GO) return n;
  lua_pushboolean(L, 1);
  if (c->n > 0) {
    lua_getfenv(L, 1);
    buf_pop(L, c, 3);                 /* [ch true env v] */
    if (take_sender(rt, L, c)) {      /* refill from the oldest sender */
      buf_push(L, c, 3, -1);
      lua_pop(L, 1);
    }
    lua_remove(L, 3);
    return corio__fast(rt, L, t, 2);
  }
  if (take_sender(rt, L, c)) return corio__fast(rt, L, t, 2);
  if (c->closed) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return corio__fast(rt, L, t, 3);
  }
  lua_pop(L, 1);
  corio_list_push(&c->recvq, &t->u.wait);
  return corio__suspend(rt, L, t, corio__abort_wait, "channel recv", c);
}

static int l_ch_try_send(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_channel *c = check_ch(L);
  if (lua_isnoneornil(L, 2))
    return corio__argerror(L, 1, 1, "try_send", "nil cannot be sent on a "
                           "channel");
  lua_settop(L, 2);
  if (c->closed) {
    luaL_where(L, 1);
    push_closed(L, "channel:try_send(): the channel is closed");
    lua_getfield(L, -1, "message");
    lua_pushvalue(L, -3);
    lua_insert(L, -2);
    lua_concat(L, 2);
    lua_setfield(L, -2, "message");
    return lua_error(L);
  }
  lua_pushboolean(L, offer(rt, L, c));
  return 1;
}

static int l_ch_try_recv(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_channel *c = check_ch(L);
  lua_settop(L, 1);
  lua_pushboolean(L, 1);
  if (c->n > 0) {
    lua_getfenv(L, 1);
    buf_pop(L, c, 3);
    if (take_sender(rt, L, c)) {
      buf_push(L, c, 3, -1);
      lua_pop(L, 1);
    }
    lua_remove(L, 3);
    return 2;
  }
  if (take_sender(rt, L, c)) return 2;
  lua_pop(L, 1);
  lua_pushboolean(L, 0);
  if (c->closed) {
    lua_pushliteral(L, "closed");
    return 2;
  }
  return 1;
}

/* close(ch): receivers waiting get nil, "closed"; senders waiting get the
** "closed" error and their values are dropped. Buffered values stay for
** later receivers. Closing twice is harmless. */
static int l_ch_close(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_channel *c = check_ch(L);
  corio_task *t;
  if (c->closed) return 0;
  c->closed = 1;
  while ((t = corio__wq_shift(&c->recvq)) != NULL) {
    /* made here and moved: an allocation on the suspended thread can run
    ** a __gc finaliser there, which wrecks it if it raises */
    lua_pushboolean(L, 1);
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    lua_xmove(L, t->co, 3);
    corio__ready(rt, t, NULL);
  }
  while ((t = corio__wq_shift(&c->sendq)) != NULL) {
    lua_settop(t->co, 0);  /* its value is not delivered */
    lua_pushboolean(t->co, 0);
    push_closed(L, "channel:send(): the channel was closed while the send "
                   "waited");
    lua_xmove(L, t->co, 1);
    corio__ready(rt, t, NULL);
  }
  return 0;
}

static int l_ch_index(lua_State *L) {
  corio_channel *c = check_ch(L);
  const char *k = lua_tostring(L, 2);
  if (k != NULL) {
    if (strcmp(k, "closed") == 0) {
      lua_pushboolean(L, c->closed);
      return 1;
    }
    if (strcmp(k, "capacity") == 0) {
      lua_pushnumber(L, c->cap == UINT32_MAX ? HUGE_VAL : c->cap);
      return 1;
    }
  }
  return corio__method(L);
}

static int l_ch_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_ch(L)->n);
  return 1;
}

static int l_ch_tostring(lua_State *L) {
  corio_channel *c = check_ch(L);
  /* as numbers (%f is %.14g): an int showed a capacity of 2^31 or more
  ** as negative */
  if (c->cap == UINT32_MAX)
    lua_pushfstring(L, "corio.Channel(%f/inf%s)", (lua_Number)c->n,
                    c->closed ? ", closed" : "");
  else
    lua_pushfstring(L, "corio.Channel(%f/%f%s)", (lua_Number)c->n,
                    (lua_Number)c->cap, c->closed ? ", closed" : "");
  return 1;
}

int luaopen_corio_channel(lua_State *L) {
  static const corio_reg methods[] = {
      {"send", l_ch_send},         {"recv", l_ch_recv},
      {"try_send", l_ch_try_send}, {"try_recv", l_ch_try_recv},
      {"close", l_ch_close},       {NULL, NULL}};
  static const corio_reg metam[] = {{"__index", l_ch_index},
                                    {"__len", l_ch_len},
                                    {"__tostring", l_ch_tostring},
                                    {NULL, NULL}};
  corio_rt *rt = corio__rt(L);
  luaL_newmetatable(L, "corio.Channel");
  corio__register(L, rt, -1, metam);
  lua_newtable(L);
  corio__register(L, rt, -1, methods);
  lua_setfield(L, -2, "methods");
  lua_pushliteral(L, "corio");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, l_ch_new, 1);
  return 1;
}
