// Package layers on real runsc (issue 22): apt, pip and npm packages built into a layer in a
// gVisor sandbox of the template they extend, reaching nothing but the package indexes
// (Debian's archive, PyPI and npm's registry: reachable from the build machines), and
// served read-only to every sandbox of the layer's templates.
#include <gtest/gtest.h>

#include <thread>

#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

constexpr const char* kPrefix = "sbp";

class PackageLayers : public AgentRunsc {
 protected:
  static void SetUpTestSuite() {
    extra_args_ = {"--egress-pool", "10.214.0.0/24", "--egress-link-prefix", kPrefix, "--egress-proxy-port",
                   std::to_string(free_port())};
    AgentRunsc::SetUpTestSuite();
  }

  static Result<http::ClientResponse> admin(const std::string& method, const std::string& path,
                                            const std::string& body = "") {
    http::Client c("unix:" + dir_ + "/agent.sock");
    return c.request(method, path, body);
  }
  // The template's record once its build has ended (builds here take seconds; at most 5 min).
  static json built(const std::string& name) {
    json t;
    for (int i = 0; i < 3000; ++i) {
      auto r = admin("GET", "/v1/templates/" + name);
      t = r.ok() ? json::parse(r->body, nullptr, false) : json();
      if (t.value("state", "") != "building") break;
      std::this_thread::sleep_for(100ms);
    }
    return t;
  }
  static std::string out(const std::string& id, const std::string& command) {
    json r = exec(id, {{"command", command}, {"timeout_ms", 60000}});
    return r.value("stdout", "") + r.value("stderr", "");
  }
  static void remove(const std::string& id) {
    http::Client c(tcp());
    EXPECT_EQ(c.request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
  }
};

// GNU hello from Debian, msgpack (a wheel with native code) from PyPI, left-pad from npm.
const json kPackages = {{"apt", {"hello"}}, {"pip", {"msgpack==1.0.8"}}, {"npm", {"left-pad@1.3.0"}}};
const std::string kUseThem =
    "cd /tmp && hello && python3 -c 'import msgpack; print(msgpack.unpackb(msgpack.packb([1, 2])))' && "
    "node -e 'console.log(require(\"left-pad\")(\"7\", 3, \"0\"))'";

TEST_F(PackageLayers, AptPipAndNpmPackagesAreBuiltIntoAReadOnlyLayerUsableFromAnyDirectory) {
  auto put = admin("PUT", "/v1/templates/tools", json{{"from", "default"}, {"packages", kPackages}}.dump());
  ASSERT_TRUE(put.ok());
  ASSERT_EQ(put->status, 202u) << put->body;
  json t = built("tools");
  ASSERT_EQ(t.value("state", ""), "ready") << t.dump() << "\n" << admin("GET", "/v1/templates/tools/log")->body;
  EXPECT_GT(t.value("size_bytes", 0), 0) << t.dump();
  EXPECT_FALSE(t.contains("parts")) << "the API shows no host paths";
  std::string log = admin("GET", "/v1/templates/tools/log")->body;
  for (const char* step : {"swissbox-build: apt-get install", "swissbox-build: pip install",
                           "swissbox-build: npm install", "swissbox-build: exit 0", "ready"}) {
    EXPECT_NE(log.find(step), std::string::npos) << step << " in\n" << log;
  }

  std::string id = post("/v1/sandboxes", {{"template", "tools"}}, 201).value("id", "");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(out(id, kUseThem), "Hello, world!\n[1, 2]\n007\n");
  // The layer is read-only to the sandbox, as its base is; the sandbox is not root.
  json write = exec(id, {{"command", "touch /usr/local/x"}});
  EXPECT_NE(write.value("exit_code", 0), 0) << write.dump();
  remove(id);

  // The base is untouched.
  std::string plain = create();
  EXPECT_NE(exec(plain, {{"command", "command -v hello"}}).value("exit_code", 0), 0);
  EXPECT_NE(exec(plain, {{"command", "python3 -c 'import msgpack'"}}).value("exit_code", 0), 0);
  remove(plain);

  // A restart (kill -9) finds it ready and mounts it again.
  crash_agent();
  ASSERT_TRUE(launch_agent());
  ASSERT_EQ(built("tools").value("state", ""), "ready");
  id = post("/v1/sandboxes", {{"template", "tools"}}, 201).value("id", "");
  EXPECT_EQ(out(id, kUseThem), "Hello, world!\n[1, 2]\n007\n");

  // Deleted once unused: its layer's mounts and disk go.
  EXPECT_EQ(admin("DELETE", "/v1/templates/tools")->status, 409u);
  remove(id);
  EXPECT_EQ(admin("DELETE", "/v1/templates/tools")->status, 204u);
  auto layers = [] { return fs::list_dir(dir_ + "/state/layers"); };  // and disk-templates
  for (int i = 0; i < 200 && (mounts_under(dir_ + "/state/layers") > 0 || layers().size() > 1); ++i)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(mounts_under(dir_ + "/state/layers"), 0);
  EXPECT_EQ(layers(), std::vector<std::string>{"disk-templates"});
}

TEST_F(PackageLayers, APackageThatDoesNotExistFailsTheTemplateWithThePackageManagersWords) {
  auto put = admin("PUT", "/v1/templates/nothing",
                   json{{"packages", {{"pip", {"swissbox-no-such-package-4711"}}}}}.dump());
  ASSERT_EQ(put->status, 202u) << put->body;
  json t = built("nothing");
  EXPECT_EQ(t.value("state", ""), "failed");
  EXPECT_NE(t.value("error", "").find("No matching distribution found for swissbox-no-such-package-4711"),
            std::string::npos)
      << t.dump();
  EXPECT_EQ(admin("DELETE", "/v1/templates/nothing")->status, 204u);
  // Refused before any build: what is not a package spec, an unknown base.
  EXPECT_EQ(admin("PUT", "/v1/templates/bad", R"({"packages": {"pip": ["x; curl evil"]}})")->status, 400u);
  EXPECT_EQ(admin("PUT", "/v1/templates/bad", R"({"from": "nope", "packages": {"pip": ["x"]}})")->status, 404u);
}

TEST_F(PackageLayers, ABuildReachesNothingButThePackageIndexes) {
  // npm fetches a tarball by URL from wherever it is told: the proxy refuses every host but
  // the indexes', and the build fails with npm's report of it.
  json r = post("/v1/sandboxes", {{"pre_install_packages", {"npm:https://example.com/left-pad-1.3.0.tgz"}}}, 400);
  std::string error = r.value("error", json::object()).value("message", "");
  EXPECT_NE(error.find("403"), std::string::npos) << error;
  EXPECT_NE(error.find("example.com"), std::string::npos) << error;
  auto metrics = admin("GET", "/metrics")->body;
  EXPECT_NE(metrics.find("swissbox_template_builds_total{result=\"failed\"}"), std::string::npos);
}

TEST_F(PackageLayers, ACreateWithPreInstallPackagesWaitsForItsBuildAndTheNextIsWarm) {
  const json body = {{"pre_install_packages", {"npm:left-pad@1.3.0", "pip:msgpack==1.0.8"}}};
  json first = post("/v1/sandboxes", body, 201);
  ASSERT_FALSE(first.value("id", "").empty()) << first.dump();
  const std::string tmpl = first.value("template", "");
  EXPECT_EQ(tmpl.rfind("pkgs-", 0), 0u) << first.dump();
  EXPECT_EQ(out(first["id"], "cd / && node -e 'console.log(require(\"left-pad\")(\"1\", 2))'"), " 1\n");
  // The same set in another order is the same template; its next create is claimed warm.
  json again = json::array({"pip:msgpack==1.0.8", "npm:left-pad@1.3.0"});
  json second;
  for (int i = 0; i < 100; ++i) {
    json pools = json::parse(admin("GET", "/v1/warmpool")->body, nullptr, false);
    if (pools["templates"][tmpl].value("ready", 0) >= 1) break;
    std::this_thread::sleep_for(100ms);
  }
  second = post("/v1/sandboxes", {{"pre_install_packages", again}}, 201);
  EXPECT_EQ(second.value("template", ""), tmpl);
  EXPECT_TRUE(second.value("warm", false)) << second.dump();
  EXPECT_EQ(out(second["id"], "python3 -c 'import msgpack; print(msgpack.version)'"), "(1, 0, 8)\n");
  remove(first["id"]);
  remove(second["id"]);
  EXPECT_EQ(post("/v1/sandboxes", {{"pre_install_packages", {"left-pad"}}}, 400).dump().find("npm:NAME") !=
                std::string::npos,
            true);
}

}  // namespace
}  // namespace swissbox::testing
