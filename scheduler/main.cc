// swissbox-scheduler: places new sandboxes on the least-loaded eligible agent and routes
// every later call to the agent that owns the sandbox. Stateless: run two or more replicas
// behind one Service; each polls every agent itself.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/auth.h"
#include "common/fs.h"
#include "common/http_server.h"
#include "common/process.h"
#include "common/log.h"
#include "scheduler/service.h"

using namespace swissbox;

namespace {

constexpr const char* kUsage =
    "usage: swissbox-scheduler [--config FILE] [--listen HOST:PORT] --agents HOST:PORT[,…]\n"
    "         (a HOST that is a name, such as the agents' headless Service, is resolved at\n"
    "          every poll and each of its addresses is an agent)\n"
    "         [--allowed-regions Z1,Z2] [--token-file FILE] [--log-level L]\n"
    "         [--poll-interval-ms N] [--sample-k K]\n"
    "         [--max-connections N] [--max-connections-per-client N]\n";

struct Config {
  std::string listen = "127.0.0.1:7800";
  std::string agents, regions = "ch-gva-2,ch-dk-2", token_file, log_level = "info";
  int poll_ms = 1000, sample_k = 2;
  // An orchestrator pod is one client: size this for the calls one pod has open at once.
  int max_connections = 4096, max_connections_per_client = 1024;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Status apply(Config& c, const std::string& key, const std::string& v) {
  auto number = [&](int* out, int lo, int hi) -> Status {
    char* end = nullptr;
    long n = strtol(v.c_str(), &end, 10);
    if (v.empty() || *end || n < lo || n > hi)
      return make_error(Code::kInvalidArgument, fmt::format("--{} must be {}..{}", key, lo, hi));
    *out = static_cast<int>(n);
    return ok_status();
  };
  if (key == "listen") c.listen = v;
  else if (key == "agents") c.agents = v;
  else if (key == "allowed-regions") c.regions = v;
  else if (key == "token-file") c.token_file = v;
  else if (key == "log-level") c.log_level = v;
  else if (key == "poll-interval-ms") return number(&c.poll_ms, 100, 60000);
  else if (key == "sample-k") return number(&c.sample_k, 1, 64);
  else if (key == "max-connections") return number(&c.max_connections, 16, 1000000);
  else if (key == "max-connections-per-client") return number(&c.max_connections_per_client, 1, 1000000);
  else return make_error(Code::kInvalidArgument, "unknown option --" + key);
  return ok_status();
}

Result<Config> parse(const std::vector<std::string>& args) {
  Config c;
  std::vector<std::pair<std::string, std::string>> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].rfind("--", 0) != 0)
      return make_error(Code::kInvalidArgument, "expected --flag value, got " + args[i]);
    // "--flag value" or "--flag=value" (as Kubernetes manifests tend to write them).
    if (auto eq = args[i].find('='); eq != std::string::npos) {
      flags.emplace_back(args[i].substr(2, eq - 2), args[i].substr(eq + 1));
      continue;
    }
    if (i + 1 >= args.size()) return make_error(Code::kInvalidArgument, args[i] + " needs a value");
    flags.emplace_back(args[i].substr(2), args[i + 1]);
    ++i;
  }
  for (const auto& [k, v] : flags) {
    if (k != "config") continue;
    auto text = fs::read_file(v, 1 << 20);
    if (!text) return text.error();
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (!j.is_object()) return make_error(Code::kInvalidArgument, v + " is not a JSON object");
    for (auto& [jk, jv] : j.items()) {
      std::string value = jv.is_string() ? jv.get<std::string>() : jv.dump();
      if (auto st = apply(c, jk, value); !st) return st.error();
    }
  }
  for (const auto& [k, v] : flags) {
    if (k == "config") continue;
    if (auto st = apply(c, k, v); !st) return st.error();
  }
  if (split(c.agents).empty()) return make_error(Code::kInvalidArgument, "--agents is required");
  for (const auto& a : split(c.agents)) {
    auto colon = a.rfind(':');
    bool port_ok = colon != std::string::npos && colon > 0 && colon + 1 < a.size() &&
                   a.find_first_not_of("0123456789", colon + 1) == std::string::npos;
    if (!port_ok) return make_error(Code::kInvalidArgument, "--agents entry '" + a + "' is not HOST:PORT");
  }
  if (split(c.regions).empty()) return make_error(Code::kInvalidArgument, "--allowed-regions is empty");
  if (c.token_file.empty() && !is_loopback_listen(c.listen))
    return make_error(Code::kInvalidArgument, "--listen " + c.listen + " is not loopback: set --token-file");
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a peer that went away is an error on its call, not our end
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") return fputs(kUsage, stdout), 0;
  }
  auto cfg = parse(args);
  if (!cfg) {
    fprintf(stderr, "swissbox-scheduler: %s\n%s", cfg.error().to_string().c_str(), kUsage);
    return 2;
  }
  log::Level level;
  if (!log::parse_level(cfg->log_level, &level)) {
    fprintf(stderr, "swissbox-scheduler: unknown --log-level %s\n", cfg->log_level.c_str());
    return 2;
  }
  log::set_level(level);
  sched::SchedulerOptions so;
  so.agents = split(cfg->agents);
  so.policy.allowed_regions = {};
  for (auto& r : split(cfg->regions)) so.policy.allowed_regions.insert(r);
  so.policy.sample_k = cfg->sample_k;
  so.poll_interval = std::chrono::milliseconds(cfg->poll_ms);
  so.policy.stale_after = so.poll_interval * 3;
  if (!cfg->token_file.empty()) {
    auto tokens = load_tokens(cfg->token_file);
    if (!tokens) {
      fprintf(stderr, "swissbox-scheduler: %s\n", tokens.error().to_string().c_str());
      return 2;
    }
    so.tokens = *tokens;
    // Agents accept the same token file; polling shows them an admin token if it has one.
    so.agent_token = service_token(*tokens);
  }
  log::info("file descriptor limit", {{"nofile", static_cast<int64_t>(raise_fd_limit())}});

  boost::asio::io_context ioc;
  auto work = boost::asio::make_work_guard(ioc);
  Metrics metrics;
  sched::Scheduler scheduler(ioc, so, metrics);
  http::ServerOptions server_options = scheduler.server_options();
  server_options.max_connections = static_cast<size_t>(cfg->max_connections);
  server_options.max_connections_per_client = static_cast<size_t>(cfg->max_connections_per_client);
  http::Server server(ioc, server_options,
                      [&](http::Request&& req, std::shared_ptr<http::Responder> res) {
                        scheduler.handle(std::move(req), std::move(res));
                      });
  if (auto st = server.listen_tcp(cfg->listen); !st) {
    log::error("cannot listen", {{"error", st.error().to_string()}});
    return 1;
  }
  scheduler.start();
  log::info("scheduler serving", {{"listen", cfg->listen},
                                  {"port", static_cast<int>(server.tcp_port())},
                                  {"agents", static_cast<int>(so.agents.size())}});
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (ec) return;
    server.drain(std::chrono::seconds(10), [&] {
      work.reset();
      ioc.stop();
    });
  });
  ioc.run();
  log::info("stopped");
  return 0;
}
