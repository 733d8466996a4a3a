/* error.c -- names for error codes, the words of a bad setting, the
 * misuse abort, and the library's version. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop.h"

#define STR2(x) #x
#define STR(x) STR2(x)

int cloop_version(void) { return CLOOP_VERSION; }

const char *cloop_version_string(void) {
  return STR(CLOOP_VERSION_MAJOR) "." STR(CLOOP_VERSION_MINOR) "." STR(CLOOP_VERSION_PATCH);
}

const char *cloop_strerror(int err) {
  switch (err) {
  case 0: return "success";
  case -ETIMEDOUT: /* glibc says "Connection timed out"; deadlines use it too */
    return "Timed out";
  case CLOOP_ENOBACKEND:
    return "the backend asked for is not available (not built in, or its "
           "setup failed)";
  case CLOOP_ENOHOST:
    return "host not found (the name resolves to no address)";
  case CLOOP_ENODELIM:
    return "delimiter not found within the bytes allowed";
  case CLOOP_EBADENV:
    return "an environment variable of CLoop's (CLOOP_BACKEND, CLOOP_SWITCH) "
           "has a value it does not accept (cloop_error_detail says which)";
  case CLOOP_EBADOPTION:
    return "a cloop_options field is out of range (cloop_error_detail says "
           "which)";
  }
  if (err < 0 && err > -4096) {
#ifdef __GLIBC__
    const char *s = strerrordesc_np(-err); /* static text, unlike strerror */
    if (s)
      return s;
#else
    return strerror(-err);
#endif
  }
  return "unknown error";
}

/* The last bad setting's words, per thread: the loop that failed to be
   made belongs to nobody, so the message cannot live in it. */
static __thread char setting_detail[192];

int cloop__bad_setting(int code, const char *fmt, ...) {
  setting_detail[0] = 0;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(setting_detail, sizeof setting_detail, fmt, ap);
    va_end(ap);
  }
  return code;
}

const char *cloop_error_detail(void) { return setting_detail; }

void cloop__misuse(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("cloop: misuse: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
  abort();
}
