#include "cri/cri_client.h"

#include <grpcpp/grpcpp.h>

#include "cri/cri.grpc.pb.h"

namespace swissbox::cri {

namespace v1 = ::runtime::v1;

struct Client::Impl {
  std::string socket;
  std::chrono::milliseconds timeout;
  std::unique_ptr<v1::RuntimeService::Stub> stub;

  // One call with its deadline; a gRPC failure becomes an Error naming the method.
  template <typename Req, typename Resp, typename Method>
  Status call(const char* name, Method method, const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    grpc::Status st = (stub.get()->*method)(&ctx, req, resp);
    if (st.ok()) return ok_status();
    Code code = st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ? Code::kDeadlineExceeded
                : st.error_code() == grpc::StatusCode::UNAVAILABLE     ? Code::kUnavailable
                : st.error_code() == grpc::StatusCode::NOT_FOUND       ? Code::kNotFound
                                                                       : Code::kInternal;
    return make_error(code, std::string("CRI ") + name + " on " + socket + ": " + st.error_message());
  }
};

Client::Client(const std::string& socket, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->socket = socket;
  impl_->timeout = timeout;
  impl_->stub = v1::RuntimeService::NewStub(
      grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials()));
}

Client::~Client() = default;
Client::Client(Client&&) noexcept = default;

Result<VersionInfo> Client::version() {
  v1::VersionRequest req;
  req.set_version("v1");
  v1::VersionResponse resp;
  if (auto st = impl_->call("Version", &v1::RuntimeService::Stub::Version, req, &resp); !st)
    return st.error();
  return VersionInfo{resp.runtime_name(), resp.runtime_version(), resp.runtime_api_version()};
}

Result<RuntimeStatus> Client::status() {
  v1::StatusRequest req;
  v1::StatusResponse resp;
  if (auto st = impl_->call("Status", &v1::RuntimeService::Stub::Status, req, &resp); !st)
    return st.error();
  RuntimeStatus out;
  for (const auto& c : resp.status().conditions()) {
    if (c.type() == "RuntimeReady") out.runtime_ready = c.status();
    if (c.type() == "NetworkReady") out.network_ready = c.status();
    if (!c.status()) {
      if (!out.message.empty()) out.message += "; ";
      out.message += c.type() + ": " + c.reason() + (c.message().empty() ? "" : " (" + c.message() + ")");
    }
  }
  for (const auto& h : resp.runtime_handlers()) out.handlers.push_back(h.name());
  return out;
}

Result<std::string> Client::run_pod_sandbox(const PodConfig& c, const std::string& handler) {
  v1::RunPodSandboxRequest req;
  req.set_runtime_handler(handler);
  auto* config = req.mutable_config();
  config->mutable_metadata()->set_name(c.name);
  config->mutable_metadata()->set_uid(c.uid);
  config->mutable_metadata()->set_namespace_(c.pod_namespace);
  config->set_hostname(c.name);
  auto* linux = config->mutable_linux();
  linux->set_cgroup_parent(c.cgroup_parent);
  auto* ns = linux->mutable_security_context()->mutable_namespace_options();
  ns->set_network(c.host_network ? v1::NODE : v1::POD);
  v1::RunPodSandboxResponse resp;
  if (auto st = impl_->call("RunPodSandbox", &v1::RuntimeService::Stub::RunPodSandbox, req, &resp);
      !st)
    return st.error();
  return resp.pod_sandbox_id();
}

Result<std::pair<bool, std::string>> Client::pod_sandbox_status(const std::string& id) {
  v1::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(id);
  v1::PodSandboxStatusResponse resp;
  if (auto st =
          impl_->call("PodSandboxStatus", &v1::RuntimeService::Stub::PodSandboxStatus, req, &resp);
      !st)
    return st.error();
  return std::pair{resp.status().state() == v1::SANDBOX_READY, resp.status().runtime_handler()};
}

Status Client::stop_pod_sandbox(const std::string& id) {
  v1::StopPodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  v1::StopPodSandboxResponse resp;
  return impl_->call("StopPodSandbox", &v1::RuntimeService::Stub::StopPodSandbox, req, &resp);
}

Status Client::remove_pod_sandbox(const std::string& id) {
  v1::RemovePodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  v1::RemovePodSandboxResponse resp;
  return impl_->call("RemovePodSandbox", &v1::RuntimeService::Stub::RemovePodSandbox, req, &resp);
}

}  // namespace swissbox::cri
