// The node's warm pools as bookkeeping, per pool key ("default", "default:egress",
// "default+python"): its target, its ready sandboxes, the starts under way for it (all of
// them, and those that refill it), and the creates waiting for one of those refill starts.
// No runtime call and no timer here: SandboxManager starts, claims and destroys sandboxes;
// WarmPool decides which pool a start goes to, hands ready sandboxes out and counts. On
// the I/O thread, like the manager.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/sandbox/sandbox.h"
#include "common/error.h"

namespace swissbox {

struct PoolStatus {
  int target = 0, ready = 0, starting = 0, active = 0;
};

class WarmPool {
 public:
  using SandboxPtr = std::shared_ptr<Sandbox>;
  // A create waiting for a refill start: it gets the started sandbox, or the reason there
  // is none (then it starts its own).
  using Waiter = std::function<void(Result<SandboxPtr>)>;

  explicit WarmPool(std::map<std::string, int> targets) : targets_(std::move(targets)) {}

  const std::map<std::string, int>& targets() const { return targets_; }
  // The pool furthest below its target, as a fraction of it (ready + starting); "" when
  // every pool is full. Refills go there first, so that a burst on one pool is not
  // refilled only after the pools before it by name.
  // usable: whether a pool can be refilled now (its template may not be ready yet).
  std::string emptiest(const std::function<bool(const std::string&)>& usable = {}) const;
  // A ready sandbox of the pool, taken out; the most recently started first (its caches
  // are the warmest). Sandboxes whose runner channel died meanwhile are dropped (their
  // loss is handled where it was seen). nullptr when none is ready.
  SandboxPtr take(const std::string& pool);
  void put(const std::string& pool, SandboxPtr sb);
  // Forgets a sandbox wherever it waits (deleted or lost).
  void erase(const SandboxPtr& sb);
  // The new target; the ready sandboxes past it, oldest first, taken out to be retired.
  std::vector<SandboxPtr> set_target(const std::string& pool, int target);
  // Every ready sandbox's id, by pool.
  std::map<std::string, std::vector<std::string>> ready_ids() const;
  // Every pool has at least one ready sandbox (those with a target).
  bool warm(const std::function<bool(const std::string&)>& usable = {}) const;

  // Starts of a pool's sandboxes (refills and cold starts) begin and end here.
  void start_begun(const std::string& pool) { ++starting_[pool], ++starting_total_; }
  void start_ended(const std::string& pool) { --starting_[pool], --starting_total_; }
  int starting_total() const { return starting_total_; }

  // A refill start of the pool begins; when it ends, the first waiting create (if any) is
  // handed back to be given its outcome.
  void refill_begun(const std::string& pool) { ++refilling_[pool]; }
  Waiter refill_ended(const std::string& pool);
  // Queues a create behind the pool's refill starts: false (not queued) when none is under
  // way or `max` creates wait already.
  bool wait_for_refill(const std::string& pool, Waiter waiter, size_t max);
  // The waiting creates of pools that no longer refill (or of every pool, when stopping):
  // taken out, for them to start their own sandboxes.
  std::vector<Waiter> stranded(bool stopping);

  // Target, ready and starting of each of `pools` (active is the manager's to count).
  std::map<std::string, PoolStatus> status(const std::set<std::string>& pools) const;

 private:
  std::map<std::string, int> targets_;
  std::map<std::string, std::vector<SandboxPtr>> ready_;  // LIFO
  std::map<std::string, int> starting_;
  int starting_total_ = 0;
  std::map<std::string, int> refilling_;
  std::map<std::string, std::deque<Waiter>> waiters_;
};

}  // namespace swissbox
