#include "scheduler/deadlines.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace swissbox::sched {

namespace {

// The command timeout a request asks for; what the agent would refuse counts as the
// default (the agent answers such a request at once).
std::chrono::milliseconds command_timeout(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  int64_t ms = limits::kDefaultExecTimeoutMs;
  if (j.is_object()) {
    if (auto it = j.find("timeout_ms"); it != j.end() && it->is_number_integer()) {
      ms = std::clamp<int64_t>(it->get<int64_t>(), 1, limits::kMaxExecTimeoutMs);
    }
  }
  return std::chrono::milliseconds(ms);
}

}  // namespace

std::chrono::milliseconds AgentDeadlines::for_call(std::string_view method, std::string_view path,
                                                   std::string_view body) const {
  bool post = method == "POST";
  if (post && path == "/v1/execute") return ready + command_timeout(body) + exec_grace + slack;
  if (post && (path.ends_with("/exec") || path.ends_with("/code")))
    return command_timeout(body) + exec_grace + slack;
  if (post && path == "/v1/sandboxes") {
    // The first create of a package set waits for its build on the node.
    const bool builds = body.find("\"pre_install_packages\"") != std::string_view::npos;
    return ready + slack + (builds ? std::chrono::milliseconds(limits::kDefaultBuildTimeout) : std::chrono::milliseconds(0));
  }
  // E2B's: a create; a cell of the code interpreter (its context may start first); a
  // process's stream (Start, and Connect to one), which may run as long as a command may
  // and stay silent meanwhile, and a directory watch's, held as long; a context.
  if (post && (path == "/sandboxes" || path == "/v2/sandboxes")) return ready + slack;
  if (post && path == "/execute") {
    return limits::kContextStartDeadline + std::chrono::milliseconds(limits::kInterpreterRunTimeoutMs) +
           exec_grace + slack;
  }
  if (post && (path == "/process.Process/Start" || path == "/process.Process/Connect" ||
               path == "/filesystem.Filesystem/WatchDir"))
    return std::chrono::milliseconds(limits::kMaxExecTimeoutMs) + exec_grace + slack;
  if (post && path.ends_with("/contexts")) return limits::kContextStartDeadline + slack;
  // Files, and the rest (a sandbox's state, its deletion): the agent answers those within
  // a file request's deadline or much sooner.
  return file_op + slack;
}

}  // namespace swissbox::sched
