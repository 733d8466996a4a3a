/* udp_load.c -- the udp-echo load: one client thread per core, each with
 * its own connected UDP socket, sending a 64-byte datagram and waiting
 * for its echo, ping-pong, for --seconds (after a 1 s warm-up). A datagram
 * not answered within 200 ms counts as lost and the client sends again.
 * The server's CPU time comes from /proc/PID/stat (utime + stime) over the
 * counted seconds.
 *
 *   udp-load --port P --pid PID --impl NAME [--seconds S] [--clients N]
 *
 * Prints RESULT lines: msg/s (round trips a second, all clients) and the
 * server's cpu-ns/msg; "lost=N" on stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int port;
static atomic_int phase; /* 0 warm-up, 1 counting, 2 stop */
static atomic_long counted, lost;

static void *client(void *arg) {
  (void)arg;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {0, 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
    perror("udp-load: connect");
    exit(1);
  }
  char out[64], in[2048];
  memset(out, 'u', sizeof out);
  long mine = 0, missed = 0;
  int p;
  while ((p = atomic_load(&phase)) < 2) {
    if (send(fd, out, sizeof out, 0) < 0 && errno != ECONNREFUSED) {
      perror("udp-load: send");
      exit(1);
    }
    ssize_t n = recv(fd, in, sizeof in, 0);
    if (n != (ssize_t)sizeof out) {
      if (p == 1)
        missed++;
      continue;
    }
    if (p == 1)
      mine++;
  }
  atomic_fetch_add(&counted, mine);
  atomic_fetch_add(&lost, missed);
  close(fd);
  return NULL;
}

static long long cpu_ns(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f || !fgets(buf, sizeof buf, f)) {
    fprintf(stderr, "udp-load: cannot read %s\n", path);
    exit(1);
  }
  fclose(f);
  char *s = strrchr(buf, ')'); /* the name may hold spaces */
  unsigned long long ut = 0, st = 0;
  /* fields after ')': state(3) ... utime(14) stime(15) */
  sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st);
  return (long long)(ut + st) * (1000000000LL / sysconf(_SC_CLK_TCK));
}

int main(int argc, char **argv) {
  int pid = 0, clients = (int)sysconf(_SC_NPROCESSORS_ONLN);
  double seconds = 5;
  const char *impl = "?";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--pid")) pid = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--impl")) impl = argv[i + 1];
    else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--clients")) clients = atoi(argv[i + 1]);
  }
  if (!port || !pid || clients < 1) {
    fprintf(stderr, "usage: udp-load --port P --pid PID --impl NAME [--seconds S] [--clients N]\n");
    return 2;
  }
  pthread_t t[256];
  if (clients > 256) clients = 256;
  for (int i = 0; i < clients; i++)
    pthread_create(&t[i], NULL, client, NULL);
  sleep(1); /* warm-up */
  long long cpu0 = cpu_ns(pid);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  atomic_store(&phase, 1);
  usleep((useconds_t)(seconds * 1e6));
  atomic_store(&phase, 2);
  clock_gettime(CLOCK_MONOTONIC, &b);
  long long cpu1 = cpu_ns(pid);
  for (int i = 0; i < clients; i++)
    pthread_join(t[i], NULL);
  double wall = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
  long n = atomic_load(&counted);
  if (n == 0) {
    fprintf(stderr, "udp-load: %s answered nothing\n", impl);
    return 1;
  }
  printf("RESULT workload=udp-echo impl=%s n=%ld value=%.0f unit=msg/s\n", impl, n, (double)n / wall);
  printf("RESULT workload=udp-echo impl=%s n=%ld value=%.0f unit=cpu-ns/msg\n", impl, n,
         (double)(cpu1 - cpu0) / (double)n);
  fprintf(stderr, "udp-load: %s: %d clients, lost=%ld\n", impl, clients, atomic_load(&lost));
  return 0;
}
