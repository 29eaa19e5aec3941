#include "agent/runtime/runsc_driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/log.h"
#include "common/process.h"
#include "common/unique_fd.h"

namespace swissbox {

using json = nlohmann::json;

namespace {

// runsc start with a network namespace refuses to run when it can read
// /proc/sys/net/core/rmem_default, which this kernel shows in every namespace (gVisor
// issue 10704, fixed after 20240729): the start runs in a private mount namespace with an
// empty tmpfs over /proc/sys/net. Runs in the child between fork and exec.
int hide_proc_sys_net() {
  if (unshare(CLONE_NEWNS) != 0) return errno;
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return errno;
  if (mount("tmpfs", "/proc/sys/net", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k") != 0)
    return errno;
  return 0;
}

constexpr const char* kSupportMount = "/.swissbox";

// The host's system accounts (ids 1–999) from one of its account files, with no password
// field and no member list: the names dpkg's database refers to (statoverride, the
// owners of packaged files), which a package layer built on the node's root needs.
std::string host_system_accounts(const char* file) {
  std::string out;
  auto text = fs::read_file(file, 1 << 20);
  if (!text) return out;
  size_t from = 0;
  for (size_t end; from < text->size(); from = end + 1) {
    end = text->find('\n', from);
    if (end == std::string::npos) end = text->size();
    std::string_view line(text->data() + from, end - from);
    std::vector<std::string_view> f;
    for (size_t a = 0, b; a <= line.size(); a = b + 1) {
      b = line.find(':', a);
      if (b == std::string_view::npos) b = line.size();
      f.push_back(line.substr(a, b - a));
    }
    if (f.size() < 3 || f[0].empty()) continue;
    int id = 0;
    for (char c : f[2]) id = c >= '0' && c <= '9' && id < 100000 ? id * 10 + (c - '0') : 100000;
    if (id < 1 || id > 999) continue;
    f[1] = "x";
    if (f.size() == 4) f[3] = "";  // a group's members
    std::string entry;
    for (size_t i = 0; i < f.size(); ++i) entry += (i ? ":" : "") + std::string(f[i]);
    out += entry + "\n";
  }
  return out;
}

std::string generated_etc_passwd() {
  return "root:x:0:0:root:/root:/usr/sbin/nologin\n" + host_system_accounts("/etc/passwd") +
         "sandbox:x:1000:1000:sandbox:/workspace:/bin/bash\n"
         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
}

std::string generated_etc_group() {
  return "root:x:0:\n" + host_system_accounts("/etc/group") + "sandbox:x:1000:\nnogroup:x:65534:\n";
}

Status write_if_changed(const std::string& path, std::string_view data, mode_t mode) {
  auto cur = fs::read_file(path);
  if (cur.ok() && *cur == data) return ok_status();
  return fs::write_file_atomic(path, data, mode);
}

Status copy_file(const std::string& from, const std::string& to, mode_t mode) {
  auto data = fs::read_file(from, 64 << 20);
  if (!data) return data.error();
  return write_if_changed(to, *data, mode);
}

}  // namespace

Result<RootfsLayout> prepare_host_rootfs(const std::string& state_dir) {
  RootfsLayout layout;
  layout.root = state_dir + "/rootfs-host";
  for (const char* d : {"", "/usr", "/etc", "/etc/alternatives", "/tmp", "/workspace", "/proc",
                        "/dev", "/sys", "/home", kSupportMount}) {
    if (auto st = fs::make_dirs(layout.root + d); !st) return st.error();
  }
  // E2B's user home: the workspace under the name E2B's sandboxes give it.
  std::string home = layout.root + "/home/user";
  if (char link[64]; readlink(home.c_str(), link, sizeof link) != 10 || std::string_view(link, 10) != "/workspace") {
    unlink(home.c_str());
    if (symlink("/workspace", home.c_str()) != 0) return sys_error("symlink " + home);
  }
  layout.binds.push_back({"/usr", "/usr", true});
  // Merged-/usr hosts have /bin -> usr/bin etc.: mirror the symlinks; bind real directories.
  for (const char* d : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st;
    if (lstat(d, &st) != 0) continue;
    std::string target = layout.root + d;
    if (S_ISLNK(st.st_mode)) {
      char link[256];
      ssize_t n = readlink(d, link, sizeof(link) - 1);
      if (n <= 0) continue;
      link[n] = 0;
      unlink(target.c_str());
      rmdir(target.c_str());
      if (symlink(link, target.c_str()) != 0) return sys_error("symlink " + target);
    } else if (S_ISDIR(st.st_mode)) {
      if (auto s = fs::make_dirs(target); !s) return s.error();
      layout.binds.push_back({d, d, true});
    }
  }
  if (fs::exists("/etc/alternatives")) {
    layout.binds.push_back({"/etc/alternatives", "/etc/alternatives", true});
  }
  const std::string etc = layout.root + "/etc";
  struct Gen {
    const char* name;
    std::string data;
  };
  for (const Gen& g : {Gen{"passwd", generated_etc_passwd()}, Gen{"group", generated_etc_group()},
                       Gen{"hosts", "127.0.0.1 localhost\n::1 localhost\n"},
                       Gen{"hostname", "sandbox\n"}, Gen{"resolv.conf", ""},
                       Gen{"nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"}}) {
    if (auto st = write_if_changed(etc + "/" + g.name, g.data, 0644); !st) return st.error();
  }
  // Which system this is (a package build reads it; so does Python's platform module).
  const std::string os_release = etc + "/os-release";
  if (struct stat st; lstat(os_release.c_str(), &st) != 0 && fs::exists("/usr/lib/os-release") &&
                      symlink("../usr/lib/os-release", os_release.c_str()) != 0)
    return sys_error("symlink " + os_release);
  // Without the loader cache, libraries under /usr/lib/<triplet> are not found; Debian's
  // matplotlib keeps its defaults in /etc (without them it refuses to import); the CA
  // bundle is what Debian's Python (pip, requests), curl and apt verify TLS with.
  if (auto st = fs::make_dirs(etc + "/ssl/certs"); !st) return st.error();
  for (const char* f : {"ld.so.cache", "matplotlibrc", "ssl/certs/ca-certificates.crt"}) {
    std::string host = std::string("/etc/") + f;
    if (!fs::exists(host)) continue;
    if (auto st = copy_file(host, etc + "/" + f, 0644); !st) return st.error();
  }
  return layout;
}

Result<RootfsLayout> prepare_dir_rootfs(const std::string& dir) {
  for (const char* d : {"/usr/bin", "/workspace", "/tmp", kSupportMount}) {
    if (!fs::exists(dir + d)) {
      return make_error(Code::kInvalidArgument,
                        "rootfs " + dir + " lacks " + d + " (build it with installer/)");
    }
  }
  return RootfsLayout{dir, {}};
}

json make_oci_config(const SandboxSpec& spec, const RootfsLayout& rootfs,
                     const std::string& workspace_dir, const std::string& tmp_dir,
                     const std::string& support_dir) {
  json mounts = json::array({
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
  });
  for (const BindMount& b : rootfs.binds) {
    const bool read_only = b.read_only && spec.build_command.empty();
    mounts.push_back({{"destination", b.destination},
                      {"type", "bind"},
                      {"source", b.source},
                      {"options", {"rbind", read_only ? "ro" : "rw", "nosuid", "nodev"}}});
  }
  for (auto [dest, source] : {std::pair{"/workspace", &workspace_dir}, {"/tmp", &tmp_dir}}) {
    mounts.push_back({{"destination", dest},
                      {"type", "bind"},
                      {"source", *source},
                      {"options", {"rbind", "rw", "nosuid", "nodev"}}});
  }
  if (!spec.workspace_dir.empty()) {
    mounts.push_back({{"destination", "/workspace/workspace"},
                      {"type", "bind"},
                      {"source", spec.workspace_dir},
                      {"options", {"rbind", "rw", "nosuid", "nodev"}}});
  }
  mounts.push_back({{"destination", kSupportMount},
                    {"type", "bind"},
                    {"source", support_dir},
                    {"options", {"rbind", "ro", "nosuid", "nodev"}}});
  // The runner is root inside gVisor with only what it needs to run commands as the
  // sandbox's user (setuid/setgid), to end them (kill) and to set a language worker's task
  // limit (prlimit on another user's process: sys_resource, gVisor's own, not the host's);
  // the commands get uid:gid and no capability at all. So code in the sandbox cannot kill -9 its PID 1, trace it, or reopen
  // its fds through /proc/1/fd.
  json caps = json::array({"CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_SYS_RESOURCE"});
  json args = {std::string(kSupportMount) + "/init", "--user", fmt::format("{}:{}", spec.uid, spec.gid)};
  const bool build = !spec.build_command.empty();
  if (build) {
    // A package build: root inside gVisor with what a container's root has by default
    // (dpkg chowns, apt drops to its own user, maintainer scripts chmod and mknod).
    caps = json::array({"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
                        "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_MKNOD",
                        "CAP_AUDIT_WRITE", "CAP_SETFCAP"});
    args = spec.build_command;
  }
  json config = {
      {"ociVersion", "1.0.2"},
      {"hostname", spec.hostname},
      {"root", {{"path", rootfs.root}, {"readonly", !build}}},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", 0}, {"gid", 0}}},
        {"args", args},
        {"env", spec.env},
        {"cwd", "/workspace"},
        {"noNewPrivileges", true},
        {"capabilities",
         {{"bounding", caps},
          {"effective", caps},
          {"permitted", caps},
          {"inheritable", json::array()},
          {"ambient", json::array()}}},
        {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", 4096}, {"soft", 4096}}}}}},
      {"mounts", mounts},
      {"linux",
       {{"namespaces",
         {{{"type", "pid"}},
          {{"type", "ipc"}},
          {{"type", "uts"}},
          {{"type", "mount"}},
          spec.netns_path.empty() ? json{{"type", "network"}}
                                  : json{{"type", "network"}, {"path", spec.netns_path}}}}}},
  };
  // runsc joins this existing cgroup (made by the agent) and keeps the limits it finds.
  if (!spec.cgroup_path.empty()) config["linux"]["cgroupsPath"] = spec.cgroup_path;
  return config;
}

CgroupLimits host_cgroup_limits(const Limits& limits, const std::string& platform) {
  // Measured on the dev VM: an idle sentry ≈ 25–33 MB RSS plus a gofer ≈ 19 MB, and 34
  // (systrap) to 49 (ptrace) host tasks before the sandbox runs anything. Each process
  // inside then costs ≈ 12.5 host tasks on ptrace (stub threads and their tracers) and
  // ≈ 2.2 on systrap (40 sleeping processes: 547 and 121 host tasks).
  constexpr int64_t kOverheadMb = 96;
  constexpr int64_t kOverheadTasks = 128;
  int64_t per_task = platform == "ptrace" ? 14 : 3;
  return CgroupLimits{limits.cpu, (limits.memory_mb + kOverheadMb) << 20,
                      limits.pids > 0 ? limits.pids * per_task + kOverheadTasks : 0};
}

namespace {

// The runner's stdio: a socket pair for stdin and stdout (the agent keeps `agent`; code in
// the sandbox cannot reopen a socket through /proc/<pid>/fd, agent/runtime/runtime.h) and, for its
// stderr and runsc's own complaints, runner.log on the sandbox's own disk, so that whatever
// is written there counts against the sandbox's disk limit and never fills the node's disk.
// Never the agent's stdio, which would tie the sandbox to the agent's lifetime.
struct RunnerIo {
  unique_fd agent, runner, log;
  std::string log_path;
};

std::string runner_log_path(const std::string& dir) { return dir + "/disk/runner.log"; }

Result<RunnerIo> open_runner_io(const std::string& dir) {
  RunnerIo io;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return sys_error("socketpair");
  io.agent.reset(sv[0]);
  io.runner.reset(sv[1]);
  io.log_path = runner_log_path(dir);
  io.log.reset(open(io.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!io.log) return sys_error("open " + io.log_path);
  return io;
}

}  // namespace

Result<std::unique_ptr<RunscDriver>> RunscDriver::create(RunscOptions opts) {
  std::string mkfs = opts.mkfs;
  if (mkfs.empty()) {
    auto found = SandboxDisk::find_mkfs();
    if (!found) return found.error();
    mkfs = *found;
  }
  std::unique_ptr<RunscDriver> d(new RunscDriver(std::move(opts), std::move(mkfs)));
  ProcessOptions v;
  v.argv = {d->opts_.runsc, "--version"};
  v.timeout = std::chrono::seconds(10);
  auto r = run_process(v);
  if (!r)
    return Error{Code::kUnavailable, r.error().sys_errno, "runsc not usable at " + d->opts_.runsc};
  if (r->exit_code != 0) return make_error(Code::kUnavailable, describe_failure(v, *r));
  auto pos = r->out.find("version ");
  d->version_ =
      pos == std::string::npos ? "unknown" : r->out.substr(pos + 8, r->out.find('\n') - pos - 8);
  if (d->opts_.platform != "ptrace" && d->opts_.platform != "systrap" &&
      d->opts_.platform != "kvm") {
    return make_error(Code::kInvalidArgument, "unknown platform " + d->opts_.platform);
  }
  for (const auto& dir : {d->opts_.root_dir, d->opts_.state_dir + "/sandboxes"}) {
    if (auto st = fs::make_dirs(dir, 0711); !st) return st.error();
  }
  // Workspaces after a node reboot: mounted again before any sandbox (a suspended one's
  // bundle binds its workspace) starts.
  for (const auto& tenant : fs::list_dir(d->opts_.state_dir + "/tenants")) {
    std::string dir = d->opts_.state_dir + "/tenants/" + tenant + "/workspaces";
    for (const auto& name : fs::list_dir(dir)) {
      if (!fs::exists(dir + "/" + name + "/disk.img")) continue;
      d->workspace_names_[tenant].insert(name);
      if (auto st = SandboxDisk::mount(dir + "/" + name); !st)
        log::warn("workspace not mounted", {{"workspace", dir + "/" + name}, {"error", st.error().to_string()}});
    }
  }
  // A suspended sandbox keeps its /30 across a reboot that took its links: no other sandbox
  // may get it meanwhile. Once, here (a later scan could re-reserve the /30 of a sandbox
  // whose destroy had just released it).
  if (d->opts_.egress) {
    for (const auto& name : fs::list_dir(d->opts_.state_dir + "/sandboxes")) {
      if (auto l = valid_sandbox_id(name) ? EgressNetworks::read(d->sandbox_dir(name)) : std::nullopt)
        d->opts_.egress->reserve(l->index);
    }
  }
  auto layout = d->opts_.rootfs == "host" ? prepare_host_rootfs(d->opts_.state_dir)
                                          : prepare_dir_rootfs(d->opts_.rootfs);
  if (!layout) return layout.error();
  d->rootfs_ = std::move(*layout);
  // The runner and its helpers are copied next to the state, bound read-only into every
  // sandbox: the agent binary's own directory may not be visible to runsc's gofer.
  d->support_dir_ = d->opts_.state_dir + "/support";
  if (auto st = fs::make_dirs(d->support_dir_); !st) return st.error();
  if (auto st = copy_file(d->opts_.init_path, d->support_dir_ + "/init", 0755); !st) {
    return Error{Code::kUnavailable, st.error().sys_errno,
                 "install swissbox-init from " + d->opts_.init_path + ": " + st.error().message};
  }
  return d;
}

std::vector<std::string> RunscDriver::command(std::initializer_list<std::string> args,
                                              bool netstack) const {
  std::vector<std::string> argv = {opts_.runsc,  "--root",       opts_.root_dir,
                                   "--platform", opts_.platform, "--network",
                                   netstack ? "sandbox" : "none", "--overlay2", "none"};
  // A TCP connection through eth0 cannot be saved (runsc 20240729: "endpoint cannot be saved
  // in connected state", e.g. one in FIN-WAIT after curl ended): with this flag a suspend
  // resets such connections instead of failing, as pausing a machine would drop them.
  if (netstack) argv.push_back("--net-disconnect-ok");
  argv.insert(argv.end(), args);
  return argv;
}

std::optional<SandboxRuntime::NetworkAddresses> RunscDriver::network(const std::string& id) const {
  auto link = this->link(id);
  if (!link) return std::nullopt;
  return NetworkAddresses{link->sandbox_ip, link->host_ip};
}

Status RunscDriver::set_bandwidth(const std::string& id, int64_t kbit) {
  if (!opts_.egress || !has_network(id)) return SandboxRuntime::set_bandwidth(id, kbit);
  uint64_t bits = static_cast<uint64_t>(kbit > 0 ? kbit : opts_.egress_default_kbit) * 1000;
  return opts_.egress->set_rates(sandbox_dir(id), bits, bits);
}

bool RunscDriver::has_network(const std::string& id) const { return link(id).has_value(); }

std::optional<SandboxLink> RunscDriver::link(const std::string& id) const {
  std::lock_guard lock(links_mu_);
  auto it = links_.find(id);
  if (it != links_.end()) return it->second;
  auto l = EgressNetworks::read(sandbox_dir(id));
  // The record is written before the bundle's config.json: without the config the sandbox
  // may still be on its way, and "no network" is not kept yet.
  if (l || fs::exists(sandbox_dir(id) + "/bundle/config.json")) links_[id] = l;
  return l;
}

std::string RunscDriver::sandbox_dir(const std::string& id) const {
  return opts_.state_dir + "/sandboxes/" + id;
}

Result<RunnerLink> RunscDriver::start(const SandboxSpec& spec) {
  const std::string dir = sandbox_dir(spec.id);
  const std::string workspace = SandboxDisk::workspace(dir);
  const std::string bundle = dir + "/bundle";
  auto fail = [&](Error e) -> Result<RunnerLink> {
    // Best effort: the start error is what the caller needs to see.
    (void)destroy(spec.id);
    return e;
  };
  SandboxSpec with_cgroup = spec;
  if (opts_.cgroups) {
    if (auto st = opts_.cgroups->create(spec.id, host_cgroup_limits(spec.limits, opts_.platform)); !st)
      return fail(st.error());
    with_cgroup.cgroup_path = opts_.cgroups->oci_path(spec.id);
  }
  if (auto st = fs::make_dirs(bundle, 0700); !st) return fail(st.error());
  const bool netstack = spec.network == NetworkMode::kEgress;
  if (netstack) {
    if (!opts_.egress) {
      return fail(make_error(Code::kInvalidArgument, "this node offers no network to sandboxes"));
    }
    if (auto link = opts_.egress->setup(dir); !link) return fail(link.error());
    with_cgroup.netns_path = EgressNetworks::netns_path(dir);
    if (opts_.egress_default_kbit > 0) {
      uint64_t bits = static_cast<uint64_t>(opts_.egress_default_kbit) * 1000;
      if (auto st = opts_.egress->set_rates(dir, bits, bits); !st) return fail(st.error());
    }
  }
  if (auto st = disk_.create(dir, opts_.max_disk_mb, spec.limits.disk_mb, spec.uid, spec.gid); !st)
    return fail(st.error());
  // An image or package-layer template's sandboxes have its root, nothing of the host's.
  json config = make_oci_config(with_cgroup, spec.root.root.empty() ? rootfs_ : spec.root, workspace,
                                SandboxDisk::tmp(dir), support_dir_);
  if (auto st = fs::write_file_atomic(bundle + "/config.json", config.dump(2)); !st) {
    return fail(st.error());
  }

  auto io = open_runner_io(dir);
  if (!io) return fail(io.error());
  // Without network nothing has to happen between create and start: one runsc process
  // (`run --detach`) instead of two, ≈ 10 ms of CPU less per start.
  const bool one_call = !netstack;
  ProcessOptions create;
  create.argv = one_call ? command({"run", "--detach", "--bundle", bundle, spec.id}, netstack)
                         : command({"create", "--bundle", bundle, spec.id}, netstack);
  create.stdin_fd = io->runner.get();
  create.stdout_fd = io->runner.get();
  create.stderr_fd = io->log.get();
  create.timeout = opts_.command_timeout;
  auto r = run_process(create);
  if (!r) return fail(r.error());
  if (r->exit_code != 0) {
    auto log = fs::read_file(io->log_path);
    r->err = log.ok() ? *log : "";
    return fail(make_error(Code::kUnavailable, describe_failure(create, *r)));
  }
  io->runner.reset();
  io->log.reset();
  if (one_call) return RunnerLink{std::move(io->agent)};

  ProcessOptions start;
  start.argv = command({"start", spec.id}, netstack);
  start.timeout = opts_.command_timeout;
  if (netstack) start.pre_exec = hide_proc_sys_net;
  r = run_process(start);
  if (!r) return fail(r.error());
  if (r->exit_code != 0) return fail(make_error(Code::kUnavailable, describe_failure(start, *r)));
  return RunnerLink{std::move(io->agent)};
}

Result<RunnerLink> RunscDriver::reattach(const std::string& id) {
  auto io = open_runner_io(sandbox_dir(id));
  if (!io) return io.error();
  ProcessOptions bridge;
  // Root, as the runner: code in the sandbox cannot signal or trace the bridge either.
  bridge.argv = command({"exec", "--user", "0:0", id, std::string(kSupportMount) + "/init", "--bridge"},
                        has_network(id));
  bridge.stdin_fd = io->runner.get();
  bridge.stdout_fd = io->runner.get();
  bridge.stderr_fd = io->log.get();
  auto pid = spawn_process(bridge);
  if (!pid) return pid.error();
  // The bridge ends with the sandbox, or when the agent closes the channel; destroy()
  // reaps it (a channel that closes early fails the sandbox, which destroys it).
  std::lock_guard lock(bridges_mu_);
  if (auto earlier = bridges_.find(id); earlier != bridges_.end()) end_process(earlier->second);
  bridges_[id] = *pid;
  return RunnerLink{std::move(io->agent)};
}

// What runsc keeps of a sandbox under --root, which `runsc delete` removes (runsc 20240729:
// container/state_file.go, sandbox/sandbox.go): the state file and its lock,
// "<container>_sandbox:<sandbox>.state" and ".lock" (the container is the sandbox here), and
// the sandbox's control socket "runsc-<sandbox>.sock". Once every process of the sandbox
// is gone they are all there is: removed under the lock as runsc does, the state file
// last, so that a crash midway leaves a state that `runsc list` shows and the GC deletes.
// False when there is no state file where runsc 20240729 puts it (another runsc version, or
// a sandbox that never got that far): `runsc delete` is the one to ask then.
bool RunscDriver::remove_runsc_records(const std::string& id) const {
  const std::string base = fmt::format("{}/{}_sandbox:{}", opts_.root_dir, id, id);
  const std::string state = base + ".state", lock = base + ".lock";
  if (!fs::exists(state)) return false;
  unique_fd held(open(lock.c_str(), O_RDWR | O_CLOEXEC));
  if (!held) return false;
  // A runsc command holding the lock (a `runsc list` reading the state) ends in
  // milliseconds; one that does not is left to `runsc delete`.
  for (int tries = 1; flock(held.get(), LOCK_EX | LOCK_NB) != 0; ++tries) {
    if (tries == 100) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  (void)unlink(fmt::format("{}/runsc-{}.sock", opts_.root_dir, id).c_str());
  (void)unlink(lock.c_str());
  return unlink(state.c_str()) == 0;
}

RunscDriver::~RunscDriver() {
  std::lock_guard lock(bridges_mu_);
  for (const auto& [id, pid] : bridges_) end_process(pid);
}

void RunscDriver::end_process(pid_t pid) {
  kill(pid, SIGKILL);
  wait_process(pid, nullptr, 0);
}

void RunscDriver::end_bridge(const std::string& id) {
  std::lock_guard lock(bridges_mu_);
  if (auto bridge = bridges_.find(id); bridge != bridges_.end()) {
    end_process(bridge->second);
    bridges_.erase(bridge);
  }
}

bool RunscDriver::end_processes(const std::string& id) {
  end_bridge(id);
  // The sandbox's host processes (sentry, gofer, ptrace stubs) are all in its cgroup.
  // Killed first (the agent reaps them: OrphanReaper), they leave runsc only its records,
  // which the agent removes itself instead of starting `runsc delete`, a Go process: node
  // CPU per delete 17.5–20.8 → 8.3–11.7 ms on the dev VM, where a one-shot's whole cycle
  // (start, run, delete) is ≈ 200 ms.
  return opts_.cgroups && opts_.cgroups->kill_all(id, std::chrono::seconds(5)) && remove_runsc_records(id);
}

Status RunscDriver::runsc_delete(const std::string& id) {
  ProcessOptions del;
  del.argv = command({"delete", "--force", id}, has_network(id));
  del.timeout = opts_.command_timeout;
  auto r = run_process(del);
  if (!r) return r.error();
  bool gone = r->exit_code == 0 || r->err.find("does not exist") != std::string::npos ||
              r->err.find("not found") != std::string::npos;
  if (!gone) return make_error(Code::kInternal, describe_failure(del, *r));
  return ok_status();
}

Status RunscDriver::destroy(const std::string& id) {
  // Without cgroups, or when the records are not as expected, `runsc delete` does it all.
  Status ended = end_processes(id) ? ok_status() : runsc_delete(id);
  if (auto st = remove_host_side(id); !st) return st;
  return ended;
}

Result<int64_t> RunscDriver::checkpoint(const std::string& id) {
  const std::string image = checkpoint_dir(id);
  (void)fs::remove_tree(image);
  if (auto st = fs::make_dirs(image, 0700); !st) return st.error();
  end_bridge(id);  // a live `runsc exec` in the sandbox makes its restore fail
  ProcessOptions cp;
  cp.argv = command({"checkpoint", "--leave-running", "--image-path", image, id}, has_network(id));
  cp.timeout = opts_.command_timeout;
  auto r = run_process(cp);
  if (!r || r->exit_code != 0) {
    (void)fs::remove_tree(image);
    if (!r) return r.error();
    return make_error(Code::kUnavailable, describe_failure(cp, *r));
  }
  if (!end_processes(id)) {
    if (auto st = runsc_delete(id); !st) {
      return make_error(Code::kInternal,
                        "sandbox " + id + " was saved but could not be stopped: " + st.error().to_string());
    }
  }
  // On the node's disk, not just in its page cache: a suspended sandbox outlives a node
  // reboot. After the processes ended, so that nothing writes to the disk any more.
  if (auto st = SandboxDisk::flush(sandbox_dir(id)); !st) return st.error();
  return fs::sync_dir(image);
}

Result<RunnerLink> RunscDriver::restore(const std::string& id, const Limits& limits) {
  const std::string dir = sandbox_dir(id), image = checkpoint_dir(id);
  if (!fs::exists(image + "/checkpoint.img")) {
    return make_error(Code::kNotFound, "sandbox " + id + " has no checkpoint to resume from");
  }
  // After a node reboot the cgroup, the disk's mount and the network are gone; made again
  // here (each is a no-op, or nearly, when it is still there). runsc would make a missing
  // cgroup itself, but without limits.
  if (opts_.cgroups) {
    if (auto st = opts_.cgroups->create(id, host_cgroup_limits(limits, opts_.platform)); !st) return st.error();
  }
  if (auto st = SandboxDisk::mount(dir); !st) return st.error();
  const bool netstack = has_network(id);
  if (netstack) {
    if (!opts_.egress) return make_error(Code::kUnavailable, "this node offers no network to sandboxes any more");
    auto was = link(id);
    auto l = opts_.egress->restore(dir);
    if (!l) return l.error();
    if (!was || was->index != l->index) {
      // Made again: the node's default rate too (the manager sets a sandbox's own).
      uint64_t bits = static_cast<uint64_t>(opts_.egress_default_kbit) * 1000;
      if (auto st = opts_.egress->set_rates(dir, bits, bits); !st) return st.error();
      std::lock_guard lock(links_mu_);
      links_[id] = *l;
    }
  }
  auto io = open_runner_io(dir);
  if (!io) return io.error();
  ProcessOptions rs;
  rs.argv = command({"restore", "--detach", "--bundle", dir + "/bundle", "--image-path", image, id}, netstack);
  if (netstack) rs.pre_exec = hide_proc_sys_net;  // as for `runsc start`
  rs.stdin_fd = io->runner.get();
  rs.stdout_fd = io->runner.get();
  rs.stderr_fd = io->log.get();
  rs.timeout = opts_.command_timeout;
  auto r = run_process(rs);
  if (!r) return r.error();
  if (r->exit_code != 0) {
    auto log = fs::read_file(io->log_path);
    r->err = log.ok() ? *log : "";
    (void)end_processes(id);  // whatever of it started
    return make_error(Code::kUnavailable, describe_failure(rs, *r));
  }
  (void)fs::remove_tree(image);
  return RunnerLink{std::move(io->agent)};
}

// Every step is tried even when one before it failed, so that a failure leaves as little as
// possible for the GC; the first error is the answer.
Status RunscDriver::remove_host_side(const std::string& id) {
  Status first = ok_status();
  auto keep = [&first](Status st) {
    if (!st && first) first = std::move(st);
  };
  // The pinned namespace is a mount in the directory: unpinned before the directory goes.
  if (opts_.egress) keep(opts_.egress->teardown(sandbox_dir(id)));
  // The gofer is gone with the sandbox: the disk can be unmounted before its directory goes
  // (never removed through a disk that is still mounted).
  if (auto st = SandboxDisk::remove(sandbox_dir(id)); st) {
    keep(fs::remove_tree(sandbox_dir(id)));
  } else {
    keep(std::move(st));
  }
  // After the processes: remove() kills stragglers (a process that joined after the kill).
  if (opts_.cgroups) keep(opts_.cgroups->remove(id));
  {
    std::lock_guard lock(links_mu_);
    links_.erase(id);
  }
  return first;
}

Status RunscDriver::set_limits(const std::string& id, const Limits& limits) {
  if (auto st = SandboxDisk::set_limit(sandbox_dir(id), limits.disk_mb); !st) return st;
  if (!opts_.cgroups) return ok_status();
  return opts_.cgroups->set_limits(id, host_cgroup_limits(limits, opts_.platform));
}

std::optional<std::string> RunscDriver::tenant_dir(const std::string& tenant) const {
  // Tenant names come from the token file; only ones that are plain path components hold
  // workspaces.
  if (!plain_name(tenant, 128)) return std::nullopt;
  return opts_.state_dir + "/tenants/" + tenant;
}

Result<std::string> RunscDriver::workspace(const std::string& tenant, const std::string& name, int64_t size_mb) {
  auto base = tenant_dir(tenant);
  if (!base || !valid_workspace_name(name)) {
    return make_error(Code::kInvalidArgument, "tenant '" + tenant + "' cannot hold a workspace named '" + name + "'");
  }
  const std::string dir = *base + "/workspaces/" + name;
  std::lock_guard lock(workspaces_mu_);  // one create of a workspace at a time
  if (fs::exists(dir + "/disk.img")) {
    if (auto st = SandboxDisk::mount(dir); !st) return st.error();
  } else {
    if (auto st = fs::make_dirs(dir, 0700); !st) return st.error();
    if (auto st = disk_.create(dir, size_mb, size_mb, 1000, 1000); !st) {
      (void)SandboxDisk::remove(dir);
      (void)fs::remove_tree(dir);
      return st.error();
    }
    std::lock_guard names(names_mu_);
    workspace_names_[tenant].insert(name);
  }
  return SandboxDisk::workspace(dir);
}

Status RunscDriver::remove_tenant(const std::string& tenant,
                                  std::optional<std::chrono::system_clock::time_point> before) {
  auto base = tenant_dir(tenant);
  if (!base || !fs::exists(*base)) return ok_status();
  std::lock_guard lock(workspaces_mu_);
  bool kept = false;
  for (const auto& name : fs::list_dir(*base + "/workspaces")) {
    const std::string dir = *base + "/workspaces/" + name;
    // Made since the delete (its disk's birth); where birth times are not kept, it goes.
    auto born = fs::birth_time(dir + "/disk.img");
    if (before && born && *born >= *before) {
      kept = true;
      continue;
    }
    if (auto st = SandboxDisk::remove(dir); !st) return st;
    if (auto st = fs::remove_tree(dir); !st) return st;
    std::lock_guard names(names_mu_);
    if (auto it = workspace_names_.find(tenant); it != workspace_names_.end() && it->second.erase(name) &&
                                                 it->second.empty())
      workspace_names_.erase(it);
  }
  return kept ? ok_status() : fs::remove_tree(*base);
}

void RunscDriver::unmount_workspaces() {
  std::lock_guard lock(workspaces_mu_);
  for (const auto& [tenant, names] : workspaces()) {
    for (const auto& name : names) {
      std::string dir = opts_.state_dir + "/tenants/" + tenant + "/workspaces/" + name;
      if (auto st = SandboxDisk::unmount(dir); !st)
        log::warn("workspace not unmounted", {{"workspace", dir}, {"error", st.error().to_string()}});
    }
  }
}

std::map<std::string, std::vector<std::string>> RunscDriver::workspaces() const {
  std::lock_guard names(names_mu_);
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [tenant, set] : workspace_names_) out[tenant].assign(set.begin(), set.end());
  return out;
}

Result<CgroupUsage> RunscDriver::cgroup_usage(const std::string& id) {
  if (!opts_.cgroups) return make_error(Code::kUnavailable, "no cgroups: usage unknown");
  return opts_.cgroups->usage(id);
}

Result<CgroupUsage> RunscDriver::usage(const std::string& id) {
  auto u = cgroup_usage(id);
  if (!u) return u;
  if (auto link = opts_.egress ? this->link(id) : std::nullopt) {
    if (auto bytes = opts_.egress->bytes_in_out(*link)) {
      u->net_in_bytes = static_cast<int64_t>(bytes->first);
      u->net_out_bytes = static_cast<int64_t>(bytes->second);
    }
  }
  if (auto disk = SandboxDisk::usage(sandbox_dir(id))) {
    u->disk_used_bytes = disk->used_bytes;
    u->disk_limit_bytes = disk->limit_bytes;
  }
  return u;
}

std::optional<MemoryFootprint> RunscDriver::footprint(const std::string& id) {
  if (!opts_.cgroups) return std::nullopt;
  auto pids = opts_.cgroups->processes(id);
  if (pids.empty()) return std::nullopt;
  return memory_footprint(pids);
}

Result<std::vector<std::string>> RunscDriver::list() {
  ProcessOptions ls;
  ls.argv = command({"list", "--quiet"}, false);
  ls.timeout = opts_.command_timeout;
  auto r = run_process(ls);
  if (!r) return r.error();
  if (r->exit_code != 0) return make_error(Code::kUnavailable, describe_failure(ls, *r));
  std::vector<std::string> ids;
  size_t pos = 0;
  while (pos < r->out.size()) {
    size_t nl = r->out.find('\n', pos);
    std::string line = r->out.substr(pos, nl - pos);
    if (!line.empty()) ids.push_back(line);
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  // Directories of sandboxes runsc no longer knows (a crash between steps) count too.
  if (DIR* d = opendir((opts_.state_dir + "/sandboxes").c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (valid_sandbox_id(name) && std::find(ids.begin(), ids.end(), name) == ids.end()) ids.push_back(name);
    }
    closedir(d);
  }
  // And cgroups under the parent that outlived their sandbox.
  if (opts_.cgroups) {
    auto cgs = opts_.cgroups->children();
    if (!cgs) return cgs.error();
    for (const auto& name : *cgs) {
      if (valid_sandbox_id(name) && std::find(ids.begin(), ids.end(), name) == ids.end()) {
        ids.push_back(name);
      }
    }
  }
  return ids;
}

std::vector<std::string> RunscDriver::remove_orphans() {
  if (!opts_.egress) return {};
  return opts_.egress->remove_orphans([this] {
    std::set<int> in_use;
    if (DIR* d = opendir((opts_.state_dir + "/sandboxes").c_str())) {
      while (dirent* e = readdir(d)) {
        if (!valid_sandbox_id(e->d_name)) continue;
        if (auto link = EgressNetworks::read(sandbox_dir(e->d_name))) in_use.insert(link->index);
      }
      closedir(d);
    }
    return in_use;
  });
}

}  // namespace swissbox
