// Package layers on real runsc (issue 22): apt, pip and npm packages built into a layer in a
// gVisor sandbox of the template they extend, reaching nothing but the package indexes
// (Debian's archive, PyPI and npm's registry: reachable from the build machines), and
// served read-only to every sandbox of the layer's templates.
#include <gtest/gtest.h>
#include <zlib.h>

#include <optional>
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
  // The log as the build writes it, until the build has ended.
  http::Client follower("unix:" + dir_ + "/agent.sock", 300s);
  auto followed = follower.request("GET", "/v1/templates/tools/log?follow=1");
  ASSERT_TRUE(followed.ok() && followed->status == 200u);
  EXPECT_NE(followed->body.find("swissbox-build: exit 0"), std::string::npos) << followed->body;
  json t = built("tools", 300s);
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

  // A restart (kill -9) finds it ready and mounts it again; a layer no template names (a
  // delete the crash cut short) goes.
  crash_agent();
  const std::string orphan = dir_ + "/state/layers/0123456789abcdef";
  ASSERT_TRUE(fs::make_dirs(orphan + "/disk").ok());
  ASSERT_TRUE(launch_agent());
  EXPECT_FALSE(fs::exists(orphan));
  ASSERT_EQ(built("tools", 300s).value("state", ""), "ready");
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
  json t = built("nothing", 300s);
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

namespace swissbox::testing {
namespace {

// The built-in browser template: built by the agent at its start (chromium from Debian,
// puppeteer-core from npm), driven by code in the sandbox against a page the sandbox
// serves itself on its loopback.
class BrowserTemplate : public PackageLayers {
 protected:
  static void SetUpTestSuite() {
    extra_args_ = {"--egress-pool", "10.215.0.0/24", "--egress-link-prefix", "sbb", "--egress-proxy-port",
                   std::to_string(free_port()), "--build-builtins", "true"};
    AgentRunsc::SetUpTestSuite();
  }
};

// Width, height and the size of the inflated image data of a PNG, checking each chunk's
// CRC; nullopt when it is not a whole, well-formed PNG.
struct PngSize {
  uint32_t width = 0, height = 0;
  size_t pixels_bytes = 0, expected_bytes = 0;
};
std::optional<PngSize> decode_png(const std::string& png) {
  auto u32 = [&](size_t at) {
    return (uint32_t(uint8_t(png[at])) << 24) | (uint32_t(uint8_t(png[at + 1])) << 16) |
           (uint32_t(uint8_t(png[at + 2])) << 8) | uint32_t(uint8_t(png[at + 3]));
  };
  if (png.size() < 8 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return std::nullopt;
  PngSize out;
  std::string idat;
  int channels = 0;
  bool ended = false;
  for (size_t at = 8; at + 12 <= png.size() && !ended;) {
    uint32_t len = u32(at);
    if (at + 12 + len > png.size()) return std::nullopt;
    std::string type = png.substr(at + 4, 4);
    if (crc32(0, reinterpret_cast<const Bytef*>(png.data() + at + 4), len + 4) != u32(at + 8 + len)) return std::nullopt;
    if (type == "IHDR") {
      out.width = u32(at + 8);
      out.height = u32(at + 12);
      int depth = uint8_t(png[at + 16]), color = uint8_t(png[at + 17]);
      if (depth != 8) return std::nullopt;
      channels = color == 6 ? 4 : color == 2 ? 3 : color == 0 ? 1 : 0;
    } else if (type == "IDAT") {
      idat += png.substr(at + 8, len);
    } else if (type == "IEND") {
      ended = true;
    }
    at += 12 + len;
  }
  if (!ended || channels == 0) return std::nullopt;
  out.expected_bytes = size_t(out.height) * (1 + size_t(out.width) * channels);
  std::string pixels(out.expected_bytes + 1, '\0');
  uLongf n = pixels.size();
  if (uncompress(reinterpret_cast<Bytef*>(pixels.data()), &n, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) !=
      Z_OK)
    return std::nullopt;
  out.pixels_bytes = n;
  return out;
}

constexpr const char* kShot = R"js(
const http = require('http');
const puppeteer = require('puppeteer-core');
const page = `<html><body><h1 id="t">waiting</h1><input id="q">
<button id="b" onclick="document.getElementById('t').textContent = 'typed: ' + document.getElementById('q').value">go</button>
</body></html>`;
const server = http.createServer((req, res) => { res.setHeader('content-type', 'text/html'); res.end(page); });
server.listen(8080, '127.0.0.1', async () => {
  const browser = await puppeteer.launch({executablePath: process.env.CHROME_PATH, headless: true,
                                          args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage']});
  const tab = await browser.newPage();
  await tab.setViewport({width: 640, height: 480});
  await tab.goto('http://127.0.0.1:8080/');
  await tab.type('#q', 'swissbox');
  await tab.click('#b');
  console.log(await tab.$eval('#t', e => e.textContent));
  await tab.screenshot({path: '/workspace/shot.png', type: 'png'});
  await browser.close();
  server.close();
});
)js";

TEST_F(BrowserTemplate, CodeInTheSandboxScreenshotsAPageItServesItself) {
  // Built at the agent's start, without a request.
  json t = built("browser", 600s);
  ASSERT_EQ(t.value("state", ""), "ready") << t.dump() << "\n" << admin("GET", "/v1/templates/browser/log")->body;
  EXPECT_TRUE(t.value("builtin", false)) << t.dump();
  EXPECT_EQ(admin("DELETE", "/v1/templates/browser")->status, 409u);

  json made = post("/v1/sandboxes", {{"template", "browser"}}, 201);
  std::string id = made.value("id", "");
  ASSERT_FALSE(id.empty()) << made.dump();
  EXPECT_EQ(made["limits"].value("memory_mb", 0), 1024);
  EXPECT_EQ(made["network"].value("mode", ""), "none") << "no network unless asked for";
  http::Client c(tcp());
  ASSERT_EQ(c.request("PUT", "/v1/sandboxes/" + id + "/files?path=shot.js", kShot)->status, 200u);
  json run = exec(id, {{"command", "cd /workspace && node shot.js"}, {"timeout_ms", 120000}});
  EXPECT_EQ(run.value("exit_code", -1), 0) << run.dump();
  EXPECT_EQ(run.value("stdout", ""), "typed: swissbox\n") << run.dump();
  auto png = c.request("GET", "/v1/sandboxes/" + id + "/files?path=shot.png");
  ASSERT_TRUE(png.ok() && png->status == 200u);
  auto size = decode_png(png->body);
  ASSERT_TRUE(size.has_value()) << "not a whole PNG: " << png->body.size() << " bytes";
  EXPECT_EQ(size->width, 640u);
  EXPECT_EQ(size->height, 480u);
  EXPECT_EQ(size->pixels_bytes, size->expected_bytes);
  remove(id);
}

}  // namespace
}  // namespace swissbox::testing
