/* CFdPeer.h -- a stand-in for a C library that owns its socket (libpq,
 * libcurl's multi interface): it makes a non-blocking TCP socket to the
 * loopback and moves bytes on it one non-blocking step at a time, saying
 * -EAGAIN when it would block. The TinyAsync tests drive it with a
 * FileDescriptorWatcher. Every call returns >= 0 or -errno. */
#ifndef CFDPEER_H
#define CFDPEER_H

#include <stddef.h>
#include <sys/types.h>

/* Starts connecting a non-blocking socket to 127.0.0.1:port; the fd (the
   connect may still be in progress: wait until it is writable, then ask
   cfdpeer_connect_result). */
int cfdpeer_connect(int port);
/* The outcome of the connect once the socket is writable: 0 or -errno. */
int cfdpeer_connect_result(int fd);
/* One non-blocking send: the count, or -EAGAIN when the buffer is full. */
ssize_t cfdpeer_send(int fd, const void *buf, size_t len);
/* One non-blocking recv: the count (0 at EOF), or -EAGAIN when nothing
   has arrived. */
ssize_t cfdpeer_recv(int fd, void *buf, size_t len);
/* Sets SO_SNDBUF (bytes), so that a test fills the buffer quickly. */
int cfdpeer_set_send_buffer(int fd, int bytes);
/* A non-blocking, close-on-exec pipe: fds[0] reads, fds[1] writes. */
int cfdpeer_pipe(int fds[2]);
/* close(2): the library's own close, after the watcher's. */
int cfdpeer_close(int fd);

/* Not the peer's, but C the tests need beside it (heap.c): the bytes the
   C heap has handed out and not had back, over every arena (mallinfo2's
   uordblks; Swift's objects are there too), and malloc_trim(0). */
size_t cfdpeer_heap_in_use(void);
void cfdpeer_heap_trim(void);

#endif
