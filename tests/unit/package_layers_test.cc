// Package layers' pure parts (issue 22): package specs, the indexes a build may reach, the
// layer's identity, the build script, and how a layer's parts stack over its base's.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/runtime/package_layers.h"
#include "agent/sandbox/package_build.h"

namespace swissbox {
namespace {

using json = nlohmann::json;

TEST(PackageSpecs, WhatPackageManagersTakeAndNothingTheShellReads) {
  for (const char* ok : {"pandas", "pandas==2.2.2", "requests[socks]>=2,<3", "@types/node@20", "left-pad@^1.3.0",
                         "jq=1.6-2.1", "libfoo:amd64", "https://example.com/x-1.0.tgz", "numpy~=1.26"}) {
    EXPECT_TRUE(valid_package_spec(ok)) << ok;
  }
  for (const char* bad : {"", "-e", "--index-url=x", "a b", "a'b", "a\"b", "$(id)", "a`id`", "a;b", "a&b", "a|b",
                          "a(b)", "a*", "a?", "a\\b", "a#b", "a\nb", "a{b}", "caf\xc3\xa9"}) {
    EXPECT_FALSE(valid_package_spec(bad)) << bad;
  }
  EXPECT_FALSE(valid_package_spec(std::string(201, 'a')));
}

TEST(PackageSpecs, SetsAreSortedWithoutDuplicatesAndRefuseWhatIsNotOne) {
  auto set = parse_packages(json::parse(R"({"pip": ["pandas", "numpy", "pandas"], "npm": ["left-pad"]})"));
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set->pip, (std::vector<std::string>{"numpy", "pandas"}));
  EXPECT_EQ(set->npm, (std::vector<std::string>{"left-pad"}));
  EXPECT_TRUE(set->apt.empty());

  auto list = parse_package_list(json::parse(R"(["pip:pandas", "npm:left-pad", "apt:jq", "pip:numpy"])"));
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ(list->pip, (std::vector<std::string>{"numpy", "pandas"}));
  EXPECT_EQ(list->apt, (std::vector<std::string>{"jq"}));
  EXPECT_EQ(packages_json(*list)["npm"], json::array({"left-pad"}));

  for (const char* bad : {R"({"cargo": ["x"]})", R"({"pip": "pandas"})", R"({"pip": [1]})", R"({"pip": ["a b"]})",
                          R"({})", R"([])"}) {
    auto r = parse_packages(json::parse(bad));
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Code::kInvalidArgument) << bad;
    }
  }
  for (const char* bad : {R"(["pandas"])", R"(["gem:x"])", R"(["pip:"])", R"j(["pip:$(id)"])j", R"([3])", R"("pip:x")"}) {
    EXPECT_FALSE(parse_package_list(json::parse(bad)).ok()) << bad;
  }
  json many = json::array();
  for (int i = 0; i < 101; ++i) many.push_back("pip:p" + std::to_string(i));
  EXPECT_FALSE(parse_package_list(many).ok());
}

TEST(PackageIndexes, BuildsReachTheIndexesHostsOnly) {
  PackageIndexes defaults;
  EXPECT_EQ(index_hosts(defaults), (std::vector<std::string>{"deb.debian.org", "files.pythonhosted.org", "pypi.org",
                                                             "registry.npmjs.org"}));
  PackageIndexes mirror{"http://Mirror.Example:8080/debian", "https://pypi.internal/simple", "https://npm.internal/"};
  EXPECT_EQ(index_hosts(mirror), (std::vector<std::string>{"mirror.example", "npm.internal", "pypi.internal"}));
  for (const char* bad : {"ftp://x/debian", "deb.debian.org", "http:///x", "http://a b/", "http://x/$(id)",
                          "http://x/'"}) {
    EXPECT_FALSE(url_host(bad).ok()) << bad;
  }
}

TEST(PackageLayerKey, SameBaseAndPackagesAreOneLayerAnythingElseAnother) {
  PackageIndexes idx;
  PackageSet a{{}, {"pandas"}, {}}, b{{}, {"pandas"}, {}}, c{{"pandas"}, {}, {}};
  EXPECT_EQ(layer_key("base", a, idx), layer_key("base", b, idx));
  EXPECT_EQ(layer_key("base", a, idx).size(), 64u);
  EXPECT_NE(layer_key("base", a, idx), layer_key("other", a, idx));
  EXPECT_NE(layer_key("base", a, idx), layer_key("base", c, idx));  // apt's pandas is not pip's
  PackageIndexes mirror = idx;
  mirror.pip_index = "https://pypi.internal/simple";
  EXPECT_NE(layer_key("base", a, idx), layer_key("base", a, mirror));
}

TEST(PackageBuildScript, QuotesEveryPackageAndNamesOnlyTheConfiguredIndexes) {
  PackageIndexes idx{"http://mirror.example/debian", "https://pypi.internal/simple", "https://npm.internal/"};
  std::string s = build_script(PackageSet{{"jq"}, {"requests[socks]>=2"}, {"@types/node@20"}}, idx);
  EXPECT_NE(s.find("install 'jq'"), std::string::npos) << s;
  EXPECT_NE(s.find("'requests[socks]>=2'"), std::string::npos) << s;
  EXPECT_NE(s.find("'@types/node@20'"), std::string::npos) << s;
  EXPECT_NE(s.find("--index-url 'https://pypi.internal/simple'"), std::string::npos) << s;
  EXPECT_NE(s.find("--registry 'https://npm.internal/'"), std::string::npos) << s;
  EXPECT_NE(s.find("http://mirror.example/debian $VERSION_CODENAME main"), std::string::npos) << s;
  EXPECT_NE(s.find("http://mirror.example/debian-security"), std::string::npos) << s;
  EXPECT_EQ(s.find("pypi.org"), std::string::npos) << s;
  EXPECT_EQ(s.find("deb.debian.org"), std::string::npos) << s;
  EXPECT_EQ(s.find("exec 2>&1"), std::string::npos) << "closing its stderr ends a runsc 20240729 sandbox";
  // The status line is the script's last words; a set without apt runs no apt.
  EXPECT_TRUE(s.ends_with("echo \"swissbox-build: exit $?\"\n")) << s;
  EXPECT_EQ(build_script(PackageSet{{}, {"x"}, {}}, idx).find("apt-get"), std::string::npos);
}

TEST(PackageLayerParts, ALayerStacksItsUppersOverEachPartOfItsBase) {
  RootfsLayout node{"/state/rootfs-host", {{"/usr", "/usr", true}, {"/etc/alternatives", "/etc/alternatives", true}}};
  auto parts = parts_of(node);
  ASSERT_GE(parts.size(), 3u);
  EXPECT_EQ(parts[0], (RootPart{"/", {"/state/rootfs-host"}}));
  EXPECT_EQ(parts[1], (RootPart{"/usr", {"/usr"}}));
  auto layered = parts_with_layer(parts, "/state/layers/k");
  ASSERT_EQ(layered.size(), parts.size());
  EXPECT_EQ(layered[1], (RootPart{"/usr", {"/state/layers/k/disk/workspace/upper/1", "/usr"}}));
  auto twice = parts_with_layer(layered, "/state/layers/k2");
  EXPECT_EQ(twice[0].layers, (std::vector<std::string>{"/state/layers/k2/disk/workspace/upper/0",
                                                       "/state/layers/k/disk/workspace/upper/0", "/state/rootfs-host"}));
  // An image's root is one part: no binds, nothing of the host added.
  EXPECT_EQ(parts_of(RootfsLayout{"/state/images/x/rootfs", {}}).size(), 1u);
}

}  // namespace
}  // namespace swissbox
