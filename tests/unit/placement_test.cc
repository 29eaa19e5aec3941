#include "scheduler/placement.h"

#include <gtest/gtest.h>

#include "common/node_report.h"
#include "common/sandbox_id.h"
#include "scheduler/registry.h"

namespace swissbox::sched {
namespace {

NodeState node(std::string name, std::string region, int active = 0, int capacity = 100) {
  NodeState n;
  n.name = std::move(name);
  n.region = std::move(region);
  n.capacity = capacity;
  n.active = active;
  n.warm = {{"default", 2}};
  n.reported_at = Clock::now();
  return n;
}

PlacementRequest ask(std::string template_name, std::string zone, std::string language) {
  PlacementRequest r;
  r.template_name = std::move(template_name);
  r.zone = std::move(zone);
  r.language = std::move(language);
  return r;
}

class Placement : public ::testing::Test {
 protected:
  std::vector<size_t> Place(const std::vector<NodeState>& nodes, PlacementRequest req = {}) {
    return place(nodes, req, policy_, Clock::now(), rng_, &why_);
  }
  PlacementPolicy policy_;
  std::mt19937_64 rng_{42};
  NoPlacement why_;
};

TEST_F(Placement, OnlySwissFreshReadyNodesWithTheTemplateAndRoom) {
  std::vector<NodeState> nodes = {node("fra", "de-fra-1"), node("gva", "ch-gva-2"),
                                  node("dk", "ch-dk-2"), node("full", "ch-gva-2", 100)};
  nodes[1].reported_at -= std::chrono::seconds(4);  // silent for more than 3 reports
  nodes[2].draining = true;
  EXPECT_TRUE(Place(nodes).empty());
  EXPECT_EQ(why_.region, 1);
  EXPECT_EQ(why_.stale, 1);
  EXPECT_EQ(why_.draining, 1);
  EXPECT_EQ(why_.full, 1);
  EXPECT_NE(why_.describe().find("1 outside the allowed regions"), std::string::npos);
  nodes[2].draining = false;
  for (int i = 0; i < 50; ++i) {
    auto c = Place(nodes);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(nodes[c[0]].name, "dk");
  }
  EXPECT_TRUE(Place(nodes, ask("browser", "", "")).empty());
  EXPECT_EQ(why_.no_template, 2);  // dk and full offer only "default"
}

TEST_F(Placement, PinnedZoneIsHonouredButOnlyInsideTheAllowlist) {
  std::vector<NodeState> nodes = {node("gva", "ch-gva-2"), node("dk", "ch-dk-2"),
                                  node("fra", "de-fra-1")};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(nodes[Place(nodes, ask("default", "ch-dk-2", ""))[0]].name, "dk");
  EXPECT_TRUE(Place(nodes, ask("default", "de-fra-1", "")).empty());
}

TEST_F(Placement, CountsInFlightPlacementsAndSpreadsEvenly) {
  std::vector<NodeState> nodes;
  for (int i = 0; i < 5; ++i) nodes.push_back(node("n" + std::to_string(i), "ch-gva-2", 0, 1000));
  // 500 placements between two reports: only the in-flight counts tell the nodes apart.
  for (int i = 0; i < 500; ++i) nodes[Place(nodes)[0]].inflight++;
  for (const auto& n : nodes) {
    EXPECT_GE(n.inflight, 90) << n.name;
    EXPECT_LE(n.inflight, 110) << n.name;
  }
}

TEST_F(Placement, PrefersAWarmNodeAndOrdersFallbacksByLoad) {
  policy_.sample_k = 3;
  std::vector<NodeState> nodes = {node("cold", "ch-gva-2", 10), node("warm", "ch-gva-2", 12),
                                  node("busy", "ch-dk-2", 60)};
  nodes[0].warm["default"] = 0;
  auto c = Place(nodes);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(nodes[c[0]].name, "warm");
  EXPECT_EQ(nodes[c[1]].name, "cold");
  EXPECT_EQ(nodes[c[2]].name, "busy");
}

TEST_F(Placement, AOneShotPrefersANodeWithItsLanguageWarm) {
  policy_.sample_k = 3;
  std::vector<NodeState> nodes = {node("plain", "ch-gva-2", 10), node("python", "ch-gva-2", 12),
                                  node("nothing", "ch-dk-2", 9)};
  nodes[1].warm["default+python"] = 1;
  nodes[2].warm["default"] = 0;
  auto c = Place(nodes, ask("default", "", "python"));
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(nodes[c[0]].name, "python");
  EXPECT_EQ(nodes[c[1]].name, "plain");
  EXPECT_EQ(nodes[c[2]].name, "nothing");
  // Without a language the plain warm node is as good as the other and less loaded.
  EXPECT_EQ(nodes[Place(nodes)[0]].name, "plain");
}

}  // namespace
}  // namespace swissbox::sched

namespace swissbox::sched {
namespace {

TEST(SandboxIds, NameTheirNodeWhateverTheNodeIsCalled) {
  for (std::string node : {"gva", "pool-7f.sks.ch", "Node_One", ""}) {
    std::string id = new_sandbox_id(node);
    EXPECT_TRUE(valid_sandbox_id(id)) << id;
    EXPECT_EQ(node_of_sandbox_id(id), sandbox_id_node(node)) << id;
  }
  EXPECT_EQ(sandbox_id_node("pool-7f.sks.ch"), "pool-7f-sks-ch");
  EXPECT_EQ(node_of_sandbox_id("sbx-a-b-0123456789ab"), "a-b");
  for (std::string bad : {"sbx-", "sbx-node-xyz", "sbx-node-0123456789aG", "box-n-0123456789ab",
                          "sbx--0123456789ab", "sbx-n/../0123456789ab"}) {
    EXPECT_FALSE(node_of_sandbox_id(bad).has_value()) << bad;
  }
}

TEST(NodeRegistry, ParsesReportsAndKeysNodesByTheirIdPart) {
  nlohmann::json report = {{"node", "Pool.1"},
                           {"region", "ch-gva-2"},
                           {"draining", false},
                           {"capacity", {{"max_sandboxes", 32}, {"cpus", 8}, {"memory_bytes", 1ull << 35}}},
                           {"runtime", {{"platform", "systrap"}}},
                           {"load", {{"loadavg_1m", 1.5}, {"memory_available_bytes", 1ull << 34}}},
                           {"active", 5},
                           {"warm", {{"default", 2}, {"heavy", 1}}}};
  auto n = parse_node_report(report);
  ASSERT_TRUE(n.ok()) << n.error().to_string();
  EXPECT_EQ(n->warm_total, 3);
  EXPECT_EQ(n->platform, "systrap");
  EXPECT_EQ(n->cpus, 8);
  EXPECT_EQ(n->memory_bytes, 1ull << 35);
  EXPECT_EQ(n->memory_available_bytes, 1ull << 34);
  EXPECT_DOUBLE_EQ(n->loadavg_1m, 1.5);
  NodeRegistry reg;
  auto now = Clock::now();
  reg.update("10.0.0.1:7700", *n, now);
  n->active = 7;
  reg.update("10.0.0.9:7700", *n, now);  // the same node on a new address: replaced, not added
  ASSERT_EQ(reg.nodes().size(), 1u);
  const NodeState* found = reg.by_id_node("pool-1");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->active, 7);
  EXPECT_EQ(found->address, "10.0.0.9:7700");
  EXPECT_EQ(reg.by_id_node("other"), nullptr);
  report.erase("warm");
  EXPECT_FALSE(parse_node_report(report).ok());
  EXPECT_FALSE(parse_node_report(nlohmann::json::array()).ok());
}

}  // namespace
}  // namespace swissbox::sched

namespace swissbox {
namespace {

// The agent writes the report with to_json, the scheduler and swissboxctl read it with
// parse: every field comes back; a report without what placement needs is refused.
TEST(NodeReport, WhatTheAgentWritesTheSchedulerReads) {
  NodeReport r;
  r.node = "n1";
  r.region = "ch-dk-2";
  r.runtime_name = "runsc";
  r.runtime_version = "20240729";
  r.platform = "ptrace";
  r.max_sandboxes = 64;
  r.cpus = 2;
  r.memory_bytes = 1ull << 34;
  r.loadavg_1m = 0.5;
  r.memory_available_bytes = 1ull << 33;
  r.active = 7;
  r.deleting = 1;
  r.warm = {{"default", 2}, {"default+python", 1}};
  r.languages = {"python", "bash"};
  r.draining = true;
  r.tenants["a"] = {.running = 2, .cpu = 1.5, .memory_mb = 1024, .suspended = 3};
  r.workspaces = {{"a", {"proj", "data"}}};
  r.tenant_deletes = {{"gone", 1796470022.5}};
  auto back = NodeReport::parse(r.to_json());
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back->to_json(), r.to_json());
  EXPECT_EQ(back->warm_total(), 3);
  EXPECT_EQ(r.to_json().value("warm_total", 0), 3);
  for (const char* field : {"node", "capacity", "active", "warm"}) {
    auto without = r.to_json();
    without.erase(field);
    EXPECT_FALSE(NodeReport::parse(without).ok()) << field;
  }
}

}  // namespace
}  // namespace swissbox
