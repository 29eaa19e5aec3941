#include "agent/sandbox/package_build.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/net/egress_proxy.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "cri/containerd_images.h"

namespace swissbox {

using json = nlohmann::json;

namespace {

constexpr std::string_view kStatusLine = "swissbox-build: exit ";
constexpr size_t kMaxPackages = 100;

// The set's list for a package manager's name; null for another name.
std::vector<std::string>* list_of(PackageSet& set, std::string_view manager) {
  return manager == "apt" ? &set.apt : manager == "pip" ? &set.pip : manager == "npm" ? &set.npm : nullptr;
}

Status add_spec(std::vector<std::string>* to, const std::string& manager, const json& spec) {
  if (!spec.is_string() || !valid_package_spec(spec.get<std::string>())) {
    return make_error(Code::kInvalidArgument,
                      manager + " package " + (spec.is_string() ? "'" + spec.get<std::string>() + "'" : spec.dump()) +
                          " is not a package spec (1-200 printable characters, no spaces, quotes or shell "
                          "characters, not starting with '-')");
  }
  to->push_back(spec.get<std::string>());
  return ok_status();
}

Result<PackageSet> finished(PackageSet set) {
  size_t n = 0;
  for (auto* list : {&set.apt, &set.pip, &set.npm}) {
    std::sort(list->begin(), list->end());
    list->erase(std::unique(list->begin(), list->end()), list->end());
    n += list->size();
  }
  if (n == 0) return make_error(Code::kInvalidArgument, "no package named");
  if (n > kMaxPackages) return make_error(Code::kInvalidArgument, fmt::format("at most {} packages", kMaxPackages));
  return set;
}

std::string quoted(const std::vector<std::string>& specs) {
  std::string out;
  for (const auto& s : specs) out += " '" + s + "'";  // valid specs hold no quote
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

// Bytes from a sandbox in a message the agent keeps in JSON: printable ASCII only.
std::string printable(std::string_view text) {
  std::string out;
  for (unsigned char c : text) out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  return out;
}

// The package manager's last words: the last lines before the status line.
std::string last_words(std::string_view tail) {
  std::vector<std::string> lines;
  size_t end = tail.size();
  while (end > 0 && lines.size() < 3) {
    size_t start = tail.rfind('\n', end - 1);
    start = start == std::string_view::npos ? 0 : start + 1;
    std::string_view line = tail.substr(start, end - start);
    if (!line.empty() && !line.starts_with(kStatusLine)) lines.insert(lines.begin(), printable(line.substr(0, 300)));
    end = start == 0 ? 0 : start - 1;
  }
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : " | ") + l;
  return out;
}

}  // namespace

bool valid_package_spec(std::string_view spec) {
  if (spec.empty() || spec.size() > 200 || spec[0] == '-') return false;
  for (unsigned char c : spec) {
    if (c <= 0x20 || c >= 0x7f) return false;
    if (std::string_view("'\"$`;&|()*?\\#{}").find(static_cast<char>(c)) != std::string_view::npos) return false;
  }
  return true;
}

Result<PackageSet> parse_packages(const json& packages) {
  if (!packages.is_object()) return make_error(Code::kInvalidArgument, "packages must be {apt: [], pip: [], npm: []}");
  PackageSet set;
  for (const auto& [manager, list] : packages.items()) {
    std::vector<std::string>* to = list_of(set, manager);
    if (!to) return make_error(Code::kInvalidArgument, "packages: unknown package manager '" + manager + "' (apt, pip, npm)");
    if (!list.is_array()) return make_error(Code::kInvalidArgument, "packages." + manager + " must be an array");
    for (const auto& spec : list) {
      if (auto st = add_spec(to, manager, spec); !st) return st.error();
    }
  }
  return finished(std::move(set));
}

Result<PackageSet> parse_package_list(const json& list) {
  if (!list.is_array()) return make_error(Code::kInvalidArgument, "pre_install_packages must be an array of \"manager:package\"");
  PackageSet set;
  for (const auto& item : list) {
    std::string text = item.is_string() ? item.get<std::string>() : "";
    auto colon = text.find(':');
    std::string manager = colon == std::string::npos ? "" : text.substr(0, colon);
    std::vector<std::string>* to = list_of(set, manager);
    if (!to) {
      return make_error(Code::kInvalidArgument, "pre_install_packages: " + (item.is_string() ? "'" + text + "'" : item.dump()) +
                                                    " is not \"apt:NAME\", \"pip:NAME\" or \"npm:NAME\"");
    }
    if (auto st = add_spec(to, manager, json(text.substr(colon + 1))); !st) return st.error();
  }
  return finished(std::move(set));
}

json packages_json(const PackageSet& set) { return {{"apt", set.apt}, {"pip", set.pip}, {"npm", set.npm}}; }

Result<std::string> url_host(const std::string& url) {
  size_t scheme = url.find("://");
  std::string s = scheme == std::string::npos ? "" : url.substr(0, scheme);
  if (s != "http" && s != "https") return make_error(Code::kInvalidArgument, "'" + url + "' is not an http(s) URL");
  size_t start = scheme + 3, end = url.find_first_of(":/", start);
  std::string host = lower_case(url.substr(start, end == std::string::npos ? std::string::npos : end - start));
  if (host.empty() || !valid_allow_pattern(host) || host.starts_with("*."))
    return make_error(Code::kInvalidArgument, "'" + url + "' names no host");
  if (url.find_first_of(" '\"$`;&|()\\") != std::string::npos)
    return make_error(Code::kInvalidArgument, "'" + url + "' holds characters a URL does not");
  return host;
}

std::vector<std::string> index_hosts(const PackageIndexes& indexes) {
  std::vector<std::string> hosts;
  for (const auto* url : {&indexes.apt_mirror, &indexes.pip_index, &indexes.npm_registry}) {
    if (auto h = url_host(*url)) hosts.push_back(*h);
  }
  // PyPI's index links to its files on another host.
  if (std::find(hosts.begin(), hosts.end(), "pypi.org") != hosts.end()) hosts.push_back("files.pythonhosted.org");
  std::sort(hosts.begin(), hosts.end());
  hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
  return hosts;
}

std::string layer_key(const std::string& base_identity, const PackageSet& set, const PackageIndexes& indexes) {
  return cri::sha256_hex(fmt::format("swissbox package layer 1\nbase {}\napt {}\npip {}\nnpm {}\nindexes {} {} {}\n",
                                     base_identity, joined(set.apt), joined(set.pip), joined(set.npm),
                                     indexes.apt_mirror, indexes.pip_index, indexes.npm_registry));
}

std::string build_script(const PackageSet& set, const PackageIndexes& indexes) {
  std::string s =
      "read -r proxy || exit 97\n"
      "export http_proxy=\"$proxy\" https_proxy=\"$proxy\" HTTP_PROXY=\"$proxy\" HTTPS_PROXY=\"$proxy\"\n"
      "(\n"
      "set -e\n";
  if (!set.apt.empty()) {
    // Only the configured mirror, through the proxy; lists, downloads and caches on the build
    // sandbox's /tmp, so the layer keeps only what the packages install.
    std::string security = indexes.apt_mirror.ends_with("/debian") ? indexes.apt_mirror + "-security" : "";
    s += "echo 'swissbox-build: apt-get install" + quoted(set.apt) + "'\n" +
         "command -v apt-get >/dev/null || { echo 'the base has no apt-get'; exit 1; }\n"
         ". /etc/os-release\n"
         "[ \"${ID:-}\" = debian ] || { echo \"apt packages are built on Debian bases; this one is ${ID:-unknown}\"; exit 1; }\n"
         "k=/usr/share/keyrings/debian-archive-keyring.gpg\n"
         "mkdir -p /tmp/apt/lists/partial /tmp/apt/archives/partial /tmp/apt/parts /tmp/apt/log\n"
         // The mirror's URL holds no quote, '$', '`' or '\\' (url_host).
         "{ echo \"deb [signed-by=$k] " + indexes.apt_mirror + " $VERSION_CODENAME main\"\n"
         "  echo \"deb [signed-by=$k] " + indexes.apt_mirror + " $VERSION_CODENAME-updates main\"\n" +
         (security.empty() ? "" : "  echo \"deb [signed-by=$k] " + security + " $VERSION_CODENAME-security main\"\n") +
         "} >/tmp/apt/sources.list\n"
         "set -- -o APT::Sandbox::User=root -o Dir::Etc::SourceList=/tmp/apt/sources.list "
         "-o Dir::Etc::SourceParts=/tmp/apt/parts -o Dir::Etc::Parts=/tmp/apt/parts -o Dir::Etc::PreferencesParts=/tmp/apt/parts "
         "-o Dir::Log=/tmp/apt/log -o Dir::State::Lists=/tmp/apt/lists "
         "-o Dir::Cache::Archives=/tmp/apt/archives -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "
         "-o Acquire::Retries=3 -o Dpkg::Use-Pty=0 -o APT::Color=0\n"
         "DEBIAN_FRONTEND=noninteractive apt-get \"$@\" -q update\n"
         "DEBIAN_FRONTEND=noninteractive apt-get \"$@\" -q -y --no-install-recommends install" + quoted(set.apt) + "\n";
  }
  if (!set.pip.empty()) {
    s += "echo 'swissbox-build: pip install" + quoted(set.pip) + "'\n" +
         "python3 -m pip --version >/dev/null 2>&1 || { echo 'the base has no pip (python3 -m pip)'; exit 1; }\n"
         "PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "
         "python3 -m pip install --no-cache-dir --no-input --progress-bar off --index-url '" + indexes.pip_index + "'" +
         quoted(set.pip) + "\n";
  }
  if (!set.npm.empty()) {
    // Global, under /usr/local: the template's NODE_PATH finds them from any directory.
    s += "echo 'swissbox-build: npm install --global" + quoted(set.npm) + "'\n" +
         "command -v npm >/dev/null || { echo 'the base has no npm'; exit 1; }\n"
         "npm install --global --prefix /usr/local --registry '" + indexes.npm_registry + "' --cache /tmp/npm-cache "
         "--no-audit --no-fund --no-update-notifier --loglevel warn" + quoted(set.npm) + "\n";
  }
  // The package managers' errors join their output in the subshell (the first process must
  // keep its own stderr: see package_build.h).
  s += ") 2>&1\n"
       "echo \"" + std::string(kStatusLine) + "$?\"\n";
  return s;
}

PackageBuilder::PackageBuilder(SandboxRuntime& runtime, EgressProxy* proxy, PackageIndexes indexes,
                               PackageBuildOptions options, std::function<void(const std::string&, bool)> hold)
    : runtime_(runtime), proxy_(proxy), indexes_(std::move(indexes)), opts_(options), hold_(std::move(hold)) {}

Status PackageBuilder::run(const std::string& id, const RootfsLayout& root, const PackageSet& set,
                           std::vector<std::string> env, const std::string& log_path) {
  if (stopping_) return make_error(Code::kUnavailable, "the agent stopped before the build");
  if (!has_network()) {
    return make_error(Code::kUnavailable,
                      "package builds fetch through the node's egress network, which this agent has not (--egress-pool)");
  }
  unique_fd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return sys_error("open " + log_path);
  SandboxSpec spec;
  spec.id = id;
  spec.hostname = "build";
  spec.limits = opts_.limits;
  spec.network = NetworkMode::kEgress;
  spec.root = root;
  spec.build_command = {"/bin/sh", "-c", build_script(set, indexes_)};
  std::erase_if(env, [](const std::string& kv) { return kv.starts_with("HOME="); });
  env.push_back("HOME=/tmp");  // npm's and pip's dot files: on the build's /tmp, not in the layer
  spec.env = std::move(env);

  hold_(id, true);
  auto link = runtime_.start(spec);
  auto addrs = link ? runtime_.network(id) : std::nullopt;
  auto end = [&](Status st) {
    if (addrs) proxy_->forget(addrs->sandbox_ip);
    if (auto gone = runtime_.destroy(id); !gone)
      log::warn("build sandbox not removed", {{"sandbox", id}, {"error", gone.error().to_string()}});
    hold_(id, false);
    return st;
  };
  if (!link) return end(Error{link.error().code, link.error().sys_errno, "the build sandbox did not start: " + link.error().message});
  if (!addrs) return end(make_error(Code::kInternal, "the build sandbox has no network address"));
  proxy_->allow(addrs->sandbox_ip, id, index_hosts(indexes_));
  const std::string go = fmt::format("http://{}:{}\n", addrs->gateway_ip, proxy_->options().port);
  const int fd = link->socket.get();
  if (write(fd, go.data(), go.size()) != static_cast<ssize_t>(go.size()))
    return end(sys_error("start the build"));

  // Its output into the log, up to the cap; the tail kept for the status line.
  const auto deadline = std::chrono::steady_clock::now() + opts_.timeout;
  std::string tail;
  size_t logged = 0;
  bool timed_out = false;
  char buf[16384];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || stopping_) {
      timed_out = true;
      break;
    }
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) continue;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (logged < opts_.max_log_bytes) {
      size_t k = std::min(static_cast<size_t>(n), opts_.max_log_bytes - logged);
      (void)!write(log.get(), buf, k);
      logged += k;
      if (logged == opts_.max_log_bytes) {
        constexpr std::string_view cut = "\n[swissbox: the build's log is cut here; its output goes on]\n";
        (void)!write(log.get(), cut.data(), cut.size());
      }
    }
    tail.append(buf, static_cast<size_t>(n));
    if (tail.size() > 8192) tail.erase(0, tail.size() - 4096);
  }
  if (stopping_) return end(make_error(Code::kUnavailable, "the agent stopped during the build"));
  if (timed_out) {
    return end(make_error(Code::kDeadlineExceeded,
                          fmt::format("the build did not end within {} s", opts_.timeout.count())));
  }
  while (!tail.empty() && tail.back() == '\n') tail.pop_back();
  size_t status = tail.rfind(kStatusLine);
  if (status == std::string::npos || tail.find('\n', status) != std::string::npos) {
    return end(make_error(Code::kInternal, "the build sandbox ended without its status: " + last_words(tail)));
  }
  std::string code = tail.substr(status + kStatusLine.size());
  if (code != "0") {
    return end(make_error(Code::kInvalidArgument,
                          "the package build failed (exit " + printable(code) + "): " + last_words(tail.substr(0, status))));
  }
  return end(ok_status());
}

}  // namespace swissbox
