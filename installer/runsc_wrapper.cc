// swissbox-runsc: what containerd's runc v2 shim runs as its "runc" (options.BinaryName)
// for the runsc handler. It hands every call to the runsc next to it, and bridges the three
// places where runsc does not behave the way the shim expects of runc (measured with
// Debian's containerd 1.6 and runsc 20240729):
//  1. `create` of a pod that shares the node's network: runsc refuses to run netstack in
//     the root network namespace, so the call gets --network=none;
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
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string runsc_path(const char* self) {
  std::string me = self;
  if (me.find('/') == std::string::npos) return "/usr/local/bin/runsc";
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string exe = n > 0 ? std::string(buf, n) : me;
  return exe.substr(0, exe.rfind('/') + 1) + "runsc";
}

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

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  std::string runsc = runsc_path(argv[0]);
  size_t sub = subcommand_index(args);
  std::string cmd = sub < args.size() ? args[sub] : "";

  if (cmd == "create" && host_network(args, sub)) {
    args.insert(args.begin() + 1, "--network=none");
    ++sub;
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
