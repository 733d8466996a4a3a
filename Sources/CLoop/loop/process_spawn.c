/* process_spawn.c -- starting a child process (process.c watches, reaps
 * and signals it).
 *
 * vfork (the parent waits only until the exec, and no page table is copied
 * however big this process is), then, in the child, only async-signal-safe
 * calls: streams, folder, signals, execve of each candidate path (looked up
 * in $PATH beforehand, as execvp would). A failed exec -- no such program,
 * not executable -- writes its errno to a close-on-exec pipe, which a
 * successful exec closes unwritten: the caller gets -ENOENT or -EACCES,
 * never a child that exits 127.
 *
 * A piped stream is one end of a socketpair, as in libuv: a socket is a
 * stream the loop's I/O operations read and write (recv/send do not work
 * on pipes), and the program sees an ordinary fd. Our ends are
 * non-blocking and close-on-exec; the child's become its 0, 1, 2, and
 * nothing else of ours leaks into it (every fd the library makes is
 * close-on-exec). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loop/list.h"
#include "loop/loop.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* waitid on a pidfd, Linux 5.4 */
#endif

extern char **environ;

/* ---- starting --------------------------------------------------------- */

static void close_all(int *fds, int n) {
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0) {
      close(fds[i]);
      fds[i] = -1;
    }
}

/* The child's end of stream i, and ours in *ours (or -1). Returns the fd
   to give the child, -1 to inherit, or -errno. */
static int stream_for(int how, int i, int *ours, int *opened) {
  *ours = -1;
  if (how == CLOOP_STDIO_INHERIT)
    return -1;
  if (how == CLOOP_STDIO_NULL) {
    int fd = open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
    if (fd < 0)
      return -errno;
    *opened = fd;
    return fd;
  }
  if (how == CLOOP_STDIO_PIPE) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
      return -errno;
    /* Our end non-blocking; the child's blocking, as programs expect. */
    if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
      int err = -errno;
      close(sv[0]);
      close(sv[1]);
      return err;
    }
    /* One direction only: what the child may not use is shut down, so a
       read of its stdin end by us, or a write to its stdout, is an error
       rather than a hang. */
    shutdown(sv[0], i == 0 ? SHUT_RD : SHUT_WR);
    *ours = sv[0];
    *opened = sv[1];
    return sv[1];
  }
  if (how >= 0)
    return how; /* an fd of the caller's, passed as it is */
  return -EINVAL;
}

/* The programs to try for file: itself if it names a path, else file in
   each folder of $PATH, as execvp looks (made before the child exists: the
   child may only make async-signal-safe calls). NULL-terminated; free it
   with free() (one block). NULL without memory. */
static char **candidates(const char *file) {
  const char *path = strchr(file, '/') ? NULL : getenv("PATH");
  if (!strchr(file, '/') && (!path || !*path))
    path = "/usr/local/bin:/usr/bin:/bin";
  size_t n = 1, bytes = strlen(file) + 1, flen = strlen(file);
  for (const char *c = path; c && *c; c++)
    if (*c == ':')
      n++;
  if (path)
    bytes = strlen(path) + n * (flen + 2);
  char **list = malloc((n + 1) * sizeof *list + bytes);
  if (!list)
    return NULL;
  char *at = (char *)(list + n + 1);
  size_t k = 0;
  if (!path) {
    list[k++] = strcpy(at, file);
  } else {
    for (const char *dir = path;; dir = strchr(dir, ':') + 1) {
      const char *end = strchr(dir, ':');
      size_t dlen = end ? (size_t)(end - dir) : strlen(dir);
      list[k++] = at;
      if (dlen == 0) /* an empty entry means the current folder */
        at += sprintf(at, "%s", file) + 1;
      else
        at += sprintf(at, "%.*s/%s", (int)dlen, dir, file) + 1;
      if (!end)
        break;
    }
  }
  list[k] = NULL;
  return list;
}

/* The child, between vfork and exec: async-signal-safe calls only, and it
   never returns. It shares the parent's memory until exec, so it writes
   nothing but errno, to the close-on-exec pipe, if every exec fails. */
static _Noreturn void child(int err_fd, const int fds[3], const char *cwd,
                            char *const *paths, char *const *argv,
                            char *const *envp) {
  /* A fresh program's signals: default actions, nothing blocked. */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < _NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      sigaction(sig, &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  int err = 0;
  for (int i = 0; i < 3 && !err; i++) {
    if (fds[i] < 0)
      continue;
    if (fds[i] == i) /* already there: just keep it open across exec */
      err = fcntl(i, F_SETFD, 0) < 0 ? errno : 0;
    else
      err = dup2(fds[i], i) < 0 ? errno : 0;
  }
  if (!err && cwd && chdir(cwd) < 0)
    err = errno;
  if (!err) {
    sigprocmask(SIG_SETMASK, &none, NULL);
    err = ENOENT;
    for (char *const *path = paths; *path; path++) {
      execve(*path, argv, envp);
      /* As execvp: a program found but refused says more than one not
         found; EACCES from any candidate is kept. */
      if (errno != ENOENT && errno != ENOTDIR && errno != ESRCH)
        err = errno;
      if (err == ENOEXEC || err == E2BIG || err == ENOMEM)
        break;
    }
  }
  while (write(err_fd, &err, sizeof err) < 0 && errno == EINTR)
    ;
  _exit(127);
}

int cloop_process_spawn(cloop_loop *loop, cloop_process *p,
                        const cloop_process_options *opts) {
  CLOOP__CHECK(loop, "cloop_process_spawn");
  if (p->loop)
    cloop__misuse("cloop_process_spawn: process %p is already in use", (void *)p);
  if (!opts || !opts->file || !opts->argv || !opts->argv[0])
    return -EINVAL;
  memset(p, 0, sizeof *p);
  p->pidfd = -1;
  for (int i = 0; i < 3; i++)
    p->stdio[i] = -1;

  int opened[3] = {-1, -1, -1}, fds[3] = {-1, -1, -1}, r = 0;
  for (int i = 0; i < 3 && r == 0; i++) {
    int c = stream_for(opts->stdio[i], i, &p->stdio[i], &opened[i]);
    if (c < -1)
      r = c;
    else
      fds[i] = c;
  }
  char **paths = r == 0 ? candidates(opts->file) : NULL;
  int err_pipe[2] = {-1, -1};
  if (r == 0 && !paths)
    r = -ENOMEM;
  if (r == 0 && pipe2(err_pipe, O_CLOEXEC) < 0)
    r = -errno;
  pid_t pid = -1;
  if (r == 0) {
    char *const *volatile envp = opts->envp ? opts->envp : environ;
    /* No handler may run in the child while it shares our memory: block
       everything across vfork (the child sets its own mask). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = vfork();
    if (pid == 0)
      child(err_pipe[1], fds, opts->cwd, paths, opts->argv, envp);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(err_pipe[1]);
    if (pid < 0) {
      r = -fork_errno;
    } else {
      /* EOF: the exec succeeded (the pipe closed on exec). An int: it did
         not, and that is why. */
      int child_err = 0;
      ssize_t n;
      while ((n = read(err_pipe[0], &child_err, sizeof child_err)) < 0 &&
             errno == EINTR)
        ;
      if (n == (ssize_t)sizeof child_err) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
          ;
        r = -child_err;
      }
    }
    close(err_pipe[0]);
  }
  free(paths);
  close_all(opened, 3); /* the child's ends are the child's now */
  if (r < 0) {
    close_all(p->stdio, 3);
    return r;
  }
  p->pid = pid;
  p->pidfd = (int)pidfd_open(pid, 0);
  if (p->pidfd < 0) {
    /* Too old a kernel (ENOSYS) or out of fds: the child runs, and must
       not become a zombie. */
    r = -errno;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close_all(p->stdio, 3);
    return r;
  }
  fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
  p->loop = loop;
  p->exit_code = -1;
  list_push(&loop->processes, &p->node);
  if ((r = cloop__process_watch_exit(loop, p)) < 0) {
    list_remove(&p->node);
    p->loop = NULL;
    pidfd_send_signal(p->pidfd, SIGKILL, NULL, 0);
    waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &(siginfo_t){0}, WEXITED);
    close(p->pidfd);
    close_all(p->stdio, 3);
    return r;
  }
  return 0;
}

