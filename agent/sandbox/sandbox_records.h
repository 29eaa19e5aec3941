// What survives an agent crash: one JSON record per active sandbox, written atomically
// (temp file + rename) before the API acknowledges a change and removed before a delete is
// acknowledged. After a restart the manager lists the records, reattaches to the sandboxes
// the runtime still runs, and removes everything else.
//
// No fsync for a running sandbox's record: it must outlive the agent process, not the node
// (a node crash takes the sandbox too), and an fsync on the claim path would cost
// milliseconds. A suspended sandbox's record is fsynced: it outlives a node reboot.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/sandbox/sandbox_manager.h"
#include "common/error.h"

namespace swissbox {

// The fields a restarted agent needs to serve the sandbox as before.
nlohmann::json sandbox_record(const Sandbox& sb);
// Fails on a record that is not one (wrong types, bad id, unknown template).
Result<Sandbox> sandbox_from_record(const nlohmann::json& record);

class RecordStore {
 public:
  explicit RecordStore(std::string dir) : dir_(std::move(dir)) {}
  Status open() const;  // creates the directory
  Status save(const Sandbox& sb) const;
  Status remove(const std::string& id) const;
  // Every record that parses; unreadable ones are logged, removed and counted in *bad.
  std::vector<Sandbox> load(int* bad) const;

 private:
  std::string path(const std::string& id) const { return dir_ + "/" + id + ".json"; }
  std::string dir_;
};

}  // namespace swissbox
