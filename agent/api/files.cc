// A sandbox's files: GET/PUT/DELETE …/files, GET …/files/list.
#include "agent/api/call.h"
#include "agent/sandbox/sandbox_ops.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

void AgentApi::files(Call& c, std::shared_ptr<Sandbox> sb, bool list) {
  std::string path = c.has_param("path") ? c.param("path") : (list ? "." : "");
  if (auto st = validate_sandbox_path(path); !st) return c.fail(st.error());
  auto res = c.res;
  const auto m = c.req.method();
  if (list) {
    return list_dir(mgr_, sb, path, [res](Result<std::vector<proto::FileEntry>> r) {
      if (!r) return res->send_error(r.error());
      json entries = json::array();
      for (const auto& e : *r) entries.push_back(e.to_json());
      res->send_json(200, {{"entries", std::move(entries)}});
    });
  }
  if (m == bhttp::verb::get) {
    return read_file(mgr_, sb, path, [res](Result<std::string> r) {
      if (!r) return res->send_error(r.error());
      res->send(200, std::move(*r), "application/octet-stream");
    });
  }
  if (m == bhttp::verb::put && c.res->body()) {
    return upload_file(mgr_, sb, path, c.res->body(), [res, path](Status st) {
      if (!st) return res->send_error(st.error());
      res->send_json(200, {{"path", path}, {"ok", true}});
    });
  }
  if (m == bhttp::verb::put) {
    if (c.req.body().size() > kMaxFileBytes)
      return c.fail(make_error(Code::kTooLarge, "file larger than 64 MiB"));
    return write_file(mgr_, sb, path, std::move(c.req.body()), [res, path](Status st) {
      if (!st) return res->send_error(st.error());
      res->send_json(200, {{"path", path}, {"ok", true}});
    });
  }
  if (m == bhttp::verb::delete_) {
    bool recursive = c.param("recursive") == "true" || c.param("recursive") == "1";
    return delete_path(mgr_, sb, path, recursive, [res](Status st) {
      if (!st) return res->send_error(st.error());
      res->send(204, {}, {});
    });
  }
  c.fail(make_error(Code::kInvalidArgument, "use GET, PUT or DELETE on files"));
}

}  // namespace swissbox
