// What agent and scheduler share of E2B's API (agent/api/e2b/e2b.h serves it): which calls
// are E2B's, how its template ids name swissbox's templates, and its error shape.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/http_server.h"

namespace swissbox::e2b {

// kControl: /sandboxes…, /v2/sandboxes… (X-API-KEY). kSandbox: a call with E2b-Sandbox-Id,
// for that sandbox's envd or code interpreter (X-Access-Token).
enum class Kind { kNone, kControl, kSandbox };
Kind kind_of(const http::RequestHeader& header);

// A header's value, "" when absent.
std::string_view header(const http::RequestHeader& h, std::string_view name);

// The swissbox template an E2B templateID names: base → default, code-interpreter-v1 →
// code-interpreter, any other id as itself (the agent refuses what it does not have).
std::string template_name(std::string_view template_id);

// Answers in E2B's error shape {"code": <status>, "message": "…"}.
void fail(const std::shared_ptr<http::Responder>& res, const Error& e);

}  // namespace swissbox::e2b
