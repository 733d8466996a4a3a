/* error.c -- names for error codes, and the misuse abort. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop.h"

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
