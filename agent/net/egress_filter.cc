#include "agent/net/egress_filter.h"

#include <fmt/format.h>
#include <nftables/libnftables.h>

#include <memory>

namespace swissbox {

namespace {

struct CtxFree {
  void operator()(nft_ctx* c) const { nft_ctx_free(c); }
};

// Runs nft commands as one transaction; the error text nft prints becomes the message.
Status run_nft(const std::string& commands, std::string* output = nullptr) {
  std::unique_ptr<nft_ctx, CtxFree> ctx(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!ctx) return make_error(Code::kInternal, "nft_ctx_new failed");
  nft_ctx_buffer_output(ctx.get());
  nft_ctx_buffer_error(ctx.get());
  if (nft_run_cmd_from_buffer(ctx.get(), commands.c_str()) != 0) {
    std::string err = nft_ctx_get_error_buffer(ctx.get());
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return make_error(Code::kInternal, "nftables: " + err);
  }
  if (output) *output = nft_ctx_get_output_buffer(ctx.get());
  return ok_status();
}

}  // namespace

std::string egress_ruleset(const EgressFilterConfig& c) {
  // "add" then "delete" makes the replace work whether or not the table exists.
  return fmt::format(R"(add table inet {table}
delete table inet {table}
table inet {table} {{
  chain prerouting {{
    type filter hook prerouting priority filter - 10; policy accept;
    iifname "{links}*" fib saddr . iif oif missing drop
    iifname "{links}*" fib daddr type != local meta l4proto tcp reject with tcp reset
    iifname "{links}*" fib daddr type != local reject
  }}
  chain input {{
    type filter hook input priority filter - 10; policy accept;
    iifname "{links}*" jump from_sandbox
    tcp dport {port} drop
  }}
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname "{links}*" meta l4proto tcp reject with tcp reset
    iifname "{links}*" drop
    oifname "{links}*" drop
  }}
  chain from_sandbox {{
    ip daddr {pool} tcp dport {port} accept
    meta l4proto tcp reject with tcp reset
    reject
  }}
}}
)",
                     fmt::arg("table", c.table), fmt::arg("links", c.link_prefix),
                     fmt::arg("pool", c.pool_cidr), fmt::arg("port", c.proxy_port));
}

Status install_egress_filter(const EgressFilterConfig& config) {
  return run_nft(egress_ruleset(config));
}

Status remove_egress_filter(const std::string& table) {
  return run_nft(fmt::format("add table inet {0}\ndelete table inet {0}\n", table));
}

bool egress_filter_present(const std::string& table) {
  std::string out;
  return run_nft("list tables inet", &out).ok() &&
         out.find("table inet " + table + "\n") != std::string::npos;
}

}  // namespace swissbox
