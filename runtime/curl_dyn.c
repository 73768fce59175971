/*
** curl_dyn.c: loading libcurl on first use (see curl_dyn.h).
*/
#define CORIO_CURL_DYN_IMPL
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_dyn.h"

corio_curl_api corio__curl;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_status = -1;
static char load_err[256];

/* The soname Debian's libcurl4 (OpenSSL flavour) installs, then the
** GnuTLS flavour's, then the development symlink. CORIO_LIBCURL, when
** set, names the one library to load instead. */
static const char *const libnames[] = {"libcurl.so.4", "libcurl-gnutls.so.4",
                                       "libcurl.so", NULL};

#define SYM(field, name) {(void **)&corio__curl.field, name}

static void load(void) {
  const struct {
    void **slot;
    const char *name;
  } syms[] = {
      SYM(global_init, "curl_global_init"),
      SYM(easy_init, "curl_easy_init"),
      SYM(easy_setopt, "curl_easy_setopt"),
      SYM(easy_getinfo, "curl_easy_getinfo"),
      SYM(easy_reset, "curl_easy_reset"),
      SYM(easy_pause, "curl_easy_pause"),
      SYM(easy_cleanup, "curl_easy_cleanup"),
      SYM(easy_strerror, "curl_easy_strerror"),
      SYM(multi_init, "curl_multi_init"),
      SYM(multi_setopt, "curl_multi_setopt"),
      SYM(multi_add_handle, "curl_multi_add_handle"),
      SYM(multi_remove_handle, "curl_multi_remove_handle"),
      SYM(multi_assign, "curl_multi_assign"),
      SYM(multi_cleanup, "curl_multi_cleanup"),
      SYM(multi_info_read, "curl_multi_info_read"),
      SYM(multi_socket_action, "curl_multi_socket_action"),
      SYM(multi_strerror, "curl_multi_strerror"),
      SYM(slist_append, "curl_slist_append"),
      SYM(slist_free_all, "curl_slist_free_all"),
      SYM(version_info, "curl_version_info"),
  };
  void *lib = NULL;
  const char *first_err = NULL, *only = getenv("CORIO_LIBCURL");
  size_t i;
  char first[200] = "";
  for (i = 0; lib == NULL; i++) {
    const char *name = only != NULL && *only ? (i == 0 ? only : NULL)
                                             : libnames[i];
    if (name == NULL) break;
    lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL && first_err == NULL && (first_err = dlerror()) != NULL)
      snprintf(first, sizeof(first), "%s", first_err);
  }
  if (lib == NULL) {
    snprintf(load_err, sizeof(load_err),
             "cannot load libcurl (%s); install the libcurl4 package",
             first[0] ? first : "not found");
    return;
  }
  for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
    *syms[i].slot = dlsym(lib, syms[i].name);
    if (*syms[i].slot == NULL) {
      snprintf(load_err, sizeof(load_err),
               "libcurl has no function %s (too old a libcurl?)",
               syms[i].name);
      return;
    }
  }
  /* The library stays loaded for the life of the process. */
  load_status = 0;
}

int corio__curl_load(char *err, size_t errlen) {
  pthread_once(&once, load);
  if (load_status != 0 && err != NULL && errlen > 0)
    snprintf(err, errlen, "%s", load_err);
  return load_status;
}
