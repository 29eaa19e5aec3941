// The agent's HTTP API (DESIGN.md table): routing, authentication to a tenant, request
// validation and the JSON answers. Served on TCP and on the root-only unix socket.
#pragma once

#include <functional>

#include <map>
#include <memory>
#include <string>

#include "agent/sandbox/sandbox_manager.h"
#include "common/auth.h"
#include "common/http_server.h"
#include "common/metrics.h"

namespace swissbox {

class CriMonitor;
class TemplateStore;
namespace e2b {
struct Processes;
struct Watchers;
}

struct ApiOptions {
  std::string region = "dev";
  const CriMonitor* cri = nullptr;  // the node's container runtime, if the agent watches it
  TemplateStore* templates = nullptr;  // image templates (issue 22)
  TokenTable tokens;  // empty = no auth (the agent then listens on loopback only)
  size_t max_json_body = 16 << 20;
};

class AgentApi {
 public:
  AgentApi(SandboxManager& mgr, Metrics& metrics, ApiOptions opts);
  void handle(http::Request&& req, std::shared_ptr<http::Responder> res);
  // http::ServerOptions::admit and body_limit_for: the token is checked on the header,
  // before a body is read; JSON routes take small bodies, file uploads and code larger ones.
  std::optional<Error> admit(const http::RequestHeader& header, bool from_unix_socket) const;
  uint64_t body_limit(const http::RequestHeader& header) const;
  // http::ServerOptions::stream_body: file uploads reach the sandbox as they arrive.
  static bool streams_body(const http::RequestHeader& header);

 private:
  struct Call;
  void route(Call& c);
  void sandbox_route(Call& c, const std::string& id, const std::string& rest);
  void create_sandbox(Call& c);
  void exec(Call& c, std::shared_ptr<Sandbox> sb, bool code);
  // Runs the request with its events streamed as they come (SSE, E2B's NDJSON), counted
  // by `count`; `after` runs once the stream has ended (a one-shot's cleanup).
  void stream_run(std::shared_ptr<Sandbox> sb, struct ExecRequest req, std::shared_ptr<class RunStream> stream,
                  std::function<void(const Result<struct ExecOutcome>&)> count,
                  std::function<void()> after = {});
  void watch_client(const std::shared_ptr<http::Responder>& res,
                    const std::shared_ptr<struct ExecHandle>& handle);
  void files(Call& c, std::shared_ptr<Sandbox> sb, bool list);
  // rest: what follows …/contexts ("", "/{cid}", "/{cid}/restart").
  void contexts(Call& c, std::shared_ptr<Sandbox> sb, const std::string& rest);
  // E2B's API (agent/api/e2b/): the control plane, and the calls for one sandbox (envd,
  // and the code interpreter on port 49999) with its access token checked.
  void e2b_control(Call& c);
  void e2b_sandbox(Call& c);
  void e2b_interpreter(Call& c, std::shared_ptr<Sandbox> sb);
  void e2b_envd(Call& c, std::shared_ptr<Sandbox> sb);
  void e2b_process_start(Call& c, std::shared_ptr<Sandbox> sb);
  // A Process/Start or Connect stream: its start event sent, the rest to come.
  std::shared_ptr<class RunStream> process_stream(const std::shared_ptr<http::Responder>& res,
                                                  int64_t pid, bool pty);
  void e2b_upload(Call& c, std::shared_ptr<Sandbox> sb);
  // Filesystem/WatchDir (a stream), and the watchers of CreateWatcher, GetWatcherEvents and
  // RemoveWatcher (unary; msg is the call's message).
  void e2b_watch_dir(Call& c, std::shared_ptr<Sandbox> sb);
  void e2b_watcher(Call& c, std::shared_ptr<Sandbox> sb, const nlohmann::json& msg);
  void execute_oneshot(Call& c);
  void node_info(Call& c);
  void warmpool(Call& c, const std::string& tmpl);
  // /v1/tenants, /v1/tenants/{t}/usage, DELETE /v1/tenants/{t} (tenants.cc).
  void tenants(Call& c, const std::string& tenant, const std::string& rest);
  // /v1/templates[/{name}[/log]] (agent/api/templates.cc).
  void templates(Call& c, const std::string& name, const std::string& rest);
  // A template's build log from offset on, as it grows, until its build has ended.
  void follow_log(std::shared_ptr<http::Responder> res, const std::string& name, size_t offset);
  nlohmann::json tenant_json(const std::string& tenant, const TenantLoad& load) const;
  // Counts a finished run (kind: exec, code, oneshot): its outcome, truncation, the
  // tenant's executions and its latency by template and language.
  std::function<void(const Result<struct ExecOutcome>&)> run_recorder(
      std::string kind, std::string template_name, std::string tenant,
      const struct ExecRequest& req);

  SandboxManager& mgr_;
  Metrics& metrics_;
  ApiOptions opts_;
  std::shared_ptr<e2b::Processes> envd_processes_;  // what envd's Process/Start runs
  std::shared_ptr<e2b::Watchers> envd_watchers_;    // envd's CreateWatcher
};

// Nesting deeper than max_depth is refused before the JSON parser sees it (the parser
// recurses per level).
bool json_depth_ok(std::string_view text, int max_depth);

}  // namespace swissbox
