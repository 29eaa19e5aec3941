// Reads a file descriptor to its end (tests of processes and their pipes).
#pragma once

#include <unistd.h>

#include <string>

namespace swissbox::testing {

inline std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, n);
  return out;
}

}  // namespace swissbox::testing
