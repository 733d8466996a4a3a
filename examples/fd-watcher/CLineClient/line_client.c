/* line_client.c -- see include/line_client.h. One buffer each way; a
 * reply is complete at its "\n". */
#include "line_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINE_MAX_BYTES 1000

struct lc_client {
  int fd;
  int connected;         /* the connect's outcome has been read */
  char out[LINE_MAX_BYTES + 1];
  size_t out_len, out_sent;
  char in[LINE_MAX_BYTES + 2]; /* the reply, "\n" and a NUL */
  size_t in_len;
  int has_reply;         /* a reply has been handed out, not yet replaced */
};

int lc_connect(lc_client **out, const char *ip, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (port < 0 || port > 65535 || inet_pton(AF_INET, ip, &a.sin_addr) != 1)
    return -EINVAL;
  lc_client *c = calloc(1, sizeof *c);
  if (!c)
    return -ENOMEM;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    int e = errno;
    free(c);
    return -e;
  }
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
    int e = errno;
    lc_close(c);
    return -e;
  }
  *out = c;
  return 0;
}

int lc_fd(const lc_client *c) { return c->fd; }

int lc_request(lc_client *c, const char *line) {
  size_t n = strlen(line);
  if (n > LINE_MAX_BYTES - 1 || memchr(line, '\n', n))
    return -EINVAL;
  if (c->out_len > c->out_sent)
    return -EBUSY; /* the previous request is still going out */
  memcpy(c->out, line, n);
  c->out[n] = '\n';
  c->out_len = n + 1;
  c->out_sent = 0;
  c->in_len = 0;
  c->has_reply = 0;
  return 0;
}

static int would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK; }

int lc_step(lc_client *c) {
  if (!c->connected) {
    /* A non-blocking connect is done when the socket turns writable. */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
      return -errno;
    if (err)
      return -err;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (getpeername(c->fd, (struct sockaddr *)&peer, &plen) < 0)
      return errno == ENOTCONN ? LC_WANT_WRITE : -errno;
    c->connected = 1;
  }
  while (c->out_sent < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return would_block() ? LC_WANT_WRITE : -errno;
    }
    c->out_sent += (size_t)n;
  }
  if (c->has_reply)
    return LC_REPLY;
  for (;;) {
    char *nl = memchr(c->in, '\n', c->in_len);
    if (nl) {
      *nl = '\0';
      c->has_reply = 1;
      return LC_REPLY;
    }
    if (c->in_len > LINE_MAX_BYTES)
      return -EPROTO;
    /* One byte short of the buffer: room for the NUL. */
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len,
                     MSG_DONTWAIT);
    if (n == 0)
      return -ENODATA;
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return would_block() ? LC_WANT_READ : -errno;
    }
    c->in_len += (size_t)n;
  }
}

const char *lc_reply(lc_client *c) { return c->has_reply ? c->in : ""; }

void lc_close(lc_client *c) {
  if (c->fd >= 0)
    close(c->fd);
  free(c);
}
