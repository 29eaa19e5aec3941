// What swissbox reads of an OCI image (agent/runtime/image_rootfs.h): the platform's
// manifest out of an index, the layers and config out of a manifest, and chain ids.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/runtime/image_rootfs.h"
#include "cri/containerd_images.h"

namespace swissbox {
namespace {

using json = nlohmann::json;

TEST(ImageManifest, AnIndexGivesThePlatformsManifestOrSaysWhichItHas) {
  json index = {{"manifests",
                 {{{"digest", "sha256:arm"}, {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}},
                  {{"digest", "sha256:x86"}, {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
  EXPECT_EQ(*platform_manifest(index, "amd64"), "sha256:x86");
  auto none = platform_manifest(index, "riscv64");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("linux/arm64, linux/amd64"), std::string::npos) << none.error().message;
  EXPECT_FALSE(platform_manifest(json::object(), "amd64").ok());
}

TEST(ImageManifest, LayersEnvAndWorkingDirComeFromTheManifestAndConfig) {
  json manifest = {{"config", {{"digest", "sha256:c"}}}, {"layers", {{{"size", 100}}, {{"size", 23}}}}};
  json config = {{"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:a", "sha256:b"}}}},
                 {"config", {{"Env", {"PATH=/usr/bin", "LANG=C.UTF-8"}}, {"WorkingDir", "/app"}}}};
  auto m = parse_image("sha256:m", manifest, config);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(m->digest, "sha256:m");
  EXPECT_EQ(m->size_bytes, 123);
  EXPECT_EQ(m->diff_ids, (std::vector<std::string>{"sha256:a", "sha256:b"}));
  EXPECT_EQ(m->env.size(), 2u);
  EXPECT_EQ(m->working_dir, "/app");
  EXPECT_FALSE(parse_image("sha256:m", manifest, json::object()).ok());
  config["rootfs"]["diff_ids"] = json::array();
  EXPECT_FALSE(parse_image("sha256:m", manifest, config).ok());
}

TEST(ImageManifest, ChainIdsFollowTheOciImageSpec) {
  const std::string a = "sha256:" + std::string(64, 'a'), b = "sha256:" + std::string(64, 'b');
  EXPECT_EQ(cri::chain_id({a}), a);
  // sha256("sha256:aaa… sha256:bbb…"), as Python's hashlib computes it.
  EXPECT_EQ(cri::chain_id({a, b}), "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c");
}

}  // namespace
}  // namespace swissbox
