/* line_client.h -- a small C client library that owns its socket, in the
 * style of libpq or libcurl's multi interface: it speaks a line protocol
 * (one request line, one reply line) on a non-blocking TCP socket and
 * never blocks. Each step does what I/O it can and says what it waits for;
 * the caller's event loop waits until the socket is ready that way and
 * steps again. It knows nothing of TinyAsync.
 *
 * Every call returns >= 0 or -errno. */
#ifndef LINE_CLIENT_H
#define LINE_CLIENT_H

#include <stddef.h>

typedef struct lc_client lc_client;

/* What lc_step waits for (libpq's PGRES_POLLING_READING / _WRITING). */
enum { LC_REPLY = 0, LC_WANT_READ = 1, LC_WANT_WRITE = 2 };

/* Starts connecting to ip:port (a numeric IPv4 address) without waiting;
   *out gets the client. 0 or -errno. */
int lc_connect(lc_client **out, const char *ip, int port);

/* The socket: the caller watches it, never reads, writes or closes it. */
int lc_fd(const lc_client *c);

/* Queues one request line (without its "\n"; at most 1000 bytes), sent by
   the next steps. 0, -EINVAL (too long, or holds a "\n"), -EBUSY (the
   previous request is still going out). One reply per request: the
   protocol sends nothing unasked. */
int lc_request(lc_client *c, const char *line);

/* Does what it can without blocking: finishes the connect, sends what is
   queued, reads. Returns LC_REPLY when the reply line has arrived (take it
   with lc_reply), LC_WANT_WRITE or LC_WANT_READ when it would block that
   way, or -errno (-ECONNREFUSED, -ECONNRESET, -EPIPE; -EPROTO for a reply
   longer than 1000 bytes; -ENODATA when the server closed). */
int lc_step(lc_client *c);

/* The reply that arrived, without its "\n": valid until the next
   lc_request. */
const char *lc_reply(lc_client *c);

/* Closes the socket and frees the client. */
void lc_close(lc_client *c);

#endif
