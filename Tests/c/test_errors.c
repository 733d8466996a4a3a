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
  ASSERT_EQ(setenv("CLOOP_BACKEND", "URING", 1), 0); /* the case matters */

  /* Our own code, and words that name the variable, the value and what it
     accepts. */
  ASSERT_EQ(cloop_loop_new(&loop, NULL), CLOOP_EBADENV);
  const char *why = cloop_error_detail();
  ASSERT(strstr(why, "CLOOP_BACKEND") && strstr(why, "\"URING\"") &&
         strstr(why, "epoll") && strstr(why, "uring") && strstr(why, "auto"));
  ASSERT(strstr(cloop_strerror(CLOOP_EBADENV), "CLOOP_BACKEND") != NULL);
  ASSERT_EQ(cloop_loop_new(&loop, &opts), CLOOP_EBADENV);

  /* An explicit option wins over the environment, and clears the words. */
  opts.backend = CLOOP_BACKEND_EPOLL;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), 0);
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_EPOLL);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  ASSERT_EQ(strcmp(cloop_error_detail(), ""), 0);

  opts.backend = (cloop_backend)7;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), CLOOP_EBADOPTION);
  ASSERT(strstr(cloop_error_detail(), "cloop_options.backend is 7") != NULL);
  ASSERT_EQ(unsetenv("CLOOP_BACKEND"), 0);

  /* The same for $CLOOP_SWITCH and the switch option. */
  cloop_options_init(&opts);
  ASSERT_EQ(setenv("CLOOP_SWITCH", "fastest", 1), 0);
  ASSERT_EQ(cloop_loop_new(&loop, &opts), CLOOP_EBADENV);
  why = cloop_error_detail();
  ASSERT(strstr(why, "CLOOP_SWITCH") && strstr(why, "\"fastest\"") &&
         strstr(why, "asm") && strstr(why, "ucontext"));
  ASSERT_EQ(unsetenv("CLOOP_SWITCH"), 0);
  opts.switch_mode = (cloop_switch)9;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), CLOOP_EBADOPTION);
  ASSERT(strstr(cloop_error_detail(), "switch_mode is 9") != NULL);
  cloop_options_init(&opts);
  opts.task_stack = (cloop_stack_mode)5;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), CLOOP_EBADOPTION);
  ASSERT(strstr(cloop_error_detail(), "task_stack is 5") != NULL);
  return 0;
}

TEST_IMPL(errors_version) {
  /* The header's version and the library's agree here (one build). */
  ASSERT_EQ(cloop_version(), CLOOP_VERSION);
  ASSERT_EQ(CLOOP_VERSION, CLOOP_VERSION_MAJOR * 10000 +
                               CLOOP_VERSION_MINOR * 100 + CLOOP_VERSION_PATCH);
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", CLOOP_VERSION_MAJOR,
           CLOOP_VERSION_MINOR, CLOOP_VERSION_PATCH);
  ASSERT_EQ(strcmp(cloop_version_string(), want), 0);
  return 0;
}
