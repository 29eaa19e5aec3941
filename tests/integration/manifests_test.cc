// The Kubernetes manifests (daemonset/): the SKS overlay renders with kustomize, every
// object validates against the Kubernetes API schemas (npm kubernetes-models), and the
// rendered agent, installer and scheduler containers are started here with exactly their
// rendered command, args and env — volume mount paths mapped to temp dirs, each in a
// network namespace of its own like a pod — and answer their probes.
#include <fcntl.h>
#include <sched.h>

#include <fmt/format.h>

#include "agent/net/netns.h"
#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

const std::string kSource = SWISSBOX_SOURCE_DIR;

class Manifests : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access("/usr/bin/kubectl", X_OK) != 0 || access("/usr/bin/node", X_OK) != 0) {
      skip_ = "kubectl (kustomize) or node is missing";
      return;
    }
    if (!fs::exists(modules() + "/kubernetes-models/package.json")) {
      skip_ = "the schema packages are missing (scripts/install-deps.sh installs them)";
      return;
    }
    char tmpl[] = "/tmp/swissbox-manifests-XXXXXX";
    dir_ = mkdtemp(tmpl);
    ProcessOptions render;
    render.argv = {"/usr/bin/kubectl", "kustomize", kSource + "/daemonset/overlays/sks"};
    auto r = run_process(render);
    if (!r || r->exit_code != 0) {
      skip_ = "kubectl kustomize failed: " + (r ? r->err : r.error().to_string());
      return;
    }
    (void)fs::write_file_atomic(dir_ + "/rendered.yaml", r->out);
    auto j = node({kSource + "/daemonset/to-json.mjs", modules()}, dir_ + "/rendered.yaml");
    objects_ = json::parse(j.second, nullptr, false);
  }
  void TearDown() override { failed_ |= HasFailure(); }
  static void TearDownTestSuite() {
    if (!dir_.empty() && !failed_) {
      (void)fs::remove_tree(dir_);
    }
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  static std::string modules() { return kSource + "/build/npm/node_modules"; }
  // Runs node with a file as stdin; answers exit code and stdout.
  static std::pair<int, std::string> node(std::vector<std::string> args, const std::string& stdin_file) {
    ProcessOptions p;
    p.argv = {"/usr/bin/node"};
    p.argv.insert(p.argv.end(), args.begin(), args.end());
    unique_fd in(open(stdin_file.c_str(), O_RDONLY | O_CLOEXEC));
    p.stdin_fd = in.get();
    p.capture_cap = 16 << 20;
    auto r = run_process(p);
    return r ? std::pair{r->exit_code, r->out} : std::pair{-1, r.error().to_string()};
  }
  static const json& object(const std::string& kind, const std::string& name_prefix) {
    static const json none;
    for (const auto& o : objects_) {
      if (o.value("kind", "") == kind && o["metadata"].value("name", "").rfind(name_prefix, 0) == 0) return o;
    }
    return none;
  }

  // Starts a rendered container: its volume mounts become dirs under `root` (config maps
  // and secrets written out from the rendered objects, /sys/fs/cgroup kept as it is), its
  // args name those dirs, its env comes from the spec, and it runs in `netns`.
  static pid_t start_container(const json& pod, const json& c, const std::string& root,
                               const std::string& ns_path, std::vector<std::string>* args_out) {
    std::vector<std::pair<std::string, std::string>> mapping;  // mountPath → dir
    for (const auto& m : c.value("volumeMounts", json::array())) {
      std::string path = m["mountPath"];
      mapping.emplace_back(path, path == "/sys/fs/cgroup" ? path : root + path);
      // The installer's --host-root is the parent of its /host/… mounts.
      if (path.rfind("/host/", 0) == 0 &&
          std::none_of(mapping.begin(), mapping.end(), [](const auto& m) { return m.first == "/host"; }))
        mapping.emplace_back("/host", root + "/host");
    }
    // Longer mount paths first: /etc/swissbox/tokens before /etc/swissbox.
    std::sort(mapping.begin(), mapping.end(),
              [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    // Paths in args and in mounted config files name the mapped dirs.
    auto map_paths = [&](std::string a) {
      for (const auto& [from, to] : mapping) {
        if (from == to) continue;
        for (size_t at = 0; (at = a.find(from, at)) != std::string::npos; at += to.size()) {
          bool whole = at + from.size() == a.size() || a[at + from.size()] == '/';
          bool starts = at == 0 || a[at - 1] == '=' || a[at - 1] == ' ' || a[at - 1] == '"';
          if (!whole || !starts) continue;
          a.replace(at, from.size(), to);
        }
      }
      return a;
    };
    for (const auto& m : c.value("volumeMounts", json::array())) {
      std::string mapped = map_paths(m["mountPath"]);
      (void)fs::make_dirs(mapped);
      for (const auto& v : pod["volumes"]) {
        if (v["name"] != m["name"]) continue;
        json data;
        if (v.contains("configMap")) data = object("ConfigMap", v["configMap"]["name"])["data"];
        if (v.contains("secret")) data = object("Secret", v["secret"]["secretName"])["stringData"];
        if (!data.is_object()) continue;
        for (auto& [file, text] : data.items())
          (void)fs::write_file_atomic(mapped + "/" + file, map_paths(text.get<std::string>()));
      }
    }
    std::map<std::string, std::string> env = {{"NODE_NAME", "manifest-test"}};
    std::vector<std::string> argv;
    for (const auto& part : {c["command"], c.value("args", json::array())}) {
      for (std::string a : part) {
        for (const auto& [k, v] : env) {
          for (size_t at; (at = a.find("$(" + k + ")")) != std::string::npos;)
            a.replace(at, k.size() + 3, v);
        }
        a = map_paths(a);
        // The image's files are the ones here: the binaries built here, this host's runsc,
        // and instead of the image's sandbox rootfs (installer/build-rootfs.sh) the host's.
        for (const auto& [image, here] :
             {std::pair{std::string("/usr/local/bin/runsc"), find_runsc()},
              {std::string("/usr/local/bin/swissbox-"), std::string(SWISSBOX_BIN_DIR) + "/swissbox-"},
              {std::string("/opt/swissbox/rootfs"), std::string("host")},
              {std::string("/usr/local/share/swissbox/seccomp/"), kSource + "/seccomp-profiles/"}}) {
          if (auto at = a.find(image); at != std::string::npos && (at == 0 || a[at - 1] == '='))
            a.replace(at, image.size(), here);
        }
        argv.push_back(a);
      }
    }
    *args_out = argv;
    unique_fd ns(open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    pid_t pid = fork();
    if (pid == 0) {
      freopen((root + "/container.log").c_str(), "a", stderr);
      dup2(STDERR_FILENO, STDOUT_FILENO);
      if (setns(ns.get(), CLONE_NEWNET) != 0) _exit(126);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      std::vector<std::string> envs;
      for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
      envs.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
      std::vector<char*> cenv;
      for (auto& e : envs) cenv.push_back(e.data());
      cenv.push_back(nullptr);
      execve(cargv[0], cargv.data(), cenv.data());
      _exit(127);
    }
    return pid;
  }

  // GET path on 127.0.0.1:port inside the namespace; status 0 if nothing answered.
  static unsigned probe(const std::string& ns_path, int port, const std::string& path,
                        std::chrono::seconds within) {
    unsigned status = 0;
    auto deadline = Clock::now() + within;
    while (status == 0 && Clock::now() < deadline) {
      (void)netns::run_in(ns_path, [&]() -> Status {
        // lo is down in a new namespace: bring it up as a pod's runtime would.
        ProcessOptions up;
        up.argv = {"/usr/sbin/ip", "link", "set", "lo", "up"};
        (void)run_process(up);
        http::Client c(fmt::format("127.0.0.1:{}", port), 2s);
        auto r = c.request("GET", path);
        if (r) status = r->status;
        return ok_status();
      });
      if (status == 0) std::this_thread::sleep_for(200ms);
    }
    return status;
  }

  static int container_port(const json& c, const json& port) {
    if (port.is_number()) return port;
    for (const auto& p : c["ports"]) {
      if (p["name"] == port) return p["containerPort"];
    }
    return -1;
  }

  static inline std::string skip_, dir_;
  static inline json objects_;
  static inline bool failed_ = false;
};

TEST_F(Manifests, TheOverlayRendersAndEveryObjectValidates) {
  auto [rc, out] = node({kSource + "/daemonset/validate.mjs", modules()}, dir_ + "/rendered.yaml");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(" 0 invalid"), std::string::npos) << out;
  auto [rc2, out2] = node({kSource + "/daemonset/validate.mjs", modules()},
                          kSource + "/daemonset/examples/alertmanager-slack.yaml");
  EXPECT_EQ(rc2, 0) << out2;
  ASSERT_TRUE(objects_.is_array());
  EXPECT_EQ(object("RuntimeClass", "gvisor").value("handler", ""), "runsc");
  EXPECT_EQ(object("Service", "swissbox-agent")["spec"].value("clusterIP", ""), "None");
  EXPECT_EQ(object("Deployment", "swissbox-scheduler")["spec"].value("replicas", 0), 2);
  for (const char* kind : {"Namespace", "ServiceAccount", "PriorityClass", "ConfigMap", "Secret",
                           "DaemonSet", "PodDisruptionBudget", "NetworkPolicy", "PrometheusRule"}) {
    bool found = false;
    for (const auto& o : objects_) found |= o.value("kind", "") == kind;
    EXPECT_TRUE(found) << kind;
  }
}

TEST_F(Manifests, RenderedContainersStartWithTheirArgsAndAnswerTheirProbes) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (the agent, network namespaces)";
  const json& ds = object("DaemonSet", "swissbox-agent");
  const json& pod = ds["spec"]["template"]["spec"];
  const json* agent = nullptr;
  for (const auto& c : pod["containers"]) {
    if (c["name"] == "agent") agent = &c;
  }
  ASSERT_NE(agent, nullptr);
  std::string ns = dir_ + "/pod.ns";
  ASSERT_TRUE(netns::create(ns).ok());

  // The installer: its flags parse; without containerd it stops with that reason.
  std::vector<std::string> args;
  const json& init = pod["initContainers"][0];
  pid_t inst = start_container(pod, init, dir_ + "/installer", ns, &args);
  int status = 0;
  waitpid(inst, &status, 0);
  std::string inst_log = *fs::read_file(dir_ + "/installer/container.log");
  EXPECT_EQ(WEXITSTATUS(status), 1) << inst_log;
  EXPECT_NE(inst_log.find("no containerd socket"), std::string::npos) << inst_log;

  // The agent: healthy, and not ready while no container runtime answers on the mapped
  // CRI socket (there is no containerd in this test).
  pid_t pid = start_container(pod, *agent, dir_ + "/agent", ns, &args);
  int port = container_port(*agent, agent->at("livenessProbe")["httpGet"]["port"]);
  EXPECT_EQ(probe(ns, port, agent->at("livenessProbe")["httpGet"]["path"], 60s), 200u)
      << *fs::read_file(dir_ + "/agent/container.log");
  unsigned ready = probe(ns, port, agent->at("readinessProbe")["httpGet"]["path"], 10s);
  EXPECT_EQ(ready, 503u);
  std::string agent_log = *fs::read_file(dir_ + "/agent/container.log");
  EXPECT_NE(agent_log.find("egress ready"), std::string::npos) << "the rendered egress config loads";
  EXPECT_TRUE(stop_daemon(pid));
  EXPECT_EQ(remove_cgroup_parent("/swissbox/sandboxes"), "");
  rmdir("/sys/fs/cgroup/swissbox");
  for (const char* h : {"/cpu", "/cpuacct", "/memory", "/pids"})
    rmdir((std::string("/sys/fs/cgroup") + h + "/swissbox").c_str());

  // The scheduler: healthy (its agents' name does not resolve here, so not ready).
  const json& sched = object("Deployment", "swissbox-scheduler")["spec"]["template"]["spec"];
  pid_t spid = start_container(sched, sched["containers"][0], dir_ + "/scheduler", ns, &args);
  int sport = container_port(sched["containers"][0], sched["containers"][0]["livenessProbe"]["httpGet"]["port"]);
  EXPECT_EQ(probe(ns, sport, "/healthz", 20s), 200u) << *fs::read_file(dir_ + "/scheduler/container.log");
  EXPECT_EQ(probe(ns, sport, "/readyz", 5s), 503u);
  EXPECT_TRUE(stop_daemon(spid));
  EXPECT_TRUE(netns::remove(ns).ok());
}

}  // namespace
}  // namespace swissbox::testing
