// A client of the Kubernetes CRI (runtime.v1, cri/cri.proto) over a container
// runtime's unix socket, with a deadline on every call. Answers are plain structs, so
// callers need no protobuf or gRPC headers.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"

namespace swissbox::cri {

struct VersionInfo {
  std::string runtime_name, runtime_version, api_version;
};

struct RuntimeStatus {
  bool runtime_ready = false;
  bool network_ready = false;
  std::string message;                // the not-ready conditions' reasons, if any
  std::vector<std::string> handlers;  // runtime handlers the runtime reports (CRI ≥ 0.30)
};

struct PodConfig {
  std::string name, uid, pod_namespace = "swissbox-system";
  std::string cgroup_parent;  // empty: the runtime's default
  bool host_network = true;   // NODE network: no CNI needed
};

class Client {
 public:
  // socket: a path ("/run/containerd/containerd.sock").
  Client(const std::string& socket, std::chrono::milliseconds timeout);
  ~Client();
  Client(Client&&) noexcept;

  Result<VersionInfo> version();
  Result<RuntimeStatus> status();
  // The new pod sandbox's id.
  Result<std::string> run_pod_sandbox(const PodConfig& config, const std::string& handler);
  // Whether the pod sandbox is ready, and the handler the runtime says runs it.
  Result<std::pair<bool, std::string>> pod_sandbox_status(const std::string& id);
  Status stop_pod_sandbox(const std::string& id);
  Status remove_pod_sandbox(const std::string& id);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace swissbox::cri
