#include "agent/net/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <thread>

namespace swissbox::netns {

namespace {

// Runs fn on a fresh thread and waits for it: namespace changes die with that thread.
Status on_own_thread(const std::function<Status()>& fn) {
  Status result = ok_status();
  std::thread t([&] { result = fn(); });
  t.join();
  return result;
}

}  // namespace

Status create(const std::string& path) {
  {
    unique_fd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
    if (!f) return sys_error("create netns file " + path);
  }
  auto st = on_own_thread([&]() -> Status {
    if (unshare(CLONE_NEWNET) != 0) return sys_error("unshare(CLONE_NEWNET) for " + path);
    if (mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0)
      return sys_error("pin netns at " + path);
    return ok_status();
  });
  if (!st) ::unlink(path.c_str());
  return st;
}

Status remove(const std::string& path) {
  if (umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
    return sys_error("unpin netns " + path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return sys_error("remove " + path);
  return ok_status();
}

bool pinned(const std::string& path) {
  struct statfs s {};
  return statfs(path.c_str(), &s) == 0 && s.f_type == NSFS_MAGIC;
}

Result<unique_fd> open(const std::string& path) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("open netns " + path);
  return fd;
}

Status run_in(const std::string& path, const std::function<Status()>& fn) {
  auto fd = open(path);
  if (!fd) return fd.error();
  return on_own_thread([&]() -> Status {
    if (setns(fd->get(), CLONE_NEWNET) != 0) return sys_error("setns into " + path);
    return fn();
  });
}

}  // namespace swissbox::netns
