#include "agent/sandbox/warm_pool.h"

#include <algorithm>

namespace swissbox {

std::string WarmPool::emptiest(const std::function<bool(const std::string&)>& usable) const {
  std::string best;
  double best_fill = 1;
  for (const auto& [pool, target] : targets_) {
    if (target <= 0 || (usable && !usable(pool))) continue;
    auto r = ready_.find(pool);
    auto s = starting_.find(pool);
    double have = (r == ready_.end() ? 0 : r->second.size()) + (s == starting_.end() ? 0 : s->second);
    double fill = have / target;
    if (fill < best_fill) best = pool, best_fill = fill;
  }
  return best;
}

WarmPool::SandboxPtr WarmPool::take(const std::string& pool) {
  auto it = ready_.find(pool);
  if (it == ready_.end()) return nullptr;
  auto& ready = it->second;
  while (!ready.empty()) {
    SandboxPtr sb = std::move(ready.back());
    ready.pop_back();
    if (sb->channel && sb->channel->alive()) return sb;
  }
  return nullptr;
}

void WarmPool::put(const std::string& pool, SandboxPtr sb) { ready_[pool].push_back(std::move(sb)); }

void WarmPool::erase(const SandboxPtr& sb) {
  auto it = ready_.find(sb->pool());
  if (it != ready_.end()) std::erase(it->second, sb);
}

std::vector<WarmPool::SandboxPtr> WarmPool::set_target(const std::string& pool, int target) {
  targets_[pool] = target;
  std::vector<SandboxPtr> surplus;
  auto it = ready_.find(pool);
  if (it == ready_.end()) return surplus;
  auto& ready = it->second;
  while (static_cast<int>(ready.size()) > target) {
    surplus.push_back(std::move(ready.front()));
    ready.erase(ready.begin());
  }
  return surplus;
}

std::map<std::string, std::vector<std::string>> WarmPool::ready_ids() const {
  std::map<std::string, std::vector<std::string>> ids;
  for (const auto& [pool, ready] : ready_) {
    for (const auto& sb : ready) ids[pool].push_back(sb->id);
  }
  return ids;
}

bool WarmPool::warm(const std::function<bool(const std::string&)>& usable) const {
  for (const auto& [pool, target] : targets_) {
    if (usable && !usable(pool)) continue;
    auto r = ready_.find(pool);
    if (target > 0 && (r == ready_.end() || r->second.empty())) return false;
  }
  return true;
}

WarmPool::Waiter WarmPool::refill_ended(const std::string& pool) {
  --refilling_[pool];
  auto it = waiters_.find(pool);
  if (it == waiters_.end() || it->second.empty()) return nullptr;
  Waiter w = std::move(it->second.front());
  it->second.pop_front();
  return w;
}

bool WarmPool::wait_for_refill(const std::string& pool, Waiter waiter, size_t max) {
  auto refilling = refilling_.find(pool);
  if (refilling == refilling_.end() || refilling->second == 0) return false;
  auto& waiting = waiters_[pool];
  if (waiting.size() >= max) return false;
  waiting.push_back(std::move(waiter));
  return true;
}

std::vector<WarmPool::Waiter> WarmPool::stranded(bool stopping) {
  std::vector<Waiter> out;
  for (auto& [pool, waiting] : waiters_) {
    auto refilling = refilling_.find(pool);
    if (!stopping && refilling != refilling_.end() && refilling->second > 0) continue;
    for (auto& w : waiting) out.push_back(std::move(w));
    waiting.clear();
  }
  return out;
}

std::map<std::string, PoolStatus> WarmPool::status(const std::set<std::string>& pools) const {
  std::map<std::string, PoolStatus> out;
  for (const auto& name : pools) {
    PoolStatus& p = out[name];
    auto t = targets_.find(name);
    p.target = t == targets_.end() ? 0 : t->second;
    auto r = ready_.find(name);
    p.ready = r == ready_.end() ? 0 : static_cast<int>(r->second.size());
    auto s = starting_.find(name);
    p.starting = s == starting_.end() ? 0 : s->second;
  }
  return out;
}

}  // namespace swissbox
