#include "agent/net/sandbox_network.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "agent/net/egress_policy.h"
#include "agent/net/netns.h"
#include "common/fs.h"

namespace swissbox {

using json = nlohmann::json;

namespace {

constexpr const char* kRecord = "/network.json";

// The index in a link name "<prefix><digits>", or -1.
int index_of(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return -1;
  std::string digits = name.substr(prefix.size());
  if (digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoi(digits);
}

}  // namespace

Result<std::unique_ptr<EgressNetworks>> EgressNetworks::create(EgressConfig config) {
  auto pool = Cidr::parse(config.pool_cidr);
  if (!pool || !pool->network.is_v4() || config.pool_cidr.find('/') == std::string::npos ||
      pool->prefix_len < 8 || pool->prefix_len > 28) {
    return make_error(Code::kInvalidArgument,
                      "egress pool must be an IPv4 CIDR from /8 to /28, got '" + config.pool_cidr + "'");
  }
  const int prefix = pool->prefix_len;
  // Interface names are at most 15 characters: the prefix leaves room for 6 digits.
  if (config.link_prefix.empty() || config.link_prefix.size() > 9 ||
      config.link_prefix.find_first_not_of("abcdefghijklmnopqrstuvwxyz") != std::string::npos) {
    return make_error(Code::kInvalidArgument,
                      "link prefix must be 1 to 9 lower-case letters, got '" + config.link_prefix + "'");
  }
  std::unique_ptr<EgressNetworks> n(new EgressNetworks(std::move(config)));
  n->base_ = pool->network.to_v4().to_uint() & (~uint32_t{0} << (32 - prefix));
  n->slots_ = static_cast<int>(std::min<uint64_t>((uint64_t{1} << (32 - prefix)) / 4, 999999));
  auto links = veth::links_with_prefix(n->config_.link_prefix);
  if (!links) return links.error();
  for (const auto& l : *links) {
    if (int i = index_of(l, n->config_.link_prefix); i >= 0) n->used_.insert(i);
  }
  return n;
}

std::string EgressNetworks::address(int index, int offset) const {
  in_addr a{htonl(base_ + static_cast<uint32_t>(index) * 4 + static_cast<uint32_t>(offset))};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

Result<int> EgressNetworks::allocate(int preferred) {
  std::lock_guard lock(mu_);
  if (preferred >= 0 && preferred < slots_ && used_.insert(preferred).second) return preferred;
  for (int i = 0; i < slots_; ++i) {
    if (used_.insert(i).second) return i;
  }
  return make_error(Code::kResourceExhausted,
                    fmt::format("the egress pool {} has no free /30 left", config_.pool_cidr));
}

void EgressNetworks::reserve(int index) {
  std::lock_guard lock(mu_);
  used_.insert(index);
}

void EgressNetworks::release(int index) {
  std::lock_guard lock(mu_);
  used_.erase(index);
}

Result<SandboxLink> EgressNetworks::setup(const std::string& dir) {
  auto index = allocate();
  if (!index) return index.error();
  return make(dir, *index);
}

Result<SandboxLink> EgressNetworks::make(const std::string& dir, int index) {
  SandboxLink l{index, config_.link_prefix + std::to_string(index), address(index, 1),
                address(index, 2)};
  // Recorded first: whatever follows can then always be found and undone.
  json rec = {{"index", l.index}, {"link", l.link}, {"host_ip", l.host_ip}, {"sandbox_ip", l.sandbox_ip}};
  Status st = fs::write_file_atomic(dir + kRecord, rec.dump());
  if (st) st = netns::create(netns_path(dir));
  if (st) st = veth::create_pair({l.link, netns_path(dir), l.host_ip, l.sandbox_ip, 30});
  if (!st) {
    (void)teardown(dir);
    return st.error();
  }
  return l;
}

Result<SandboxLink> EgressNetworks::restore(const std::string& dir) {
  auto l = read(dir);
  if (!l) return make_error(Code::kNotFound, "no network is recorded in " + dir);
  if (netns::pinned(netns_path(dir)) && veth::counters(l->link).ok()) {
    if (auto st = veth::readdress({l->link, netns_path(dir), l->host_ip, l->sandbox_ip, 30}); !st)
      return st.error();
    return *l;
  }
  if (auto st = teardown(dir); !st) return st.error();
  auto index = allocate(l->index);
  if (!index) return index.error();
  return make(dir, *index);
}

std::optional<SandboxLink> EgressNetworks::read(const std::string& dir) {
  auto text = fs::read_file(dir + kRecord, 4096);
  if (!text) return std::nullopt;
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  SandboxLink l;
  l.index = j.value("index", -1);
  l.link = j.value("link", "");
  l.host_ip = j.value("host_ip", "");
  l.sandbox_ip = j.value("sandbox_ip", "");
  if (l.index < 0 || l.link.empty()) return std::nullopt;
  return l;
}

Status EgressNetworks::teardown(const std::string& dir) {
  auto l = read(dir);
  Status first = ok_status();
  if (l) {
    if (auto st = veth::remove_link(l->link); !st) first = st;
  }
  // The namespace goes once unpinned and its last process (the sentry) is gone; its end of
  // the pair goes with it.
  if (auto st = netns::remove(netns_path(dir)); !st && first) first = st;
  if (!first) return first;
  if (l) release(l->index);
  if (::unlink((dir + kRecord).c_str()) != 0 && errno != ENOENT) return sys_error("remove " + dir + kRecord);
  return ok_status();
}

Result<std::pair<uint64_t, uint64_t>> EgressNetworks::bytes_in_out(const SandboxLink& l) const {
  auto c = veth::counters(l.link);
  if (!c) return c.error();
  return std::pair{c->tx_bytes, c->rx_bytes};
}

Status EgressNetworks::set_rates(const std::string& dir, uint64_t in_bits, uint64_t out_bits) {
  auto l = read(dir);
  if (!l) return make_error(Code::kNotFound, "no network in " + dir);
  if (auto st = veth::set_rate(l->link, in_bits); !st) return st;
  return netns::run_in(netns_path(dir), [out_bits] { return veth::set_rate("eth0", out_bits); });
}

std::vector<std::string> EgressNetworks::remove_orphans(
    const std::function<std::set<int>()>& in_use) {
  std::vector<std::string> removed;
  auto links = veth::links_with_prefix(config_.link_prefix);
  if (!links) return removed;
  std::set<int> used = in_use();
  for (const auto& name : *links) {
    int i = index_of(name, config_.link_prefix);
    if (i < 0 || used.count(i)) continue;
    if (veth::remove_link(name).ok()) {
      removed.push_back(name);
      release(i);
    }
  }
  return removed;
}

}  // namespace swissbox
