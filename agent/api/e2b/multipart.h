// multipart/form-data (RFC 7578) as E2B's SDKs upload files: one part per file, named
// "file", its filename the target path. Internal to agent/api.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace swissbox::e2b {

struct FormPart {
  std::string name;      // the form field
  std::string filename;  // empty when the part has none
  std::string_view data;  // into the body
};

// The boundary of a Content-Type "multipart/form-data; boundary=…" (quoted or not).
Result<std::string> multipart_boundary(std::string_view content_type);
// The parts of a body; an unterminated part or a missing final boundary is refused.
Result<std::vector<FormPart>> parse_multipart(std::string_view body, std::string_view boundary);

}  // namespace swissbox::e2b
