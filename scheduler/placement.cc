#include "scheduler/placement.h"

#include <fmt/format.h>

#include <algorithm>

namespace swissbox::sched {

std::string NoPlacement::describe() const {
  return fmt::format(
      "no node can take it: {} outside the allowed regions, {} silent, {} draining, {} "
      "without the template, {} full",
      region, stale, draining, no_template, full);
}

double load_of(const NodeState& n, const PlacementRequest& req, double cold_penalty) {
  double load = static_cast<double>(n.active + n.inflight) / std::max(1, n.capacity);
  auto warm = [&](const std::string& pool) {
    auto w = n.warm.find(pool);
    return w != n.warm.end() && w->second > n.inflight;
  };
  if (!req.language.empty() && warm(req.template_name + "+" + req.language)) return load;
  if (warm(req.template_name)) return req.language.empty() ? load : load + cold_penalty / 2;
  return load + cold_penalty;
}

std::vector<size_t> place(const std::vector<NodeState>& nodes, const PlacementRequest& req,
                          const PlacementPolicy& policy, Clock::time_point now,
                          std::mt19937_64& rng, NoPlacement* why) {
  *why = {};
  // Eligible indices, collected once: O(nodes) with no allocation beyond this vector.
  std::vector<size_t> eligible;
  eligible.reserve(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    const NodeState& n = nodes[i];
    if (!req.node.empty() && n.name != req.node) continue;
    if (!policy.allowed_regions.count(n.region) || (!req.zone.empty() && n.region != req.zone)) {
      ++why->region;
    } else if (!fresh(n, policy, now)) {
      ++why->stale;
    } else if (n.draining) {
      ++why->draining;
    } else if (!n.warm.count(req.template_name)) {
      ++why->no_template;
    } else if (n.active + n.inflight >= n.capacity) {
      ++why->full;
    } else {
      eligible.push_back(i);
    }
  }
  if (eligible.empty()) return {};
  auto load = [&](size_t i) { return load_of(nodes[i], req, policy.cold_penalty); };
  // Power of K choices: a partial Fisher–Yates shuffle puts K random nodes in front.
  size_t k = std::min<size_t>(std::max(1, policy.sample_k), eligible.size());
  for (size_t i = 0; i < k; ++i) {
    std::uniform_int_distribution<size_t> pick(i, eligible.size() - 1);
    std::swap(eligible[i], eligible[pick(rng)]);
  }
  auto best = std::min_element(eligible.begin(), eligible.begin() + k,
                               [&](size_t a, size_t b) { return load(a) < load(b); });
  std::swap(eligible[0], *best);
  // Fallbacks: the least loaded of the rest, for when the chosen node refuses.
  size_t want = std::min<size_t>(std::max(1, policy.max_candidates), eligible.size());
  std::partial_sort(eligible.begin() + 1, eligible.begin() + want, eligible.end(),
                    [&](size_t a, size_t b) { return load(a) < load(b); });
  eligible.resize(want);
  return eligible;
}

}  // namespace swissbox::sched
