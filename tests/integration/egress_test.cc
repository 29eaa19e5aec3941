// Sandbox networking end to end, as root with runsc: no network by default; with
// network "egress" the way out is the agent's proxy, for allowlisted hosts only; direct
// connections, the node, the agent's port and other sandboxes are refused at once; a rate
// limit holds and the byte counters match; create/delete cycles and a kill -9 leave no
// link, namespace or rule behind. The HTTP servers run in namespaces this test makes, on
// addresses of the benchmarking range 198.19.0.0/16; nothing leaves the machine.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <atomic>
#include <future>
#include <thread>

#include "agent/net/egress_filter.h"
#include "agent/net/netns.h"
#include "agent/net/veth.h"
#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

// A tiny HTTP server inside a namespace of its own, joined to the node by a veth pair:
// "/" answers "hello from NAME", "/bytes/N" answers N bytes.
class NamespacedServer {
 public:
  NamespacedServer(std::string name, std::string dir, std::string link, std::string host_ip,
                   std::string ip)
      : name_(std::move(name)), ns_(dir + "/" + name_ + ".ns"), link_(std::move(link)), ip_(std::move(ip)) {
    ok_ = netns::create(ns_).ok() &&
          veth::create_pair({link_, ns_, host_ip, ip_, 30}).ok() &&
          netns::run_in(ns_, [this]() -> Status {
            listener_ = unique_fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            int one = 1;
            setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(80);
            if (bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
                listen(listener_.get(), 16) != 0)
              return sys_error("listen in " + ns_);
            return ok_status();
          }).ok();
    if (ok_) thread_ = std::thread([this] { serve(); });
  }
  ~NamespacedServer() {
    if (listener_) shutdown(listener_.get(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    (void)veth::remove_link(link_);
    (void)netns::remove(ns_);
  }
  bool ok() const { return ok_; }
  const std::string& ip() const { return ip_; }

 private:
  void serve() {
    for (;;) {
      unique_fd c(accept(listener_.get(), nullptr, nullptr));
      if (!c) return;
      std::string req;
      char buf[4096];
      ssize_t n;
      while (req.find("\r\n\r\n") == std::string::npos && (n = read(c.get(), buf, sizeof(buf))) > 0)
        req.append(buf, n);
      std::string path = req.substr(req.find(' ') + 1);
      path = path.substr(0, path.find(' '));
      std::string body = path.rfind("/bytes/", 0) == 0 ? std::string(std::stoul(path.substr(7)), 'x')
                                                        : "hello from " + name_ + "\n";
      std::string out = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                        "\r\nConnection: close\r\n\r\n" + body;
      for (size_t sent = 0; sent < out.size();) {
        ssize_t w = write(c.get(), out.data() + sent, out.size() - sent);
        if (w <= 0) break;
        sent += w;
      }
    }
  }

  std::string name_, ns_, link_, ip_;
  unique_fd listener_;
  std::thread thread_;
  bool ok_ = false;
};

// The node's first IPv4 address that is not loopback.
std::string node_address() {
  ifaddrs* list = nullptr;
  std::string out;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i && out.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK)) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof(buf));
    out = buf;
  }
  freeifaddrs(list);
  return out;
}

class Egress : public AgentRunsc {
 protected:
  static constexpr const char* kPrefix = "sbi";
  static void SetUpTestSuite() {
    if (geteuid() == 0) {
      std::string tag = std::to_string(getpid() % 1000);
      char tmpl[] = "/tmp/swissbox-egress-XXXXXX";
      srv_dir_ = mkdtemp(tmpl);
      allowed_ = std::make_unique<NamespacedServer>("allowed", srv_dir_, "swa" + tag, "198.19.77.1",
                                                    "198.19.77.2");
      denied_ = std::make_unique<NamespacedServer>("denied", srv_dir_, "swd" + tag, "198.19.77.5",
                                                   "198.19.77.6");
      if (!allowed_->ok() || !denied_->ok()) {
        skip_ = "the test's own server namespaces could not be made";
        return;
      }
    }
    proxy_port_ = free_port();
    // Sandboxes of the default template that ask for no allowlist get this one.
    std::string policy = srv_dir_ + "/policy.json";
    if (!srv_dir_.empty())
      (void)fs::write_file_atomic(policy, R"({"templates":{"default":["allowed.test"]}})");
    extra_args_ = {"--egress-policy", policy,"--pool", "default:egress=1", "--egress-pool", "10.213.0.0/24",
                   "--egress-link-prefix", kPrefix, "--egress-proxy-port", std::to_string(proxy_port_),
                   "--egress-hosts", "allowed.test=198.19.77.2,denied.test=198.19.77.6,node.test=" + node_address(),
                   "--gc-interval", "2"};
    AgentRunsc::SetUpTestSuite();
  }
  static void TearDownTestSuite() {
    AgentRunsc::TearDownTestSuite();
    // A stopped agent (not keeping sandboxes) leaves no link, namespace or rule.
    if (geteuid() == 0) {
      EXPECT_TRUE(veth::links_with_prefix(kPrefix)->empty());
      EXPECT_FALSE(egress_filter_present(std::string("swissbox_") + kPrefix));
    }
    allowed_.reset();
    denied_.reset();
    if (!srv_dir_.empty()) (void)fs::remove_tree(srv_dir_);
  }

  static std::string create_egress(const json& extra = json::object()) {
    json body = {{"network", "egress"}, {"egress_allowlist", {"allowed.test", "node.test"}}};
    body.update(extra);
    return post("/v1/sandboxes", body, 201).value("id", "");
  }
  static json run(const std::string& id, const std::string& command, int timeout_s = 20) {
    return exec(id, {{"command", command}, {"timeout_s", timeout_s}});
  }
  static json network_of(const std::string& id) {
    http::Client c(tcp());
    return json::parse(c.request("GET", "/v1/sandboxes/" + id)->body)["network"];
  }
  // What the agent holds for networking: links and pinned namespaces.
  static std::pair<int, int> held() {
    int pins = 0;
    for (const auto& d : dir_entries(dir_ + "/state/sandboxes"))
      pins += netns::pinned(dir_ + "/state/sandboxes/" + d + "/netns");
    return {static_cast<int>(veth::links_with_prefix(kPrefix)->size()), pins};
  }

  static inline std::string srv_dir_;
  static inline std::unique_ptr<NamespacedServer> allowed_, denied_;
  static inline int proxy_port_ = 0;
};

TEST_F(Egress, NoNetworkMeansLoopbackOnlyAndFailsFast) {
  std::string id = create();
  json devs = run(id, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '");
  EXPECT_EQ(devs.value("stdout", ""), "lo\n");
  json out = run(id, "curl -sS -m 10 http://198.19.77.2/");
  EXPECT_NE(out.value("exit_code", 0), 0);
  EXPECT_LT(out.value("duration_ms", 1e9), 3000) << out.dump();
  EXPECT_NE(network_of(id).value("mode", ""), "egress");
  post("/v1/sandboxes", {{"egress_allowlist", {"a.test"}}}, 400);
}

TEST_F(Egress, OnlyAllowlistedHostsAnswerAndOnlyThroughTheProxy) {
  std::string id = create_egress(), other = create_egress();
  json net = network_of(id);
  EXPECT_EQ(net.value("mode", ""), "egress");
  std::string gateway = net.value("address", "");
  gateway = gateway.substr(0, gateway.rfind('.')) + "." +
            std::to_string(std::stoi(gateway.substr(gateway.rfind('.') + 1)) - 1);

  json ok = run(id, "curl -sS -m 10 http://allowed.test/");
  EXPECT_EQ(ok.value("stdout", ""), "hello from allowed\n") << ok.dump();
  json tls_like = run(id, "curl -sS -p -m 10 http://allowed.test/");  // CONNECT tunnel
  EXPECT_EQ(tls_like.value("stdout", ""), "hello from allowed\n") << tls_like.dump();
  // No allowlist in the request: the template's, from the policy file.
  std::string by_template = post("/v1/sandboxes", {{"network", "egress"}}, 201).value("id", "");
  EXPECT_EQ(run(by_template, "curl -sS -m 10 http://allowed.test/").value("stdout", ""),
            "hello from allowed\n");
  EXPECT_NE(run(by_template, "curl -sS -m 10 http://node.test/").value("stdout", "").find("allowlist"),
            std::string::npos);
  json denied = run(id, "curl -sS -m 10 http://denied.test/");
  EXPECT_NE(denied.value("stdout", "").find("'denied.test' is not in this sandbox's egress allowlist"),
            std::string::npos)
      << denied.dump();
  // Allowlisted, but the name leads to the node itself: the deny list wins.
  json node = run(id, "curl -sS -m 10 http://node.test:" + std::to_string(port_) + "/healthz");
  EXPECT_NE(node.value("stdout", "").find("may not reach"), std::string::npos) << node.dump();

  // Around the proxy: refused at once, never a hang.
  std::string other_ip = network_of(other).value("address", "");
  for (const std::string& target : std::vector<std::string>{
           "198.19.77.2", "198.19.77.6", node_address() + ":" + std::to_string(port_),
           gateway + ":" + std::to_string(port_), other_ip + ":8080"}) {
    json direct = run(id, "curl -sS -m 10 --noproxy '*' http://" + target + "/");
    EXPECT_NE(direct.value("exit_code", 0), 0) << target << " " << direct.dump();
    EXPECT_LT(direct.value("duration_ms", 1e9), 3000) << target << " " << direct.dump();
  }
  std::string metrics = http::Client(tcp()).request("GET", "/metrics")->body;
  EXPECT_NE(metrics.find("swissbox_egress_connections_total{result=\"denied\"}"), std::string::npos);
  EXPECT_NE(metrics.find("swissbox_egress_connections_total{result=\"allowed\"}"), std::string::npos);
}

// E2B's allow_internet_access (its SDKs send true unless told otherwise) gives what the
// node's policy gives the template, and false keeps the sandbox on loopback.
TEST_F(Egress, E2bInternetAccessIsTheTemplatesPolicy) {
  std::string open = post("/sandboxes", {{"templateID", "base"}, {"allow_internet_access", true}}, 201)
                         .value("sandboxID", "");
  EXPECT_EQ(network_of(open).value("mode", ""), "egress");
  EXPECT_EQ(run(open, "curl -sS -m 10 http://allowed.test/").value("stdout", ""), "hello from allowed\n");
  EXPECT_NE(run(open, "curl -sS -m 10 http://denied.test/").value("stdout", "").find("allowlist"),
            std::string::npos);
  http::Client c(tcp());
  EXPECT_EQ(json::parse(c.request("GET", "/sandboxes/" + open)->body).value("allowInternetAccess", false), true);
  std::string closed = post("/sandboxes", {{"templateID", "base"}, {"allow_internet_access", false}}, 201)
                           .value("sandboxID", "");
  EXPECT_NE(network_of(closed).value("mode", ""), "egress");
  EXPECT_EQ(run(closed, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '").value("stdout", ""), "lo\n");
}

// Host names that a matcher and a resolver read differently (the audit's NUL: the allowlist
// saw "....allowed.test", getaddrinfo "198.19.77.6") are refused before either looks.
TEST_F(Egress, OddHostFormsAreRefusedBeforeTheyAreMatched) {
  std::string id = create_egress({{"egress_allowlist", {"*.allowed.test"}}});
  const std::string probe = R"PY(
import os, socket, json
host, port = os.environ["http_proxy"].split("//")[-1].rstrip("/").rsplit(":", 1)
out = {}
for name, line in [
    ("nul", b"CONNECT 198.19.77.6\x00.allowed.test:80"),
    ("space", b"CONNECT 198.19.77.6 .allowed.test:80"),
    ("percent", b"CONNECT 198.19.77.6%00.allowed.test:80"),
    ("at", b"CONNECT denied.test@x.allowed.test:80"),
    ("newline", b"CONNECT denied.test\r.allowed.test:80"),
    ("bad_v6", b"CONNECT [198.19.77.6\x00.allowed.test]:80"),
    ("long_label", b"CONNECT " + b"a" * 64 + b".allowed.test:80"),
    ("plain_nul", b"GET http://198.19.77.6\x00.allowed.test/"),
    ("allowed_unknown", b"CONNECT www.allowed.test:80"),
]:
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(line + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    out[name] = s.recv(300).decode("latin1").split("\r\n")[0]
    s.close()
print(json.dumps(out))
)PY";
  json r = post("/v1/sandboxes/" + id + "/code", {{"language", "python"}, {"code", probe}});
  json got = json::parse(r.value("stdout", "{}"), nullptr, false);
  ASSERT_TRUE(got.is_object()) << r.dump();
  for (const char* name : {"nul", "space", "percent", "at", "newline", "bad_v6", "long_label", "plain_nul"})
    EXPECT_EQ(got.value(name, ""), "HTTP/1.1 400 Bad Request") << name << ": " << got.dump();
  // A well-formed name below the wildcard passes the policy and fails only to resolve.
  EXPECT_EQ(got.value("allowed_unknown", ""), "HTTP/1.1 502 Bad Gateway") << got.dump();
  // The agent's log holds the refusals on one line each, control bytes escaped.
  auto log = fs::read_file(dir_ + "/agent.log", 64 << 20);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->find(std::string("\0", 1) + ".allowed.test"), std::string::npos);
  EXPECT_EQ(log->find('\r'), std::string::npos);
  EXPECT_EQ(http::Client(tcp()).request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
}

// 1,100 connections to the proxy from one sandbox (the audit's fd exhaustion): past 256 they
// are answered 503 at once; another sandbox and the agent's API keep working meanwhile.
TEST_F(Egress, AConnectionFloodFromOneSandboxStaysWithinItsShare) {
  std::string id = create_egress(), other = create_egress();
  const std::string flood = R"PY(
import os, socket, json, time
host, port = os.environ["http_proxy"].split("//")[-1].rstrip("/").rsplit(":", 1)
held, refused, failed = [], 0, 0
for i in range(1100):
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
        held.append(s)
    except OSError:
        failed += 1
time.sleep(0.5)
for s in held:
    s.setblocking(False)
    try:
        if s.recv(64).startswith(b"HTTP/1.1 503"):
            refused += 1
    except BlockingIOError:
        pass
print(json.dumps({"held": len(held), "refused": refused, "failed": failed}))
time.sleep(3)
)PY";
  auto flooding = std::async(std::launch::async, [&] {
    return post("/v1/sandboxes/" + id + "/code", {{"language", "python"}, {"code", flood}});
  });
  std::this_thread::sleep_for(2s);  // the flood is open and held
  json ok = run(other, "curl -sS -m 10 http://allowed.test/");
  EXPECT_EQ(ok.value("stdout", ""), "hello from allowed\n") << ok.dump();
  EXPECT_EQ(http::Client(tcp()).request("GET", "/healthz")->status, 200u);
  json r = flooding.get();
  json got = json::parse(r.value("stdout", "{}"), nullptr, false);
  ASSERT_TRUE(got.is_object()) << r.dump().substr(0, 600);
  EXPECT_EQ(got.value("refused", 0), 1100 - 256) << got.dump();
  // Its connections closed, the sandbox gets through again.
  bool through = false;
  for (int i = 0; i < 20 && !through; ++i) {
    through = run(id, "curl -sS -m 10 http://allowed.test/").value("stdout", "") == "hello from allowed\n";
    if (!through) std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(through);
  for (const auto& sb : {id, other})
    EXPECT_EQ(http::Client(tcp()).request("DELETE", "/v1/sandboxes/" + sb)->status, 204u);
}

TEST_F(Egress, RateLimitHoldsAndCountersMatch) {
  std::string id = create_egress({{"bandwidth_kbit", 1000}});
  json before = network_of(id);
  constexpr int kBytes = 2'000'000;
  json dl = run(id, "curl -sS -m 60 -o /tmp/f http://allowed.test/bytes/" + std::to_string(kBytes) +
                        " && stat -c %s /tmp/f", 60);
  EXPECT_EQ(dl.value("stdout", ""), std::to_string(kBytes) + "\n") << dl.dump();
  double seconds = dl.value("duration_ms", 0.0) / 1000;
  double mbit = kBytes * 8 / seconds / 1e6;
  EXPECT_GT(mbit, 0.8) << seconds << " s";
  EXPECT_LT(mbit, 1.2) << seconds << " s";
  json after = network_of(id);
  double in = after.value("bytes_in", 0.0) - before.value("bytes_in", 0.0);
  EXPECT_GE(in, kBytes);
  EXPECT_LE(in, kBytes * 1.05) << "bytes_in " << in;
  RecordProperty("bytes_in_over_payload", std::to_string(in / kBytes));
  RecordProperty("mbit", std::to_string(mbit));
  EXPECT_GT(after.value("bytes_out", 0.0), before.value("bytes_out", 0.0));
}

TEST_F(Egress, CyclesAndACrashLeaveNoLinkNamespaceOrRule) {
  for (int i = 0; i < 100; ++i) {
    std::string id = create_egress();
    ASSERT_FALSE(id.empty()) << "cycle " << i;
    http::Client c(tcp());
    ASSERT_EQ(c.request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
  }
  std::string kept = create_egress();
  // Only the sandboxes that exist hold networking: the kept one, the warm pool's, and the
  // ones the earlier tests of this suite left.
  auto settled = [&] {
    auto deadline = Clock::now() + 90s;
    for (;;) {
      auto [links, pins] = held();
      int with_network = 0;
      for (const auto& d : dir_entries(dir_ + "/state/sandboxes"))
        with_network += fs::exists(dir_ + "/state/sandboxes/" + d + "/network.json");
      // Deletes finish in the background (runsc delete takes a while): wait for them.
      if ((links == pins && pins == with_network && links <= 6) || Clock::now() > deadline)
        return std::tuple{links, pins, with_network};
      std::this_thread::sleep_for(200ms);
    }
  };
  auto [links, pins, with_network] = settled();
  EXPECT_EQ(links, pins);
  EXPECT_EQ(pins, with_network);
  EXPECT_LE(links, 6);
  EXPECT_TRUE(egress_filter_present(std::string("swissbox_") + kPrefix));

  crash_agent();
  ASSERT_TRUE(launch_agent());
  auto [links2, pins2, with_network2] = settled();
  EXPECT_EQ(links2, pins2);
  EXPECT_EQ(pins2, with_network2);
  // The kept sandbox came back with its network and its allowlist.
  json ok = run(kept, "curl -sS -m 10 http://allowed.test/");
  EXPECT_EQ(ok.value("stdout", ""), "hello from allowed\n") << ok.dump();
}

TEST_F(Egress, AResumedSandboxGetsItsNetworkBackAndStillOnlyItsAllowlist) {
  std::string id = create_egress();
  std::string address = network_of(id).value("address", "");
  auto reaches_only_its_allowlist = [&] {
    json ok = run(id, "curl -sS -m 10 http://allowed.test/");
    EXPECT_EQ(ok.value("stdout", ""), "hello from allowed\n") << ok.dump();
    json denied = run(id, "curl -sS -m 10 http://denied.test/");
    EXPECT_NE(denied.value("stdout", "").find("not in this sandbox's egress allowlist"), std::string::npos)
        << denied.dump();
    json direct = run(id, "curl -sS -m 5 --noproxy '*' http://198.19.77.6/");
    EXPECT_NE(direct.value("exit_code", 0), 0) << direct.dump();
  };
  // An open TCP connection (here to the proxy) cannot be saved: the suspend resets it.
  std::string gateway = address.substr(0, address.rfind('.')) + ".1";
  exec(id, {{"command", fmt::format("(exec 3<>/dev/tcp/{}/{}; sleep 600) >/dev/null 2>&1 &", gateway, proxy_port_)},
            {"background", true}});
  std::this_thread::sleep_for(300ms);
  post("/v1/sandboxes/" + id + "/suspend", json::object());
  post("/v1/sandboxes/" + id + "/resume", json::object());
  reaches_only_its_allowlist();
  EXPECT_EQ(network_of(id).value("address", ""), address);

  // As after a node reboot: the agent gone, the sandbox's veth pair, namespace, disk mount
  // and cgroup too. Its next call makes them again and resumes it.
  post("/v1/sandboxes/" + id + "/suspend", json::object());
  crash_agent();
  const std::string dir = dir_ + "/state/sandboxes/" + id;
  // (EXPECT, not ASSERT, until the agent runs again: the suite's tear-down needs it.)
  auto text = fs::read_file(dir + "/network.json");
  auto recorded = json::parse(text.ok() ? *text : "{}");
  EXPECT_TRUE(veth::remove_link(recorded.value("link", "")).ok());
  EXPECT_TRUE(netns::remove(dir + "/netns").ok());
  EXPECT_EQ(umount2((dir + "/disk").c_str(), MNT_DETACH), 0);
  for (const std::string& h : kCgroupHierarchies) rmdir(("/sys/fs/cgroup" + h + cgroup_parent() + "/" + id).c_str());
  EXPECT_FALSE(fs::exists(memory_cgroup(id)));
  ASSERT_TRUE(launch_agent());
  reaches_only_its_allowlist();
  EXPECT_EQ(network_of(id).value("address", ""), address) << "its /30 was kept for it";
  // The cgroup came back with the sandbox's limits, not runsc's unlimited default.
  auto limit = fs::read_file(memory_cgroup(id) + (fs::exists("/sys/fs/cgroup/cgroup.controllers")
                                                      ? "/memory.max" : "/memory.limit_in_bytes"));
  ASSERT_TRUE(limit.ok());
  EXPECT_LT(std::stoll(*limit == "max\n" ? "9223372036854775807" : *limit), int64_t{1} << 40) << *limit;
}

}  // namespace
}  // namespace swissbox::testing
