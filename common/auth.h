// Bearer tokens shared by the agent and the scheduler (the scheduler passes a caller's
// token on to the agent that owns the sandbox).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace swissbox {

// A tenant's limits (issue 21); each unset one is unlimited. sandboxes, cpu and memory_mb
// bound its running sandboxes (their count and the sum of their limits), suspended its
// sleeping ones, workspace_mb the size of each of its workspaces.
struct Quota {
  std::optional<int64_t> sandboxes;
  std::optional<double> cpu;
  std::optional<int64_t> memory_mb;
  std::optional<int64_t> suspended;
  std::optional<int64_t> workspace_mb;
  bool operator==(const Quota&) const = default;
};

// Who a token speaks for: a tenant, whether it may administer the node (warm pools,
// metrics and usage of every tenant, deleting a tenant), and the tenant's quota.
struct Principal {
  std::string tenant;
  bool admin = false;
  Quota quota = {};
};

// Equal in content, looking at every byte of the longer string whatever the answer (for
// secrets: the time says nothing about how much of one a guess matched).
bool constant_time_equal(std::string_view a, std::string_view b);

// token → principal; empty: no authentication (loopback only).
using TokenTable = std::map<std::string, Principal>;

// A token file: a JSON object whose keys are tokens of 16+ characters and whose values are
// a tenant name or {"tenant": "t", "admin": true|false, "quota": {"sandboxes": n, "cpu": c,
// "memory_mb": m, "suspended": n, "workspace_mb": m}}. Tokens of one tenant that both give
// a quota must give the same one.
Result<TokenTable> load_tokens(const std::string& path);
// Each tenant's quota, from the tokens that give one.
std::map<std::string, Quota> tenant_quotas(const TokenTable& tokens);
// The principal of a token (E2B's X-API-KEY); nullptr when it names none. Constant time as
// below.
const Principal* token_principal(std::string_view token, const TokenTable& tokens);
// The principal of an Authorization header value "Bearer <token>"; nullptr when the header
// is not that or names no known token. Compares in time that depends only on the sizes of
// the table and the presented token, never on how much of a known token it matches.
const Principal* bearer_principal(std::string_view authorization, const TokenTable& tokens);
// The admission check both servers run on a request's header: nullopt when it may go on.
// Health probes and the unix socket need no token.
std::optional<Error> check_bearer(std::string_view path, std::string_view authorization,
                                  bool from_unix_socket, const TokenTable& tokens);
// An admin token of the table (what the scheduler shows agents when it polls), else any.
std::string service_token(const TokenTable& tokens);
// Whether HOST:PORT binds only this host (serving without tokens is allowed only there).
bool is_loopback_listen(const std::string& host_port);

}  // namespace swissbox
