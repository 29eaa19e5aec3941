// The runner's file requests (read_file, write_file, list, stat, delete, mkdir, rename; see
// common/runner_protocol.h), answered as the commands' user so that what they create is
// theirs and what they may not touch stays untouched. Paths resolve inside the sandbox's
// own filesystem, relative ones under the workspace.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

namespace swissbox::init {

// /workspace in a sandbox; SWISSBOX_WORKSPACE moves it (tests run the runner on the host).
extern std::string g_workspace;
// The user commands and file requests run as (--user UID:GID); -1: the runner's own
// (tests on the host).
extern uid_t g_uid;
extern gid_t g_gid;

// A request's path: absolute as given, relative under the workspace.
std::string resolve(const std::string& path);

// File requests (and watches) act as the commands' user, so that what they create is
// theirs and what they may not touch stays untouched: the effective ids change for the
// object's life (the saved set-user-id stays 0 to come back; the runner is
// single-threaded).
class AsCommandUser {
 public:
  AsCommandUser();
  ~AsCommandUser();
  AsCommandUser(const AsCommandUser&) = delete;
  AsCommandUser& operator=(const AsCommandUser&) = delete;
  // False when the switch failed: the request must not run as root.
  bool ok() const;

 private:
  bool active_ = false;
};

class FileOps {
 public:
  static bool handles(std::string_view op);
  // Answers the request (results and data events on the control channel).
  void handle(std::string_view op, uint64_t id, const nlohmann::json& header, const std::string& payload);

 private:
  void read_file(uint64_t id, const nlohmann::json& h);
  void write_file(uint64_t id, const nlohmann::json& h, const std::string& data);
  void list_dir(uint64_t id, const nlohmann::json& h);
  void stat_path(uint64_t id, const nlohmann::json& h);
  void delete_path(uint64_t id, const nlohmann::json& h);
  void make_dir(uint64_t id, const nlohmann::json& h);
  void rename_path(uint64_t id, const nlohmann::json& h);

  // Uploads whose write failed: their remaining pieces are dropped.
  std::set<uint64_t> failed_writes_;
};

}  // namespace swissbox::init
