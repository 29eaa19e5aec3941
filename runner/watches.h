// Directory watches inside the sandbox (op watch, common/runner_protocol.h): one inotify
// instance per watch, read in the runner's poll loop, its changes sent to the agent as they
// come, named relative to the watched directory.
//
// A recursive watch holds every directory under its root (at most kMaxWatchedDirs) and
// takes in directories created or moved in later; one moved away is dropped. A watch ends
// with a failed result when its directory goes away (removed or moved), when changes were
// lost (the kernel's queue overflowed: a paused watch whose client does not read, or more
// changes than anyone could follow), or when it would pass the directory limit; unwatch ends
// it with an ok result. Directories are opened and watched as the commands' user, so a
// watch sees only what they may read.
#pragma once

#include <poll.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/runner_protocol.h"
#include "common/unique_fd.h"

namespace swissbox::init {

class Watches {
 public:
  using Send = std::function<void(const nlohmann::json& header, std::string_view payload)>;

  explicit Watches(Send send) : send_(std::move(send)) {}

  // Answers watching, or a failed result (no such directory, not one, too many watches).
  // The path is resolved by the caller.
  void start(uint64_t id, const proto::WatchOp& op);
  // unwatch, pause and resume on a watch's id; false when the id is not a watch.
  bool stop(uint64_t id);
  bool pause(uint64_t id, bool on);
  // Every watch ends without a word (a new agent took the channel: the ids were the old
  // one's, and so were the clients).
  void clear() { watches_.clear(); }

  // The poll loop: fds to watch (appended), then each ready one handed back; true when fd
  // was a watch's (handled).
  void add_pollfds(std::vector<pollfd>* fds) const;
  bool on_ready(int fd);

 private:
  struct Watch {
    unique_fd fd;
    std::string root;
    bool recursive = false;
    bool paused = false;
    std::map<int, std::string> dirs;  // watch descriptor → directory relative to root ("")
  };

  // Watches `rel` (relative to the root) and, when recursive, every directory under it.
  // 0, or the errno that stopped it (ENOSPC: past kMaxWatchedDirs).
  int add_tree(Watch& w, const std::string& rel);
  // Drops the watches of `rel` and everything under it (a directory moved away).
  void drop_tree(Watch& w, const std::string& rel);
  // Reads what the kernel queued; false when the watch ended (answered).
  bool read_changes(uint64_t id, Watch& w);
  void end(uint64_t id, int err, const std::string& message);

  Send send_;
  std::map<uint64_t, Watch> watches_;
};

}  // namespace swissbox::init
