// Bearer tokens shared by the agent and the scheduler (the scheduler passes a caller's
// token on to the agent that owns the sandbox).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace swissbox {

// Who a token speaks for: a tenant, and whether it may administer the node (warm pools,
// metrics of every tenant).
struct Principal {
  std::string tenant;
  bool admin = false;
};

// Equal in content, looking at every byte of the longer string whatever the answer (for
// secrets: the time says nothing about how much of one a guess matched).
bool constant_time_equal(std::string_view a, std::string_view b);

// token → principal; empty: no authentication (loopback only).
using TokenTable = std::map<std::string, Principal>;

// A token file: a JSON object whose keys are tokens of 16+ characters and whose values are
// a tenant name or {"tenant": "t", "admin": true|false}.
Result<TokenTable> load_tokens(const std::string& path);
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
