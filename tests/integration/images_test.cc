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

// A registry on loopback holding the test image, and a containerd that pulls from it.
struct ImageWorld {
  std::string dir, registry, skip;
  pid_t registry_pid = -1, containerd_pid = -1;
  std::unique_ptr<cri::ContainerdImages> containerd;
  std::string socket() const { return dir + "/containerd.sock"; }

  void up() {
    if (geteuid() != 0) {
      skip = "needs root (containerd, mounts)";
      return;
    }
    for (const char* tool : {"/usr/bin/containerd", "/usr/bin/docker-registry", "/usr/bin/skopeo", "/usr/bin/umoci",
                             "/bin/bash-static"}) {
      if (access(tool, X_OK) != 0) {
        skip = std::string(tool) + " is not installed (scripts/install-deps.sh installs it)";
        return;
      }
    }
    char tmpl[] = "/tmp/swissbox-img-XXXXXX";
    dir = mkdtemp(tmpl);
    const int port = free_port();
    registry = fmt::format("localhost:{}", port);
    // The registry, on loopback, keeping its blobs in the test's directory.
    (void)fs::write_file_atomic(dir + "/registry.yml", fmt::format("version: 0.1\nstorage:\n  filesystem:\n    "
                                                                   "rootdirectory: {}/registry\nhttp:\n  addr: "
                                                                   "127.0.0.1:{}\n",
                                                                   dir, port));
    registry_pid = spawn_daemon({"/usr/bin/docker-registry", "serve", dir + "/registry.yml"}, dir + "/registry.log");
    // containerd, with the registry reached over plain HTTP (as a node's hosts.toml says).
    for (const char* d : {"/cni/bin", "/cni/conf"}) (void)fs::make_dirs(dir + d);
    (void)fs::make_dirs(dir + "/certs.d/" + registry);
    (void)fs::write_file_atomic(dir + "/certs.d/" + registry + "/hosts.toml",
                                fmt::format("server = \"http://{0}\"\n[host.\"http://{0}\"]\n  capabilities = "
                                            "[\"pull\", \"resolve\"]\n",
                                            registry));
    (void)fs::write_file_atomic(dir + "/config.toml",
                                private_containerd_config(dir, "", "  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                                                                   "    config_path = \"" + dir + "/certs.d\"\n"));
    containerd_pid = spawn_daemon({"/usr/bin/containerd", "--config", dir + "/config.toml"}, dir + "/containerd.log");
    containerd = std::make_unique<cri::ContainerdImages>(socket());
    // The image: one layer with /etc/marker, a world-writable /data and a static /bin/sh (no
    // bash, no other program), pushed.
    if (auto st = push("marker", "mkdir -p -m 0777 $R/etc $R/bin $R/data && echo marker-42 > $R/etc/marker && "
                                 "cp /bin/bash-static $R/bin/sh");
        !st) {
      skip = st.error().message;
    }
  }

  // Builds an image `name` (tag 1) of one layer, whose root the shell command `fill` makes
  // ($R), and pushes it to the registry.
  Status push(const std::string& name, const std::string& fill) {
    std::string layout = dir + "/layout", bundle = dir + "/bundle-" + name, image = layout + ":" + name;
    std::vector<std::vector<std::string>> steps = {
        {"/bin/sh", "-c", "[ -d " + layout + " ] || /usr/bin/umoci init --layout " + layout},
        {"/usr/bin/umoci", "new", "--image", image},
        {"/usr/bin/umoci", "unpack", "--image", image, bundle},
        {"/bin/sh", "-c", "R=" + bundle + "/rootfs; " + fill},
        {"/usr/bin/umoci", "repack", "--image", image, bundle},
        {"/usr/bin/skopeo", "copy", "--dest-tls-verify=false", "oci:" + image, "docker://" + registry + "/" + name + ":1"}};
    for (const auto& argv : steps) {
      ProcessOptions p;
      p.argv = argv;
      p.timeout = 120s;
      auto r = run_process(p);
      if (!r || r->exit_code != 0) {
        return make_error(Code::kInternal, "building or pushing the test image " + name + " failed at " +
                                               argv.back().substr(0, 80) + ": " + (r ? r->err : r.error().to_string()));
      }
    }
    return ok_status();
  }

  void down() {
    if (dir.empty()) return;
    containerd.reset();
    for (pid_t pid : {containerd_pid, registry_pid}) {
      if (pid > 0) {
        EXPECT_TRUE(stop_daemon(pid, 20s));
      }
    }
    EXPECT_EQ(mounts_under(dir), 0);
    if (!::testing::Test::HasFailure()) (void)fs::remove_tree(dir);
    dir.clear();
  }
};

class Images : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_.up(); }
  static void TearDownTestSuite() { world_.down(); }
  void SetUp() override {
    if (!world_.skip.empty()) GTEST_SKIP() << world_.skip;
  }
  static inline ImageWorld world_;
};

TEST_F(Images, AnImageFromARegistryIsMountedReadOnlyOnceAndReleased) {
  ImageRootfs images(*world_.containerd, world_.dir + "/images");
  std::vector<std::string> log;
  auto image = images.prepare(world_.registry + "/marker:1", 60s, [&](const std::string& line) { log.push_back(line); });
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
  auto again = images.prepare(world_.registry + "/marker:1", 60s, [](const std::string&) {});
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(again->rootfs, image->rootfs);
  EXPECT_EQ(mounts_under(world_.dir + "/images"), 1);
  // Released: unmounted, its directory gone, containerd knows it under no name (the CRI
  // plugin also names it by its id).
  ASSERT_FALSE(image->image_id.empty());
  ASSERT_TRUE(world_.containerd->image(image->image_id).ok());
  ASSERT_TRUE(images.release(*image).ok());
  EXPECT_EQ(mounts_under(world_.dir + "/images"), 0);
  EXPECT_FALSE(fs::exists(image->rootfs));
  for (const auto& name : {world_.registry + "/marker:1", image->image_id}) {
    auto gone = world_.containerd->image(name);
    ASSERT_FALSE(gone.ok()) << name;
    EXPECT_EQ(gone.error().code, Code::kNotFound) << name;
  }
}

TEST_F(Images, AnImageThatIsNotThereIsAClearError) {
  ImageRootfs images(*world_.containerd, world_.dir + "/images");
  auto missing = images.prepare(world_.registry + "/nothing:1", 30s, [](const std::string&) {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find(world_.registry + "/nothing:1"), std::string::npos) << missing.error().message;
  EXPECT_NE(missing.error().message.find("not found"), std::string::npos) << missing.error().message;
}

TEST_F(Images, AnImagePulledButNeverPreparedIsForgottenWithAllItsNames) {
  ImageRootfs images(*world_.containerd, world_.dir + "/images");
  const std::string ref = world_.registry + "/marker:1";
  auto id = world_.containerd->pull(ref, 60s);
  ASSERT_TRUE(id.ok()) << id.error().to_string();
  ASSERT_TRUE(images.forget(ref).ok());
  for (const auto& name : {ref, *id}) EXPECT_FALSE(world_.containerd->image(name).ok()) << name;
  EXPECT_TRUE(images.forget(ref).ok());  // nothing left: nothing to do
}

// Image templates on a real agent (runsc) with the test's containerd as its node's.
class ImageTemplates : public AgentRunsc {
 protected:
  static void SetUpTestSuite() {
    world_.up();
    if (!world_.skip.empty()) {
      skip_ = world_.skip;
      return;
    }
    extra_args_ = {"--cri-socket", world_.socket()};
    AgentRunsc::SetUpTestSuite();
  }
  static void TearDownTestSuite() {
    AgentRunsc::TearDownTestSuite();  // the agent's stop unmounts the images (checked there)
    world_.down();
  }
  static std::string root_of(const std::string& id) {
    auto config = fs::read_file(dir_ + "/state/sandboxes/" + id + "/bundle/config.json");
    return config ? json::parse(*config)["root"].value("path", "") : "";
  }
  static inline ImageWorld world_;
};

TEST_F(ImageTemplates, AnImageTemplateIsBuiltClaimedWarmSharedReadOnlyAndDeleted) {
  const std::string image = world_.registry + "/marker:1";
  auto put = admin("PUT", "/v1/templates/marker", json{{"image", image}, {"memory_mb", 256}}.dump());
  ASSERT_EQ(put->status, 202u) << put->body;
  EXPECT_EQ(json::parse(put->body).value("state", ""), "building");
  json t = built("marker");
  ASSERT_EQ(t.value("state", ""), "ready") << t.dump();
  EXPECT_EQ(t.value("digest", "").rfind("sha256:", 0), 0u) << t.dump();
  auto metrics = admin("GET", "/metrics");
  EXPECT_NE(metrics->body.find("swissbox_template_builds_total{result=\"ready\"} 1"), std::string::npos);
  EXPECT_NE(metrics->body.find("swissbox_templates{state=\"ready\"} 1"), std::string::npos);
  auto log = admin("GET", "/v1/templates/marker/log");
  EXPECT_NE(log->body.find("pulling " + image), std::string::npos) << log->body;
  EXPECT_NE(log->body.find("ready"), std::string::npos) << log->body;

  // A sandbox of it: the image's files, its /bin/sh for a shell string (it has no bash),
  // a read-only root, the template's limits.
  json made = post("/v1/sandboxes", {{"template", "marker"}}, 201);
  std::string first = made.value("id", "");
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(made["limits"].value("memory_mb", 0), 256);
  // The image has a shell and nothing else: its builtins read the files.
  const std::string cat_marker = "echo \"$(< /etc/marker)\"";
  EXPECT_EQ(exec(first, {{"command", cat_marker}}).value("stdout", ""), "marker-42\n");
  json write = exec(first, {{"command", "echo x > /data/new"}});
  EXPECT_NE(write.value("exit_code", 0), 0) << write.dump();
  EXPECT_NE(write.value("stderr", "").find("Read-only file system"), std::string::npos) << write.dump();
  EXPECT_EQ(exec(first, {{"command", "echo kept > /workspace/f && echo \"$(< /workspace/f)\""}}).value("stdout", ""),
            "kept\n");

  // Warm: a pool of it, claimed like default; its sandboxes share the one mounted root.
  ASSERT_EQ(admin("PUT", "/v1/warmpool/marker", R"({"target": 1})")->status, 200u);
  for (int i = 0; i < 300; ++i) {
    json pool = json::parse(admin("GET", "/v1/warmpool")->body, nullptr, false);
    if (pool["templates"]["marker"].value("ready", 0) == 1) break;
    std::this_thread::sleep_for(100ms);
  }
  json warm = post("/v1/sandboxes", {{"template", "marker"}}, 201);
  std::string second = warm.value("id", "");
  EXPECT_TRUE(warm.value("warm", false)) << warm.dump();
  EXPECT_EQ(exec(second, {{"command", cat_marker}}).value("stdout", ""), "marker-42\n");
  EXPECT_EQ(root_of(first), root_of(second));
  EXPECT_EQ(root_of(first).rfind(dir_ + "/state/images/", 0), 0u) << root_of(first);
  EXPECT_EQ(mounts_under(dir_ + "/state/images"), 1);

  // Not deleted while sandboxes use it; then deleted, its image unmounted and released.
  auto refused = admin("DELETE", "/v1/templates/marker");
  EXPECT_EQ(refused->status, 409u) << refused->body;
  for (const auto& id : {first, second}) {
    http::Client c(tcp());
    EXPECT_EQ(c.request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
  }
  EXPECT_EQ(admin("DELETE", "/v1/templates/marker")->status, 204u);
  EXPECT_EQ(admin("GET", "/v1/templates/marker")->status, 404u);
  // Released on the agent's workers: unmounted, then the view and the image's name.
  for (int i = 0; i < 100 && world_.containerd->image(image).ok(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(mounts_under(dir_ + "/state/images"), 0);
  auto gone = world_.containerd->image(image);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, Code::kNotFound);
  EXPECT_EQ(post("/v1/sandboxes", {{"template", "marker"}}, 400).value("error", json::object()).value("code", ""),
            "invalid_argument");
}

TEST_F(ImageTemplates, ATemplateOutlivesAnAgentCrash) {
  auto put = admin("PUT", "/v1/templates/kept", json{{"image", world_.registry + "/marker:1"}}.dump());
  ASSERT_EQ(put->status, 202u) << put->body;
  ASSERT_EQ(built("kept").value("state", ""), "ready");
  crash_agent();
  ASSERT_TRUE(launch_agent());
  json t = built("kept");
  EXPECT_EQ(t.value("state", ""), "ready") << t.dump();
  EXPECT_EQ(mounts_under(dir_ + "/state/images"), 1);
  std::string id = post("/v1/sandboxes", {{"template", "kept"}}, 201).value("id", "");
  EXPECT_EQ(exec(id, {{"command", "echo \"$(< /etc/marker)\""}}).value("stdout", ""), "marker-42\n");
  http::Client c(tcp());
  EXPECT_EQ(c.request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
  // containerd lost the image meanwhile (its names removed): the agent starts without
  // waiting for the registry and builds the template again in the background.
  crash_agent();
  auto target = world_.containerd->image(world_.registry + "/marker:1");
  ASSERT_TRUE(target.ok()) << target.error().to_string();
  ASSERT_TRUE(world_.containerd->delete_image(target->digest).ok());
  ASSERT_TRUE(launch_agent());
  EXPECT_EQ(built("kept").value("state", ""), "ready");
  EXPECT_NE(admin("GET", "/v1/templates/kept/log")->body.find("building again"), std::string::npos);
  EXPECT_EQ(admin("DELETE", "/v1/templates/kept")->status, 204u);
}

// The languages are the image's own: a Python of the host's (its binary, the libraries it
// links and its standard library, nothing else) serves one-shots, a warm language pool of
// the template and a stateful context.
TEST_F(ImageTemplates, ThePythonInTheImageServesOneShotsWarmWorkersAndContexts) {
  auto pushed = world_.push("python",
                            "mkdir -p $R/usr/bin $R/usr/lib $R/lib/x86_64-linux-gnu $R/lib64 $R/bin && "
                            "cp /usr/bin/python3.11 $R/usr/bin/ && ln -s python3.11 $R/usr/bin/python3 && "
                            "cp -a /usr/lib/python3.11 $R/usr/lib/ && "
                            "for l in libm.so.6 libz.so.1 libexpat.so.1 libc.so.6; do "
                            "cp -L /lib/x86_64-linux-gnu/$l $R/lib/x86_64-linux-gnu/; done && "
                            "cp -L /lib64/ld-linux-x86-64.so.2 $R/lib64/ && cp /bin/bash-static $R/bin/sh");
  ASSERT_TRUE(pushed.ok()) << pushed.error().to_string();
  auto put = admin("PUT", "/v1/templates/py", json{{"image", world_.registry + "/python:1"}}.dump());
  ASSERT_EQ(put->status, 202u) << put->body;
  ASSERT_EQ(built("py").value("state", ""), "ready");
  json one = post("/v1/execute", {{"template", "py"}, {"language", "python"}, {"code", "import sys\nprint(6 * 7, sys.prefix)"}});
  EXPECT_EQ(one.value("stdout", ""), "42 /usr\n") << one.dump();
  // A warm pool of the template with its Python worker loaded serves the next one-shot.
  ASSERT_EQ(admin("PUT", "/v1/warmpool/py+python", R"({"target": 1})")->status, 200u);
  int ready = 0;
  for (int i = 0; i < 300 && ready == 0; ++i) {
    std::this_thread::sleep_for(100ms);
    ready = json::parse(admin("GET", "/v1/warmpool")->body)["templates"]["py+python"].value("ready", 0);
  }
  ASSERT_EQ(ready, 1);
  json warm = post("/v1/execute", {{"template", "py"}, {"language", "python"}, {"code", "print('warm')"}});
  EXPECT_EQ(warm.value("stdout", ""), "warm\n") << warm.dump();
  // A context keeps its variables between cells.
  std::string id = post("/v1/sandboxes", {{"template", "py"}}, 201).value("id", "");
  std::string ctx = post("/v1/sandboxes/" + id + "/contexts", {{"language", "python"}}, 201).value("id", "");
  ASSERT_FALSE(ctx.empty());
  post("/v1/sandboxes/" + id + "/code", {{"context_id", ctx}, {"code", "x = 41"}});
  json cell = post("/v1/sandboxes/" + id + "/code", {{"context_id", ctx}, {"code", "x + 1"}});
  EXPECT_NE(cell.dump().find(R"("text":"42")"), std::string::npos) << cell.dump();
  http::Client c(tcp());
  EXPECT_EQ(c.request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
  ASSERT_EQ(admin("PUT", "/v1/warmpool/py+python", R"({"target": 0})")->status, 200u);
  for (int i = 0; i < 100 && admin("DELETE", "/v1/templates/py")->status == 409u; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(admin("GET", "/v1/templates/py")->status, 404u);
}

TEST_F(ImageTemplates, APullThatFailsFailsTheTemplateWithTheReason) {
  auto put = admin("PUT", "/v1/templates/missing", json{{"image", world_.registry + "/nothing:1"}}.dump());
  ASSERT_EQ(put->status, 202u) << put->body;
  json t = built("missing");
  EXPECT_EQ(t.value("state", ""), "failed") << t.dump();
  EXPECT_NE(t.value("error", "").find("not found"), std::string::npos) << t.dump();
  EXPECT_NE(admin("GET", "/v1/templates/missing/log")->body.find("failed: "), std::string::npos);
  // Not offered: a create naming it is refused.
  post("/v1/sandboxes", {{"template", "missing"}}, 400);
  // A failed template is built again by the next PUT (here of an image that is there).
  auto again = admin("PUT", "/v1/templates/missing", json{{"image", world_.registry + "/marker:1"}}.dump());
  ASSERT_EQ(again->status, 202u) << again->body;
  EXPECT_EQ(built("missing").value("state", ""), "ready");
  EXPECT_EQ(admin("DELETE", "/v1/templates/missing")->status, 204u);
  // Built-ins are not the user's to replace.
  EXPECT_EQ(admin("PUT", "/v1/templates/default", json{{"image", "x"}}.dump())->status, 409u);
}

}  // namespace
}  // namespace swissbox::testing
