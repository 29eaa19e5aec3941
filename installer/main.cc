// swissbox-installer: makes a node able to run gVisor pods, from the DaemonSet's
// initContainer (the host's /usr/local, containerd config directory and socket mounted):
// copies runsc and the swissbox-runsc wrapper in atomically, puts the runsc handler into
// containerd's config (containerd_config.h), restarts containerd only when the config
// changed, and proves the result through the CRI API: Version, Status (RuntimeReady), and
// a real pod sandbox run with the handler, then stopped and removed. A second run changes
// nothing. --dry-run tells what would change; --uninstall takes it all back.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "common/log.h"
#include "common/process.h"
#include "installer/containerd_config.h"
#include "cri/cri_client.h"

using namespace swissbox;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kUsage =
    "usage: swissbox-installer [--dry-run] [--uninstall] [--host-root DIR] [--bin-dir DIR]\n"
    "         [--runsc PATH] [--wrapper PATH] [--containerd-config PATH]\n"
    "         [--containerd-socket PATH] [--handler NAME] [--runsc-state DIR]\n"
    "         [--restart-command 'CMD ARG…'] [--verify true|false] [--verify-timeout-s N]\n"
    "         [--verify-cgroup-parent PATH] [--seccomp-profile PATH --seccomp-dir DIR]\n"
    "Paths other than --runsc/--wrapper are the host's, found under --host-root.\n";

struct Options {
  bool dry_run = false, uninstall = false, verify = true;
  std::string host_root = "/";
  std::string bin_dir = "/usr/local/bin";
  std::string runsc, wrapper;  // what this image ships; default: next to the installer
  std::string config = "/etc/containerd/config.toml";
  std::string socket = "/run/containerd/containerd.sock";
  std::string handler = "runsc";
  std::string runsc_state = "/run/containerd/runsc";
  std::vector<std::string> restart;  // empty: containerd is not restarted
  std::string verify_cgroup_parent;
  int verify_timeout_s = 60;
  // The agent container's Localhost seccomp profile, put where the kubelet looks for it.
  std::string seccomp_profile;
  std::string seccomp_dir = "/var/lib/kubelet/seccomp/swissbox";

  std::string host(const std::string& p) const {
    return host_root == "/" ? p : host_root + p;
  }
};

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

Result<Options> parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    // "--flag value" or "--flag=value" (as Kubernetes manifests tend to write them).
    std::optional<std::string> inline_value;
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto value = [&]() -> Result<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) return make_error(Code::kInvalidArgument, a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--dry-run") {
      o.dry_run = true;
      continue;
    }
    if (a == "--uninstall") {
      o.uninstall = true;
      continue;
    }
    auto v = value();
    if (!v) return v.error();
    if (a == "--host-root") o.host_root = *v;
    else if (a == "--bin-dir") o.bin_dir = *v;
    else if (a == "--runsc") o.runsc = *v;
    else if (a == "--wrapper") o.wrapper = *v;
    else if (a == "--containerd-config") o.config = *v;
    else if (a == "--containerd-socket") o.socket = *v;
    else if (a == "--handler") o.handler = *v;
    else if (a == "--runsc-state") o.runsc_state = *v;
    else if (a == "--restart-command") o.restart = split_words(*v);
    else if (a == "--verify-cgroup-parent") o.verify_cgroup_parent = *v;
    else if (a == "--seccomp-profile") o.seccomp_profile = *v;
    else if (a == "--seccomp-dir") o.seccomp_dir = *v;
    else if (a == "--verify") o.verify = *v == "true";
    else if (a == "--verify-timeout-s") o.verify_timeout_s = std::max(1, atoi(v->c_str()));
    else return make_error(Code::kInvalidArgument, "unknown option " + a);
  }
  if (o.runsc.empty()) o.runsc = fs::self_dir() + "/runsc";
  if (o.wrapper.empty()) o.wrapper = fs::self_dir() + "/swissbox-runsc";
  while (o.host_root.size() > 1 && o.host_root.back() == '/') o.host_root.pop_back();
  return o;
}

// "runsc version 0.0~20240729.0" → "0.0~20240729.0".
Result<std::string> runsc_version(const std::string& runsc) {
  ProcessOptions p;
  p.argv = {runsc, "--version"};
  p.timeout = std::chrono::seconds(10);
  auto r = run_process(p);
  if (!r) return r.error();
  auto at = r->out.find("runsc version ");
  if (r->exit_code != 0 || at == std::string::npos)
    return make_error(Code::kInvalidArgument, runsc + " does not answer --version like runsc");
  std::string v = r->out.substr(at + 14);
  return v.substr(0, v.find('\n'));
}

// Copies `from` to `to` through a temporary file and a rename, unless `to` already has the
// same bytes. Answers whether it changed.
Result<bool> install_file(const std::string& from, const std::string& to, bool dry_run,
                          mode_t mode = 0755) {
  auto src = fs::read_file(from, 512 << 20);
  if (!src) return src.error();
  auto dst = fs::read_file(to, 512 << 20);
  if (dst.ok() && *dst == *src) return false;
  if (dry_run) return true;
  std::string tmp = to + ".swissbox-new";
  if (auto st = fs::write_file_atomic(tmp, *src); !st) return st.error();
  if (chmod(tmp.c_str(), mode) != 0 || rename(tmp.c_str(), to.c_str()) != 0) {
    auto e = sys_error("install " + to);
    unlink(tmp.c_str());
    return e;
  }
  return true;
}

Status restart_containerd(const Options& o) {
  if (o.restart.empty()) return ok_status();
  if (o.restart[0].empty() || o.restart[0][0] != '/')
    return make_error(Code::kInvalidArgument, "--restart-command must start with an absolute path");
  ProcessOptions p;
  p.argv = o.restart;
  p.timeout = std::chrono::seconds(60);
  auto r = run_process(p);
  if (!r) return r.error();
  if (r->exit_code != 0)
    return make_error(Code::kUnavailable, fmt::format("restart command failed ({}): {}", r->exit_code, r->err));
  return ok_status();
}

// Waits until the CRI answers Version (after a restart it takes a moment).
Result<cri::VersionInfo> wait_for_cri(cri::Client& c, int timeout_s) {
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    auto v = c.version();
    if (v || Clock::now() > deadline) return v;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// Version, Status, and a pod sandbox run by the handler, then stopped and removed.
Status verify(const Options& o, json* report) {
  cri::Client c(o.host(o.socket), std::chrono::seconds(30));
  auto v = wait_for_cri(c, o.verify_timeout_s);
  if (!v) return v.error();
  (*report)["runtime"] = v->runtime_name + " " + v->runtime_version;
  auto st = c.status();
  if (!st) return st.error();
  if (!st->runtime_ready) return make_error(Code::kUnavailable, "the runtime is not ready: " + st->message);
  cri::PodConfig pod;
  std::mt19937_64 rng{std::random_device{}()};
  pod.uid = fmt::format("{:016x}", rng());
  pod.name = "swissbox-install-check-" + pod.uid.substr(0, 6);
  pod.cgroup_parent = o.verify_cgroup_parent;
  auto t0 = Clock::now();
  auto id = c.run_pod_sandbox(pod, o.handler);
  if (!id) {
    return make_error(id.error().code, "a pod with handler '" + o.handler +
                                           "' does not start: " + id.error().message);
  }
  double run_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  auto status = c.pod_sandbox_status(*id);
  Status checked = !status                    ? Status(status.error())
                   : !status->first           ? Status(make_error(Code::kUnavailable, "the pod sandbox is not ready"))
                   : status->second != o.handler ? Status(make_error(Code::kInternal, "the pod runs with handler '" + status->second + "'"))
                                                : ok_status();
  // Always cleaned up, whatever the check found.
  Status stopped = c.stop_pod_sandbox(*id);
  Status removed = stopped ? c.remove_pod_sandbox(*id) : stopped;
  if (!checked) return checked;
  if (!removed) return removed;
  (*report)["pod_sandbox"] = {{"id", *id}, {"run_ms", run_ms}};
  return ok_status();
}

int fail(const Error& e, json report) {
  report["ok"] = false;
  report["error"] = e.to_string();
  log::error("install failed", {{"error", e.to_string()}});
  puts(report.dump().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help") return fputs(kUsage, stdout), 0;
  }
  auto opts = parse(argc, argv);
  if (!opts) {
    fprintf(stderr, "swissbox-installer: %s\n%s", opts.error().to_string().c_str(), kUsage);
    return 2;
  }
  const Options& o = *opts;
  json report = {{"dry_run", o.dry_run}, {"uninstall", o.uninstall}};
  // The socket first: without a running containerd nothing else is worth doing.
  struct stat sock {};
  if (stat(o.host(o.socket).c_str(), &sock) != 0 || !S_ISSOCK(sock.st_mode)) {
    return fail(make_error(Code::kUnavailable,
                           "no containerd socket at " + o.host(o.socket) +
                               " (is containerd running, and its socket mounted into this container?)"),
                report);
  }
  auto current = fs::exists(o.host(o.config)) ? fs::read_file(o.host(o.config), 1 << 20)
                                              : Result<std::string>(std::string("version = 2\n"));
  if (!current) return fail(current.error(), report);

  std::string runsc_dst = o.host(o.bin_dir + "/runsc"), wrapper_dst = o.host(o.bin_dir + "/swissbox-runsc");
  // gVisor's own containerd shim, when shipped next to runsc, replaces the runc shim and
  // the wrapper (runtime_type io.containerd.runsc.v1).
  const std::string shim_name = "containerd-shim-runsc-v1";
  std::string shim_src = o.runsc.substr(0, o.runsc.rfind('/') + 1) + shim_name;
  std::string shim_dst = o.host(o.bin_dir + "/" + shim_name);
  bool with_shim = fs::exists(shim_src);
  std::string wanted;
  bool binaries_changed = false;
  if (o.uninstall) {
    wanted = installer::without_handler(*current);
    std::vector<std::string> ours = {runsc_dst, wrapper_dst, shim_dst};
    if (!o.seccomp_profile.empty()) ours.push_back(o.host(o.seccomp_dir + "/agent.json"));
    for (const auto& f : ours) {
      if (!fs::exists(f)) continue;
      binaries_changed = true;
      if (!o.dry_run && unlink(f.c_str()) != 0) return fail(sys_error("remove " + f), report);
      report[o.dry_run ? "would_remove" : "removed"].push_back(f);
    }
  } else {
    auto version = runsc_version(o.runsc);
    if (!version) return fail(version.error(), report);
    report["runsc_version"] = *version;
    installer::HandlerConfig h;
    h.handler = o.handler;
    h.binary = o.bin_dir + "/swissbox-runsc";
    h.root = o.runsc_state;
    h.runsc_shim = with_shim;
    auto edited = installer::with_handler(*current, h);
    if (!edited) {
      return fail(Error{edited.error().code, 0,
                        o.host(o.config) + ": " + edited.error().message + " (left as it is)"},
                  report);
    }
    wanted = *edited;
    std::vector<std::pair<std::string, std::string>> files = {{o.runsc, runsc_dst}};
    files.emplace_back(with_shim ? shim_src : o.wrapper, with_shim ? shim_dst : wrapper_dst);
    for (auto [from, to] : files) {
      auto changed = install_file(from, to, o.dry_run);
      if (!changed) return fail(changed.error(), report);
      if (*changed) report[o.dry_run ? "would_install" : "installed"].push_back(to);
      binaries_changed |= *changed;
    }
    if (!o.seccomp_profile.empty()) {
      std::string dir = o.host(o.seccomp_dir);
      if (!o.dry_run) {
        if (auto st = fs::make_dirs(dir, 0755); !st) return fail(st.error(), report);
      }
      std::string to = dir + "/agent.json";
      auto changed = install_file(o.seccomp_profile, to, o.dry_run, 0644);
      if (!changed) return fail(changed.error(), report);
      if (*changed) report[o.dry_run ? "would_install" : "installed"].push_back(to);
    }
  }
  bool config_changed = wanted != *current;
  report["config_changed"] = config_changed;
  report["binaries_changed"] = binaries_changed;
  if (o.dry_run) {
    if (config_changed) report["would_write"] = o.host(o.config);
    if (config_changed && !o.restart.empty()) report["would_restart"] = o.restart;
    report["ok"] = true;
    puts(report.dump().c_str());
    return 0;
  }
  if (config_changed) {
    if (fs::exists(o.host(o.config))) {
      if (auto st = fs::write_file_atomic(o.host(o.config) + ".swissbox-backup", *current); !st)
        return fail(st.error(), report);
    }
    if (auto st = fs::write_file_atomic(o.host(o.config), wanted); !st) return fail(st.error(), report);
    if (auto st = restart_containerd(o); !st) return fail(st.error(), report);
    report["restarted"] = !o.restart.empty();
  }
  if (o.verify && !o.uninstall) {
    auto st = verify(o, &report);
    // The config is right but containerd still runs an older one (an earlier run wrote it
    // and could not restart): restart once and look again.
    if (!st && !config_changed && !o.restart.empty() &&
        st.error().message.find("no runtime for") != std::string::npos) {
      log::warn("containerd runs an older config; restarting it", {{"error", st.error().to_string()}});
      if (auto r = restart_containerd(o); !r) return fail(r.error(), report);
      report["restarted"] = true;
      st = verify(o, &report);
    }
    if (!st) return fail(st.error(), report);
  }
  report["ok"] = true;
  log::info(o.uninstall ? "uninstalled" : "installed",
            {{"config_changed", config_changed}, {"binaries_changed", binaries_changed}});
  puts(report.dump().c_str());
  return 0;
}
