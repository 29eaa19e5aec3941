// The veth pair that joins a sandbox's network namespace to the node, made over netlink
// with libnl-route (no `ip`): the host end carries the gateway address of the sandbox's
// /30, the other end is created directly inside the namespace as eth0 with the sandbox's
// address and a default route through the gateway. Also: link counters (bytes each way),
// a token-bucket rate limit on a link, and listing/removing links by name prefix for GC.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"

namespace swissbox::veth {

struct PairConfig {
  std::string host_name;   // the host end, ≤ 15 characters
  std::string netns_path;  // a pinned namespace (agent/net/netns.h)
  std::string host_ip;     // "10.200.0.1"
  std::string sandbox_ip;  // "10.200.0.2"
  int prefix_len = 30;
};

// Makes the pair and configures both ends; on failure removes what it made.
Status create_pair(const PairConfig& config);
// Gives the namespace's end its address and default route again: runsc's netstack takes
// them from eth0 when a sandbox starts, and a restored sandbox reads them anew.
Status readdress(const PairConfig& config);
// Removes a link of this namespace by name (a veth's peer goes with it); missing is fine.
Status remove_link(const std::string& name);
// Names of this namespace's links that start with `prefix`.
Result<std::vector<std::string>> links_with_prefix(const std::string& prefix);

struct Counters {
  uint64_t rx_bytes = 0, tx_bytes = 0;  // as the link sees them
};
Result<Counters> counters(const std::string& name);

// A token-bucket filter as the link's root qdisc: what the link sends is held to
// `bits_per_second` (0 removes the limit). For a veth's host end that is what the sandbox
// receives; inside the namespace, on eth0, what it sends.
Status set_rate(const std::string& name, uint64_t bits_per_second);

}  // namespace swissbox::veth
