// The runsc runtime handler in containerd's config (version 2: containerd 1.6/1.7).
//
// Why a managed block in config.toml and not a file under conf.d: containerd before 2.0
// merges an imported file by whole plugin sections (containerd issue 5837), so a drop-in
// that names plugins."io.containerd.grpc.v1.cri" replaces the node's entire CRI config
// (sandbox image, runc's SystemdCgroup, registry mirrors). The block holds only new
// tables, fenced by marker lines, so installing again replaces exactly it and uninstalling
// removes exactly it; everything else in the file stays byte for byte.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"

namespace swissbox::installer {

// A small TOML reader: enough to tell a file containerd could parse from a broken one and
// to list its tables and top-level keys. Values are checked for balanced quotes, brackets
// and braces (strings, arrays, inline tables, multi-line arrays), not interpreted.
struct TomlOutline {
  std::vector<std::string> tables;      // header names, quotes kept: plugins."io.containerd…"
  std::vector<std::string> root_keys;   // keys before the first table
  std::string version;                  // the root "version" value, if any
};
Result<TomlOutline> outline_toml(const std::string& text);

struct HandlerConfig {
  std::string handler = "runsc";
  // runc v2 shim + BinaryName (Debian's runsc) unless a containerd-shim-runsc-v1 is used.
  bool runsc_shim = false;
  std::string binary;                         // BinaryName: the swissbox-runsc wrapper
  std::string root = "/run/containerd/runsc";  // runsc state root (options.Root)
};

constexpr const char* kBlockBegin = "# BEGIN swissbox-installer (managed: do not edit)";
constexpr const char* kBlockEnd = "# END swissbox-installer";

// The config with the handler's block in place (replacing an earlier one). Refuses a file
// it cannot parse, one that is not version 2, and one that already defines the handler
// outside the block.
Result<std::string> with_handler(const std::string& config, const HandlerConfig& handler);
// The config without the block (unchanged if there is none).
std::string without_handler(const std::string& config);

}  // namespace swissbox::installer
