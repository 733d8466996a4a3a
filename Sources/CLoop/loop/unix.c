/* unix.c -- Unix domain stream sockets: listening on a path or a Linux
 * abstract name, connecting to one, and the peer's credentials. Accepting
 * and the byte stream are the same as TCP's (tcp.c's acceptor, io.c's
 * operations); only the addresses differ.
 *
 * Names. A path is a file in the file system; "@name" is a Linux abstract
 * name (sun_path begins with a NUL byte, no file, gone with the socket). A
 * path that does not fit sun_path (108 bytes with its NUL) is refused with
 * -ENAMETOOLONG rather than cut short. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "loop/loop.h"

/* Fills sun from path; the length to pass to bind/connect, or -errno. */
static int unix_address(const char *path, struct sockaddr_un *sun) {
  if (!path || !*path)
    return -EINVAL;
  memset(sun, 0, sizeof *sun);
  sun->sun_family = AF_UNIX;
  size_t len = strlen(path);
  if (path[0] == '@') { /* abstract: a NUL, then the name, no NUL after it */
    if (len > sizeof sun->sun_path)
      return -ENAMETOOLONG;
    memcpy(sun->sun_path + 1, path + 1, len - 1);
    return (int)(offsetof(struct sockaddr_un, sun_path) + len);
  }
  if (len >= sizeof sun->sun_path)
    return -ENAMETOOLONG;
  memcpy(sun->sun_path, path, len + 1);
  return (int)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

/* Whether the socket file at sun is stale: a socket nobody listens on. A
   live server's socket (the connect is accepted or queued) is not. */
static int stale(const struct sockaddr_un *sun, int len) {
  struct stat st;
  if (stat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
    return 0;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  int r = connect(fd, (const struct sockaddr *)sun, (socklen_t)len);
  int err = errno;
  close(fd);
  return r < 0 && err == ECONNREFUSED;
}

int cloop_unix_listen(const char *path, int backlog, int flags) {
  if (flags & ~CLOOP_UNLINK_STALE)
    return -EINVAL;
  struct sockaddr_un sun;
  int len = unix_address(path, &sun);
  if (len < 0)
    return len;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int r = bind(fd, (struct sockaddr *)&sun, (socklen_t)len);
  if (r < 0 && errno == EADDRINUSE && path[0] != '@' &&
      (flags & CLOOP_UNLINK_STALE) && stale(&sun, len)) {
    /* A dead server's file: take its place. (Another starting at the same
       moment may win the race; then bind fails again, as it should.) */
    unlink(sun.sun_path);
    r = bind(fd, (struct sockaddr *)&sun, (socklen_t)len);
  }
  if (r < 0 || listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

int cloop_connect_unix_start(cloop_loop *loop, cloop_connector *c,
                             const char *path, cloop_connector_fn fn,
                             void *data) {
  CLOOP__CHECK(loop, "cloop_connect_unix_start");
  if (!fn)
    return -EINVAL;
  struct sockaddr_un sun;
  int len = unix_address(path, &sun);
  if (len < 0)
    return len;
  return cloop__connect_addr(loop, c, (struct sockaddr *)&sun, (socklen_t)len,
                             fn, data);
}

int cloop_sock_peercred(int fd, int *pid, int *uid, int *gid) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
    return -errno;
  if (pid)
    *pid = (int)cred.pid;
  if (uid)
    *uid = (int)cred.uid;
  if (gid)
    *gid = (int)cred.gid;
  return 0;
}
