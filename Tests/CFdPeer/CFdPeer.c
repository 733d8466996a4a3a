/* CFdPeer.c -- see include/CFdPeer.h. */
#define _GNU_SOURCE /* pipe2 */
#include "CFdPeer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

int cfdpeer_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

int cfdpeer_connect_result(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    return -errno;
  return -err;
}

ssize_t cfdpeer_send(int fd, const void *buf, size_t len) {
  for (;;) {
    ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
      return n;
    if (errno != EINTR)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

ssize_t cfdpeer_recv(int fd, void *buf, size_t len) {
  for (;;) {
    ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
    if (n >= 0)
      return n;
    if (errno != EINTR)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

int cfdpeer_set_send_buffer(int fd, int bytes) {
  return setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes) < 0 ? -errno : 0;
}

int cfdpeer_pipe(int fds[2]) {
  return pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0 ? -errno : 0;
}

int cfdpeer_close(int fd) { return close(fd) < 0 ? -errno : 0; }
