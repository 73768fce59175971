/*
** curl_dyn.h: libcurl, loaded when the first HTTP client is made.
**
** Linking libcurl pulls about thirty shared libraries (TLS, Kerberos,
** LDAP, SSH...) into every corio process, and resolving their symbols was
** four fifths of corio's start-up. So nothing links it: http.c includes
** this header instead of <curl/curl.h>, and the curl_* names it calls
** become calls through a table that corio__curl_load fills with dlopen and
** dlsym, once per process. Every curl function http.c uses must be listed
** here; one that is not fails the build at link time.
*/
#ifndef CORIO_CURL_DYN_H
#define CORIO_CURL_DYN_H

#include <stddef.h>
#include <curl/curl.h>

typedef struct corio_curl_api {
  CURLcode (*global_init)(long flags);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
  CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
  void (*easy_reset)(CURL *curl);
  CURLcode (*easy_pause)(CURL *curl, int bitmask);
  void (*easy_cleanup)(CURL *curl);
  const char *(*easy_strerror)(CURLcode code);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_setopt)(CURLM *multi, CURLMoption option, ...);
  CURLMcode (*multi_add_handle)(CURLM *multi, CURL *curl);
  CURLMcode (*multi_remove_handle)(CURLM *multi, CURL *curl);
  CURLMcode (*multi_assign)(CURLM *multi, curl_socket_t s, void *sockp);
  CURLMcode (*multi_cleanup)(CURLM *multi);
  CURLMsg *(*multi_info_read)(CURLM *multi, int *msgs_in_queue);
  CURLMcode (*multi_socket_action)(CURLM *multi, curl_socket_t s,
                                   int ev_bitmask, int *running);
  const char *(*multi_strerror)(CURLMcode code);
  struct curl_slist *(*slist_append)(struct curl_slist *list,
                                     const char *s);
  void (*slist_free_all)(struct curl_slist *list);
  curl_version_info_data *(*version_info)(CURLversion age);
} corio_curl_api;

extern corio_curl_api corio__curl;

/* Load libcurl (libcurl.so.4) and resolve every function above; safe to
** call from any thread, any number of times. 0 on success; otherwise -1
** with a message naming the library or the missing symbol in err. */
int corio__curl_load(char *err, size_t errlen);

/* curl.h may define some of these as type-checking macros (GCC). */
#undef curl_global_init
#undef curl_easy_init
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_easy_reset
#undef curl_easy_pause
#undef curl_easy_cleanup
#undef curl_easy_strerror
#undef curl_multi_init
#undef curl_multi_setopt
#undef curl_multi_add_handle
#undef curl_multi_remove_handle
#undef curl_multi_assign
#undef curl_multi_cleanup
#undef curl_multi_info_read
#undef curl_multi_socket_action
#undef curl_multi_strerror
#undef curl_slist_append
#undef curl_slist_free_all
#undef curl_version_info

#ifndef CORIO_CURL_DYN_IMPL
#define curl_global_init (*corio__curl.global_init)
#define curl_easy_init (*corio__curl.easy_init)
#define curl_easy_setopt (*corio__curl.easy_setopt)
#define curl_easy_getinfo (*corio__curl.easy_getinfo)
#define curl_easy_reset (*corio__curl.easy_reset)
#define curl_easy_pause (*corio__curl.easy_pause)
#define curl_easy_cleanup (*corio__curl.easy_cleanup)
#define curl_easy_strerror (*corio__curl.easy_strerror)
#define curl_multi_init (*corio__curl.multi_init)
#define curl_multi_setopt (*corio__curl.multi_setopt)
#define curl_multi_add_handle (*corio__curl.multi_add_handle)
#define curl_multi_remove_handle (*corio__curl.multi_remove_handle)
#define curl_multi_assign (*corio__curl.multi_assign)
#define curl_multi_cleanup (*corio__curl.multi_cleanup)
#define curl_multi_info_read (*corio__curl.multi_info_read)
#define curl_multi_socket_action (*corio__curl.multi_socket_action)
#define curl_multi_strerror (*corio__curl.multi_strerror)
#define curl_slist_append (*corio__curl.slist_append)
#define curl_slist_free_all (*corio__curl.slist_free_all)
#define curl_version_info (*corio__curl.version_info)
#endif

#endif
