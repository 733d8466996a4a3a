/* udp.c -- UDP sockets: numeric addresses, bind, connect and the options
 * a datagram service needs (broadcast, multicast membership). None of
 * these waits, so none needs a loop or a task; the datagrams themselves
 * move with io.c's recvmsg/sendmsg operations (net.c's task calls).
 *
 * Addresses are numeric only: a datagram service binds to an address it
 * knows, and a name lookup would block here (cloop_resolve_start looks
 * names up off the loop, with SOCK_DGRAM). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/loop.h"

int cloop_sockaddr_parse(const char *host, int port,
                         struct sockaddr_storage *out) {
  if (port < 0 || port > 65535 || !out)
    return -EINVAL;
  memset(out, 0, sizeof *out);
  if (!host)
    host = "0.0.0.0";
  struct sockaddr_in *v4 = (struct sockaddr_in *)out;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    return (int)sizeof *v4;
  }
  /* IPv6, with an optional zone: "fe80::1%lo" or "fe80::1%2". */
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 1];
  size_t len = strlen(host);
  if (len >= sizeof text)
    return -EINVAL;
  memcpy(text, host, len + 1);
  char *zone = strchr(text, '%');
  if (zone) {
    *zone++ = '\0';
    unsigned idx = if_nametoindex(zone);
    if (!idx) {
      char *end;
      unsigned long n = strtoul(zone, &end, 10);
      if (!*zone || *end || n == 0 || n > UINT32_MAX)
        return -EINVAL;
      idx = (unsigned)n;
    }
    v6->sin6_scope_id = idx;
  }
  if (inet_pton(AF_INET6, text, &v6->sin6_addr) != 1)
    return -EINVAL;
  v6->sin6_family = AF_INET6;
  v6->sin6_port = htons((uint16_t)port);
  return (int)sizeof *v6;
}

int cloop_sockaddr_format(const struct sockaddr *addr, char *host,
                          size_t hostlen, int *port) {
  if (addr->sa_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)addr;
    if (!inet_ntop(AF_INET, &v4->sin_addr, host, (socklen_t)hostlen))
      return -errno;
    if (port)
      *port = ntohs(v4->sin_port);
    return 0;
  }
  if (addr->sa_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)addr;
    if (!inet_ntop(AF_INET6, &v6->sin6_addr, host, (socklen_t)hostlen))
      return -errno;
    if (port)
      *port = ntohs(v6->sin6_port);
    return 0;
  }
  return -EAFNOSUPPORT;
}

int cloop_udp_open(const struct sockaddr *addr, socklen_t addrlen, int flags) {
  if (!addr || (flags & ~(CLOOP_UDP_REUSEADDR | CLOOP_UDP_REUSEPORT)) ||
      addrlen < sizeof(sa_family_t) || addrlen > sizeof(struct sockaddr_storage))
    return -EINVAL;
  int family = addr->sa_family;
  if (family != AF_INET && family != AF_INET6)
    return -EAFNOSUPPORT;
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  IPPROTO_UDP);
  if (fd < 0)
    return -errno;
  int one = 1;
  /* IPv6-only: "::" then means IPv6 alone, and an IPv4 socket may share
     the port, as in asyncio's create_datagram_endpoint. */
  if ((family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
      ((flags & CLOOP_UDP_REUSEADDR) &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) ||
      ((flags & CLOOP_UDP_REUSEPORT) &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      bind(fd, addr, addrlen) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

int cloop_udp_bind(const char *host, int port, int flags) {
  struct sockaddr_storage ss;
  int len = cloop_sockaddr_parse(host, port, &ss);
  if (len < 0)
    return len;
  return cloop_udp_open((struct sockaddr *)&ss, (socklen_t)len, flags);
}

int cloop_udp_connect(int fd, const struct sockaddr *addr, socklen_t addrlen) {
  if (!addr)
    return -EINVAL;
  return connect(fd, addr, addrlen) == 0 ? 0 : -errno;
}

int cloop_udp_set_broadcast(int fd, int on) {
  int v = on != 0;
  return setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &v, sizeof v) == 0 ? 0
                                                                      : -errno;
}

/* The socket's family (AF_INET, AF_INET6), or -errno. */
static int family_of(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return -errno;
  return ss.ss_family;
}

int cloop_udp_membership(int fd, const char *group, const char *iface,
                         int join) {
  if (!group)
    return -EINVAL;
  unsigned idx = 0;
  if (iface && !(idx = if_nametoindex(iface)))
    return -ENODEV;
  int family = family_of(fd);
  if (family < 0)
    return family;
  struct sockaddr_storage ss;
  if (cloop_sockaddr_parse(group, 0, &ss) < 0 || ss.ss_family != family)
    return -EINVAL;
  int r;
  if (family == AF_INET) {
    struct ip_mreqn m;
    memset(&m, 0, sizeof m);
    m.imr_multiaddr = ((struct sockaddr_in *)&ss)->sin_addr;
    m.imr_ifindex = (int)idx;
    if (!IN_MULTICAST(ntohl(m.imr_multiaddr.s_addr)))
      return -EINVAL;
    r = setsockopt(fd, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP,
                   &m, sizeof m);
  } else if (family == AF_INET6) {
    struct ipv6_mreq m;
    memset(&m, 0, sizeof m);
    m.ipv6mr_multiaddr = ((struct sockaddr_in6 *)&ss)->sin6_addr;
    m.ipv6mr_interface = idx;
    if (!IN6_IS_ADDR_MULTICAST(&m.ipv6mr_multiaddr))
      return -EINVAL;
    r = setsockopt(fd, IPPROTO_IPV6, join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP,
                   &m, sizeof m);
  } else {
    return -EAFNOSUPPORT;
  }
  return r == 0 ? 0 : -errno;
}

int cloop_udp_set_multicast_loop(int fd, int on) {
  int family = family_of(fd);
  if (family < 0)
    return family;
  int v = on != 0, r;
  if (family == AF_INET6)
    r = setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &v, sizeof v);
  else
    r = setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &v, sizeof v);
  return r == 0 ? 0 : -errno;
}
