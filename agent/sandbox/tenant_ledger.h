// What each tenant used on this node (issue 21), for its bill: CPU seconds, memory
// GB-seconds, disk GB-hours (sandbox disks, and checkpoints while suspended), network bytes
// in and out, sandboxes created and executions. Counted from the every-second usage round
// and the API, kept in one JSON file written atomically every few seconds and at shutdown,
// so the numbers add up across agent restarts (a crash loses at most the last interval,
// never counts twice). The same file records which tenants were deleted, and when. On the
// I/O thread.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "common/error.h"

namespace swissbox {

struct TenantUsage {
  double cpu_seconds = 0;
  double memory_gb_seconds = 0;
  double disk_gb_hours = 0;
  int64_t net_in_bytes = 0;
  int64_t net_out_bytes = 0;
  int64_t sandboxes_created = 0;
  int64_t executions = 0;
  nlohmann::json to_json() const;
};

class TenantLedger {
 public:
  explicit TenantLedger(std::string path) : path_(std::move(path)) {}  // "": not kept

  // Reads the file (none yet: all zero). A file that does not parse is an error.
  Status load();
  // Writes the file if anything changed since the last save.
  Status save();

  void add_cpu(const std::string& tenant, double seconds) { at(tenant).cpu_seconds += seconds; }
  // bytes held for `seconds`.
  void add_memory(const std::string& tenant, double bytes, double seconds) {
    at(tenant).memory_gb_seconds += bytes / 1e9 * seconds;
  }
  void add_disk(const std::string& tenant, double bytes, double seconds) {
    at(tenant).disk_gb_hours += bytes / 1e9 * seconds / 3600;
  }
  void add_network(const std::string& tenant, int64_t in, int64_t out) {
    TenantUsage& u = at(tenant);
    u.net_in_bytes += in;
    u.net_out_bytes += out;
  }
  void count_created(const std::string& tenant) { at(tenant).sandboxes_created++; }
  void count_execution(const std::string& tenant) { at(tenant).executions++; }

  // The tenant's usage (all zero if it used nothing here).
  TenantUsage usage(const std::string& tenant) const;
  const std::map<std::string, TenantUsage>& all() const { return tenants_; }
  // A deleted tenant's numbers go with it; the delete is recorded (at `when`, unix
  // seconds), so that the scheduler can finish it on nodes that were away. Records older
  // than kDeletesKeptFor are dropped at a save.
  void forget(const std::string& tenant, double when);
  // Deleted tenants and when, unix seconds.
  const std::map<std::string, double>& deleted() const { return deleted_; }
  static constexpr double kDeletesKeptFor = 30 * 86400.0;

 private:
  TenantUsage& at(const std::string& tenant) {
    dirty_ = true;
    return tenants_[tenant];
  }
  std::string path_;
  std::map<std::string, TenantUsage> tenants_;
  std::map<std::string, double> deleted_;
  bool dirty_ = false;
};

}  // namespace swissbox
