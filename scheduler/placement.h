// Where a new sandbox goes. Pure: the caller passes what it knows of the nodes (their last
// reports plus its own placements since) and gets candidates, best first; it asks them in
// turn until one admits.
//
// Filter: the node the request is bound to (its workspace's), if any; a fresh report (at
// most stale_after old), region in the residency allowlist (and the request's pinned zone),
// not draining, the template offered, room left. Choose: the
// least loaded of K eligible nodes sampled at random (power of K choices), where load is
// (active + in-flight placements) / capacity and a node without a warm sandbox of the
// template counts as more loaded by cold_penalty. Sampling keeps replicas that see the
// same reports from all herding onto the same node between two reports.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/quota.h"

namespace swissbox::sched {

using Clock = std::chrono::steady_clock;

struct NodeState {
  std::string name;
  std::string address;  // host:port of the agent
  std::string region;
  std::string platform;  // runsc's: ptrace, systrap, kvm
  bool draining = false;
  int capacity = 0;  // the agent's max sandboxes (warm + active)
  int active = 0;
  int warm_total = 0;
  std::map<std::string, int> warm;  // ready sandboxes per template (the templates offered)
  int inflight = 0;  // this scheduler's placements on it since its last report
  std::map<std::string, TenantLoad> tenants;          // by tenant, as the node reported
  std::map<std::string, TenantLoad> tenant_inflight;  // by tenant, placements since that report
  // Workspace names by tenant, as reported, plus the ones this scheduler placed a create
  // for since (a new workspace is made where its first sandbox goes).
  std::map<std::string, std::set<std::string>> workspaces;
  std::map<std::pair<std::string, std::string>, Clock::time_point> workspaces_placed;  // not reported yet
  void place_workspace(const std::string& tenant, const std::string& name, Clock::time_point now);
  void unplace_workspace(const std::string& tenant, const std::string& name);  // the node refused
  std::map<std::string, double> tenant_deletes;  // tenant → when deleted here, unix seconds
  std::map<std::string, std::string> templates;  // image templates' states
  int cpus = 0;
  uint64_t memory_bytes = 0, memory_available_bytes = 0;
  double loadavg_1m = 0;
  Clock::time_point reported_at;
};

struct PlacementPolicy {
  std::set<std::string> allowed_regions = {"ch-gva-2", "ch-dk-2"};  // Swiss SKS zones
  int sample_k = 2;
  int max_candidates = 3;  // the chosen node plus fallbacks to try when it refuses
  double cold_penalty = 0.05;
  std::chrono::milliseconds stale_after{3000};  // three missed one-second reports
};

struct PlacementRequest {
  std::string template_name = "default";  // the pool key without language ("default:egress")
  std::string zone;  // empty: any allowed region
  // A one-shot's language: a node with a warm sandbox of "<template>+<language>" (its
  // interpreter loaded) is preferred to one with only a plain warm sandbox.
  std::string language;
  // The workspace the create names; the scheduler sets `node` to the node that holds it.
  std::string workspace;
  std::string node;  // only this node, by name
  double cpu = 0;         // the request's limits; 0: its template's
  int64_t memory_mb = 0;
};

// Why no node was eligible, for the 429/503 the caller answers.
struct NoPlacement {
  int stale = 0, region = 0, draining = 0, no_template = 0, full = 0;
  std::string describe() const;
};

// Active + in-flight over capacity; + cold_penalty without a warm sandbox for the request,
// + half of it when only a plain one (not the language's) is warm.
double load_of(const NodeState& n, const PlacementRequest& req, double cold_penalty);
// Whether the node's last report is recent enough to place on it or route to it.
inline bool fresh(const NodeState& n, const PlacementPolicy& p, Clock::time_point now) {
  return now - n.reported_at <= p.stale_after;
}

// Indices into `nodes`, best first (at most policy.max_candidates); empty when none is
// eligible, with the reasons counted in *why.
std::vector<size_t> place(const std::vector<NodeState>& nodes, const PlacementRequest& req,
                          const PlacementPolicy& policy, Clock::time_point now,
                          std::mt19937_64& rng, NoPlacement* why);

}  // namespace swissbox::sched
