// The packet filter around sandboxes with network: one nftables table per agent (named by
// its link tag), loaded in one transaction through libnftables. What a sandbox sends to
// the node may only reach the agent's egress proxy; anything else is refused with a TCP
// reset (gVisor ignores ICMP unreachable for connects: they would hang to their timeout)
// or an ICMP error — already at prerouting for other destinations, since a node without
// ip_forward would drop them silently — a spoofed source is dropped, nothing is forwarded
// to or from a sandbox's link (no other sandbox, no cluster, no metadata service, no internet), and the
// proxy port answers no one but sandboxes. The rules are per agent, not per sandbox: a
// sandbox adds or leaves no rule, and a restart replaces the table whole.
#pragma once

#include <cstdint>
#include <string>

#include "common/error.h"

namespace swissbox {

struct EgressFilterConfig {
  std::string table;        // "swissbox_sbx"
  std::string link_prefix;  // host ends of sandbox veths: "sbx" matches sbx*
  std::string pool_cidr;    // "10.200.0.0/16"
  uint16_t proxy_port = 3128;
};

// The ruleset text (for tests and for operators: `swissbox-agent --print-egress-rules`).
std::string egress_ruleset(const EgressFilterConfig& config);
// Loads (or replaces) the table.
Status install_egress_filter(const EgressFilterConfig& config);
// Removes the table; missing is fine.
Status remove_egress_filter(const std::string& table);
// Whether the table is loaded.
bool egress_filter_present(const std::string& table);

}  // namespace swissbox
