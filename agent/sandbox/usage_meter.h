// The host usage of a node's sandboxes, read off the I/O thread (cgroup files, the
// sandbox's disk, its link's counters over netlink, smaps for memory footprints) on the
// manager's host-work threads, and applied to each sandbox back on the I/O thread: its usage and
// CPU percent, and its tenant's bill (TenantLedger: CPU, memory and disk over time, network). The every-second round reads
// in batches of 16, so a claim's host work queued meanwhile waits for one batch, not all.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/runtime/runtime.h"
#include "agent/sandbox/sandbox.h"
#include "agent/sandbox/tenant_ledger.h"

namespace swissbox {

class UsageMeter {
 public:
  using SandboxPtr = std::shared_ptr<Sandbox>;
  // Whether a reading may still be applied to the sandbox (it was not removed meanwhile).
  using Still = std::function<bool(const Sandbox&)>;

  // host_work: where readings run; its owner joins it before the meter goes.
  UsageMeter(boost::asio::io_context& ioc, boost::asio::thread_pool& host_work,
             SandboxRuntime& runtime, TenantLedger& ledger);

  // Reads every sandbox given; done() on the I/O thread once all readings are applied. A
  // round asked for while one is under way is skipped (done is not called).
  void sample(std::vector<SandboxPtr> sandboxes, Still still, std::function<void()> done);
  // One sandbox's usage (applied) and memory footprint, for GET.
  void read(SandboxPtr sb, Still still, std::function<void(std::optional<MemoryFootprint>)> done);
  // The mean footprint of the sandboxes of each pool (pool → ids); pools with none left out.
  void footprints(std::map<std::string, std::vector<std::string>> pools,
                  std::function<void(std::map<std::string, MemoryFootprint>)> done);
  // A reading into the sandbox; its usage since the last reading billed to its tenant
  // while it is active (from its claim on: a warm sandbox's usage is nobody's).
  void apply(Sandbox& sb, const CgroupUsage& usage);

 private:
  boost::asio::io_context& ioc_;
  SandboxRuntime& runtime_;
  TenantLedger& ledger_;
  boost::asio::thread_pool& host_work_;
  bool sampling_ = false;  // a round is under way
};

}  // namespace swissbox
