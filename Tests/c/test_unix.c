/* test_unix.c -- Unix domain stream sockets (loop/unix.c) on both
 * backends: an echo of 1 B to 4 MiB between tasks with every byte
 * checked; a stale socket file, refused without CLOOP_UNLINK_STALE and
 * replaced with it, and a live server's never taken; an abstract name; a
 * path too long; no such path and nobody listening; the peer's
 * credentials. */
#include "test.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define MS 1000000LL

static char sock_path[96];

static void make_path(const char *tag) {
  snprintf(sock_path, sizeof sock_path, "/tmp/cloop-test-%d-%s.sock",
           (int)getpid(), tag);
  unlink(sock_path);
}

/* ---- echo ------------------------------------------------------------------- */

static intptr_t echo_server(void *arg) {
  int lfd = (int)(intptr_t)arg;
  int s = cloop_sock_accept(lfd);
  if (s < 0)
    return s;
  char buf[65536];
  for (;;) {
    ssize_t n = cloop_sock_recv(s, buf, sizeof buf);
    if (n <= 0) {
      cloop_sock_close(s);
      return n;
    }
    ssize_t w = cloop_sock_sendall(s, buf, (size_t)n);
    if (w < 0)
      return w;
  }
}

static intptr_t echo_main(void *arg) {
  const char *name = arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  int lfd = cloop_unix_listen(name, 16, 0);
  ASSERT_GE(lfd, 0);
  cloop_task *srv;
  ASSERT_EQ(cloop_spawn(loop, &srv, echo_server, (void *)(intptr_t)lfd, "srv"), 0);
  int c = cloop_unix_connect(name);
  ASSERT_GE(c, 0);
  /* Who is at the other end: this process. */
  int pid = -1, uid = -1, gid = -1;
  ASSERT_EQ(cloop_sock_peercred(c, &pid, &uid, &gid), 0);
  ASSERT_EQ(pid, getpid());
  ASSERT_EQ(uid, (int)getuid());
  ASSERT_EQ(gid, (int)getgid());
  static const size_t sizes[] = {1, 100, 65536, 1 << 20, 4 << 20};
  char *out = malloc(4 << 20), *in = malloc(4 << 20);
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    for (size_t i = 0; i < n; i++)
      out[i] = (char)(i * 131 + k);
    /* 4 MiB does not fit the sockets' buffers: at most 64 KiB in flight,
       so neither side blocks the other. */
    size_t got = 0, sent = 0;
    while (got < n) {
      if (sent < n && sent - got < 65536) {
        size_t chunk = n - sent < 65536 ? n - sent : 65536;
        ASSERT_EQ(cloop_sock_sendall(c, out + sent, chunk), (ssize_t)chunk);
        sent += chunk;
      }
      ssize_t r = cloop_sock_recv(c, in + got, n - got);
      ASSERT_GT(r, 0);
      got += (size_t)r;
    }
    ASSERT(memcmp(in, out, n) == 0);
  }
  free(in);
  free(out);
  ASSERT_EQ(cloop_sock_close(c), 0);
  ASSERT_EQ(cloop_task_join(srv), 0); /* it saw EOF */
  cloop_task_release(srv);
  ASSERT_EQ(cloop_sock_close(lfd), 0);
  return 0;
}

TEST_IMPL_POLL(unix_echo_path_and_abstract) {
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, &o);
  if (r == CLOOP_ENOBACKEND)
    SKIP("backend %s not available", cloop_backend_name(backend));
  ASSERT_EQ(r, 0);
  make_path("echo");
  ASSERT_EQ(test_run_loop(loop, echo_main, sock_path), 0);
  struct stat st;
  ASSERT_EQ(stat(sock_path, &st), 0); /* the file stays after close */
  ASSERT(S_ISSOCK(st.st_mode));
  unlink(sock_path);

  char abstract[64];
  snprintf(abstract, sizeof abstract, "@cloop-test-%d", (int)getpid());
  ASSERT_EQ(cloop_loop_new(&loop, &o), 0);
  ASSERT_EQ(test_run_loop(loop, echo_main, abstract), 0);
  ASSERT(access(abstract, F_OK) < 0); /* no file for an abstract name */
  return 0;
}

/* ---- names ------------------------------------------------------------------ */

TEST_IMPL(unix_stale_path_and_live_server) {
  make_path("stale");
  /* A dead server's file: a socket bound, then closed without unlink. */
  int dead = cloop_unix_listen(sock_path, 4, 0);
  ASSERT_GE(dead, 0);
  ASSERT_EQ(close(dead), 0);
  ASSERT_EQ(cloop_unix_listen(sock_path, 4, 0), -EADDRINUSE); /* said clearly */
  int fd = cloop_unix_listen(sock_path, 4, CLOOP_UNLINK_STALE);
  ASSERT_GE(fd, 0); /* it took the stale file's place */
  /* A live server's is never taken, flag or not. */
  ASSERT_EQ(cloop_unix_listen(sock_path, 4, CLOOP_UNLINK_STALE), -EADDRINUSE);
  ASSERT_EQ(close(fd), 0);
  /* A file that is not a socket is not removed either. */
  ASSERT_EQ(unlink(sock_path), 0);
  FILE *f = fopen(sock_path, "w");
  ASSERT(f != NULL);
  fclose(f);
  ASSERT_EQ(cloop_unix_listen(sock_path, 4, CLOOP_UNLINK_STALE), -EADDRINUSE);
  ASSERT_EQ(access(sock_path, F_OK), 0);
  unlink(sock_path);
  ASSERT_EQ(cloop_unix_listen(sock_path, 4, 8), -EINVAL);
  ASSERT_EQ(cloop_unix_listen("", 4, 0), -EINVAL);
  ASSERT_EQ(cloop_unix_listen(NULL, 4, 0), -EINVAL);
  return 0;
}

TEST_IMPL(unix_path_too_long_is_refused) {
  char path[200];
  struct sockaddr_un sun;
  size_t room = sizeof sun.sun_path; /* 108 with the NUL */
  memset(path, 'a', sizeof path);
  path[0] = '/';
  path[room - 1] = 0; /* 107 bytes: fits, though no such folder */
  int r = cloop_unix_listen(path, 4, 0);
  ASSERT(r != -ENAMETOOLONG);
  if (r >= 0)
    close(r);
  path[room - 1] = 'a';
  path[room] = 0; /* 108 bytes: one too many */
  ASSERT_EQ(cloop_unix_listen(path, 4, 0), -ENAMETOOLONG);
  path[0] = '@'; /* an abstract name may use all 108 (no NUL) */
  r = cloop_unix_listen(path, 4, 0);
  ASSERT_GE(r, 0);
  close(r);
  path[room + 1] = 0;
  path[room] = 'a';
  ASSERT_EQ(cloop_unix_listen(path, 4, 0), -ENAMETOOLONG);
  return 0;
}

static intptr_t connect_errors(void *arg) {
  (void)arg;
  make_path("nobody");
  ASSERT_EQ(cloop_unix_connect(sock_path), -ENOENT);
  int dead = cloop_unix_listen(sock_path, 4, 0);
  ASSERT_GE(dead, 0);
  ASSERT_EQ(close(dead), 0); /* the file is there, nobody listens */
  ASSERT_EQ(cloop_unix_connect(sock_path), -ECONNREFUSED);
  unlink(sock_path);
  char longer[200];
  memset(longer, 'x', sizeof longer);
  longer[199] = 0;
  ASSERT_EQ(cloop_unix_connect(longer), -ENAMETOOLONG);
  return 0;
}

TEST_IMPL_POLL(unix_connect_errors) {
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, &o);
  if (r == CLOOP_ENOBACKEND)
    SKIP("backend %s not available", cloop_backend_name(backend));
  ASSERT_EQ(r, 0);
  ASSERT_EQ(test_run_loop(loop, connect_errors, NULL), 0);
  return 0;
}
