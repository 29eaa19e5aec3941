// Egress networking of one agent's sandboxes. Each sandbox with network gets a /30 out of
// a node-local pool (index i: gateway = base + 4i + 1 on the host end, sandbox = + 2),
// a network namespace pinned inside its directory (<dir>/netns, so that the directory and
// the namespace go together), and a veth pair named <prefix><i> on the host. What was
// made is written to <dir>/network.json, which is how destroy, usage and a restarted agent
// find it again; links with the prefix that no directory explains are orphans for the GC.
// Thread-safe: the driver calls it from worker threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "agent/net/veth.h"
#include "common/error.h"

namespace swissbox {

struct EgressConfig {
  std::string pool_cidr;             // "10.200.0.0/16"; empty: no egress on this node
  std::string link_prefix = "sbx";   // host ends are <prefix><index>
  uint16_t proxy_port = 3128;        // the egress proxy, on every gateway address
};

struct SandboxLink {
  int index = -1;
  std::string link, host_ip, sandbox_ip;
};

class EgressNetworks {
 public:
  // Parses the pool (prefix /8 … /28) and takes note of the links already there.
  static Result<std::unique_ptr<EgressNetworks>> create(EgressConfig config);

  const EgressConfig& config() const { return config_; }
  static std::string netns_path(const std::string& sandbox_dir) { return sandbox_dir + "/netns"; }

  // Namespace, veth pair and addresses for the sandbox in `sandbox_dir`.
  Result<SandboxLink> setup(const std::string& sandbox_dir);
  // Before a suspended sandbox is restored: its namespace's end gets back the address and
  // route runsc's netstack took at start; when namespace or pair are gone (a node reboot)
  // they are made again, with the recorded addresses if that /30 is still free.
  Result<SandboxLink> restore(const std::string& sandbox_dir);
  // Marks a /30 as taken (a suspended sandbox's, found on disk after a reboot).
  void reserve(int index);
  // Removes what setup made (nothing made is fine).
  Status teardown(const std::string& sandbox_dir);
  // What setup made for the sandbox in `sandbox_dir`, if anything.
  static std::optional<SandboxLink> read(const std::string& sandbox_dir);
  // Bytes the sandbox received and sent (the host end's TX and RX).
  Result<std::pair<uint64_t, uint64_t>> bytes_in_out(const SandboxLink& link) const;
  // Rate limits, 0 = none: `in` on the host end, `out` on eth0 inside the namespace.
  Status set_rates(const std::string& sandbox_dir, uint64_t in_bits, uint64_t out_bits);
  // Removes links with the prefix whose index `in_use` (asked after the links were listed,
  // so that a sandbox being set up meanwhile is seen) does not name; answers their names.
  std::vector<std::string> remove_orphans(const std::function<std::set<int>()>& in_use);

 private:
  explicit EgressNetworks(EgressConfig config) : config_(std::move(config)) {}
  Result<int> allocate(int preferred = -1);
  Result<SandboxLink> make(const std::string& sandbox_dir, int index);
  void release(int index);
  std::string address(int index, int offset) const;

  EgressConfig config_;
  uint32_t base_ = 0;  // the pool's first address, host order
  int slots_ = 0;
  std::mutex mu_;
  std::set<int> used_;
};

}  // namespace swissbox
