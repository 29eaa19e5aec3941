// The OCI bundle and the host rootfs: what a sandbox can and cannot see.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "agent/runtime/runsc_driver.h"
#include "common/fs.h"

namespace swissbox {
namespace {

TEST(HostRootfs, BindsOnlySystemDirectoriesAndGeneratesEtc) {
  char tmpl[] = "/tmp/swissbox-rootfs-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  auto layout = prepare_host_rootfs(dir);
  ASSERT_TRUE(layout.ok()) << layout.error().to_string();
  for (const auto& b : layout->binds) {
    EXPECT_TRUE(b.read_only) << b.source;
    for (const char* secret : {"/home", "/root", "/var", "/run", "/etc/shadow", "/work"}) {
      EXPECT_NE(b.source.rfind(secret, 0), 0u) << b.source;
    }
    EXPECT_NE(b.source, "/");
  }
  auto passwd = fs::read_file(layout->root + "/etc/passwd");
  ASSERT_TRUE(passwd.ok());
  EXPECT_NE(passwd->find("sandbox:x:1000:1000"), std::string::npos);
  EXPECT_FALSE(fs::exists(layout->root + "/etc/shadow"));
  // Idempotent: a second run over the same directory succeeds.
  EXPECT_TRUE(prepare_host_rootfs(dir).ok());
  (void)fs::remove_tree(dir);
}

TEST(OciConfig, ReadOnlyRootNonRootNoCapsNoNetwork) {
  SandboxSpec spec;
  spec.id = "sbx-t-1";
  spec.hostname = "sandbox";
  spec.env = {"PATH=/usr/bin"};
  RootfsLayout rootfs{"/r", {{"/usr", "/usr", true}}};
  auto c = make_oci_config(spec, rootfs, "/state/ws", "/state/tmp", "/state/support");
  EXPECT_EQ(c["root"]["readonly"], true);
  // The runner is root with four capabilities; it runs commands as 1000:1000.
  EXPECT_EQ(c["process"]["user"]["uid"], 0);
  EXPECT_EQ(c["process"]["noNewPrivileges"], true);
  EXPECT_EQ(c["process"]["capabilities"]["bounding"],
            nlohmann::json::array({"CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_SYS_RESOURCE"}));
  EXPECT_TRUE(c["process"]["capabilities"]["ambient"].empty());
  EXPECT_EQ(c["process"]["args"], nlohmann::json::array({"/.swissbox/init", "--user", "1000:1000"}));
  bool has_netns = false;
  for (auto& ns : c["linux"]["namespaces"]) has_netns |= ns["type"] == "network";
  EXPECT_TRUE(has_netns);
  std::map<std::string, nlohmann::json> by_dest;
  for (auto& m : c["mounts"]) by_dest[m["destination"]] = m;
  // /tmp shares the sandbox's sized disk with /workspace: no unbounded tmpfs in memory.
  EXPECT_EQ(by_dest["/tmp"]["source"], "/state/tmp");
  EXPECT_EQ(by_dest["/workspace"]["source"], "/state/ws");
  EXPECT_NE(by_dest["/workspace"]["options"].dump().find("\"rw\""), std::string::npos);
  EXPECT_NE(by_dest["/.swissbox"]["options"].dump().find("\"ro\""), std::string::npos);
  EXPECT_NE(by_dest["/usr"]["options"].dump().find("\"ro\""), std::string::npos);
}

}  // namespace
}  // namespace swissbox
