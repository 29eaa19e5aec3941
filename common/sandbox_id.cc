#include "common/sandbox_id.h"

#include <fmt/format.h>

#include <cctype>
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

std::string new_sandbox_id(std::string_view node_name) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("sbx-{}-{:012x}", sandbox_id_node(node_name), rng() & 0xffffffffffffULL);
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
