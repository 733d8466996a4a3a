/* test_errors.c -- cloop_strerror and the errors of cloop_loop_new. */
#include "test.h"

TEST_IMPL(errors_strerror) {
  ASSERT(strcmp(cloop_strerror(-ECONNRESET), strerror(ECONNRESET)) == 0);
  ASSERT(strcmp(cloop_strerror(-EBADF), strerror(EBADF)) == 0);

  const char *msg = cloop_strerror(CLOOP_ENOBACKEND);
  ASSERT(msg != NULL);
  if (!strcasestr(msg, "backend"))
    fprintf(stderr, "cloop_strerror(CLOOP_ENOBACKEND): %s\n", msg);
  ASSERT(strcasestr(msg, "backend") != NULL);
  ASSERT(strcmp(msg, strerror(-CLOOP_ENOBACKEND)) != 0); /* not "Unknown error" */

  /* Our own codes, not borrowed errnos whose text would mislead. */
  ASSERT(strcasestr(cloop_strerror(CLOOP_ENOHOST), "host not found") != NULL);
  ASSERT(strcasestr(cloop_strerror(CLOOP_ENODELIM), "delimiter") != NULL);
  ASSERT(CLOOP_ENOHOST != -ENOENT && CLOOP_ENODELIM != -EMSGSIZE);

  ASSERT(cloop_strerror(-20999) != NULL); /* an unknown code still has text */
  return 0;
}

TEST_IMPL(errors_backend_env_bogus) {
  cloop_loop *loop = NULL;
  cloop_options opts;
  cloop_options_init(&opts);
  ASSERT_EQ(setenv("CLOOP_BACKEND", "bogus", 1), 0);

  ASSERT_EQ(cloop_loop_new(&loop, NULL), -EINVAL);
  ASSERT_EQ(cloop_loop_new(&loop, &opts), -EINVAL);

  /* An explicit option wins over the environment. */
  opts.backend = CLOOP_BACKEND_EPOLL;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), 0);
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_EPOLL);
  ASSERT_EQ(cloop_loop_free(loop), 0);

  opts.backend = (cloop_backend)7;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), -EINVAL);
  return 0;
}
