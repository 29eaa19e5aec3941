// envd's directory watches: Filesystem/WatchDir, a server stream of changes (the JS SDK's
// files.watchDir, the Python SDK's async one), and the unary watchers the Python SDK's
// sync files.watch_dir polls (CreateWatcher, GetWatcherEvents, RemoveWatcher). Both are a
// runner watch (runner/watches.h) underneath.
#include <boost/asio/post.hpp>

#include "agent/api/call.h"
#include "agent/api/e2b/e2b.h"
#include "agent/api/run_stream.h"
#include "common/connect.h"
#include "common/sandbox_id.h"

namespace swissbox {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxWatchRequest = 64 << 10;

struct WatchRequest {
  std::string path;
  bool recursive = false;
};

Result<WatchRequest> parse_watch(const json& msg) {
  auto path = msg.find("path");
  if (path == msg.end() || !path->is_string()) return make_error(Code::kInvalidArgument, "path is required");
  WatchRequest req{e2b::client_path(path->get<std::string>())};
  if (auto st = validate_sandbox_path(req.path); !st) return st.error();
  auto recursive = msg.find("recursive");
  if (recursive != msg.end() && !recursive->is_null()) {
    if (!recursive->is_boolean()) return make_error(Code::kInvalidArgument, "recursive must be a boolean");
    req.recursive = recursive->get<bool>();
  }
  // includeEntry and allowNetworkMounts need envd 0.6.3 and 0.6.4; the SDKs do not send
  // them to the version swissbox reports.
  return req;
}

std::string watcher_id(const json& msg) {
  auto it = msg.find("watcherId");
  return it != msg.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

void AgentApi::e2b_watch_dir(Call& c, std::shared_ptr<Sandbox> sb) {
  auto res = c.res;
  auto msg = connect::request_message(c.req.body(), kMaxWatchRequest);
  res->start_stream(200, "application/connect+json");
  if (!msg) return e2b::end_rpc_stream(res, &msg.error());
  auto req = parse_watch(*msg);
  if (!req) return e2b::end_rpc_stream(res, &req.error());
  // Changes go out under the same flow control as a command's output: past it the runner
  // stops reading them, and a watch that falls too far behind ends as lost.
  auto stream = std::make_shared<RunStream>(res, nullptr);
  auto handle = watch_dir(
      mgr_, sb, req->path, req->recursive,
      [res](Status st) {
        if (!st) return e2b::end_rpc_stream(res, &st.error());
        res->write_chunk(connect::message({{"start", json::object()}}));
      },
      [stream](const std::vector<proto::Change>& changes) {
        for (const auto& change : changes) {
          stream->send(connect::message({{"filesystem", e2b::filesystem_event(change)}}));
        }
      },
      [res](Status st) { e2b::end_rpc_stream(res, st ? nullptr : &st.error()); });
  stream->set_handle(handle);
  res->on_client_gone([this, handle] { boost::asio::post(mgr_.io(), [handle] { handle->stop(); }); });
}

void AgentApi::e2b_watcher(Call& c, std::shared_ptr<Sandbox> sb, const json& msg) {
  auto res = c.res;
  const std::string& p = c.path;
  auto fail = [res](const Error& e) { e2b::rpc_fail(res, e); };
  auto watchers = envd_watchers_;
  if (p == "/filesystem.Filesystem/CreateWatcher") {
    // Watchers of sandboxes that are gone go with them.
    std::erase_if(watchers->by_sandbox, [this](const auto& entry) { return !mgr_.find(entry.first); });
    auto req = parse_watch(msg);
    if (!req) return fail(req.error());
    auto& here = watchers->by_sandbox[sb->id];
    if (here.size() >= limits::kMaxWatches) {
      return fail(make_error(Code::kResourceExhausted,
                             "sandbox " + sb->id + " has " + std::to_string(here.size()) +
                                 " watchers, the most it may have; remove one first"));
    }
    std::string id = "w" + random_hex(8);
    auto find = [watchers, sb_id = sb->id, id]() -> e2b::EnvdWatcher* {
      auto s = watchers->by_sandbox.find(sb_id);
      if (s == watchers->by_sandbox.end()) return nullptr;
      auto w = s->second.find(id);
      return w == s->second.end() ? nullptr : &w->second;
    };
    here[id];  // its handle follows: the watch may answer before watch_dir returns
    auto handle = watch_dir(
        mgr_, sb, req->path, req->recursive,
        [res, fail, find, watchers, sb_id = sb->id, id](Status st) {
          if (!st) {
            if (find()) watchers->by_sandbox[sb_id].erase(id);
            return fail(st.error());
          }
          if (!find()) return fail(make_error(Code::kNotFound, "the watcher was removed before it started"));
          res->send_json(200, {{"watcherId", id}});
        },
        [find](const std::vector<proto::Change>& changes) {
          auto* w = find();
          if (!w || w->error) return;
          if (w->changes.size() + changes.size() > limits::kMaxWatcherBacklog) {
            w->changes.clear();
            w->error = make_error(Code::kResourceExhausted,
                                  "more than " + std::to_string(limits::kMaxWatcherBacklog) +
                                      " changes were not fetched: the watcher stopped");
            if (w->handle) w->handle->stop();
            return;
          }
          w->changes.insert(w->changes.end(), changes.begin(), changes.end());
        },
        [find](Status st) {
          auto* w = find();
          if (!w || w->error) return;
          w->changes.clear();
          w->error = st ? make_error(Code::kNotFound, "the watcher was stopped") : st.error();
        });
    if (auto* w = find()) w->handle = std::move(handle);
    return;
  }
  std::string id = watcher_id(msg);
  auto mine = watchers->by_sandbox.find(sb->id);
  auto it = mine != watchers->by_sandbox.end() ? mine->second.find(id) : decltype(mine->second.find(id))();
  if (mine == watchers->by_sandbox.end() || it == mine->second.end()) return fail(make_error(Code::kNotFound, "watcher with id " + id + " not found"));
  if (p == "/filesystem.Filesystem/GetWatcherEvents") {
    if (it->second.error) return fail(*it->second.error);
    json events = json::array();
    for (const auto& change : it->second.changes) events.push_back(e2b::filesystem_event(change));
    it->second.changes.clear();
    return res->send_json(200, {{"events", std::move(events)}});
  }
  // RemoveWatcher
  if (!it->second.error && it->second.handle) it->second.handle->stop();
  mine->second.erase(it);
  res->send_json(200, json::object());
}

}  // namespace swissbox
