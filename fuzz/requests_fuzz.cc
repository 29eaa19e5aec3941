// An HTTP request as the agent's server parses it (the same header and body limits), then
// the path and body as the API reads them: sandbox ids, file paths and query strings, and
// the JSON bodies of create, exec, code and context requests, and E2B's bodies (create,
// Connect envelopes, base64, multipart uploads). Every input must end in a value or an
// error, never a crash, a hang or an exception.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/api/e2b/e2b.h"
#include "agent/api/e2b/multipart.h"
#include "agent/sandbox/sandbox_ops.h"
#include "common/base64.h"
#include "common/connect.h"
#include "agent/runtime/sandbox_spec.h"
#include "common/http_server.h"

namespace bhttp = boost::beast::http;
using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(swissbox::http::ServerOptions{}.header_limit);
  parser.body_limit(1 << 20);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t used = 0;
  while (used < size && !parser.is_done()) {
    size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == bhttp::error::need_more) ec = {};
    if (ec || n == 0) break;
    used += n;
  }
  if (ec || !parser.is_done()) return 0;
  const auto& req = parser.get();
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  for (size_t start = 0; start < path.size();) {
    size_t slash = path.find('/', start);
    (void)swissbox::valid_sandbox_id(path.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (size_t q = target.find('?'); q != std::string_view::npos) {
    for (const auto& [k, v] : swissbox::http::parse_query(target.substr(q + 1))) {
      (void)swissbox::validate_sandbox_path(v);
    }
  }
  json body = json::parse(req.body(), nullptr, false);
  json metadata;
  (void)swissbox::parse_create_request(body, swissbox::LimitBounds{}, &metadata);
  (void)swissbox::parse_exec_request(body);
  (void)swissbox::parse_code_request(body);
  (void)swissbox::parse_context_request(body);
  // E2B's: a create, a Connect envelope, bytes in base64, a multipart upload.
  json e2b_metadata;
  (void)swissbox::e2b::parse_create(body, &e2b_metadata);
  (void)swissbox::connect::request_message(req.body(), 1 << 20);
  (void)swissbox::base64_decode(req.body());
  auto content_type = req.find(bhttp::field::content_type);
  if (content_type != req.end()) {
    if (auto boundary = swissbox::e2b::multipart_boundary(content_type->value())) {
      (void)swissbox::e2b::parse_multipart(req.body(), *boundary);
    }
  }
  return 0;
}
