#include "common/sandbox_id.h"

#include <fmt/format.h>

#include <sys/random.h>

#include <cctype>
#include <cerrno>
#include <random>

namespace swissbox {

namespace {
constexpr size_t kSuffix = 13;  // "-" + 12 hex digits
}

bool valid_sandbox_id(std::string_view id) {
  if (id.size() < 5 || id.size() > 128 || id.substr(0, 4) != "sbx-") return false;
  for (char c : id) {
    if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-') return false;
  }
  return true;
}

std::string sandbox_id_node(std::string_view node_name) {
  std::string node;
  for (char c : node_name.substr(0, 40)) {
    char l = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    node.push_back((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') ? l : '-');
  }
  return node.empty() ? "node" : node;
}

std::string random_hex(size_t bytes) {
  // From the kernel's CSPRNG every time: a generator seeded once (an mt19937_64 from 32
  // bits of random_device) gives every later value away from one that was seen.
  std::string b(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(b.data() + got, bytes - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (errno != EINTR) {
      std::random_device kernel;  // no getrandom(2): libstdc++ reads /dev/urandom then
      for (; got < bytes; ++got) b[got] = static_cast<char>(kernel());
    }
  }
  std::string out;
  for (unsigned char c : b) out += fmt::format("{:02x}", c);
  return out;
}

std::string new_sandbox_id(std::string_view node_name) {
  return fmt::format("sbx-{}-{}", sandbox_id_node(node_name), random_hex(6));
}

std::optional<std::string> node_of_sandbox_id(std::string_view id) {
  if (!valid_sandbox_id(id) || id.size() < 4 + 1 + kSuffix || id[id.size() - kSuffix] != '-')
    return std::nullopt;
  for (char c : id.substr(id.size() - 12)) {
    if (!isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return std::string(id.substr(4, id.size() - 4 - kSuffix));
}

}  // namespace swissbox
