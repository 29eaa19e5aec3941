// Bearer tokens shared by the agent and the scheduler (the scheduler passes a caller's
// token on to the agent that owns the sandbox).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/error.h"

namespace swissbox {

// A token file: a JSON object {"<token>": "<tenant>"}, tokens of 16+ characters.
Result<std::map<std::string, std::string>> load_tokens(const std::string& path);
// The tenant of an Authorization header value "Bearer <token>"; nullptr when the header is
// not that or names no known token.
const std::string* bearer_tenant(std::string_view authorization,
                                 const std::map<std::string, std::string>& tokens);
// Whether HOST:PORT binds only this host (serving without tokens is allowed only there).
bool is_loopback_listen(const std::string& host_port);

}  // namespace swissbox
