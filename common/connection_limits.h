// Counts open connections in all and per key (a client's address, a sandbox's address),
// each under a limit, so that one peer cannot take every connection a server can hold.
// Not thread-safe: used from one server's I/O thread.
#pragma once

#include <cstddef>
#include <map>
#include <string>

namespace swissbox {

class ConnectionLimits {
 public:
  ConnectionLimits(size_t total, size_t per_key) : total_limit_(total), per_key_limit_(per_key) {}

  // Counts one more connection of `key` if both limits allow it.
  bool take(const std::string& key) {
    if (total_ >= total_limit_) return false;
    size_t& mine = by_key_[key];
    if (mine >= per_key_limit_) {
      if (mine == 0) by_key_.erase(key);
      return false;
    }
    ++mine;
    ++total_;
    return true;
  }
  void release(const std::string& key) {
    auto it = by_key_.find(key);
    if (it == by_key_.end()) return;
    --total_;
    if (--it->second == 0) by_key_.erase(it);
  }
  size_t open() const { return total_; }

 private:
  size_t total_limit_, per_key_limit_;
  size_t total_ = 0;
  std::map<std::string, size_t> by_key_;
};

}  // namespace swissbox
