-- LuaRocks package for corio: builds the corio.core C module (which holds
-- the whole runtime) and installs the Lua modules, against the system's
-- LuaJIT, libuv and libcurl (Debian: libluajit-5.1-dev libuv1-dev
-- libcurl4-openssl-dev), with CMake.
rockspec_format = "3.0"
package = "corio"
version = "0.1.0-1"
source = {
  url = "git+https://example.invalid/corio.git",
  tag = "v0.1.0",
}
description = {
  summary = "Structured concurrency for LuaJIT: trio-style tasks, scopes and timeouts on libuv",
  detailed = [[
corio maps LuaJIT coroutines onto a libuv event loop: task groups, cancel
scopes, timeouts, gather, semaphores, channels, to_thread, an async HTTP
client on libcurl and async files, with the scheduler in C.
]],
  license = "MIT",
}
dependencies = {
  "lua == 5.1",  -- LuaJIT 2.1
}
-- LuaJIT, libuv and libcurl are found by CMake through pkg-config.
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CORIO_TESTS = "OFF",
    CORIO_LUAROCKS = "ON",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
  },
}
