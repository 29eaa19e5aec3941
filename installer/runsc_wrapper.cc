// swissbox-runsc: what containerd's runc v2 shim runs as its "runc" (options.BinaryName)
// for the runsc handler. It hands every call to the runsc next to it, and bridges the three
// places where runsc does not behave the way the shim expects of runc (measured with
// Debian's containerd 1.6 and runsc 20240729):
//  1. a pod that shares the node's network: runsc refuses to run netstack in the root
//     network namespace, so every call for it gets --network=none (runsc wants the same
//     global flags on every call for one container; `create` leaves a marker file in the
//     state root for the calls after it, and `delete` removes it);
//  2. `kill` of a container that already stopped: runsc says "not running" / "in state
//     stopped", the shim only recognises runc's "container not running" and retries
//     StopPodSandbox until its deadline;
//  3. `start` that fails: runsc leaves the container "created" with its sandbox and gofer
//     running; it is removed with `delete --force` before the error goes back.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/fs.h"

namespace {

// The subcommand: the first argument that is not a global flag or a flag's value. The
// shim passes --root, --log and --log-format with their value as the next argument.
size_t subcommand_index(const std::vector<std::string>& args) {
  static const std::set<std::string> kValued = {"--root", "--log", "--log-format", "--criu"};
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i].rfind("-", 0) != 0) return i;
    if (kValued.count(args[i])) ++i;
  }
  return args.size();
}

// Whether the bundle's spec leaves the pod in the node's network namespace.
bool host_network(const std::vector<std::string>& args, size_t sub) {
  std::string bundle = ".";
  for (size_t i = sub + 1; i < args.size(); ++i) {
    if ((args[i] == "--bundle" || args[i] == "-b") && i + 1 < args.size()) bundle = args[i + 1];
    if (args[i].rfind("--bundle=", 0) == 0) bundle = args[i].substr(9);
  }
  std::ifstream f(bundle + "/config.json");
  nlohmann::json spec = nlohmann::json::parse(f, nullptr, false);
  if (!spec.is_object()) return false;
  for (const auto& ns : spec["linux"].value("namespaces", nlohmann::json::array())) {
    if (ns.value("type", "") == "network") return false;  // its own namespace (CNI)
  }
  return true;
}

// Runs runsc with the args; its stderr is captured (and passed on) when `capture` is set.
int run(const std::string& runsc, std::vector<std::string> args, std::string* captured) {
  int p[2] = {-1, -1};
  if (captured && pipe2(p, O_CLOEXEC) != 0) return 127;
  pid_t pid = fork();
  if (pid == 0) {
    if (captured) dup2(p[1], 2);
    std::vector<char*> argv;
    args[0] = runsc;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(runsc.c_str(), argv.data());
    fprintf(stderr, "swissbox-runsc: exec %s: %s\n", runsc.c_str(), strerror(errno));
    _exit(127);
  }
  if (captured) {
    close(p[1]);
    char buf[4096];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof(buf))) > 0) captured->append(buf, n);
    close(p[0]);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The global --root value (runsc's state directory for this shim).
std::string state_root(const std::vector<std::string>& args, size_t sub) {
  for (size_t i = 1; i < sub; ++i) {
    if (args[i] == "--root" && i + 1 < sub) return args[i + 1];
    if (args[i].rfind("--root=", 0) == 0) return args[i].substr(7);
  }
  return "/run/containerd/runsc";
}

// The container id: the first argument after the subcommand that is not a flag (the
// shim puts flags with values in "--flag=value" form or before the id).
std::string container_id(const std::vector<std::string>& args, size_t sub) {
  static const std::set<std::string> kValued = {"--bundle", "-b", "--pid-file", "--console-socket",
                                                "--process", "--signal"};
  for (size_t i = sub + 1; i < args.size(); ++i) {
    if (args[i].rfind("-", 0) != 0) return args[i];
    if (kValued.count(args[i])) ++i;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  std::string runsc = swissbox::fs::self_dir() + "/runsc";  // installed beside it
  size_t sub = subcommand_index(args);
  std::string cmd = sub < args.size() ? args[sub] : "";
  std::string id = sub < args.size() ? container_id(args, sub) : "";
  std::string marker = id.empty() || id.find('/') != std::string::npos
                           ? ""
                           : state_root(args, sub) + "/" + id + ".swissbox-host-network";

  if (cmd == "create" && !marker.empty() && host_network(args, sub)) {
    std::error_code ignored;  // runsc makes the root on create; the marker comes first
    std::filesystem::create_directories(state_root(args, sub), ignored);
    close(open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  }
  if (!marker.empty() && access(marker.c_str(), F_OK) == 0) {
    args.insert(args.begin() + 1, "--network=none");
    ++sub;
    if (cmd == "delete") {
      int rc = run(runsc, args, nullptr);
      if (rc == 0) unlink(marker.c_str());
      return rc;
    }
  }
  if (cmd == "kill") {
    std::string err;
    int rc = run(runsc, args, &err);
    if (rc != 0 && (err.find("not running") != std::string::npos ||
                    err.find("in state stopped") != std::string::npos)) {
      fputs("container not running\n", stderr);
      return rc;
    }
    fputs(err.c_str(), stderr);
    return rc;
  }
  if (cmd == "start") {
    std::string err;
    int rc = run(runsc, args, &err);
    fputs(err.c_str(), stderr);
    if (rc != 0 && sub + 1 < args.size()) {
      std::vector<std::string> del(args.begin(), args.begin() + sub);
      del.insert(del.end(), {"delete", "--force", args.back()});
      run(runsc, del, nullptr);
    }
    return rc;
  }
  args[0] = runsc;
  std::vector<char*> exec_argv;
  for (auto& a : args) exec_argv.push_back(a.data());
  exec_argv.push_back(nullptr);
  execv(runsc.c_str(), exec_argv.data());
  fprintf(stderr, "swissbox-runsc: exec %s: %s\n", runsc.c_str(), strerror(errno));
  return 127;
}
