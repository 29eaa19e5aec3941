#include "agent/hardening.h"

#include <seccomp.h>
#include <sys/capability.h>

#include <algorithm>
#include <cerrno>
#include <memory>

namespace swissbox {

const std::vector<std::string>& kept_capabilities() {
  // The agent: mounts and loop devices for sandbox disks (SYS_ADMIN, MKNOD), cgroup and
  // state files, chown of workspaces, signals to sandbox processes, the API port.
  // runsc inherits exactly this set: namespaces, chroot and pivot_root, ptrace (ptrace
  // platform), uid/gid switches of the gofer and sentry, file access on behalf of the
  // sandbox, rlimits, netns set-up. The whole integration suite runs with it; which of
  // these runsc could also do without has not been narrowed down yet.
  static const std::vector<std::string> kKeep = {
      "cap_chown",      "cap_dac_override", "cap_dac_read_search", "cap_fowner",
      "cap_fsetid",     "cap_kill",         "cap_setgid",          "cap_setuid",
      "cap_setpcap",    "cap_net_bind_service", "cap_net_admin",   "cap_net_raw",
      "cap_ipc_lock",   "cap_sys_chroot",   "cap_sys_ptrace",      "cap_sys_admin",
      "cap_sys_nice",   "cap_sys_resource", "cap_mknod",           "cap_setfcap",
  };
  return kKeep;
}

const std::vector<std::string>& denied_syscalls() {
  // Kernel modules, kexec, reboot, clocks, swap, accounting, keyrings, BPF and perf, raw
  // I/O ports, handle-based opens (the classic container escape), userfaultfd and
  // io_uring (frequent kernel exploit vectors), obsolete calls. runsc uses none of them.
  static const std::vector<std::string> kDeny = {
      "acct",          "add_key",         "adjtimex",       "bpf",
      "clock_adjtime", "clock_settime",   "create_module",  "delete_module",
      "fanotify_init", "finit_module",    "get_kernel_syms", "init_module",
      "io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm",
      "iopl",          "kexec_file_load", "kexec_load",     "keyctl",
      "lookup_dcookie", "nfsservctl",     "open_by_handle_at", "perf_event_open",
      "query_module",  "quotactl",        "reboot",         "request_key",
      "settimeofday",  "swapoff",         "swapon",         "syslog",
      "sysfs",         "_sysctl",         "uselib",         "userfaultfd",
      "ustat",         "vhangup",
  };
  return kDeny;
}

namespace {

Result<int> drop_capabilities() {
  std::vector<cap_value_t> keep;
  for (const auto& name : kept_capabilities()) {
    cap_value_t v;
    if (cap_from_name(name.c_str(), &v) != 0)
      return make_error(Code::kInternal, "unknown capability " + name);
    keep.push_back(v);
  }
  int dropped = 0;
  for (cap_value_t c = 0; c <= CAP_LAST_CAP; ++c) {
    if (std::find(keep.begin(), keep.end(), c) != keep.end()) continue;
    if (!CAP_IS_SUPPORTED(c)) continue;
    if (cap_drop_bound(c) != 0) return sys_error("drop capability " + std::to_string(c));
    ++dropped;
  }
  std::unique_ptr<_cap_struct, int (*)(void*)> caps(cap_get_proc(), cap_free);
  if (!caps) return sys_error("cap_get_proc");
  std::vector<cap_value_t> held;
  for (cap_value_t c : keep) {
    cap_flag_value_t v = CAP_CLEAR;
    if (cap_get_flag(caps.get(), c, CAP_PERMITTED, &v) == 0 && v == CAP_SET) held.push_back(c);
  }
  cap_clear(caps.get());
  if (!held.empty()) {
    cap_set_flag(caps.get(), CAP_PERMITTED, held.size(), held.data(), CAP_SET);
    cap_set_flag(caps.get(), CAP_EFFECTIVE, held.size(), held.data(), CAP_SET);
  }
  if (cap_set_proc(caps.get()) != 0) return sys_error("cap_set_proc");
  return dropped;
}

Result<int> install_seccomp() {
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(SCMP_ACT_ALLOW),
                                                        seccomp_release);
  if (!ctx) return make_error(Code::kInternal, "seccomp_init failed");
  // runsc re-executes itself and its gofer switches users: no_new_privs would not stop
  // it, but the agent keeps CAP_SYS_ADMIN, so the filter needs no NNP either.
  seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1);
  int denied = 0;
  for (const auto& name : denied_syscalls()) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // not a call on this architecture
    if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 0); rc != 0)
      return sys_error("seccomp rule for " + name, -rc);
    ++denied;
  }
  if (int rc = seccomp_load(ctx.get()); rc != 0) return sys_error("seccomp_load", -rc);
  return denied;
}

}  // namespace

Result<HardeningReport> harden_agent() {
  HardeningReport r;
  auto caps = drop_capabilities();
  if (!caps) return caps.error();
  r.capabilities_dropped = *caps;
  auto sc = install_seccomp();
  if (!sc) return sc.error();
  r.syscalls_denied = *sc;
  return r;
}

}  // namespace swissbox
