#include "cri/containerd_images.h"

#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>

#include <ctime>

#include "cri/containerd/content.grpc.pb.h"
#include "cri/containerd/images.grpc.pb.h"
#include "cri/containerd/snapshots.grpc.pb.h"
#include "cri/cri.grpc.pb.h"

namespace swissbox::cri {

namespace images = ::containerd::services::images::v1;
namespace content = ::containerd::services::content::v1;
namespace snapshots = ::containerd::services::snapshots::v1;

struct ContainerdImages::Impl {
  std::string socket, ns, snapshotter;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<::runtime::v1::ImageService::Stub> cri;
  std::unique_ptr<images::Images::Stub> images;
  std::unique_ptr<content::Content::Stub> content;
  std::unique_ptr<snapshots::Snapshots::Stub> snapshots;

  // A context in the namespace, with a deadline.
  std::unique_ptr<grpc::ClientContext> context(std::chrono::seconds timeout = std::chrono::seconds(30)) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + timeout);
    ctx->AddMetadata("containerd-namespace", ns);
    return ctx;
  }
  Error failed(const std::string& what, const grpc::Status& st) const {
    Code code = st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ? Code::kDeadlineExceeded
                : st.error_code() == grpc::StatusCode::UNAVAILABLE     ? Code::kUnavailable
                : st.error_code() == grpc::StatusCode::NOT_FOUND       ? Code::kNotFound
                : st.error_code() == grpc::StatusCode::ALREADY_EXISTS  ? Code::kConflict
                                                                       : Code::kInternal;
    return make_error(code, "containerd " + what + " on " + socket + ": " + st.error_message());
  }
};

ContainerdImages::ContainerdImages(const std::string& socket, std::string ns, std::string snapshotter)
    : impl_(std::make_unique<Impl>()) {
  impl_->socket = socket;
  impl_->ns = std::move(ns);
  impl_->snapshotter = std::move(snapshotter);
  impl_->channel = grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials());
  impl_->cri = ::runtime::v1::ImageService::NewStub(impl_->channel);
  impl_->images = images::Images::NewStub(impl_->channel);
  impl_->content = content::Content::NewStub(impl_->channel);
  impl_->snapshots = snapshots::Snapshots::NewStub(impl_->channel);
}

ContainerdImages::~ContainerdImages() = default;

Result<std::string> ContainerdImages::pull(const std::string& ref, std::chrono::seconds timeout) {
  ::runtime::v1::PullImageRequest req;
  req.mutable_image()->set_image(ref);
  ::runtime::v1::PullImageResponse resp;
  auto ctx = impl_->context(timeout);
  if (auto st = impl_->cri->PullImage(ctx.get(), req, &resp); !st.ok()) return impl_->failed("pull of " + ref, st);
  return resp.image_ref();
}

Result<Descriptor> ContainerdImages::image(const std::string& name) {
  images::GetImageRequest req;
  req.set_name(name);
  images::GetImageResponse resp;
  auto ctx = impl_->context();
  if (auto st = impl_->images->Get(ctx.get(), req, &resp); !st.ok()) return impl_->failed("image " + name, st);
  const auto& t = resp.image().target();
  return Descriptor{t.media_type(), t.digest(), t.size()};
}

Result<std::string> ContainerdImages::read(const std::string& digest, size_t max_bytes) {
  content::ReadContentRequest req;
  req.set_digest(digest);
  auto ctx = impl_->context();
  auto reader = impl_->content->Read(ctx.get(), req);
  std::string out;
  content::ReadContentResponse chunk;
  while (reader->Read(&chunk)) {
    if (out.size() + chunk.data().size() > max_bytes) {
      ctx->TryCancel();
      (void)reader->Finish();
      return make_error(Code::kInvalidArgument, "blob " + digest + " is larger than " + std::to_string(max_bytes) +
                                                    " bytes");
    }
    out += chunk.data();
  }
  if (auto st = reader->Finish(); !st.ok()) return impl_->failed("read of " + digest, st);
  return out;
}

namespace {

std::vector<Mount> mounts_of(const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& ms) {
  std::vector<Mount> out;
  for (const auto& m : ms) out.push_back(Mount{m.type(), m.source(), {m.options().begin(), m.options().end()}});
  return out;
}

}  // namespace

Result<std::vector<Mount>> ContainerdImages::view(const std::string& key, const std::string& parent) {
  snapshots::ViewSnapshotRequest req;
  req.set_snapshotter(impl_->snapshotter);
  req.set_key(key);
  req.set_parent(parent);
  // Kept by containerd's garbage collector until the agent removes it.
  char now[32];
  std::time_t t = std::time(nullptr);
  std::strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  (*req.mutable_labels())["containerd.io/gc.root"] = now;
  snapshots::ViewSnapshotResponse resp;
  auto ctx = impl_->context();
  auto st = impl_->snapshots->View(ctx.get(), req, &resp);
  if (st.ok()) return mounts_of(resp.mounts());
  if (st.error_code() != grpc::StatusCode::ALREADY_EXISTS) return impl_->failed("view of " + parent, st);
  snapshots::MountsRequest again;
  again.set_snapshotter(impl_->snapshotter);
  again.set_key(key);
  snapshots::MountsResponse mounts;
  auto ctx2 = impl_->context();
  if (auto st2 = impl_->snapshots->Mounts(ctx2.get(), again, &mounts); !st2.ok())
    return impl_->failed("mounts of " + key, st2);
  return mounts_of(mounts.mounts());
}

Status ContainerdImages::remove_view(const std::string& key) {
  snapshots::RemoveSnapshotRequest req;
  req.set_snapshotter(impl_->snapshotter);
  req.set_key(key);
  google::protobuf::Empty resp;
  auto ctx = impl_->context();
  auto st = impl_->snapshots->Remove(ctx.get(), req, &resp);
  if (st.ok() || st.error_code() == grpc::StatusCode::NOT_FOUND) return ok_status();
  return impl_->failed("removal of view " + key, st);
}

Status ContainerdImages::delete_image(const std::string& target_digest) {
  images::ListImagesRequest list;
  list.add_filters("target.digest==" + target_digest);
  images::ListImagesResponse names;
  auto ctx = impl_->context();
  if (auto st = impl_->images->List(ctx.get(), list, &names); !st.ok())
    return impl_->failed("images of " + target_digest, st);
  for (const auto& image : names.images()) {
    images::DeleteImageRequest req;
    req.set_name(image.name());
    google::protobuf::Empty resp;
    auto del = impl_->context();
    auto st = impl_->images->Delete(del.get(), req, &resp);
    if (!st.ok() && st.error_code() != grpc::StatusCode::NOT_FOUND)
      return impl_->failed("removal of image " + image.name(), st);
  }
  return ok_status();
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string chain_id(const std::vector<std::string>& diff_ids) {
  std::string chain;
  for (const auto& d : diff_ids) chain = chain.empty() ? d : "sha256:" + sha256_hex(chain + " " + d);
  return chain;
}

}  // namespace swissbox::cri
