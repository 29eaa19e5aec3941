#include "runner/watches.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/limits.h"
#include "runner/files.h"

namespace swissbox::init {

using json = nlohmann::json;

namespace {

constexpr uint32_t kMask = IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                           IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW;
// A changes event's header stays well below the protocol's limit (a name of 4096 bytes
// escapes to at most 25 kB of JSON).
constexpr size_t kFrameBudget = 32 * 1024;
// Reads per readiness: a watch that never runs dry does not starve the rest of the loop.
constexpr int kReadsPerTurn = 4;

std::string joined(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

const char* change_type(uint32_t mask) {
  if (mask & (IN_CREATE | IN_MOVED_TO)) return "create";
  if (mask & IN_MODIFY) return "write";
  if (mask & IN_DELETE) return "remove";
  if (mask & IN_MOVED_FROM) return "rename";
  if (mask & IN_ATTRIB) return "chmod";
  return nullptr;
}

// Changes on their way out, in events that each stay within the frame budget.
class Batch {
 public:
  Batch(uint64_t id, const Watches::Send& send) : id_(id), send_(send) {}
  ~Batch() { flush(); }

  void add(std::string name, const char* type) {
    proto::Change c{std::move(name), type};
    if (!changes_.empty() && changes_.back() == c) return;  // the same again (a write loop)
    bytes_ += json(c.name).dump(-1, ' ', false, json::error_handler_t::replace).size() + 32;
    changes_.push_back(std::move(c));
    if (bytes_ >= kFrameBudget || changes_.size() >= proto::kMaxChangesPerEvent) flush();
  }
  void flush() {
    if (changes_.empty()) return;
    send_(proto::changes_event(id_, changes_), {});
    changes_.clear();
    bytes_ = 0;
  }

 private:
  uint64_t id_;
  const Watches::Send& send_;
  std::vector<proto::Change> changes_;
  size_t bytes_ = 0;
};

}  // namespace

void Watches::start(uint64_t id, const proto::WatchOp& op) {
  auto fail = [&](int err, const std::string& what) {
    send_(proto::error_event(id, err, what + ": " + strerror(err)), {});
  };
  if (watches_.count(id)) return fail(EEXIST, "watch id in use");
  if (watches_.size() >= limits::kMaxWatches) {
    return fail(ENOSPC, "a sandbox has at most " + std::to_string(limits::kMaxWatches) + " watches");
  }
  {
    AsCommandUser as_user;
    if (!as_user.ok()) return fail(EPERM, "watch " + op.path + " as the commands' user");
    struct stat st;
    if (stat(op.path.c_str(), &st) != 0) return fail(errno, "watch " + op.path);
    if (!S_ISDIR(st.st_mode)) return fail(ENOTDIR, "watch " + op.path);
  }
  Watch w;
  w.fd.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!w.fd) return fail(errno, "inotify");
  w.root = op.path;
  w.recursive = op.recursive;
  if (int err = add_tree(w, "")) return fail(err, "watch " + op.path);
  watches_.emplace(id, std::move(w));
  send_(proto::watching_event(id), {});
}

int Watches::add_tree(Watch& w, const std::string& rel) {
  AsCommandUser as_user;
  if (!as_user.ok()) return EPERM;
  std::vector<std::string> todo{rel};
  while (!todo.empty()) {
    std::string dir = std::move(todo.back());
    todo.pop_back();
    if (w.dirs.size() >= limits::kMaxWatchedDirs) return ENOSPC;
    std::string path = dir.empty() ? w.root : w.root + "/" + dir;
    int wd = inotify_add_watch(w.fd.get(), path.c_str(), kMask);
    if (wd < 0) {
      if (dir == rel) return errno;
      continue;  // gone already, or not readable: the rest is still watched
    }
    w.dirs[wd] = dir;
    if (!w.recursive) continue;
    DIR* d = opendir(path.c_str());
    if (!d) continue;
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      bool is_dir = e->d_type == DT_DIR;
      struct stat st;
      if (e->d_type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        is_dir = S_ISDIR(st.st_mode);
      }
      if (is_dir) todo.push_back(joined(dir, name));
    }
    closedir(d);
  }
  return 0;
}

void Watches::drop_tree(Watch& w, const std::string& rel) {
  std::erase_if(w.dirs, [&](const auto& entry) {
    const std::string& dir = entry.second;
    bool under = dir == rel || (dir.size() > rel.size() && dir.starts_with(rel) && dir[rel.size()] == '/');
    if (under) inotify_rm_watch(w.fd.get(), entry.first);
    return under;
  });
}

bool Watches::stop(uint64_t id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return false;
  watches_.erase(it);
  send_(proto::result_event(id), {});
  return true;
}

bool Watches::pause(uint64_t id, bool on) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return false;
  it->second.paused = on;
  return true;
}

void Watches::add_pollfds(std::vector<pollfd>* fds) const {
  for (const auto& [id, w] : watches_) {
    if (!w.paused) fds->push_back({w.fd.get(), POLLIN, 0});
  }
}

bool Watches::on_ready(int fd) {
  for (auto& [id, w] : watches_) {
    if (w.fd.get() != fd) continue;
    read_changes(id, w);  // may end the watch: nothing of it is used after
    return true;
  }
  return false;
}

void Watches::end(uint64_t id, int err, const std::string& message) {
  watches_.erase(id);
  send_(proto::error_event(id, err, message), {});
}

bool Watches::read_changes(uint64_t id, Watch& w) {
  alignas(inotify_event) char buf[64 * 1024];
  Batch batch(id, send_);
  for (int turn = 0; turn < kReadsPerTurn; ++turn) {
    ssize_t n = read(w.fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;  // EAGAIN: all read
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        batch.flush();
        end(id, EOVERFLOW, "changes were lost: the watch fell behind (its client reads too slowly, "
                           "or the directory changes faster than anyone could follow)");
        return false;
      }
      auto dir = w.dirs.find(ev->wd);
      if (dir == w.dirs.end()) continue;  // a directory dropped earlier
      const bool is_root = dir->second.empty();
      if (ev->mask & (IN_IGNORED | IN_UNMOUNT | IN_DELETE_SELF | IN_MOVE_SELF)) {
        // A subdirectory's removal or move was reported by its parent.
        if (!is_root) {
          if (ev->mask & (IN_IGNORED | IN_UNMOUNT)) w.dirs.erase(dir);
          continue;
        }
        batch.flush();
        end(id, ENOENT, "the watched directory " + w.root + " was removed or moved");
        return false;
      }
      if (ev->len == 0) continue;
      std::string name = joined(dir->second, ev->name);
      const char* type = change_type(ev->mask);
      if (!type) continue;
      if (w.recursive && (ev->mask & IN_ISDIR)) {
        if (ev->mask & (IN_MOVED_FROM | IN_DELETE)) drop_tree(w, name);
        if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) && add_tree(w, name) == ENOSPC) {
          batch.add(std::move(name), type);
          batch.flush();
          end(id, ENOSPC, "the watch holds " + std::to_string(limits::kMaxWatchedDirs) +
                              " directories, the most it may");
          return false;
        }
      }
      batch.add(std::move(name), type);
    }
  }
  return true;
}

}  // namespace swissbox::init
