// Root filesystems from OCI images (issue 22) against real parts only: Debian's
// docker-registry on loopback, an image built here with umoci (a marker file and a static
// shell), pushed with skopeo, pulled through a real containerd (Debian's, started by this
// test with its own root, state, socket and registry configuration), and mounted read-only
// from containerd's snapshotter.
#include <fmt/format.h>

#include <sys/stat.h>

#include "agent/runtime/image_rootfs.h"
#include "cri/containerd_images.h"
#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

class Images : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      skip_ = "needs root (containerd, mounts)";
      return;
    }
    for (const char* tool : {"/usr/bin/containerd", "/usr/bin/docker-registry", "/usr/bin/skopeo", "/usr/bin/umoci",
                             "/bin/bash-static"}) {
      if (access(tool, X_OK) != 0) {
        skip_ = std::string(tool) + " is not installed (scripts/install-deps.sh installs it)";
        return;
      }
    }
    char tmpl[] = "/tmp/swissbox-img-XXXXXX";
    dir_ = mkdtemp(tmpl);
    const int port = free_port();
    registry_ = fmt::format("localhost:{}", port);
    // The registry, on loopback, keeping its blobs in the test's directory.
    (void)fs::write_file_atomic(dir_ + "/registry.yml", fmt::format("version: 0.1\nstorage:\n  filesystem:\n    "
                                                                    "rootdirectory: {}/registry\nhttp:\n  addr: "
                                                                    "127.0.0.1:{}\n",
                                                                    dir_, port));
    registry_pid_ = spawn_daemon({"/usr/bin/docker-registry", "serve", dir_ + "/registry.yml"}, dir_ + "/registry.log");
    // containerd, with the registry reached over plain HTTP (as a node's hosts.toml says).
    for (const char* d : {"/cni/bin", "/cni/conf"}) (void)fs::make_dirs(dir_ + d);
    (void)fs::make_dirs(dir_ + "/certs.d/" + registry_);
    (void)fs::write_file_atomic(dir_ + "/certs.d/" + registry_ + "/hosts.toml",
                                fmt::format("server = \"http://{0}\"\n[host.\"http://{0}\"]\n  capabilities = "
                                            "[\"pull\", \"resolve\"]\n",
                                            registry_));
    (void)fs::write_file_atomic(dir_ + "/config.toml", fmt::format(R"(version = 2
root = "{0}/root"
state = "{0}/state"
[grpc]
  address = "{0}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{0}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{0}/cni/bin"
    conf_dir = "{0}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{0}/certs.d"
)",
                                                                   dir_));
    containerd_pid_ = spawn_daemon({"/usr/bin/containerd", "--config", dir_ + "/config.toml"}, dir_ + "/containerd.log");
    containerd_ = std::make_unique<cri::ContainerdImages>(dir_ + "/containerd.sock");
    // The image: one layer with /etc/marker and a static /bin/sh, pushed to the registry.
    std::string layout = dir_ + "/layout", bundle = dir_ + "/bundle";
    std::vector<std::vector<std::string>> steps = {
        {"/usr/bin/umoci", "init", "--layout", layout},
        {"/usr/bin/umoci", "new", "--image", layout + ":m"},
        {"/usr/bin/umoci", "unpack", "--image", layout + ":m", bundle},
        {"/bin/mkdir", "-p", bundle + "/rootfs/etc", bundle + "/rootfs/bin"},
        {"/bin/sh", "-c", "echo marker-42 > " + bundle + "/rootfs/etc/marker"},
        {"/bin/cp", "/bin/bash-static", bundle + "/rootfs/bin/sh"},
        {"/usr/bin/umoci", "repack", "--image", layout + ":m", bundle},
        {"/usr/bin/skopeo", "copy", "--dest-tls-verify=false", "oci:" + layout + ":m",
         "docker://" + registry_ + "/marker:1"}};
    for (const auto& argv : steps) {
      ProcessOptions p;
      p.argv = argv;
      p.timeout = 60s;
      auto r = run_process(p);
      if (!r || r->exit_code != 0) {
        skip_ = "building or pushing the test image failed at " + argv[1] + ": " + (r ? r->err : r.error().to_string());
        return;
      }
    }
  }

  static void TearDownTestSuite() {
    if (dir_.empty()) return;
    containerd_.reset();
    for (pid_t pid : {containerd_pid_, registry_pid_}) {
      if (pid > 0) {
        EXPECT_TRUE(stop_daemon(pid, 20s));
      }
    }
    EXPECT_EQ(mounts_under(dir_), 0);
    if (!::testing::Test::HasFailure()) (void)fs::remove_tree(dir_);
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  static inline std::string skip_, dir_, registry_;
  static inline pid_t registry_pid_ = -1, containerd_pid_ = -1;
  static inline std::unique_ptr<cri::ContainerdImages> containerd_;
};

TEST_F(Images, AnImageFromARegistryIsMountedReadOnlyOnceAndReleased) {
  ImageRootfs images(*containerd_, dir_ + "/images");
  std::vector<std::string> log;
  auto image = images.prepare(registry_ + "/marker:1", 60s, [&](const std::string& line) { log.push_back(line); });
  ASSERT_TRUE(image.ok()) << image.error().to_string();
  EXPECT_GE(log.size(), 3u);
  EXPECT_EQ(image->manifest.diff_ids.size(), 1u);
  EXPECT_GT(image->manifest.size_bytes, 1 << 20);  // the static shell, compressed
  EXPECT_EQ(image->rootfs, images.rootfs_of(image->manifest.digest));
  // The marker and the static binary are there, as the image has them.
  EXPECT_EQ(*fs::read_file(image->rootfs + "/etc/marker"), "marker-42\n");
  struct stat sh {};
  ASSERT_EQ(stat((image->rootfs + "/bin/sh").c_str(), &sh), 0);
  EXPECT_TRUE(sh.st_mode & S_IXUSR);
  // Read-only: not even root writes to it.
  EXPECT_FALSE(fs::write_file_atomic(image->rootfs + "/etc/new", "x").ok());
  EXPECT_EQ(errno, EROFS);
  // Prepared again (a second template of it, an agent restart): the same mount, not a
  // second one.
  auto again = images.prepare(registry_ + "/marker:1", 60s, [](const std::string&) {});
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(again->rootfs, image->rootfs);
  EXPECT_EQ(mounts_under(dir_ + "/images"), 1);
  // Released: unmounted, its directory gone, containerd no longer knows its name.
  ASSERT_TRUE(images.release(*image).ok());
  EXPECT_EQ(mounts_under(dir_ + "/images"), 0);
  EXPECT_FALSE(fs::exists(image->rootfs));
  EXPECT_EQ(containerd_->image(registry_ + "/marker:1").error().code, Code::kNotFound);
}

TEST_F(Images, AnImageThatIsNotThereIsAClearError) {
  ImageRootfs images(*containerd_, dir_ + "/images");
  auto missing = images.prepare(registry_ + "/nothing:1", 30s, [](const std::string&) {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find(registry_ + "/nothing:1"), std::string::npos) << missing.error().message;
  EXPECT_NE(missing.error().message.find("not found"), std::string::npos) << missing.error().message;
}

}  // namespace
}  // namespace swissbox::testing
