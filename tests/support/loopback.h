// A plain TCP connection to a port on 127.0.0.1, for bytes no HTTP client would send (a
// body cut off midway, a connection that stays idle). Close-on-exec, so that a process the
// test starts meanwhile does not keep it open.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>

namespace swissbox::testing {

// The connected fd, or -1.
inline int connect_loopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) return fd;
  if (fd >= 0) close(fd);
  return -1;
}

}  // namespace swissbox::testing
