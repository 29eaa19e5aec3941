// The installer's edit of containerd's config: parse checks, the managed block in and out.
#include <gtest/gtest.h>

#include "installer/containerd_config.h"

namespace swissbox::installer {
namespace {

// Debian's containerd 1.6 default, plus what a Kubernetes node adds.
constexpr const char* kNodeConfig = R"(version = 2
imports = ["/etc/containerd/conf.d/*.toml"] # trailing comment
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = '/etc/cni/net.d'
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
      endpoint = [
        "https://mirror.example",  # first
        "https://registry-1.docker.io",
      ]
      inline = { a = 1, "b.c" = [true, false] }
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
    note = """two
lines"""
)";

HandlerConfig Runsc() {
  HandlerConfig h;
  h.binary = "/usr/local/bin/swissbox-runsc";
  return h;
}

TEST(ContainerdConfig, OutlinesAValidFileAndNamesTheLineOfABrokenOne) {
  auto o = outline_toml(kNodeConfig);
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  EXPECT_EQ(o->version, "2");
  EXPECT_EQ(o->root_keys, (std::vector<std::string>{"version", "imports"}));
  EXPECT_EQ(o->tables.size(), 6u);
  EXPECT_EQ(o->tables[2], "plugins.\"io.containerd.grpc.v1.cri\".cni");
  for (const char* broken : {"version = 2\n[plugins\n", "a = \"open\n", "a = [1, 2\nb = 3\n",
                             "a = 1 b\n", "= 3\n", "[a.]\n", "a = {x = }\n"}) {
    auto bad = outline_toml(broken);
    EXPECT_FALSE(bad.ok()) << broken;
    if (!bad.ok()) {
      EXPECT_NE(bad.error().message.find("TOML line"), std::string::npos);
    }
  }
}

TEST(ContainerdConfig, BlockGoesInOnceAndComesOutLeavingTheRestByteForByte) {
  auto once = with_handler(kNodeConfig, Runsc());
  ASSERT_TRUE(once.ok()) << once.error().to_string();
  EXPECT_EQ(once->rfind(kNodeConfig, 0), 0u) << "the node's own config is untouched";
  EXPECT_NE(once->find("BinaryName = \"/usr/local/bin/swissbox-runsc\""), std::string::npos);
  EXPECT_EQ(once->find("runtimes.runc]"), std::string::npos)
      << "the node defines runc: it is not redefined";
  auto twice = with_handler(*once, Runsc());
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(*twice, *once) << "a second install changes nothing";
  EXPECT_EQ(without_handler(*once), kNodeConfig);
  EXPECT_EQ(without_handler(kNodeConfig), kNodeConfig);

  // A bare config gets runc too (naming any runtime drops the built-in one).
  auto bare = with_handler("version = 2\n", Runsc());
  ASSERT_TRUE(bare.ok());
  EXPECT_NE(bare->find("runtimes.runc]"), std::string::npos);
  HandlerConfig shim = Runsc();
  shim.runsc_shim = true;
  auto upstream = with_handler("version = 2\n", shim);
  ASSERT_TRUE(upstream.ok());
  EXPECT_NE(upstream->find("io.containerd.runsc.v1"), std::string::npos);
  EXPECT_EQ(upstream->find("BinaryName"), std::string::npos);
}

TEST(ContainerdConfig, RefusesWhatItCannotSafelyEdit) {
  EXPECT_FALSE(with_handler("version = 2\n[broken\n", Runsc()).ok());
  EXPECT_FALSE(with_handler("version = 1\n", Runsc()).ok());
  EXPECT_FALSE(with_handler("[plugins]\n", Runsc()).ok()) << "no version: containerd 1.x v1";
  auto taken = with_handler(
      "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]\n", Runsc());
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().code, Code::kConflict);
}

}  // namespace
}  // namespace swissbox::installer
