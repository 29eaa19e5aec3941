#include "agent/net/veth.h"

#include <fcntl.h>
#include <linux/pkt_sched.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/route.h>
#include <netlink/route/tc.h>

#include <algorithm>
#include <memory>

#include "agent/net/netns.h"
#include "common/unique_fd.h"

namespace swissbox::veth {

namespace {

// RAII owners for libnl objects: the library's own release function as the deleter.
template <auto Release>
struct Releaser {
  template <typename T>
  void operator()(T* p) const {
    Release(p);
  }
};
using Sock = std::unique_ptr<nl_sock, Releaser<nl_socket_free>>;
using Link = std::unique_ptr<rtnl_link, Releaser<rtnl_link_put>>;
using NlAddr = std::unique_ptr<nl_addr, Releaser<nl_addr_put>>;
using Addr = std::unique_ptr<rtnl_addr, Releaser<rtnl_addr_put>>;
using Route = std::unique_ptr<rtnl_route, Releaser<rtnl_route_put>>;
using Qdisc = std::unique_ptr<rtnl_qdisc, Releaser<rtnl_qdisc_put>>;
using Cache = std::unique_ptr<nl_cache, Releaser<nl_cache_free>>;

Error nl_error(int err, const std::string& what) {
  return make_error(Code::kInternal, what + ": " + nl_geterror(err));
}

// A NETLINK_ROUTE socket in the calling thread's network namespace.
Result<Sock> connect() {
  Sock s(nl_socket_alloc());
  if (!s) return make_error(Code::kInternal, "nl_socket_alloc failed");
  if (int err = nl_connect(s.get(), NETLINK_ROUTE); err < 0) return nl_error(err, "netlink connect");
  return s;
}

Result<Link> get_link(nl_sock* s, const std::string& name) {
  rtnl_link* l = nullptr;
  if (int err = rtnl_link_get_kernel(s, 0, name.c_str(), &l); err < 0)
    return nl_error(err, "find link " + name);
  return Link(l);
}

Status set_up(nl_sock* s, const std::string& name) {
  auto link = get_link(s, name);
  if (!link) return link.error();
  Link change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (int err = rtnl_link_change(s, link->get(), change.get(), 0); err < 0)
    return nl_error(err, "set " + name + " up");
  return ok_status();
}

// existing_ok: an address (or route, below) already there is success.
Status add_address(nl_sock* s, const std::string& name, const std::string& ip, int prefix_len,
                   bool existing_ok = false) {
  auto link = get_link(s, name);
  if (!link) return link.error();
  nl_addr* parsed = nullptr;
  std::string cidr = ip + "/" + std::to_string(prefix_len);
  if (int err = nl_addr_parse(cidr.c_str(), AF_INET, &parsed); err < 0)
    return nl_error(err, "parse " + cidr);
  NlAddr local(parsed);
  Addr addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), rtnl_link_get_ifindex(link->get()));
  if (int err = rtnl_addr_set_local(addr.get(), local.get()); err < 0)
    return nl_error(err, "address " + cidr);
  if (int err = rtnl_addr_add(s, addr.get(), 0); err < 0 && !(existing_ok && err == -NLE_EXIST))
    return nl_error(err, "add " + cidr + " to " + name);
  return ok_status();
}

Status add_default_route(nl_sock* s, const std::string& name, const std::string& gateway,
                         bool existing_ok = false) {
  auto link = get_link(s, name);
  if (!link) return link.error();
  nl_addr *dst = nullptr, *gw = nullptr;
  if (int err = nl_addr_parse("0.0.0.0/0", AF_INET, &dst); err < 0) return nl_error(err, "route");
  NlAddr dst_owner(dst);
  if (int err = nl_addr_parse(gateway.c_str(), AF_INET, &gw); err < 0)
    return nl_error(err, "parse gateway " + gateway);
  NlAddr gw_owner(gw);
  Route route(rtnl_route_alloc());
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_protocol(route.get(), RTPROT_STATIC);
  rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
  rtnl_route_set_dst(route.get(), dst);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();  // owned by the route once added to it
  rtnl_route_nh_set_ifindex(nh, rtnl_link_get_ifindex(link->get()));
  rtnl_route_nh_set_gateway(nh, gw);
  rtnl_route_add_nexthop(route.get(), nh);
  if (int err = rtnl_route_add(s, route.get(), NLM_F_CREATE); err < 0 && !(existing_ok && err == -NLE_EXIST))
    return nl_error(err, "default route via " + gateway);
  return ok_status();
}

// The namespace's end: lo and eth0 up, eth0's address and the default route through the
// host end. Already there is fine (a sandbox's netstack may have left some of it).
Status configure_inner(const PairConfig& c) {
  return netns::run_in(c.netns_path, [&]() -> Status {
    auto inner = connect();
    if (!inner) return inner.error();
    if (auto st = set_up(inner->get(), "lo"); !st) return st;
    if (auto st = add_address(inner->get(), "eth0", c.sandbox_ip, c.prefix_len, true); !st) return st;
    if (auto st = set_up(inner->get(), "eth0"); !st) return st;
    return add_default_route(inner->get(), "eth0", c.host_ip, true);
  });
}

Status make_pair(nl_sock* s, const PairConfig& c, bool* created) {
  auto ns = netns::open(c.netns_path);
  if (!ns) return ns.error();
  Link link(rtnl_link_veth_alloc());
  if (!link) return make_error(Code::kInternal, "rtnl_link_veth_alloc failed");
  rtnl_link_set_name(link.get(), c.host_name.c_str());
  Link peer(rtnl_link_veth_get_peer(link.get()));
  // Born inside the namespace: the name need only be unique there.
  rtnl_link_set_name(peer.get(), "eth0");
  rtnl_link_set_ns_fd(peer.get(), ns->get());
  if (int err = rtnl_link_add(s, link.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0)
    return nl_error(err, "create veth " + c.host_name);
  *created = true;
  if (auto st = add_address(s, c.host_name, c.host_ip, c.prefix_len); !st) return st;
  if (auto st = set_up(s, c.host_name); !st) return st;
  return configure_inner(c);
}

}  // namespace

Status create_pair(const PairConfig& c) {
  if (c.host_name.empty() || c.host_name.size() >= IFNAMSIZ)
    return make_error(Code::kInvalidArgument, "bad link name '" + c.host_name + "'");
  auto s = connect();
  if (!s) return s.error();
  bool created = false;
  auto st = make_pair(s->get(), c, &created);
  if (!st && created) (void)remove_link(c.host_name);
  return st;
}

Status readdress(const PairConfig& c) { return configure_inner(c); }

Status remove_link(const std::string& name) {
  auto s = connect();
  if (!s) return s.error();
  Link link(rtnl_link_alloc());
  rtnl_link_set_name(link.get(), name.c_str());
  int err = rtnl_link_delete(s->get(), link.get());
  if (err < 0 && err != -NLE_NODEV && err != -NLE_OBJ_NOTFOUND) return nl_error(err, "delete link " + name);
  return ok_status();
}

Result<std::vector<std::string>> links_with_prefix(const std::string& prefix) {
  auto s = connect();
  if (!s) return s.error();
  nl_cache* cache = nullptr;
  if (int err = rtnl_link_alloc_cache(s->get(), AF_UNSPEC, &cache); err < 0)
    return nl_error(err, "list links");
  Cache owner(cache);
  std::vector<std::string> out;
  for (nl_object* o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
    const char* name = rtnl_link_get_name(reinterpret_cast<rtnl_link*>(o));
    if (name && std::string_view(name).rfind(prefix, 0) == 0) out.emplace_back(name);
  }
  return out;
}

Result<Counters> counters(const std::string& name) {
  auto s = connect();
  if (!s) return s.error();
  auto link = get_link(s->get(), name);
  if (!link) return link.error();
  return Counters{rtnl_link_get_stat(link->get(), RTNL_LINK_RX_BYTES),
                  rtnl_link_get_stat(link->get(), RTNL_LINK_TX_BYTES)};
}

Status set_rate(const std::string& name, uint64_t bits_per_second) {
  auto s = connect();
  if (!s) return s.error();
  auto link = get_link(s->get(), name);
  if (!link) return link.error();
  Qdisc q(rtnl_qdisc_alloc());
  rtnl_tc_set_link(TC_CAST(q.get()), link->get());
  rtnl_tc_set_parent(TC_CAST(q.get()), TC_H_ROOT);
  if (bits_per_second == 0) {
    int err = rtnl_qdisc_delete(s->get(), q.get());
    if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_INVAL && err != -NLE_NOADDR)
      return nl_error(err, "remove rate limit of " + name);
    return ok_status();
  }
  if (int err = rtnl_tc_set_kind(TC_CAST(q.get()), "tbf"); err < 0) return nl_error(err, "tbf");
  // A bucket of 20 ms of traffic (at least a full-size frame's worth), a queue of 100 ms:
  // accurate over seconds without holding bursts back.
  uint64_t bytes_per_second = std::max<uint64_t>(bits_per_second / 8, 1);
  int bucket = static_cast<int>(std::max<uint64_t>(bytes_per_second / 50, 16 * 1024));
  int limit = static_cast<int>(std::max<uint64_t>(bytes_per_second / 10, 64 * 1024));
  rtnl_qdisc_tbf_set_limit(q.get(), limit);
  rtnl_qdisc_tbf_set_rate(q.get(), static_cast<int>(std::min<uint64_t>(bytes_per_second, INT32_MAX)),
                          bucket, 0);
  if (int err = rtnl_qdisc_add(s->get(), q.get(), NLM_F_CREATE | NLM_F_REPLACE); err < 0)
    return nl_error(err, "rate limit " + name);
  return ok_status();
}

}  // namespace swissbox::veth
