// E2B's envd (E2b-Sandbox-Port: 49983): processes and the filesystem of one sandbox, over
// the Connect protocol (JSON codec) and plain HTTP for /files and /health.
#include "agent/api/call.h"
#include "agent/api/e2b/e2b.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

void AgentApi::e2b_sandbox(Call& c) {
  std::string id(e2b::header(c.req, "E2b-Sandbox-Id"));
  auto sb = valid_sandbox_id(id) ? mgr_.find(id) : nullptr;
  // The access token is the sandbox's capability: whoever holds it (the tenant that made
  // the sandbox) may use it; nobody else learns whether it exists.
  std::string_view token = e2b::header(c.req, "X-Access-Token");
  if (token.empty()) token = e2b::header(c.req, "E2B-Traffic-Access-Token");
  if (!sb || sb->state == SandboxState::kWarm || (!c.operator_ && !e2b::access_allowed(*sb, token))) {
    if (token.empty() && !c.operator_) {
      return e2b::fail(c.res, make_error(Code::kUnauthenticated,
                                         "X-Access-Token (the sandbox's envdAccessToken) is required"));
    }
    return e2b::fail(c.res, make_error(Code::kNotFound, "sandbox " + id + " not found"));
  }
  if (sb->state == SandboxState::kFailed) {
    return e2b::fail(c.res, make_error(Code::kUnavailable, "sandbox " + id + " failed: " + sb->failure));
  }
  if (e2b::header(c.req, "E2b-Sandbox-Port") == e2b::kCodeInterpreterPort) return e2b_interpreter(c, sb);
  e2b_envd(c, sb);
}

void AgentApi::e2b_envd(Call& c, std::shared_ptr<Sandbox> sb) {
  (void)sb;
  if (c.path == "/health") return c.res->send(204, {}, {});
  e2b::fail(c.res, make_error(Code::kNotFound, "no route for " + std::string(c.req.method_string()) +
                                                   " " + c.path + " on envd"));
}

}  // namespace swissbox
